//! `klaxon rules run`: rules evaluated on the live metrics topics, events
//! published to the paging topic.
//!
//! One member of consumer group `klaxon-rules`. Points are decoded as ingest
//! decodes them and kept as Arrow batches for as long as an open window may
//! need them. Each rule has its own event clock ([`Watermarks`]); when a
//! window closes the rule's SQL runs over it, its alert states advance, and
//! each transition is produced to `paging` keyed by its `dedup_key`.
//!
//! Not yet here: hot reload of rule files, and recovering alert state after a
//! restart (a restart starts every rule afresh).

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arrow::{
    array::{AsArray, RecordBatch},
    datatypes::TimestampMillisecondType,
};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
};
use tokio_util::sync::CancellationToken;

use super::{AlertStates, Arrival, CompiledRule, Watermarks, to_event};
use crate::{
    config::Config,
    decode::{Format, Limits, decode_record},
    kafka::client_config,
    points::PointBatchBuilder,
};

/// How the runner keeps event time.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// A partition silent this long stops holding event time back.
    pub idle_timeout: Duration,
    /// Points may arrive this late and still count.
    pub allowed_lateness: Duration,
    /// How often windows are checked for closing.
    pub tick: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            allowed_lateness: Duration::from_secs(5),
            tick: Duration::from_millis(200),
        }
    }
}

/// A rule with its clock and its alert states.
#[derive(Debug)]
struct RuleSlot {
    compiled: CompiledRule,
    marks: Watermarks,
    states: AlertStates,
}

/// Decoded points, oldest first, each batch with its time range.
#[derive(Debug, Default)]
struct PointStore {
    batches: Vec<(i64, i64, RecordBatch)>,
}

impl PointStore {
    fn push(&mut self, batch: RecordBatch) {
        let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
        if let (Some(min), Some(max)) = (
            times.values().iter().min().copied(),
            times.values().iter().max().copied(),
        ) {
            self.batches.push((min, max, batch));
        }
    }

    /// Batches that may hold points in `[start, end)`; the rule's SQL sees
    /// only the window because the evaluator filters on time.
    fn overlapping(&self, start: i64, end: i64) -> Vec<RecordBatch> {
        self.batches
            .iter()
            .filter(|(min, max, _)| *max >= start && *min < end)
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    /// Drops batches that end before `before`.
    fn evict(&mut self, before: i64) {
        self.batches.retain(|(_, max, _)| *max >= before);
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs `rules` until `shutdown`.
pub async fn run_rules(
    config: &Config,
    rules: Vec<CompiledRule>,
    paging_topic: &str,
    options: RunnerOptions,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let brokers = &config.kafka.brokers;
    let consumer: StreamConsumer = client_config(&config.kafka, brokers)
        .set("group.id", "klaxon-rules")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let producer: FutureProducer = client_config(&config.kafka, brokers)
        .set("enable.idempotence", "true")
        .create()?;
    let sources = config.sources();
    let formats: HashMap<String, Format> = sources
        .iter()
        .map(|s| (s.topic.clone(), s.format))
        .collect();
    let topics: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
    consumer.subscribe(&topics)?;

    let ms = |d: Duration| d.as_millis() as i64;
    let mut slots: Vec<RuleSlot> = rules
        .into_iter()
        .map(|compiled| RuleSlot {
            marks: Watermarks::new(
                ms(options.idle_timeout),
                ms(options.allowed_lateness),
                ms(compiled.rule.window),
                ms(compiled.rule.every()),
            ),
            states: AlertStates::default(),
            compiled,
        })
        .collect();
    tracing::info!(rules = slots.len(), ?topics, "rules started");
    let late = metrics::counter!("klaxon_rules_late_points_total");
    let evaluations = metrics::counter!("klaxon_rules_evaluations_total");
    let published = metrics::counter!("klaxon_rules_events_published_total");
    let mut store = PointStore::default();
    let mut builder = PointBatchBuilder::default();
    let mut rejects = Vec::new();
    let mut ticker = tokio::time::interval(options.tick);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            received = consumer.recv() => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let Some(format) = formats.get(message.topic()) else { continue };
                let now = wall_ms();
                let record_time = message.timestamp().to_millis().unwrap_or(now);
                rejects.clear();
                // Rejections are ingest's to report; rules just skip them.
                let before = builder.len();
                decode_record(*format, message.payload().unwrap_or_default(), record_time, Limits::unbounded(), &mut builder, &mut rejects);
                let partition = (message.topic().to_owned(), message.partition());
                for slot in &mut slots {
                    for t in &builder.times()[before..] {
                        if slot.marks.observe(&partition, *t, now) == Arrival::Late {
                            late.increment(1);
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                // Points received since the last tick become one batch, not
                // one per record, so a window is a few batches to scan.
                if !builder.is_empty() {
                    store.push(builder.finish().expect("a point batch always builds"));
                }
                let now = wall_ms();
                for slot in &mut slots {
                    for end in slot.marks.closable(now) {
                        let rule = &slot.compiled.rule;
                        let start = end - ms(rule.window);
                        let window = store.overlapping(start, end);
                        let observed = match slot.compiled.evaluate_window(&window, start, end).await {
                            Ok(o) => o,
                            Err(e) => {
                                tracing::error!(rule = %rule.name, error = %e, "evaluation failed");
                                continue;
                            }
                        };
                        evaluations.increment(1);
                        for transition in slot.states.advance(rule, end, &observed) {
                            let event = to_event(rule, &transition, start, end);
                            let body = serde_json::to_vec(&event).expect("events serialise");
                            producer
                                .send(
                                    FutureRecord::to(paging_topic).key(&event.dedup_key).payload(&body),
                                    Duration::from_secs(30),
                                )
                                .await
                                .map_err(|(e, _)| e)?;
                            published.increment(1);
                        }
                    }
                }
                // Keep what the oldest open window of any rule may still need.
                let keep_from = slots
                    .iter()
                    .map(|s| s.marks.closed_until().map_or(i64::MIN, |c| c + ms(s.compiled.rule.every()) - ms(s.compiled.rule.window)))
                    .min();
                if let Some(from) = keep_from {
                    store.evict(from);
                }
            }
        }
    }
}
