//! `klaxon produce`: a load generator writing synthetic points to a topic.
//!
//! Points of many series are packed into newline-delimited records, which is
//! how a real producer reaches high rates on any broker. Values follow a
//! deterministic wave per series so runs are comparable.

use std::{
    fmt::Write as _,
    io::Write as _,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext,
    error::KafkaError,
    message::DeliveryResult,
    producer::{BaseRecord, Producer, ProducerContext},
};

use crate::{
    config::KafkaConfig,
    decode::Format,
    kafka::{PolledProducer, Role, client_config},
};

/// What to produce and how fast.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub brokers: String,
    pub topic: String,
    pub format: Format,
    /// Points per second; `None` is as fast as the broker takes them.
    pub rate: Option<u64>,
    /// Distinct series (name and tag set) cycled through.
    pub series: u64,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub points_per_record: usize,
    /// Event times. `None`: each record carries the wall clock at its
    /// sending. `Some(every)` (with a `count`): a backlog in which every
    /// series has one point per `every`, the last ones now, as a scraper
    /// would have left it. No two points of a series then share a timestamp
    /// at any format's resolution (Graphite's is a second), however fast
    /// they are produced, so a lake can be checked by counting distinct
    /// points.
    pub backlog_every: Option<Duration>,
    /// Print a progress line every second on stderr.
    pub progress: bool,
}

/// What a run produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProduceReport {
    pub points: u64,
    pub records: u64,
    /// Payload bytes of all records.
    pub bytes: u64,
    pub failed_records: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "delivery failed");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

const NAMES: [&str; 4] = [
    "http.server.requests",
    "http.server.errors",
    "cpu.usage",
    "queue.depth",
];

/// Point number `i` of `series` synthetic series: its name, value, service
/// number and series (host) number. The series cycle through four names and
/// 50 services; each one's value is a slow sine.
pub fn synthetic_series(i: u64, series: u64) -> (&'static str, f64, u64, u64) {
    let s = i % series.max(1);
    let name = NAMES[(s % NAMES.len() as u64) as usize];
    let value = ((i / series.max(1)) as f64 * 0.1 + s as f64).sin() * 50.0 + 50.0;
    (name, value, s % 50, s)
}

/// Appends point number `i` (series `i % series`) to `out` in `format`.
pub fn synthetic_point(out: &mut String, format: Format, i: u64, series: u64, time_ms: i64) {
    let (name, value, service, s) = synthetic_series(i, series);
    let _ = match format {
        Format::Json => write!(
            out,
            r#"{{"name":"{name}","time":{time_ms},"value":{value:.3},"tags":{{"service":"svc-{service}","host":"host-{s}"}}}}"#
        ),
        Format::Graphite => write!(
            out,
            "{name};service=svc-{service};host=host-{s} {value:.3} {}",
            time_ms.div_euclid(1000)
        ),
        Format::Influx => {
            let (measurement, field) = name.rsplit_once('.').unwrap_or((name, "value"));
            write!(
                out,
                "{measurement},service=svc-{service},host=host-{s} {field}={value:.3} {}",
                time_ms as i128 * 1_000_000
            )
        }
    };
}

/// How long a load generator waits between tries while librdkafka's
/// queue is full: it outpaces the broker by design.
pub(crate) const QUEUE_FULL_RETRY: Duration = Duration::from_millis(5);

/// Produces until the count or duration is reached.
pub async fn produce(
    kafka: &KafkaConfig,
    options: ProduceOptions,
) -> Result<ProduceReport, KafkaError> {
    let context = Deliveries::default();
    let producer: PolledProducer<Deliveries> =
        client_config(kafka, &options.brokers, Role::BulkProducer).create_with_context(context)?;
    let started = Instant::now();
    let mut report = ProduceReport::default();
    let mut last_progress = Instant::now();
    let mut record = String::new();
    let per_record = options.points_per_record.max(1) as u64;
    // Rate limiting in 10ms slices keeps bursts small.
    let slice = Duration::from_millis(10);
    let mut ticker = tokio::time::interval(slice);
    let points_per_slice = options.rate.map(|r| (r as f64 / 100.0).max(1.0));
    let mut allowance = 0.0;
    // With a backlog, point `i` is of round `i / series`, the last round now.
    let series = options.series.max(1);
    let backlog = options
        .backlog_every
        .zip(options.count)
        .map(|(every, count)| {
            let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            let last_round = count.div_ceil(series).saturating_sub(1) as i64;
            let first_ms =
                crate::clock::now_ms().saturating_sub(last_round.saturating_mul(every_ms));
            (first_ms, every_ms)
        });
    loop {
        if options.count.is_some_and(|c| report.points >= c)
            || options.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        let budget = match points_per_slice {
            Some(p) => {
                ticker.tick().await;
                allowance += p;
                let whole = allowance.floor();
                allowance -= whole;
                whole as u64
            }
            None => per_record * 64,
        };
        let mut sent = 0;
        while sent < budget {
            let remaining = options.count.map_or(u64::MAX, |c| c - report.points);
            let n = per_record.min(budget - sent).min(remaining);
            if n == 0 {
                break;
            }
            let now_ms = crate::clock::now_ms();
            record.clear();
            for k in 0..n {
                if k > 0 {
                    record.push('\n');
                }
                let i = report.points + k;
                let time_ms = match backlog {
                    Some((first_ms, every_ms)) => {
                        first_ms.saturating_add(((i / series) as i64).saturating_mul(every_ms))
                    }
                    None => now_ms,
                };
                synthetic_point(&mut record, options.format, i, options.series, time_ms);
            }
            // Spread records over partitions; a record holds many series anyway.
            let key = report.records.to_string();
            let message = BaseRecord::to(&options.topic).payload(&record).key(&key);
            producer
                .send_when_queued(message, QUEUE_FULL_RETRY, None)
                .await
                .map_err(|(e, _)| e)?;
            report.points += n;
            report.records += 1;
            report.bytes += record.len() as u64;
            sent += n;
        }
        if points_per_slice.is_none() {
            tokio::task::yield_now().await;
        }
        if options.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprint!(
                "\rproduced {} points in {} records ({:.0} points/s)   ",
                report.points,
                report.records,
                report.points as f64 / secs
            );
            let _ = std::io::stderr().flush();
        }
    }
    let flusher = producer.clone();
    tokio::task::spawn_blocking(move || flusher.flush(Duration::from_secs(60)))
        .await
        .expect("flush task panicked")?;
    report.elapsed = started.elapsed();
    report.failed_records = producer.context().failed.load(Ordering::Relaxed);
    if options.progress {
        eprintln!();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{Limits, decode_record},
        points::PointBatchBuilder,
    };

    #[test]
    fn synthetic_points_decode_in_every_format() {
        for format in [Format::Json, Format::Graphite, Format::Influx] {
            let mut text = String::new();
            for i in 0..10 {
                if i > 0 {
                    text.push('\n');
                }
                synthetic_point(&mut text, format, i, 3, 1_700_000_000_000);
            }
            let mut b = PointBatchBuilder::default();
            let mut rejects = Vec::new();
            let n = decode_record(
                format,
                text.as_bytes(),
                0,
                Limits::unbounded(),
                &mut b,
                &mut rejects,
            );
            assert_eq!(
                (n, rejects.len()),
                (10, 0),
                "{format:?}: {rejects:?}\n{text}"
            );
        }
    }
}
