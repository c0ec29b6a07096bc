//! One file per command: each owns its flags (a clap `Args` struct) and its
//! `run(config, args)`. [`run`] reads the config once, with every flag and
//! `KLAXON_*` override applied before it is validated, and dispatches.
//! Every runtime knob is a flag with a `KLAXON_*` environment variable.

pub mod bench;
pub mod broker;
pub mod incidents;
pub mod ingest;
pub mod lake;
pub mod notify;
pub mod oncall;
pub mod page;
pub mod postmortem;
pub mod produce;
pub mod query;
pub mod report;
pub mod rules;
pub mod silence;
mod table;
pub mod up;

use std::{collections::HashSet, path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::{
    config::{Config, EnvSecrets, Overrides},
    notify::client::Action,
    paging::EventAction,
    topics::{TopicSpec, ensure_topics},
};

#[derive(Debug, Parser)]
#[command(
    name = "klaxon",
    version,
    about = "Metrics into a Parquet lake, SQL alerts, on-call paging"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command understands.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Config file (TOML); see docker/klaxon.toml for every key.
    #[arg(long, global = true, env = "KLAXON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, host:port[,host:port]. Overrides kafka.brokers.
    #[arg(long, global = true, env = "KLAXON_BROKERS")]
    pub brokers: Option<String>,
    /// Lake location: a directory, file://, s3://bucket/prefix or memory://.
    #[arg(long, global = true, env = "KLAXON_LAKE")]
    pub lake: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run klaxon: the embedded broker (unless --brokers is given) and ingest.
    Up(up::UpArgs),
    /// Run one member of the ingest consumer group.
    Ingest(ingest::IngestCmdArgs),
    /// Run SQL over the lake's `metrics` table.
    Query(query::QueryArgs),
    /// Compact the lake and apply retention, once (ingest members do it
    /// every lake.compaction.interval).
    Compact(lake::CompactArgs),
    /// The lake: `lake stats` shows files, rows and bytes per day.
    #[command(subcommand)]
    Lake(lake::LakeCommand),
    /// Produce synthetic points (a load generator).
    Produce(produce::ProduceArgs),
    /// Run the embedded Kafka-compatible broker (tansu) on its own.
    Broker(broker::BrokerArgs),
    /// Alert rules.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Who is on call now or at a time; `oncall check` validates the file.
    Oncall(oncall::OncallArgs),
    /// Run the notifier: incidents from the paging topic, escalation, pages.
    Notify(notify::NotifyArgs),
    /// List incidents (from the incidents changelog).
    Incidents(incidents::IncidentsArgs),
    /// One incident: details and timeline.
    Incident(incidents::IncidentArgs),
    /// Acknowledge an incident: stops its escalation.
    Ack(incidents::AckArgs),
    /// Resolve an incident: closes it and tells those who were paged.
    Resolve(incidents::ActionArgs),
    /// Page someone for help, outside any alert.
    Page(page::PageArgs),
    /// Silences: `silence add --match service=checkout --for 2h`, `silence
    /// list [--unused]`, `silence expire ID`.
    #[command(subcommand)]
    Silence(silence::SilenceCommand),
    /// Draft a blameless postmortem of an incident from the lake: facts,
    /// timeline, the rule's value around it, and the sections to write.
    Postmortem(postmortem::PostmortemArgs),
    /// On-call health from the lake: incidents by rule, time to acknowledge
    /// and resolve, interruptions per person by hours, noisiest rules.
    Report(report::ReportArgs),
    /// End-to-end benchmark: ingest drain against the transport's ceiling,
    /// queries over the lake, alert latency to paging and to the notifier's
    /// webhook. Starts the embedded broker unless --brokers is given.
    Bench(bench::BenchArgs),
}

impl Command {
    /// The config keys this command's flags override.
    fn overrides(&self, overrides: &mut Overrides) {
        match self {
            Command::Up(args) => args.overrides(overrides),
            Command::Ingest(args) => args.overrides(overrides),
            Command::Rules(rules::RulesCommand::Run(args)) => args.overrides(overrides),
            Command::Oncall(args) => args.overrides(overrides),
            Command::Notify(args) => args.overrides(overrides),
            _ => {}
        }
    }
}

/// How long a stopping component may take to flush and commit before a
/// second signal is no longer needed to force it.
const GRACE: Duration = Duration::from_secs(30);

/// The instant `d` before now; one longer than the calendar
/// (`--since 100000000y`) means since the earliest instant, not an overflow.
fn ago(d: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// Runs the command `cli` names; `main` only parses flags and prints the error.
pub async fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Up(args) => up::run(config, args).await,
        Command::Ingest(_) => ingest::run(config).await,
        Command::Query(args) => query::run(config, args).await,
        Command::Compact(args) => lake::compact(config, args).await,
        Command::Lake(command) => lake::run(config, command).await,
        Command::Produce(args) => produce::run(config, args).await,
        Command::Broker(args) => broker::run(args).await,
        Command::Rules(command) => rules::run(config, command).await,
        Command::Oncall(args) => oncall::run(config, args),
        Command::Notify(_) => notify::run(config).await,
        Command::Incidents(args) => incidents::list(config, args).await,
        Command::Incident(args) => incidents::show(config, args).await,
        Command::Ack(args) => {
            let action = Action {
                kind: EventAction::Acknowledge,
                until_resolved: args.until_resolved,
            };
            incidents::act(config, args.action, action).await
        }
        Command::Resolve(args) => incidents::act(config, args, EventAction::Resolve).await,
        Command::Page(args) => page::run(config, args).await,
        Command::Silence(command) => silence::run(config, command).await,
        Command::Postmortem(args) => postmortem::run(config, args).await,
        Command::Report(args) => report::run(config, args).await,
        Command::Bench(args) => bench::run(config, args).await,
    }
}

/// The config file, then flags and `KLAXON_*` variables on top, then
/// validated once.
fn load_config(cli: &Cli) -> Result<Config> {
    let mut overrides = Overrides {
        brokers: cli.common.brokers.clone(),
        lake: cli.common.lake.clone(),
        secrets: EnvSecrets::from_env()?,
        ..Overrides::default()
    };
    cli.command.overrides(&mut overrides);
    Ok(Config::load_with(cli.common.config.as_deref(), overrides)?)
}

/// Refuses to go on without brokers, for the commands that cannot start
/// the embedded one.
fn need_brokers(config: &Config) -> Result<()> {
    if config.kafka.brokers.is_empty() {
        bail!("no brokers: pass --brokers or set kafka.brokers in the config file");
    }
    Ok(())
}

/// Creates the topics of `specs` that are missing, unless `topics.create`
/// is off. Each stage says which topics it needs (`ingest::topics`,
/// `rules::topics`, `notify::topics`).
async fn create_topics(config: &Config, mut specs: Vec<TopicSpec>) -> Result<()> {
    if !config.topics.create {
        return Ok(());
    }
    // A name listed twice is created once, as first listed.
    let mut seen = HashSet::new();
    specs.retain(|spec| seen.insert(spec.name.clone()));
    ensure_topics(&config.kafka, &config.kafka.brokers, &specs).await?;
    Ok(())
}
