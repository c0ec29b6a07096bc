//! `klaxon incidents`, `incident ID`, `ack ID` and `resolve ID`: incidents
//! as the notifier's changelog holds them, and the events that change them.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::Args;

use super::need_brokers;
use crate::{
    config::Config,
    notify::{
        Incident, Status,
        client::{self, Action},
        queries,
    },
    paging::{EventAction, Publisher},
};

#[derive(Debug, Args)]
pub struct IncidentsArgs {
    /// Only these: triggered, acknowledged, resolved, or open (not resolved).
    #[arg(long)]
    pub status: Option<String>,
}

#[derive(Debug, Args)]
pub struct IncidentArgs {
    /// Incident id, or its dedup_key.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Incident id, or its dedup_key.
    pub id: String,
    /// Who is doing it, for the timeline (default: $USER).
    #[arg(long, env = "USER")]
    pub by: Option<String>,
    /// How long to wait for the notifier to apply it (0s: do not wait).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub action: ActionArgs,
    /// Acknowledged until it resolves: the on-call file's ack_timeout does
    /// not trigger it again.
    #[arg(long)]
    pub until_resolved: bool,
}

/// `klaxon incidents`: one line per incident.
pub async fn list(config: Config, args: IncidentsArgs) -> Result<()> {
    need_brokers(&config)?;
    let incidents = queries::list_incidents(&config, args.status.as_deref()).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ID\tSTATUS\tSEVERITY\tOPENED\tSUMMARY\tDEDUP_KEY")?;
    for i in &incidents {
        writeln!(
            stdout,
            "{}\t{}\t{}\t{}\t{}\t{}",
            i.id,
            i.status.as_str(),
            i.severity,
            i.opened_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            i.summary,
            i.dedup_key
        )?;
    }
    Ok(())
}

/// `klaxon incident ID`: details and timeline.
pub async fn show(config: Config, args: IncidentArgs) -> Result<()> {
    need_brokers(&config)?;
    let (_, i) = queries::find_incident(&config, &args.id).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "incident   {}", i.id)?;
    writeln!(out, "status     {}", i.status.as_str())?;
    writeln!(out, "summary    {}", i.summary)?;
    writeln!(out, "severity   {}", i.severity)?;
    writeln!(out, "dedup_key  {}", i.dedup_key)?;
    writeln!(
        out,
        "policy     {}",
        i.policy.as_deref().unwrap_or("(none)")
    )?;
    writeln!(out, "triggers   {}", i.triggers)?;
    // When the policy pages next, if nobody acts: the next level, or the
    // end of an acknowledgement that runs out.
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let e = &i.escalation;
    let escalates = match (e.next_at, e.ack_expires_at, e.paused_until, e.renotify_at) {
        (Some(next), ..) => at(next),
        (None, Some(expires), ..) => {
            format!("{} (when the acknowledgement runs out)", at(expires))
        }
        (None, None, Some(pause), _) => format!("{} (when its route's pause ends)", at(pause)),
        (None, None, None, Some(remind)) => format!("{} (a reminder)", at(remind)),
        (None, None, None, None) => "never".to_owned(),
    };
    writeln!(out, "escalates  {escalates}")?;
    // What holds its pages back, if anything: said here, not only in the
    // timeline.
    if let Some(mute) = &i.silenced_by {
        writeln!(out, "silenced   by {mute} (pages when it ends)")?;
    }
    if let Some(flapping) = &i.flapping {
        writeln!(
            out,
            "flapping   settles at {} unless it changes again",
            at(flapping.settle_at)
        )?;
    }
    if let Some(group) = &i.group {
        writeln!(out, "group      {}", group.listing())?;
        if group.alert_resolved {
            writeln!(
                out,
                "           its alert resolved: open until its group's alerts resolve"
            )?;
        }
    }
    writeln!(out, "timeline")?;
    for e in &i.timeline {
        let kind = serde_json::to_value(e.kind)?;
        writeln!(
            out,
            "  {}  {:<18} {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            kind.as_str().unwrap_or_default(),
            e.detail
        )?;
    }
    Ok(())
}

/// `klaxon ack` and `klaxon resolve`: an event on the paging topic, so every
/// incident has one ordered log; then wait for the notifier to apply it.
pub async fn act(config: Config, args: ActionArgs, action: impl Into<Action>) -> Result<()> {
    need_brokers(&config)?;
    let action = action.into();
    let incident = send_action(&config, &args, action).await?;
    let action = action.kind;
    let (now, applied) = wait_until_applied(&config, &incident.id, action, args.wait).await?;
    if applied {
        println!("incident {} is {}", now.id, now.status.as_str());
    } else {
        println!(
            "sent; incident {} is still {} (is a notifier running?)",
            now.id,
            now.status.as_str()
        );
    }
    Ok(())
}

/// Publishes the acknowledge or resolve event for the incident `args.id`
/// names; returns that incident as it was.
async fn send_action(config: &Config, args: &ActionArgs, action: Action) -> Result<Incident> {
    let by = args.by.clone().unwrap_or_else(|| "klaxon-cli".to_owned());
    let publisher = Publisher::new(&config.kafka, &config.notify.paging_topic)?;
    Ok(client::act(config, &publisher, &args.id, action, &by, "klaxon-cli").await?)
}

/// Reads the incident until the notifier has applied `action` (a resolve
/// also satisfies an acknowledge) or `wait` has passed; returns it as last
/// read, and whether it was applied.
async fn wait_until_applied(
    config: &Config,
    id: &str,
    action: EventAction,
    wait: Duration,
) -> Result<(Incident, bool)> {
    let wanted = match action {
        EventAction::Acknowledge => Status::Acknowledged,
        _ => Status::Resolved,
    };
    let deadline = Instant::now() + wait;
    loop {
        let (_, now) = queries::find_incident(config, id).await?;
        if now.status == wanted
            || (wanted == Status::Acknowledged && now.status == Status::Resolved)
        {
            return Ok((now, true));
        }
        if Instant::now() >= deadline {
            return Ok((now, false));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
