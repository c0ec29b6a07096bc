//! `klaxon rules run`: the [`RuleEngine`] on the live metrics topics, its
//! events on the paging topic, its state on a compacted state topic.
//!
//! One member of consumer group `klaxon-rules`. At start it reads the state
//! topic to its end and restores the engine, then consumes the metrics topics
//! from the committed offsets. After every tick that closed a window it
//! publishes the events, writes the checkpoint, and only then commits the
//! offsets the checkpoint allows. The rules directory is read again every
//! `reload_interval`.
//!
//! A checkpoint that cannot be written is counted and logged, and nothing
//! is committed: the next tick writes the state again (and a restart before
//! then replays from the last commit).
//!
//! Records are decoded within ingest's limits (`ingest.max_line_bytes`,
//! `max_past`, `max_future`, from the wall clock): a point ingest refuses is
//! counted as rejected here and never moves event time.
//!
//! Events are published at least once: a crash after publishing and before
//! the checkpoint re-evaluates those windows on restart and publishes the same
//! transitions again, with the same `dedup_key` (Events v2 receivers, the
//! notifier included, fold a repeated trigger into the open incident).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rdkafka::{Message, Offset, TopicPartitionList, error::KafkaError, message::BorrowedMessage};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use super::{
    RuleSet,
    checkpoint::{CheckpointError, CheckpointWriter, read_checkpoint},
    engine::{EngineOptions, RuleEngine},
};
use crate::{
    ErrorKind,
    clock::now_ms,
    config::Config,
    decode::{Format, RejectReason},
    kafka::{
        Commits, Member, Producer, Role, Timer, client_config, keyed_producer,
        member::{Partition, Stage},
    },
    paging::{PagingEvent, Publisher},
};

/// How often windows are checked for closing: at most this much is added
/// to an alert's latency. A tick that closes nothing costs microseconds.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
pub enum RunnerError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl RunnerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunnerError::Checkpoint(CheckpointError::Corrupt { .. }) => ErrorKind::User,
            _ => ErrorKind::External,
        }
    }
}

/// The runner's metrics, registered once.
struct Meters {
    points: metrics::Counter,
    late: metrics::Counter,
    evaluations: metrics::Counter,
    published: metrics::Counter,
    reloads: metrics::Counter,
    reload_failures: metrics::Counter,
    checkpoint_failures: metrics::Counter,
    points_held: metrics::Gauge,
    active_rules: metrics::Gauge,
    tick_seconds: metrics::Histogram,
}

impl Meters {
    /// Registers the runner's metrics, the counters at zero: those without
    /// labels, and the rejected points of every source topic and reason.
    fn new(config: &Config) -> Self {
        crate::telemetry::register_unlabeled("klaxon_rules_");
        for source in config.sources() {
            for reason in RejectReason::ALL {
                crate::telemetry::register_zero(
                    "klaxon_rules_rejected_points_total",
                    &[
                        ("topic", source.topic.clone()),
                        ("reason", reason.as_str().to_owned()),
                    ],
                );
            }
        }
        Self {
            points: metrics::counter!("klaxon_rules_points_total"),
            late: metrics::counter!("klaxon_rules_late_points_total"),
            evaluations: metrics::counter!("klaxon_rules_evaluations_total"),
            published: metrics::counter!("klaxon_rules_events_published_total"),
            reloads: metrics::counter!("klaxon_rules_reloads_total"),
            reload_failures: metrics::counter!("klaxon_rules_reload_failures_total"),
            checkpoint_failures: metrics::counter!("klaxon_rules_checkpoint_failures_total"),
            points_held: metrics::gauge!("klaxon_rules_points_held"),
            active_rules: metrics::gauge!("klaxon_rules_active"),
            tick_seconds: metrics::histogram!("klaxon_rules_tick_duration_seconds"),
        }
    }

    /// Counts the active rules and registers each one's failures at zero.
    fn rules_active(&self, engine: &RuleEngine) {
        let names = engine.rule_names();
        self.active_rules.set(names.len() as f64);
        for rule in names {
            crate::telemetry::register_zero(
                "klaxon_rules_evaluation_failures_total",
                &[("rule", rule.to_owned())],
            );
        }
    }
}

/// Runs `rules` until `shutdown`, then writes a last checkpoint.
pub async fn run_rules(
    config: &Config,
    rules: RuleSet,
    shutdown: CancellationToken,
) -> Result<(), RunnerError> {
    let settings = &config.rules;
    let brokers = config.kafka.brokers.clone();
    let producer = keyed_producer(&config.kafka, &brokers)?;
    let paging = Publisher::with_producer(producer.clone(), &settings.paging_topic);
    paging.warm_up().await;
    let meters = Meters::new(config);
    let options = EngineOptions::from_config(&config.ingest, settings);
    let mut engine = RuleEngine::new(rules.rules(), options);

    let stored = {
        let (kafka, topic) = (config.kafka.clone(), settings.state_topic.clone());
        tokio::task::spawn_blocking(move || read_checkpoint(&kafka, &brokers, &topic))
            .await
            .expect("the state reader does not panic")?
    };
    tracing::info!(
        rules = stored.rules.len(),
        partitions = stored.positions.len(),
        topic = %settings.state_topic,
        "state restored"
    );
    let orphans = engine.restore(stored.rules, stored.positions, now_ms());
    publish(&paging, &orphans, &meters).await?;
    let mut state = State {
        producer: &producer,
        topic: &settings.state_topic,
        writer: stored.writer,
        owed: false,
    };
    if let Err(e) = state
        .writer
        .delete_stale(&producer, &settings.state_topic)
        .await
    {
        tracing::warn!(error = %e, "cannot delete stale checkpoint chunks yet");
    }

    let sources = config.sources();
    let topics: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
    let role = Role::PagingMember {
        group_id: &settings.group_id,
    };
    let member = Member::new(
        "rules",
        &client_config(&config.kafka, &config.kafka.brokers, role),
        &topics,
    )?;
    meters.rules_active(&engine);
    tracing::info!(rules = ?engine.rule_names(), ?topics, "rules started");
    let mut stage = RulesStage {
        formats: sources
            .iter()
            .map(|s| (s.topic.clone(), s.format))
            .collect(),
        rules,
        engine,
        paging: &paging,
        meters,
        state,
        commits: member.commits(),
    };
    // Ticks come before records (the member's order): under a backlog
    // records are always ready, and windows must still close (and points be
    // evicted).
    let timers = [
        Timer {
            every: TICK,
            at_start: true,
        },
        Timer {
            every: settings.reload_interval,
            at_start: false,
        },
    ];
    member.run(&mut stage, &timers, &shutdown).await
}

/// The rules runner's part of its group member: the engine fed with
/// records, ticked, reloaded and checkpointed.
struct RulesStage<'a> {
    rules: RuleSet,
    engine: RuleEngine,
    /// The format of each source topic.
    formats: HashMap<String, Format>,
    paging: &'a Publisher,
    meters: Meters,
    state: State<'a>,
    commits: Commits,
}

/// [`RulesStage`]'s timers, by index.
const TIMER_TICK: usize = 0;

impl Stage for RulesStage<'_> {
    type Error = RunnerError;
    type Event = std::convert::Infallible;

    async fn on_revoked(&mut self, partitions: Vec<Partition>) -> Result<(), RunnerError> {
        for partition in partitions {
            self.engine.revoke(&partition);
        }
        Ok(())
    }

    async fn on_assigned(&mut self, partitions: Vec<Partition>) -> Result<(), RunnerError> {
        let wall = now_ms();
        for partition in partitions {
            self.engine.assign(partition, wall);
        }
        Ok(())
    }

    async fn on_timer(&mut self, timer: usize, _: &CancellationToken) -> Result<(), RunnerError> {
        if timer == TIMER_TICK {
            self.tick().await
        } else {
            self.reload().await
        }
    }

    async fn on_messages(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        _: &CancellationToken,
    ) -> Result<(), RunnerError> {
        for message in batch {
            let Some(format) = self.formats.get(message.topic()) else {
                continue;
            };
            let wall = now_ms();
            let recorded = self.engine.record(
                &(message.topic().to_owned(), message.partition()),
                message.offset(),
                *format,
                message.payload().unwrap_or_default(),
                message.timestamp().to_millis().unwrap_or(wall),
                wall,
            );
            self.meters.points.increment(recorded.points as u64);
            self.meters.late.increment(recorded.late as u64);
            for r in self.engine.rejected() {
                metrics::counter!(
                    "klaxon_rules_rejected_points_total",
                    "topic" => message.topic().to_owned(),
                    "reason" => r.reason.as_str()
                )
                .increment(1);
            }
        }
        Ok(())
    }

    async fn on_stop(&mut self) -> Result<(), RunnerError> {
        tracing::info!("rules stopping: writing a last checkpoint");
        self.checkpoint().await;
        Ok(())
    }
}

impl RulesStage<'_> {
    /// Closes the windows due, publishes their events, then checkpoints.
    async fn tick(&mut self) -> Result<(), RunnerError> {
        let (engine, meters) = (&mut self.engine, &self.meters);
        let started = Instant::now();
        let tick = engine.tick(now_ms()).await;
        meters.tick_seconds.record(started.elapsed().as_secs_f64());
        meters.evaluations.increment(tick.evaluations);
        meters.points_held.set(engine.points_held() as f64);
        for (rule, e) in &tick.failures {
            tracing::error!(rule, error = %e, "evaluation failed; window skipped");
            metrics::counter!("klaxon_rules_evaluation_failures_total", "rule" => rule.clone())
                .increment(1);
        }
        publish(self.paging, &tick.events, meters).await?;
        if tick.evaluations > 0 || !tick.failures.is_empty() || self.state.owed {
            self.checkpoint().await;
        }
        Ok(())
    }

    /// Reads the rules directory again and applies what changed.
    async fn reload(&mut self) -> Result<(), RunnerError> {
        let reload = match self.rules.reload().await {
            Ok(reload) => reload,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rules; keeping the active ones");
                return Ok(());
            }
        };
        for problem in &reload.problems {
            tracing::error!("{problem} (refused; the previous version stays active)");
        }
        let meters = &self.meters;
        meters
            .reload_failures
            .increment(reload.problems.len() as u64);
        if reload.changed {
            let events = self.engine.reload(self.rules.rules());
            meters.reloads.increment(1);
            meters.rules_active(&self.engine);
            tracing::info!(rules = ?self.engine.rule_names(), "rules reloaded");
            publish(self.paging, &events, meters).await?;
            self.checkpoint().await;
        }
        Ok(())
    }

    async fn checkpoint(&mut self) {
        self.state
            .checkpoint(&self.commits, &mut self.engine, &self.meters)
            .await;
    }
}

/// Publishes `events` to the paging topic and counts them.
async fn publish(
    paging: &Publisher,
    events: &[PagingEvent],
    meters: &Meters,
) -> Result<(), KafkaError> {
    if events.is_empty() {
        return Ok(());
    }
    paging.publish(events, None).await?;
    meters.published.increment(events.len() as u64);
    crate::crash::point("rules.after_publish");
    Ok(())
}

/// The state topic and what has been written to it.
struct State<'a> {
    producer: &'a Producer,
    topic: &'a str,
    writer: CheckpointWriter,
    /// The last checkpoint failed: write again at the next tick.
    owed: bool,
}

impl State<'_> {
    /// Writes the engine's checkpoint, then commits the offsets it allows.
    /// A failure is counted and logged, not fatal: nothing is committed, and
    /// the state is written again at the next tick.
    async fn checkpoint(&mut self, commits: &Commits, engine: &mut RuleEngine, meters: &Meters) {
        let delta = engine.checkpoint();
        if delta.is_empty() {
            self.owed = false;
            return;
        }
        if let Err(e) = self.writer.write(self.producer, self.topic, &delta).await {
            meters.checkpoint_failures.increment(1);
            tracing::error!(error = %e, topic = self.topic, "checkpoint not written; retrying at the next tick");
            engine.checkpoint_failed(delta);
            self.owed = true;
            return;
        }
        self.owed = false;
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &delta.commit {
            if let Err(e) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                tracing::warn!(error = %e, topic, partition, "cannot commit this partition");
            }
        }
        if let Err(e) = commits.in_background(&offsets) {
            // The next checkpoint commits again; until then a restart replays more.
            tracing::warn!(error = %e, "commit failed");
        }
    }
}
