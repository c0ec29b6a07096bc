//! The ingest loop: receive, decode, buffer, flush on size or age, commit.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rdkafka::{Message, message::BorrowedMessage, producer::FutureProducer};
use tokio_util::sync::CancellationToken;

use super::{IngestError, buffer::PartitionBuffer, upkeep::Upkeep};
use crate::{
    ErrorKind,
    clock::now_ms,
    config::Config,
    decode::{Format, Limits, RejectReason, Rejected, decode_record},
    kafka::{
        Commits, Committed, DeadLetters, Member, Origin, Rejection, Role, Timer, client_config,
        member::{Backoff, Partition, Stage},
    },
    lake::{
        Lake,
        writer::{FlushRange, discard_uncommitted, write_flush},
    },
};

/// What an ingest process needs.
#[derive(Debug, Clone)]
pub struct IngestArgs {
    pub config: Config,
    pub brokers: String,
    pub lake: Lake,
}

/// How long a stop waits for dead letters still in flight.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// State of one assigned partition.
#[derive(Debug, Default)]
struct PartitionState {
    /// Whether the lake has been checked for an interrupted flush since the
    /// partition was (re)assigned; see `discard_uncommitted`.
    started: bool,
    buffer: PartitionBuffer,
}

#[derive(Debug)]
struct TopicState {
    format: Format,
    partitions: HashMap<i32, PartitionState>,
    /// Registered once so counting a record allocates no label strings.
    records: metrics::Counter,
    points: metrics::Counter,
    bytes: metrics::Counter,
    /// `klaxon_ingest_rejected_total{topic,reason}`, one per reason in the
    /// order of [`RejectReason::ALL`], registered at zero so a rate over the
    /// first rejection of a reason is not missed.
    rejected: Vec<metrics::Counter>,
}

impl TopicState {
    fn new(topic: &str, format: Format) -> Self {
        let label = || ("topic", topic.to_owned());
        let rejected = RejectReason::ALL
            .iter()
            .map(|reason| {
                let counter = metrics::counter!(
                    "klaxon_ingest_rejected_total",
                    &[label(), ("reason", reason.as_str().to_owned())]
                );
                counter.absolute(0);
                counter
            })
            .collect();
        Self {
            format,
            partitions: HashMap::new(),
            records: metrics::counter!("klaxon_ingest_records_total", &[label()]),
            points: metrics::counter!("klaxon_ingest_points_total", &[label()]),
            bytes: metrics::counter!("klaxon_ingest_bytes_total", &[label()]),
            rejected,
        }
    }

    fn rejected(&self, reason: RejectReason) -> &metrics::Counter {
        &self.rejected[reason as usize]
    }
}

/// One member of the ingest consumer group.
#[derive(Debug)]
pub struct Ingest {
    member: Member,
    stage: IngestStage,
}

/// What ingest does with the records its member receives.
struct IngestStage {
    args: IngestArgs,
    commits: Commits,
    dead_letters: DeadLetters,
    topics: HashMap<String, TopicState>,
    /// Input bytes held in all buffers; flushing the largest keeps it under
    /// `buffer_budget`.
    buffered_bytes: usize,
    buffer_budget: usize,
    /// A partition flushes at `flush_bytes` or at this, whichever is smaller,
    /// so the copy a flush makes while it sorts and encodes fits the budget.
    flush_bytes: usize,
    /// `klaxon_ingest_buffered_bytes`, registered once: it is set per record.
    buffered_gauge: metrics::Gauge,
    /// Reused for every record to avoid an allocation per record.
    rejects: Vec<Rejected>,
    /// Compaction and retention of the partitions this member owns.
    upkeep: Upkeep,
}

impl std::fmt::Debug for IngestStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestStage")
            .field("brokers", &self.args.brokers)
            .field("buffered_bytes", &self.buffered_bytes)
            .finish_non_exhaustive()
    }
}

/// librdkafka's prefetch limits for a memory budget of `budget` bytes.
///
/// The budget is split: a quarter for records librdkafka prefetches, half for
/// decoded buffers, a quarter for the flush being encoded (hence no single
/// flush larger than that). When all are full, fetching stops.
///
/// One partition may fill a whole fetch: Kafka returns a record larger than
/// `max.partition.fetch.bytes` anyway, but tansu 0.6 returns nothing, so a
/// single record over librdkafka's 1 MiB default would stall its partition.
pub(crate) fn prefetch_limits(budget: usize) -> [(&'static str, String); 3] {
    let prefetch_kib = (budget / 4 / 1024).max(1024);
    let fetch_bytes = (prefetch_kib * 1024 / 2).min(52_428_800).to_string();
    [
        ("queued.max.messages.kbytes", prefetch_kib.to_string()),
        ("fetch.max.bytes", fetch_bytes.clone()),
        ("max.partition.fetch.bytes", fetch_bytes),
    ]
}

impl Ingest {
    pub fn new(args: IngestArgs) -> Result<Self, IngestError> {
        if args.brokers.is_empty() {
            return Err(IngestError::NoBrokers);
        }
        let ingest = &args.config.ingest;
        let budget = ingest.memory_budget.as_u64() as usize;
        let role = Role::IngestMember {
            group_id: &ingest.group_id,
            memory_budget: budget,
        };
        let producer: FutureProducer =
            client_config(&args.config.kafka, &args.brokers, Role::IdempotentProducer).create()?;
        let sources = args.config.sources();
        let names: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
        let member = Member::new(
            "ingest",
            &client_config(&args.config.kafka, &args.brokers, role),
            &names,
        )?;
        let topics = sources
            .iter()
            .map(|s| (s.topic.clone(), TopicState::new(&s.topic, s.format)))
            .collect();
        crate::telemetry::register_unlabeled("klaxon_ingest_");
        crate::telemetry::register_unlabeled("klaxon_lake_");
        let stage = IngestStage {
            commits: member.commits(),
            dead_letters: DeadLetters::new(
                producer,
                args.config.topics.dead_letter.clone(),
                args.config.topics.dead_letter_max_bytes.as_u64() as usize,
            ),
            topics,
            buffered_bytes: 0,
            buffer_budget: budget / 2,
            flush_bytes: (ingest.flush_bytes.as_u64() as usize).min(budget / 4),
            buffered_gauge: metrics::gauge!("klaxon_ingest_buffered_bytes"),
            rejects: Vec::new(),
            upkeep: Upkeep::new(args.lake.clone(), args.config.lake.clone()),
            args,
        };
        Ok(Self { member, stage })
    }

    /// Where this member writes, for people.
    pub fn lake_location(&self) -> String {
        self.stage.args.lake.describe()
    }

    /// Runs until `shutdown` is cancelled, then flushes and commits what it holds.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), IngestError> {
        let Self { member, mut stage } = self;
        let interval = stage.args.config.ingest.flush_interval;
        // Buffers older than the flush interval are flushed at the next tick.
        let tick = Timer {
            every: (interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
            at_start: true,
        };
        let mut timers = vec![tick];
        // Lake upkeep, unless disabled: at once (a restarted member finishes
        // a compaction a crash interrupted), then every interval.
        if let Some(every) = stage.upkeep.interval() {
            timers.push(Timer {
                every,
                at_start: true,
            });
        }
        tracing::info!(
            group = %stage.args.config.ingest.group_id,
            topics = ?stage.topics.keys().collect::<Vec<_>>(),
            lake = %stage.args.lake.describe(),
            "ingest started"
        );
        member.run(&mut stage, &timers, &shutdown).await
    }
}

impl Stage for IngestStage {
    type Error = IngestError;
    type Event = std::convert::Infallible;

    /// Drops the buffers of revoked partitions: their new owner replays them
    /// from the last commit, so flushing them here would duplicate rows.
    /// (Ingest needs no notice of assignments: a partition's first record
    /// starts it, see `discard_uncommitted`.)
    async fn on_revoked(&mut self, partitions: Vec<Partition>) -> Result<(), IngestError> {
        for (topic, partition) in partitions {
            self.abandon(&topic, partition);
        }
        Ok(())
    }

    async fn on_messages(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        stop: &CancellationToken,
    ) -> Result<(), IngestError> {
        for message in batch {
            self.handle(message, stop).await?;
        }
        Ok(())
    }

    async fn on_timer(
        &mut self,
        timer: usize,
        stop: &CancellationToken,
    ) -> Result<(), IngestError> {
        match timer {
            0 => self.flush_aged(stop).await,
            _ => {
                self.upkeep.start();
                Ok(())
            }
        }
    }

    async fn on_stop(&mut self) -> Result<(), IngestError> {
        tracing::info!("ingest stopping: flushing buffers");
        self.upkeep.stop();
        // Dead letters still in flight get a while to land; a partition whose
        // dead letters do not is left uncommitted, to be replayed.
        let drained = CancellationToken::new();
        let deadline = drained.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_DRAIN).await;
            deadline.cancel();
        });
        self.flush_all(&drained).await
    }
}

impl IngestStage {
    async fn handle(
        &mut self,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), IngestError> {
        let topic = message.topic();
        let partition = message.partition();
        let offset = message.offset();
        let payload = message.payload().unwrap_or_default();
        let now_ms = now_ms();
        let record_time = message.timestamp().to_millis().unwrap_or(now_ms);
        let ingest = &self.args.config.ingest;
        let limits = Limits::from_config(ingest, now_ms);
        let (flush_rows, flush_bytes) = (ingest.flush_rows, self.flush_bytes);

        let Some(topic_state) = self.topics.get_mut(topic) else {
            tracing::warn!(topic, "record from a topic not subscribed to");
            return Ok(());
        };
        topic_state.records.increment(1);
        topic_state.bytes.increment(payload.len() as u64);
        let state = topic_state.partitions.entry(partition).or_default();
        if !state.started {
            let gone = discard_uncommitted(&self.args.lake, topic, partition, offset).await?;
            if !gone.is_empty() {
                tracing::warn!(
                    topic,
                    partition,
                    files = gone.len(),
                    "removed files of an interrupted flush; the replay rewrites them"
                );
            }
            state.started = true;
        }
        // A buffer halfway to its tag-key limit starts afresh, so the limit
        // rejects only a record that brings that many keys by itself.
        if state.buffer.builder.tag_columns() * 2 > limits.max_tag_keys {
            self.flush(topic, partition, shutdown).await?;
        }

        let Some(topic_state) = self.topics.get_mut(topic) else {
            return Ok(());
        };
        // Gone if that flush abandoned the partition (a stop while its dead
        // letters were in flight) or found it moved: this record must not
        // start a new buffer, or a commit would skip the records dropped.
        let Some(state) = topic_state.partitions.get_mut(&partition) else {
            return Ok(());
        };
        self.rejects.clear();
        let points = decode_record(
            topic_state.format,
            payload,
            record_time,
            limits,
            &mut state.buffer.builder,
            &mut self.rejects,
        );
        self.buffered_bytes += state.buffer.record(offset, payload.len());
        let full = state.buffer.builder.len() >= flush_rows || state.buffer.bytes >= flush_bytes;
        topic_state.points.increment(points as u64);

        let mut interrupted = None;
        if !self.rejects.is_empty() {
            let origin = Origin {
                topic,
                partition,
                offset,
                key: message.key(),
            };
            // Not awaited one by one: a record of many bad lines must not
            // hold up the other partitions or a shutdown. `flush` waits for
            // them all before it commits the offsets they came from.
            for r in &self.rejects {
                let rejection = Rejection {
                    reason: r.reason.as_str(),
                    detail: &r.detail,
                    bytes: &payload[r.bytes.clone()],
                    line: Some(r.line),
                };
                if let Err(stopped) = self.dead_letters.enqueue(origin, rejection, shutdown).await {
                    interrupted = Some(stopped);
                    break;
                }
                topic_state.rejected(r.reason).increment(1);
            }
        }
        if interrupted.is_some() {
            tracing::warn!(
                topic,
                partition,
                offset,
                "stopping while dead-lettering a record; its partition replays from its last commit"
            );
            self.abandon(topic, partition);
            return Ok(());
        }
        if full {
            self.flush(topic, partition, shutdown).await?;
        }
        if self.buffered_bytes > self.buffer_budget {
            self.flush_largest(shutdown).await?;
        }
        self.buffered_gauge.set(self.buffered_bytes as f64);
        Ok(())
    }

    /// Waits for a partition's dead letters; if `stop` comes first, abandons
    /// the partition (see [`Ingest::abandon`]) and returns false.
    async fn drain_or_abandon(
        &mut self,
        topic: &str,
        partition: i32,
        stop: &CancellationToken,
    ) -> bool {
        let drained = self
            .dead_letters
            .drain_partition(topic, partition, stop)
            .await;
        if drained.is_err() {
            tracing::warn!(
                topic,
                partition,
                "stopping before its dead letters were written; the partition replays from its last commit"
            );
            self.abandon(topic, partition);
        }
        drained.is_ok()
    }

    /// Drops what a partition holds, committing nothing: the next owner (or
    /// the next start) replays it from the last commit.
    fn abandon(&mut self, topic: &str, partition: i32) {
        if let Some(state) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.remove(&partition))
        {
            self.buffered_bytes -= state.buffer.bytes;
        }
        self.dead_letters.forget_partition(topic, partition);
        self.upkeep.lost(topic, partition);
    }

    async fn flush_aged(&mut self, stop: &CancellationToken) -> Result<(), IngestError> {
        let max_age = self.args.config.ingest.flush_interval;
        let now = Instant::now();
        let due =
            self.partitions_where(|b| b.since.is_some_and(|s| now.duration_since(s) >= max_age));
        for (topic, partition) in due {
            // A partition still writing dead letters waits for a later tick
            // rather than holding up the others (size and memory flushes do
            // wait: that is their backpressure).
            if self.dead_letters.has_pending(&topic, partition) {
                continue;
            }
            self.flush(&topic, partition, stop).await?;
        }
        Ok(())
    }

    async fn flush_all(&mut self, stop: &CancellationToken) -> Result<(), IngestError> {
        let due = self.partitions_where(PartitionBuffer::has_records);
        // Dead letters first: a partition whose dead letters are not written
        // by `stop` is left uncommitted, to be replayed...
        for (topic, partition) in &due {
            self.drain_or_abandon(topic, *partition, stop).await;
        }
        // ...and what those still have queued is dropped, so that a broker
        // slow to take dead letters can take the commits of the others.
        self.dead_letters.purge_queued();
        for (topic, partition) in due {
            self.flush(&topic, partition, stop).await?;
        }
        Ok(())
    }

    /// Flushes the biggest buffer: backpressure once the memory budget is used.
    async fn flush_largest(&mut self, stop: &CancellationToken) -> Result<(), IngestError> {
        let largest = self
            .topics
            .iter()
            .flat_map(|(t, s)| {
                s.partitions
                    .iter()
                    .map(move |(p, st)| (st.buffer.bytes, t, *p))
            })
            .max()
            .map(|(_, t, p)| (t.clone(), p));
        if let Some((topic, partition)) = largest {
            tracing::debug!(
                topic,
                partition,
                "memory budget reached; flushing largest buffer"
            );
            self.flush(&topic, partition, stop).await?;
        }
        Ok(())
    }

    fn partitions_where(&self, pred: impl Fn(&PartitionBuffer) -> bool) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(t, s)| {
                s.partitions
                    .iter()
                    .filter(|(_, st)| pred(&st.buffer))
                    .map(move |(p, _)| (t.clone(), *p))
            })
            .collect()
    }

    /// Writes the partition's buffer to the lake, then commits its offsets.
    ///
    /// The offsets cover the record's rejected lines too, so their dead
    /// letters must be written first. If `stop` is cancelled while they are
    /// not, the partition is abandoned instead: nothing is committed, and the
    /// next owner replays it.
    async fn flush(
        &mut self,
        topic: &str,
        partition: i32,
        stop: &CancellationToken,
    ) -> Result<(), IngestError> {
        if !self.drain_or_abandon(topic, partition, stop).await {
            return Ok(());
        }
        let Some(state) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(&partition))
        else {
            return Ok(());
        };
        let buffer = &mut state.buffer;
        let Some(first_offset) = buffer.first_offset else {
            return Ok(());
        };
        let started = Instant::now();
        let range = FlushRange {
            topic: topic.to_owned(),
            partition,
            first_offset,
            last_offset: buffer.last_offset,
        };
        if !buffer.builder.is_empty() {
            let batch = buffer.builder.finish()?;
            let mut backoff = Backoff::up_to(Duration::from_secs(10));
            let outcome = loop {
                // Rewriting is safe: the names and the marker are the same.
                match write_flush(
                    &self.args.lake,
                    &range,
                    batch.clone(),
                    self.args.config.ingest.row_group_rows,
                )
                .await
                {
                    Ok(outcome) => break outcome,
                    Err(e) if e.kind() == ErrorKind::External => {
                        tracing::warn!(topic, partition, error = %e, "lake write failed; retrying");
                        metrics::counter!("klaxon_lake_write_errors_total").increment(1);
                        backoff.wait().await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            metrics::counter!("klaxon_lake_files_written_total")
                .increment(outcome.files.len() as u64);
            metrics::counter!("klaxon_lake_rows_written_total").increment(outcome.rows as u64);
            metrics::counter!("klaxon_lake_bytes_written_total").increment(outcome.bytes as u64);
        }
        self.buffered_bytes -= buffer.bytes;
        buffer.clear();

        // The files are durable; until the commit lands, a crash replays
        // them and the in-flight marker discards them.
        let committed = self
            .commits
            .until_committed(topic, partition, range.last_offset + 1)
            .await?;
        if committed == Committed::PartitionMoved {
            if let Some(t) = self.topics.get_mut(topic) {
                t.partitions.remove(&partition);
            }
            self.upkeep.lost(topic, partition);
            return Ok(());
        }
        self.upkeep
            .committed(topic, partition, range.last_offset + 1);
        metrics::histogram!("klaxon_ingest_flush_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        self.buffered_gauge.set(self.buffered_bytes as f64);
        tracing::debug!(
            topic,
            partition,
            first = range.first_offset,
            last = range.last_offset,
            "flushed"
        );
        Ok(())
    }
}
