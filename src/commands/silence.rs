//! `klaxon silence add|list|expire`: silences, as Alertmanager's amtool
//! makes them, on the notifier's silences topic.

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};

use super::{create_topics, need_brokers, table::aligned};
use crate::{
    config::Config,
    notify::silence::{
        SilenceState,
        store::{self, NewSilence},
    },
};

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence the alerts every --match matches, from now (or --start) for
    /// --for.
    Add(AddArgs),
    /// Silences pending or active (with --all, ended ones too).
    List(ListArgs),
    /// End a silence now: what it silenced and still fires pages.
    Expire(ExpireArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A matcher: label=value, label!=value, label=~regex, label!~regex
    /// (anchored). Repeat it: an alert must match every one. Labels are
    /// the alert's, and severity, dedup_key and rule.
    #[arg(long = "match", required = true)]
    pub matchers: Vec<String>,
    /// How long it lasts.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub length: Duration,
    /// When it starts (RFC 3339); default now.
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    /// Why, for everyone who sees what it silenced.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Who makes it (default: $USER).
    #[arg(long, env = "USER")]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Ended silences too.
    #[arg(long)]
    pub all: bool,
    /// Only silences that never silenced an alert (ended ones included):
    /// matchers that match nothing, or a window nothing fired in.
    #[arg(long)]
    pub unused: bool,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    pub id: String,
    /// Who ends it (default: $USER).
    #[arg(long, env = "USER")]
    pub by: Option<String>,
}

pub async fn run(config: Config, command: SilenceCommand) -> Result<()> {
    need_brokers(&config)?;
    create_topics(&config, crate::notify::topics(&config)).await?;
    match command {
        SilenceCommand::Add(args) => {
            let silence = store::add(
                &config,
                NewSilence {
                    matchers: args.matchers,
                    starts_at: args.start,
                    length: args.length,
                    created_by: by(args.by),
                    comment: args.comment,
                },
            )
            .await?;
            println!(
                "silence {} {} until {}",
                silence.id,
                silence.status(Utc::now()).as_str(),
                silence.ends_at.to_rfc3339()
            );
        }
        SilenceCommand::List(args) => {
            let state = store::list(&config).await?;
            print!("{}", listing(&state, &args, Utc::now()));
        }
        SilenceCommand::Expire(args) => {
            let silence = store::expire(&config, &args.id, &by(args.by)).await?;
            println!("silence {} expired", silence.id);
        }
    }
    Ok(())
}

fn by(by: Option<String>) -> String {
    by.unwrap_or_else(|| "klaxon-cli".to_owned())
}

/// The silences `args` asks for, newest first, as a table or JSON.
fn listing(state: &SilenceState, args: &ListArgs, now: DateTime<Utc>) -> String {
    let shown = store::listed(state, args.all, args.unused, now);
    if args.format == ListFormat::Json {
        let rows: Vec<serde_json::Value> =
            shown.iter().map(|s| store::row(state, s, now)).collect();
        return format!("{}\n", serde_json::Value::Array(rows));
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|s| {
            let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
            vec![
                s.id.clone(),
                s.status(now).as_str().to_owned(),
                matchers.join(" "),
                s.starts_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                s.ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                s.created_by.clone(),
                state
                    .used
                    .get(&s.id)
                    .map_or_else(|| "never".to_owned(), |i| format!("yes ({i})")),
                s.comment.clone(),
            ]
        })
        .collect();
    aligned(
        &[
            "ID", "STATUS", "MATCHERS", "STARTS", "ENDS", "BY", "USED", "COMMENT",
        ],
        &rows,
        false,
    )
}
