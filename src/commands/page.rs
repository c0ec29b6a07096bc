//! `klaxon page`: page a user or a schedule for help, outside any rule.

use anyhow::{Context, Result, bail};
use clap::Args;

use super::need_brokers;
use crate::{
    config::Config,
    notify::client,
    rules::{EventAction, PagingEvent, Severity},
};

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "who")]
pub struct PageTarget {
    /// Page this user, through their notification rules.
    #[arg(long)]
    pub user: Option<String>,
    /// Page whoever this schedule has on call.
    #[arg(long)]
    pub schedule: Option<String>,
}

#[derive(Debug, Args)]
pub struct PageArgs {
    #[command(flatten)]
    pub target: PageTarget,
    /// What you need help with.
    #[arg(long)]
    pub summary: String,
    #[arg(long, default_value = "critical")]
    pub severity: String,
    /// Who is asking, for the timeline (default: $USER).
    #[arg(long, env = "USER")]
    pub by: Option<String>,
}

/// A trigger for a user or schedule, outside any rule.
pub async fn run(config: Config, args: PageArgs) -> Result<()> {
    need_brokers(&config)?;
    let by = args.by.clone().unwrap_or_else(|| "klaxon-cli".to_owned());
    let (target, dedup_key, event) = manual_page(&args, &by)?;
    client::send_events(&config, &[event], None).await?;
    println!("paged {target}: {} (dedup_key {dedup_key})", args.summary);
    Ok(())
}

fn parse_severity(severity: &str) -> Result<Severity> {
    serde_json::from_value(serde_json::Value::String(severity.to_owned()))
        .with_context(|| format!("severity {severity:?}: use critical, error, warning or info"))
}

/// The trigger event of a manual page: whom it is for, its dedup_key, the event.
fn manual_page(args: &PageArgs, by: &str) -> Result<(String, String, PagingEvent)> {
    let (key, target) = match (&args.target.user, &args.target.schedule) {
        (Some(u), _) => ("page_user", u.clone()),
        (None, Some(s)) => ("page_schedule", s.clone()),
        (None, None) => bail!("say whom to page: --user or --schedule"),
    };
    let severity = parse_severity(&args.severity)?;
    let now = chrono::Utc::now();
    let dedup_key = format!("page/{target}/{}", now.timestamp_millis());
    let mut custom = serde_json::Map::new();
    custom.insert(key.to_owned(), target.clone().into());
    custom.insert("requested_by".to_owned(), by.to_owned().into());
    let mut event = client::action_event(EventAction::Trigger, &dedup_key, by, "klaxon-cli");
    event.payload = Some(crate::rules::Payload {
        summary: args.summary.clone(),
        source: format!("klaxon page by {by}"),
        severity,
        timestamp: now.to_rfc3339(),
        component: None,
        group: None,
        class: Some("manual page".to_owned()),
        custom_details: custom,
    });
    Ok((target, dedup_key, event))
}
