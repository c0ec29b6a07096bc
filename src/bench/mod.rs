//! `klaxon bench`: the end-to-end benchmark, against a broker it starts (the
//! embedded one, as its own process) or one it is given.
//!
//! 1. **Ingest drain**, per format: a topic is pre-filled with N points, then
//!    `klaxon ingest` (a child process) drains it into a Parquet lake. Its CPU
//!    time and peak RSS come from `/proc`; the lake is counted afterwards and
//!    must hold every point exactly once.
//! 2. **Transport ceiling**: the same topic read by a bare consumer that
//!    neither decodes nor writes. Ingest is reported as a fraction of it.
//! 3. **Queries**: `klaxon query` (a child process, as a user runs it) over
//!    the JSON lake, for typical analytics queries.
//! 4. **Lake scaling** ([`scaling`]): the same points in more and more
//!    files, and a one-hour query over a day and over a month, in klaxon's
//!    engine and in DuckDB. It needs no broker.
//! 5. **Alert latency**, per series count: `klaxon rules run` and
//!    `klaxon notify` as child processes, a webhook receiver in this process.
//!    Each window's points are produced and consumed; then one point per
//!    partition closes the window, and the time from producing it to the
//!    trigger on `paging`, and to the notifier's webhook call, is recorded.
//!
//! Everything runs on fresh topics named after the run, so a shared cluster
//! is not disturbed, and the work directory is removed afterwards unless
//! `--work-dir` names one.

mod child;
mod drain;
mod latency;
mod queries;
mod report;
mod scaling;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use arrow::array::RecordBatch;
use bytesize::ByteSize;
use rdkafka::error::KafkaError;
use thiserror::Error;

use self::{
    child::{Child, free_port, wait_until},
    report::Machine,
};
pub use self::{report::BenchReport, scaling::ScalingOptions};
use crate::{
    ErrorKind,
    config::{CompactionConfig, Config, KafkaConfig, LakeConfig},
    decode::Format,
    lake::{
        Lake, LakeError,
        compact::{CompactionSettings, compact},
        files::list_data_files,
        layout::TABLE_DIR,
    },
    query::{QueryEngine, QueryError},
    topics::{TopicError, TopicSpec, ensure_topics},
};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("reading /proc: {0}")]
    Proc(#[from] procfs::ProcError),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("writing a child's config: {0}")]
    Config(#[from] toml::ser::Error),
    #[error("webhook receiver: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{name} exited ({status}); its log ends with:\n{log_tail}")]
    ChildExited {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("timed out after {timeout:?} waiting for {what}\n{logs}")]
    Timeout {
        what: String,
        timeout: Duration,
        logs: String,
    },
    /// A measured run produced a wrong result: its figures would be meaningless.
    #[error("wrong result: {0}")]
    Wrong(String),
}

impl BenchError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BenchError::Wrong(_) => ErrorKind::Internal,
            _ => ErrorKind::External,
        }
    }
}

/// What to measure; `klaxon bench --help` documents each.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Use these brokers instead of starting the embedded one.
    pub brokers: Option<String>,
    pub kafka: KafkaConfig,
    pub partitions: i32,
    pub points: u64,
    pub series: u64,
    pub formats: Vec<Format>,
    pub points_per_record: usize,
    pub memory_budget: ByteSize,
    pub latency_series: Vec<u64>,
    pub windows: usize,
    pub alerts_per_window: usize,
    pub window: Duration,
    pub queries: bool,
    /// The lake-scaling section, when asked for.
    pub scaling: Option<ScalingOptions>,
    /// A Python with confluent-kafka and pyarrow, for the hand-written
    /// consumer beside the JSON drain (`scripts/bench` installs one).
    pub python: PathBuf,
    /// Keep everything here instead of in a removed temporary directory.
    pub work_dir: Option<PathBuf>,
}

/// What every part of a run shares.
#[derive(Debug)]
pub(crate) struct BenchEnv {
    pub work: PathBuf,
    pub brokers: String,
    pub kafka: KafkaConfig,
    pub partitions: i32,
    /// Distinguishes this run's topics and groups from any other's.
    pub run_id: String,
    pub http: reqwest::Client,
    /// The embedded broker, when this run started it.
    pub broker: Option<Child>,
}

impl BenchEnv {
    /// A name unique to this run: `bench-NAME-RUN`.
    pub(crate) fn name(&self, name: &str) -> String {
        format!("bench-{name}-{}", self.run_id)
    }

    pub(crate) async fn create_topic(&self, name: &str) -> Result<(), BenchError> {
        let spec = TopicSpec {
            name: name.to_owned(),
            partitions: self.partitions,
            replication_factor: 1,
            configs: Vec::new(),
        };
        ensure_topics(&self.kafka, &self.brokers, &[spec]).await?;
        Ok(())
    }

    /// The config every child process starts from: this run's brokers,
    /// Kafka properties and partitions, defaults elsewhere.
    pub(crate) fn config(&self) -> Config {
        let mut config = Config::default();
        config.kafka.brokers = self.brokers.clone();
        config.kafka.properties = self.kafka.properties.clone();
        config.topics.partitions = self.partitions;
        config
    }

    /// Writes `config` to `file` in the work directory for a child process.
    pub(crate) fn write_config(&self, file: &str, config: &Config) -> Result<PathBuf, BenchError> {
        let path = self.work.join(file);
        std::fs::write(&path, toml::to_string(config)?)?;
        Ok(path)
    }
}

/// Runs every part `options` asks for and returns the figures.
pub async fn run_bench(options: BenchOptions) -> Result<BenchReport, BenchError> {
    let temp;
    let work = match &options.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            std::path::absolute(dir)?
        }
        None => {
            temp = tempfile::Builder::new().prefix("klaxon-bench-").tempdir()?;
            temp.path().to_owned()
        }
    };
    let run_id = crate::clock::now_ms().to_string();
    let needs_broker = !options.formats.is_empty() || !options.latency_series.is_empty();
    let (brokers, broker) = match &options.brokers {
        Some(brokers) => (brokers.clone(), None),
        None if needs_broker => start_broker(&work).await?,
        None => (String::new(), None),
    };
    let mut env = BenchEnv {
        work,
        brokers,
        kafka: options.kafka.clone(),
        partitions: options.partitions,
        run_id,
        http: reqwest::Client::new(),
        broker,
    };
    let mut report = BenchReport {
        klaxon_version: env!("CARGO_PKG_VERSION").to_owned(),
        machine: Machine::this(),
        broker: match &env.broker {
            None if env.brokers.is_empty() => "none (no part of this run needs one)".to_owned(),
            Some(_) => "embedded tansu 0.6.0 (sqlite storage), its own process".to_owned(),
            None => env.brokers.clone(),
        },
        ..BenchReport::default()
    };

    let mut query_lake = None;
    for &format in &options.formats {
        eprintln!(
            "ingest drain: {} {format:?} points over {} series...",
            options.points, options.series
        );
        let (result, lake) = drain::drain(&mut env, &options, format).await?;
        if query_lake.is_none() {
            query_lake = Some(lake);
        }
        report.drains.push(result);
    }
    if options.queries
        && let Some(lake) = &query_lake
    {
        eprintln!("queries over {}...", lake.display());
        report.queries = queries::time_queries(&env, lake).await?;
    }
    if let Some(scaling) = &options.scaling {
        report.scaling = Some(scaling::measure(&env.work, scaling).await?);
    }
    for &series in &options.latency_series {
        eprintln!(
            "alert latency: {series} series, {} windows...",
            options.windows
        );
        report
            .latency
            .push(latency::measure(&mut env, &options, series).await?);
    }
    Ok(report)
}

/// The lake in directory `dir`.
pub(crate) fn lake_in(dir: &Path) -> Result<Lake, BenchError> {
    Ok(Lake::open(&LakeConfig {
        url: dir.display().to_string(),
        ..LakeConfig::default()
    })?)
}

/// Runs `sql` over the lake in directory `dir`, opened in a new session.
pub(crate) async fn sql_over_lake(dir: &Path, sql: &str) -> Result<Vec<RecordBatch>, BenchError> {
    Ok(QueryEngine::open(&lake_in(dir)?).await?.sql(sql).await?)
}

/// The median of `times` (the upper one of an even count).
pub(crate) fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Compacts every file of the lake in directory `dir` with klaxon's
/// compactor, as if every offset were committed and `now_ms` were the time,
/// deleting the merged files at once (nothing else reads the lake); returns
/// how many files remain.
pub(crate) async fn compact_all(dir: &Path, now_ms: i64) -> Result<usize, BenchError> {
    let lake = lake_in(dir)?;
    let committed = list_data_files(&lake, TABLE_DIR)
        .await?
        .into_iter()
        .map(|f| ((f.topic, f.partition), i64::MAX))
        .collect();
    let settings = CompactionSettings {
        settle: Duration::ZERO,
        grace: Duration::ZERO,
        ..CompactionSettings::from(&CompactionConfig::default())
    };
    compact(&lake, &committed, now_ms, &settings).await?;
    Ok(list_data_files(&lake, TABLE_DIR).await?.len())
}

/// Starts `klaxon broker` on a free port, storing in `work/broker.db`.
async fn start_broker(work: &Path) -> Result<(String, Option<Child>), BenchError> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut broker = Child::spawn(
        "broker",
        work,
        &[
            "broker",
            "--listen",
            &listen,
            "--storage",
            "sqlite://broker.db",
        ],
    )?;
    let addr = listen.clone();
    wait_until(
        "the embedded broker to listen",
        Duration::from_secs(30),
        &mut [&mut broker],
        || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.is_ok() }
        },
    )
    .await?;
    Ok((listen, Some(broker)))
}
