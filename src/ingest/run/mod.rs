//! The ingest loop: receive, decode, buffer, flush on size or age, commit.
//!
//! Here: the member and its stage (topics, partitions, the budget, the
//! decoding of each record and its dead letters). Flushing a partition's
//! buffer to the lake and committing it, or abandoning it, is in `flush`.

mod flush;

use std::{collections::HashMap, time::Duration};

use rdkafka::{Message, message::BorrowedMessage};
use tokio_util::sync::CancellationToken;

use super::{IngestError, buffer::PartitionBuffer, upkeep::Upkeep};
use crate::{
    ErrorKind,
    clock::now_ms,
    config::Config,
    decode::{Format, RejectReason, Rejected, decode_record},
    kafka::{
        Commits, DeadLetters, Member, Origin, Producer, Rejection, Role, Timer, client_config,
        member::{Backoff, Partition, Stage},
    },
    lake::{Lake, writer::discard_uncommitted},
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
        let producer: Producer =
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
            let buffered = self
                .topics
                .get(&topic)
                .and_then(|t| t.partitions.get(&partition))
                .and_then(|state| Some((state.buffer.first_offset?, state.buffer.last_offset)));
            if let Some((first, last)) = buffered {
                tracing::info!(
                    topic,
                    partition,
                    first,
                    last,
                    "dropped the buffer of a revoked partition; its new owner replays it"
                );
            }
            self.abandon(&topic, partition);
        }
        crate::crash::point("ingest.after_revoke");
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
        let limits = ingest.limits(now_ms);
        let (flush_rows, flush_bytes) = (ingest.flush_rows, self.flush_bytes);

        let Some(topic_state) = self.topics.get_mut(topic) else {
            tracing::warn!(topic, "record from a topic not subscribed to");
            return Ok(());
        };
        topic_state.records.increment(1);
        topic_state.bytes.increment(payload.len() as u64);
        let state = topic_state.partitions.entry(partition).or_default();
        if !state.started {
            let gone = discard_until_done(&self.args.lake, topic, partition, offset).await?;
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
}

/// [`discard_uncommitted`], retried while the lake is unreachable: an
/// outage of the store pauses the partition, as it pauses a flush, rather
/// than stopping ingest.
async fn discard_until_done(
    lake: &Lake,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Vec<String>, IngestError> {
    let mut backoff = Backoff::up_to(Duration::from_secs(10));
    loop {
        match discard_uncommitted(
            lake,
            crate::lake::layout::TABLE_DIR,
            topic,
            partition,
            offset,
        )
        .await
        {
            Ok(gone) => return Ok(gone),
            Err(e) if e.kind() == ErrorKind::External => {
                tracing::warn!(topic, partition, error = %e, "lake unreachable while looking for an interrupted flush; retrying");
                backoff.wait().await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
