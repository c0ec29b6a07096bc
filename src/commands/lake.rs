//! `klaxon compact` and `klaxon lake stats`: the lake's upkeep by hand, and
//! what it holds per day.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::{Args, Subcommand};

use super::need_brokers;
use crate::{
    clock::now_ms,
    config::Config,
    kafka::committed_offsets,
    lake::{
        Lake, TABLES,
        stats::day_stats,
        upkeep::{UpkeepReport, run_once},
    },
};

/// How long reading the ingest group's committed offsets may take.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct CompactArgs {}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Files, rows, bytes and bytes per point of each day.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The table.
    #[arg(long, default_value = "metrics", value_parser = clap::builder::PossibleValuesParser::new(TABLES))]
    pub table: String,
}

/// One pass of compaction and retention over the whole lake. Only files
/// below the ingest group's committed offsets are merged, so it may run
/// beside ingest members (and another `klaxon compact`): see
/// `lake::compact` for how overlapping passes are settled.
pub async fn compact(config: Config, _args: CompactArgs) -> Result<()> {
    need_brokers(&config)?;
    let lake = Lake::open(&config.lake)?;
    let topics: Vec<String> = config.sources().iter().map(|s| s.topic.clone()).collect();
    let group = config.ingest.group_id.clone();
    let (kafka, brokers) = (config.kafka.clone(), config.kafka.brokers.clone());
    let committed = tokio::task::spawn_blocking(move || {
        committed_offsets(&kafka, &brokers, &group, &topics, OFFSETS_TIMEOUT)
    })
    .await?
    .with_context(|| {
        format!(
            "reading the committed offsets of group {}",
            config.ingest.group_id
        )
    })?;
    if committed.is_empty() {
        println!(
            "group {} has committed no offsets: nothing is final yet",
            config.ingest.group_id
        );
    }
    let report = run_once(&lake, &config.lake, &committed, now_ms()).await?;
    print!("{}", describe(&report));
    Ok(())
}

fn describe(report: &UpkeepReport) -> String {
    let c = &report.compaction;
    let mut text = format!(
        "compaction: merged {} files into {} ({} rows, {} -> {}); deleted {} covered files\n",
        c.merged,
        c.written,
        c.rows,
        ByteSize(c.bytes_in),
        ByteSize(c.bytes_out),
        c.covered_deleted,
    );
    if c.covered_waiting > 0 {
        text.push_str(&format!(
            "compaction: {} covered files wait out lake.compaction.grace; the next pass deletes them\n",
            c.covered_waiting
        ));
    }
    if report.retention.is_empty() {
        text.push_str("retention: none set (lake.retention)\n");
    }
    for (table, r) in &report.retention {
        text.push_str(&format!(
            "retention: {table}: deleted {} files ({}) in {} hours\n",
            r.files,
            ByteSize(r.bytes),
            r.hours.len()
        ));
    }
    text
}

pub async fn run(config: Config, command: LakeCommand) -> Result<()> {
    match command {
        LakeCommand::Stats(args) => stats(config, args).await,
    }
}

async fn stats(config: Config, args: StatsArgs) -> Result<()> {
    let lake = Lake::open(&config.lake)?;
    let days = day_stats(&lake, &args.table).await?;
    println!(
        "{:<10} {:>8} {:>14} {:>14} {:>11}",
        "date", "files", "rows", "bytes", "bytes/point"
    );
    let mut unreadable = 0;
    for day in days {
        let per_point = day
            .bytes_per_point()
            .map_or_else(|| "-".to_owned(), |b| format!("{b:.2}"));
        println!(
            "{:<10} {:>8} {:>14} {:>14} {:>11}",
            day.date, day.files, day.rows, day.bytes, per_point
        );
        unreadable += day.unreadable;
    }
    if unreadable > 0 {
        bail!("{unreadable} data files could not be read (logged above); the days show the rest");
    }
    Ok(())
}
