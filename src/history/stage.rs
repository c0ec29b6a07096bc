//! The history writer: a member of its own consumer group on the `incidents`
//! changelog, flushing new timeline entries to the lake on age or size and
//! committing the offsets they came from.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use arrow::array::RecordBatch;
use rdkafka::{Message, message::BorrowedMessage};
use tokio_util::sync::CancellationToken;

use super::{
    HistoryError,
    rows::{IncidentRows, fixed_fields, sort_order},
    written::read_written,
};
use crate::{
    ErrorKind,
    config::Config,
    kafka::{
        Commits, Committed, Member, Role, Timer, client_config,
        member::{Backoff, Partition, Stage},
    },
    lake::{
        Lake, LakeError, columns,
        layout::INCIDENTS_DIR,
        writer::{
            Encoding, FlushOutcome, FlushRange, discard_uncommitted, encode_sorted_by, write_hours,
        },
    },
    notify::{Incident, changelog::INCIDENT_PREFIX},
    points::split_by_hour,
};

/// Rows a partition buffers before it flushes, whatever its age...
const FLUSH_ROWS: usize = 10_000;
/// ...or bytes, labels counted (each row carries its incident's labels).
const FLUSH_BYTES: usize = 32 * 1024 * 1024;
/// How long a stop waits for an unreachable lake before it gives up.
const STOP_DRAIN: Duration = Duration::from_secs(10);
/// Rows per Parquet row group: incidents are few, one group per file.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Prefetch of the writer's consumer: changelog records are small and few.
const PREFETCH_BUDGET: usize = 64 * 1024 * 1024;

/// The history writer of one process.
#[derive(Debug)]
pub struct History {
    member: Member,
    stage: HistoryStage,
}

#[derive(Debug)]
struct HistoryStage {
    lake: Lake,
    topic: String,
    commits: Commits,
    flush_interval: Duration,
    partitions: HashMap<i32, PartitionState>,
    /// Set once a stop interrupted a lake operation: a partition dropped
    /// then must not be started again at a later offset and committed past
    /// what was never written, so nothing more is taken in or flushed.
    stopped: bool,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Whether the lake has been read for this partition since it was
    /// (re)assigned: an interrupted flush discarded, `written` filled.
    started: bool,
    /// Highest entry number per incident in the lake or in `rows`.
    written: HashMap<String, u64>,
    rows: IncidentRows,
    first_offset: Option<i64>,
    last_offset: i64,
    since: Option<Instant>,
}

impl History {
    pub fn new(config: &Config, lake: Lake) -> Result<Self, HistoryError> {
        let notify = &config.notify;
        let role = Role::IngestMember {
            group_id: &notify.history_group_id,
            memory_budget: PREFETCH_BUDGET,
        };
        let member = Member::new(
            "history",
            &client_config(&config.kafka, &config.kafka.brokers, role),
            &[notify.incidents_topic.as_str()],
        )?;
        crate::telemetry::register_unlabeled("klaxon_history_");
        let stage = HistoryStage {
            lake,
            topic: notify.incidents_topic.clone(),
            commits: member.commits(),
            flush_interval: notify.history_flush_interval,
            partitions: HashMap::new(),
            stopped: false,
        };
        Ok(Self { member, stage })
    }

    /// Runs until `shutdown`, then flushes and commits what it holds.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), HistoryError> {
        let Self { member, mut stage } = self;
        let tick = Timer {
            every: (stage.flush_interval / 4)
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
            at_start: true,
        };
        tracing::info!(
            topic = %stage.topic,
            lake = %stage.lake.describe(),
            "incident history writer started"
        );
        member.run(&mut stage, &[tick], &shutdown).await
    }
}

impl Stage for HistoryStage {
    type Error = HistoryError;
    type Event = std::convert::Infallible;

    /// The new owner replays a revoked partition from its last commit, and
    /// reads what the lake holds of it afresh.
    async fn on_revoked(&mut self, partitions: Vec<Partition>) -> Result<(), HistoryError> {
        for (_, partition) in partitions {
            self.partitions.remove(&partition);
        }
        Ok(())
    }

    async fn on_messages(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        stop: &CancellationToken,
    ) -> Result<(), HistoryError> {
        for message in batch {
            self.handle(message, stop).await?;
        }
        Ok(())
    }

    async fn on_timer(&mut self, _: usize, stop: &CancellationToken) -> Result<(), HistoryError> {
        let now = Instant::now();
        let due: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, s)| {
                s.since
                    .is_some_and(|since| now.duration_since(since) >= self.flush_interval)
            })
            .map(|(p, _)| *p)
            .collect();
        for partition in due {
            self.flush(partition, stop).await?;
        }
        Ok(())
    }

    /// Flushes what is held, giving an unreachable lake [`STOP_DRAIN`]:
    /// what is not written by then is replayed by the next owner.
    async fn on_stop(&mut self) -> Result<(), HistoryError> {
        if self.stopped {
            return Ok(());
        }
        let drained = CancellationToken::new();
        let deadline = drained.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STOP_DRAIN).await;
            deadline.cancel();
        });
        let held: Vec<i32> = self.partitions.keys().copied().collect();
        for partition in held {
            self.flush(partition, &drained).await?;
        }
        Ok(())
    }
}

impl HistoryStage {
    async fn handle(
        &mut self,
        message: &BorrowedMessage<'_>,
        stop: &CancellationToken,
    ) -> Result<(), HistoryError> {
        if self.stopped {
            return Ok(());
        }
        let (partition, offset) = (message.partition(), message.offset());
        let state = self.partitions.entry(partition).or_default();
        if !state.started {
            let (lake, topic) = (&self.lake, &self.topic);
            let written = until_done(stop, || async move {
                let gone =
                    discard_uncommitted(lake, INCIDENTS_DIR, topic, partition, offset).await?;
                if !gone.is_empty() {
                    tracing::warn!(
                        partition,
                        files = gone.len(),
                        "removed incident history files of an interrupted flush; the replay rewrites them"
                    );
                }
                read_written(lake, topic, partition).await
            })
            .await?;
            let Some(written) = written else {
                // Stopped while the lake was unreachable: nothing is held.
                self.partitions.remove(&partition);
                self.stopped = true;
                return Ok(());
            };
            state.written = written;
            state.started = true;
        }
        state.first_offset.get_or_insert(offset);
        state.last_offset = offset;
        state.since.get_or_insert_with(Instant::now);

        let key = message.key().unwrap_or_default();
        if let (true, Some(body)) = (
            key.starts_with(INCIDENT_PREFIX.as_bytes()),
            message.payload(),
        ) {
            match serde_json::from_slice::<Incident>(body) {
                Ok(incident) => {
                    let after = state.written.get(&incident.id).copied();
                    if let Some(highest) = state.rows.add(&incident, after) {
                        state.written.insert(incident.id, highest);
                    }
                }
                Err(e) => {
                    // The notifier skips it too when it restores: there is
                    // nothing to write, and the offset moves on.
                    tracing::error!(partition, offset, error = %e, "unreadable incident in the changelog; not written to the lake");
                    metrics::counter!("klaxon_history_unreadable_total").increment(1);
                }
            }
        }
        if state.rows.len() >= FLUSH_ROWS || state.rows.bytes() >= FLUSH_BYTES {
            self.flush(partition, stop).await?;
        }
        Ok(())
    }

    /// Writes a partition's rows to the lake, then commits its offsets.
    async fn flush(
        &mut self,
        partition: i32,
        stop: &CancellationToken,
    ) -> Result<(), HistoryError> {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return Ok(());
        };
        let Some(first_offset) = state.first_offset else {
            return Ok(());
        };
        let range = FlushRange {
            table: INCIDENTS_DIR,
            topic: self.topic.clone(),
            partition,
            first_offset,
            last_offset: state.last_offset,
        };
        if !state.rows.is_empty() {
            let (batch, left_out) = state.rows.finish()?;
            if left_out > 0 {
                tracing::warn!(
                    partition,
                    left_out,
                    "label keys past the column limit are kept in `labels` only"
                );
            }
            let (lake, range) = (&self.lake, &range);
            let written = until_done(stop, || write_rows(lake, range, batch.clone())).await?;
            let Some(outcome) = written else {
                // Stopped while the lake was unreachable: replayed later.
                self.partitions.remove(&partition);
                self.stopped = true;
                return Ok(());
            };
            metrics::counter!("klaxon_history_rows_written_total").increment(outcome.rows as u64);
            // The rows are durable; until the commit lands, a crash replays
            // them and the in-flight marker discards them.
            crate::crash::point("history.before_commit");
        }
        let committed = self
            .commits
            .until_committed(&self.topic, partition, range.last_offset + 1)
            .await?;
        match committed {
            Committed::PartitionMoved => {
                self.partitions.remove(&partition);
            }
            Committed::Yes => {
                if let Some(state) = self.partitions.get_mut(&partition) {
                    state.rows.clear();
                    state.first_offset = None;
                    state.since = None;
                }
            }
        }
        Ok(())
    }
}

/// Writes rows ([`IncidentRows::finish`]) as the flush of `range`: their
/// label columns recorded, one file per hour of their entries' times.
pub async fn write_rows(
    lake: &Lake,
    range: &FlushRange,
    batch: RecordBatch,
) -> Result<FlushOutcome, LakeError> {
    columns::record(lake, INCIDENTS_DIR, &fixed_fields(), &batch.schema()).await?;
    let parts = tokio::task::spawn_blocking(move || encode_hours(&batch))
        .await
        .expect("parquet encoding task panicked")?;
    write_hours(lake, range, parts).await
}

/// Sorted rows as one Parquet file per hour of their entries' times.
fn encode_hours(batch: &RecordBatch) -> Result<Vec<(i64, usize, bytes::Bytes)>, LakeError> {
    split_by_hour(batch)?
        .into_iter()
        .map(|(hour, part)| {
            let bytes = encode_sorted_by(&part, &sort_order(), ROW_GROUP_ROWS, Encoding::Fast)?;
            Ok((hour, part.num_rows(), bytes))
        })
        .collect()
}

/// Runs a lake operation until it succeeds, retrying while the lake is
/// unreachable; `None` when `stop` comes first.
async fn until_done<T, F, Fut>(
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<Option<T>, LakeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LakeError>>,
{
    let mut backoff = Backoff::up_to(Duration::from_secs(10));
    loop {
        match attempt().await {
            Ok(value) => return Ok(Some(value)),
            Err(e) if e.kind() == ErrorKind::External => {
                tracing::warn!(error = %e, "lake unreachable for incident history; retrying");
                metrics::counter!("klaxon_lake_write_errors_total").increment(1);
                if stop.is_cancelled() {
                    return Ok(None);
                }
                tokio::select! {
                    () = backoff.wait() => {}
                    () = stop.cancelled() => return Ok(None),
                }
            }
            Err(e) => return Err(e),
        }
    }
}
