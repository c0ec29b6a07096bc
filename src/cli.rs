//! Command-line interface. Every runtime knob is a flag with a `KLAXON_*`
//! environment variable; flags and variables override the config file.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{decode::Format, query::OutputFormat};

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
    Up(UpArgs),
    /// Run one member of the ingest consumer group.
    Ingest(IngestCmdArgs),
    /// Run SQL over the lake's `metrics` table.
    Query(QueryArgs),
    /// Produce synthetic points (a load generator).
    Produce(ProduceArgs),
    /// Run the embedded Kafka-compatible broker (tansu) on its own.
    Broker(BrokerArgs),
    /// Alert rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Who is on call now or at a time; `oncall check` validates the file.
    Oncall(OncallArgs),
    /// Run the notifier: incidents from the paging topic, escalation, pages.
    Notify(NotifyArgs),
    /// List incidents (from the incidents changelog).
    Incidents {
        /// Only these: triggered, acknowledged, resolved, or open (not resolved).
        #[arg(long)]
        status: Option<String>,
    },
    /// One incident: details and timeline.
    Incident {
        /// Incident id, or its dedup_key.
        id: String,
    },
    /// Acknowledge an incident: stops its escalation.
    Ack(ActionArgs),
    /// Resolve an incident: closes it and tells those who were paged.
    Resolve(ActionArgs),
    /// Page someone for help, outside any alert.
    Page(PageArgs),
    /// End-to-end benchmark: ingest drain against the transport's ceiling,
    /// queries over the lake, alert latency to paging and to the notifier's
    /// webhook. Starts the embedded broker unless --brokers is given.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Points in each format's backlog.
    #[arg(long, default_value_t = 2_000_000)]
    pub points: u64,
    /// Distinct series in the backlog.
    #[arg(long, default_value_t = 10_000)]
    pub series: u64,
    /// Formats to drain, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "json,graphite,influx"
    )]
    pub formats: Vec<Format>,
    /// Newline-delimited points per Kafka record in the backlog.
    #[arg(long, default_value_t = 100)]
    pub points_per_record: usize,
    /// ingest.memory_budget of the draining process.
    #[arg(long, default_value = "256MiB")]
    pub memory_budget: bytesize::ByteSize,
    /// Active series counts to measure alert latency at, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub latency_series: Vec<u64>,
    /// Windows closed per series count.
    #[arg(long, default_value_t = 20)]
    pub windows: usize,
    /// Series above the threshold in each window.
    #[arg(long, default_value_t = 10)]
    pub alerts_per_window: usize,
    /// The latency rule's window (event time).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub window: Duration,
    /// Skip the query timings.
    #[arg(long)]
    pub no_queries: bool,
    /// Skip the alert latency runs.
    #[arg(long)]
    pub no_latency: bool,
    /// Also write the figures here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep topics' broker storage, lakes and logs here (default: a
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The on-call file. Overrides notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub oncall: Option<PathBuf>,
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
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

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OncallArgs {
    #[command(subcommand)]
    pub command: Option<OncallCommand>,
    /// The on-call file. Overrides notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub file: Option<PathBuf>,
    /// Only this schedule.
    #[arg(long)]
    pub schedule: Option<String>,
    /// An RFC 3339 instant, e.g. 2026-12-24T20:00:00Z (default: now).
    #[arg(long)]
    pub at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

#[derive(Debug, Subcommand)]
pub enum OncallCommand {
    /// Validate an on-call file: unknown users, schedules or policies nobody
    /// can be paged by, users with no contact method, overlapping layers,
    /// bad time zones; warns about gaps in the next two weeks. Prints each
    /// as FILE:LINE and exits non-zero on any error.
    Check {
        /// The on-call file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate every rule file in a directory: TOML, durations, thresholds,
    /// templates, and the SQL planned against the metrics table. Prints each
    /// problem as FILE:LINE and exits non-zero if there is any.
    Check {
        /// Directory of *.toml rule files.
        dir: PathBuf,
        /// Check column names against this lake's tags too (with --lake or
        /// lake.url). Without it, any column the SQL names is taken for a tag.
        #[arg(long)]
        against_lake: bool,
    },
    /// Replay points from a file through rules and print, as JSON lines, the
    /// paging events they would raise. Time is the points' own: windows step
    /// from the first point until every timer has run out.
    Test {
        /// A rules file, or a directory of them.
        rules: PathBuf,
        /// Points: newline-delimited, in --format.
        #[arg(long)]
        points: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Evaluate rules on the metrics topics (group `klaxon-rules`) and publish
    /// alert events to the paging topic. Rule files are reloaded as they
    /// change; alert state survives restarts (on the state topic).
    Run(RulesRunArgs),
}

/// Flags of `klaxon rules run`; each overrides its `[rules]` config key.
#[derive(Debug, Args)]
pub struct RulesRunArgs {
    /// A rules file, or a directory of them. Overrides rules.dir.
    pub rules: Option<PathBuf>,
    #[arg(long, env = "KLAXON_PAGING_TOPIC")]
    pub paging_topic: Option<String>,
    #[arg(long, env = "KLAXON_RULES_STATE_TOPIC")]
    pub state_topic: Option<String>,
    /// A partition silent this long stops holding event time back (30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Points may arrive this late and still count for their window (5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub allowed_lateness: Option<Duration>,
    /// How often rule files are read again for changes (5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub reload_interval: Option<Duration>,
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the embedded broker listens (when --brokers is not given).
    #[arg(long, env = "KLAXON_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    pub broker_listen: SocketAddr,
    /// The embedded broker's storage: sqlite://FILE keeps topics and offsets
    /// across restarts, memory://tansu/ does not.
    #[arg(long, env = "KLAXON_BROKER_STORAGE")]
    pub broker_storage: Option<String>,
    /// Where data lives when no lake or broker storage is given.
    #[arg(long, env = "KLAXON_DATA_DIR", default_value = "klaxon-data")]
    pub data_dir: PathBuf,
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Also evaluate the alert rules of this directory. Overrides rules.dir.
    #[arg(long, env = "KLAXON_RULES")]
    pub rules: Option<PathBuf>,
    /// Also run the notifier with this on-call file. Overrides notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub oncall: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IngestCmdArgs {
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL statement.
    pub sql: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the result to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[arg(long, default_value = "metrics")]
    pub topic: String,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Points per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Distinct series to cycle through.
    #[arg(long, default_value_t = 1000)]
    pub series: u64,
    /// Stop after this many points.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Newline-delimited points packed into each Kafka record.
    #[arg(long, default_value_t = 100)]
    pub points_per_record: usize,
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[arg(long, env = "KLAXON_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// sqlite://FILE (survives restarts; resolved under the working directory)
    /// or memory://tansu/ (lost on exit, and tansu 0.6.0's memory engine skips
    /// records when a consumer resumes inside a batch: tests only).
    #[arg(
        long,
        env = "KLAXON_BROKER_STORAGE",
        default_value = "sqlite://klaxon-broker.db"
    )]
    pub storage: String,
}
