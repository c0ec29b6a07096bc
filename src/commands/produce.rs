//! `klaxon produce`: synthetic points, a load generator.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use super::{create_topics, need_brokers};
use crate::{
    config::Config,
    decode::Format,
    produce::{ProduceOptions, produce},
    topics::TopicSpec,
};

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

pub async fn run(config: Config, args: ProduceArgs) -> Result<()> {
    need_brokers(&config)?;
    if args.count.is_none() && args.duration.is_none() {
        bail!("say how much to produce: --count N or --duration 30s");
    }
    let topic = TopicSpec::plain(&args.topic, &config.topics);
    create_topics(&config, vec![topic]).await?;
    let report = produce(
        &config.kafka,
        ProduceOptions {
            brokers: config.kafka.brokers.clone(),
            topic: args.topic,
            format: args.format,
            rate: args.rate,
            series: args.series,
            count: args.count,
            duration: args.duration,
            points_per_record: args.points_per_record,
            backlog_every: None,
            progress: true,
        },
    )
    .await?;
    println!(
        "produced {} points in {} records in {:.2}s ({:.0} points/s), {} records failed",
        report.points,
        report.records,
        report.elapsed.as_secs_f64(),
        report.points as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.failed_records
    );
    if report.failed_records > 0 {
        bail!("{} records were not delivered", report.failed_records);
    }
    Ok(())
}
