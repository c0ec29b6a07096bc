//! `klaxon page`: page a user or a schedule for help, outside any rule.

use anyhow::{Result, bail};
use clap::Args;

use super::need_brokers;
use crate::{
    config::Config,
    notify::client,
    paging::{self, ManualPage, PagingEvent, Severity},
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
    let (target, event) = manual_page(&args, &by)?;
    client::send_events(&config, std::slice::from_ref(&event), None).await?;
    println!(
        "paged {}: {} (dedup_key {})",
        target.name(),
        args.summary,
        event.dedup_key
    );
    Ok(())
}

/// The trigger event of a manual page, and whom it is for.
fn manual_page(args: &PageArgs, by: &str) -> Result<(paging::PageTarget, PagingEvent)> {
    let target = match (&args.target.user, &args.target.schedule) {
        (Some(u), _) => paging::PageTarget::User(u.clone()),
        (None, Some(s)) => paging::PageTarget::Schedule(s.clone()),
        (None, None) => bail!("say whom to page: --user or --schedule"),
    };
    let severity: Severity = args.severity.parse()?;
    let event = PagingEvent::manual_page(&ManualPage {
        target: &target,
        summary: &args.summary,
        severity,
        by,
        client: "klaxon-cli",
        at: chrono::Utc::now(),
    });
    Ok((target, event))
}
