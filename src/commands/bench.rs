//! `klaxon bench`: the end-to-end benchmark (see `crate::bench`).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    bench::{BenchOptions, ScalingOptions, run_bench},
    config::Config,
    decode::Format,
};

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
    /// Skip the ingest drains (and so the query timings over their lake).
    #[arg(long)]
    pub no_ingest: bool,
    /// Skip the query timings.
    #[arg(long)]
    pub no_queries: bool,
    /// Skip the alert latency runs.
    #[arg(long)]
    pub no_latency: bool,
    /// Skip the lake-scaling section (klaxon and DuckDB over lakes of many files).
    #[arg(long)]
    pub no_scaling: bool,
    /// File counts of the lake-scaling section's one-day lakes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,10000,100000")]
    pub scaling_files: Vec<usize>,
    /// Age in days of the lake-scaling section's long lake.
    #[arg(long, default_value_t = 30)]
    pub scaling_days: u32,
    /// Runs of each lake-scaling query per engine (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub scaling_runs: usize,
    /// A Python with the `duckdb`, `confluent-kafka` and `pyarrow`
    /// packages, which runs DuckDB's side of the lake-scaling section and the
    /// hand-written consumer beside the JSON drain (`scripts/bench` installs
    /// one and sets this).
    #[arg(long, env = "KLAXON_BENCH_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// Also write the figures here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep topics' broker storage, lakes and logs here (default: a
    /// temporary directory, removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

pub async fn run(config: Config, args: BenchArgs) -> Result<()> {
    if args.scaling_days == 0 {
        bail!("--scaling-days must be at least 1");
    }
    if args.windows == 0 || args.alerts_per_window == 0 {
        bail!("--windows and --alerts-per-window must be at least 1");
    }
    // Each alert needs a series of its own, so every trigger is a new incident.
    let alerts = (args.windows * args.alerts_per_window) as u64;
    if !args.no_latency
        && let Some(&fewest) = args.latency_series.iter().min()
        && fewest < alerts
    {
        bail!(
            "--latency-series {fewest} is fewer than the {alerts} series that breach \
             (--windows × --alerts-per-window)"
        );
    }
    let brokers = Some(config.kafka.brokers.clone()).filter(|b| !b.is_empty());
    let report = run_bench(BenchOptions {
        brokers,
        kafka: config.kafka.clone(),
        partitions: config.topics.partitions,
        points: args.points,
        series: args.series,
        formats: if args.no_ingest {
            Vec::new()
        } else {
            args.formats
        },
        points_per_record: args.points_per_record,
        memory_budget: args.memory_budget,
        latency_series: if args.no_latency {
            Vec::new()
        } else {
            args.latency_series
        },
        windows: args.windows,
        alerts_per_window: args.alerts_per_window,
        window: args.window,
        queries: !args.no_queries,
        scaling: (!args.no_scaling).then(|| ScalingOptions {
            points: args.points,
            series: args.series,
            file_counts: args.scaling_files,
            days: args.scaling_days,
            runs: args.scaling_runs.max(1),
            python: args.python.clone(),
        }),
        python: args.python,
        work_dir: args.work_dir,
    })
    .await?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).expect("the report serialises");
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
