//! Flushing: a partition's buffer is written to the lake once its dead
//! letters are, then its offsets committed; on size, on age, the largest
//! when the memory budget is used, or all at a stop. A partition whose dead
//! letters cannot be written before a stop is abandoned, to be replayed.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::IngestStage;
use crate::{
    ErrorKind,
    ingest::{IngestError, buffer::PartitionBuffer},
    kafka::{Committed, member::Backoff},
    lake::writer::{FlushRange, write_flush},
};

impl IngestStage {
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
    pub(super) fn abandon(&mut self, topic: &str, partition: i32) {
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

    pub(super) async fn flush_aged(&mut self, stop: &CancellationToken) -> Result<(), IngestError> {
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

    pub(super) async fn flush_all(&mut self, stop: &CancellationToken) -> Result<(), IngestError> {
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
    pub(super) async fn flush_largest(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<(), IngestError> {
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
            // What its builder keeps for the next batch goes too: the
            // largest buffer may be one that only keeps.
            if let Some(state) = self
                .topics
                .get_mut(&topic)
                .and_then(|t| t.partitions.get_mut(&partition))
            {
                let before = state.buffer.bytes;
                state.buffer.forget_kept();
                self.buffered_bytes = self.buffered_bytes - before + state.buffer.bytes;
            }
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
    pub(super) async fn flush(
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
            table: crate::lake::layout::TABLE_DIR,
            topic: topic.to_owned(),
            partition,
            first_offset,
            last_offset: buffer.last_offset,
        };
        if !buffer.builder.is_empty() {
            // What the builder keeps counts against the next batch's
            // flush size: at most a quarter of it.
            buffer.builder.keep_at_most(self.flush_bytes / 4);
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
        let before = buffer.bytes;
        buffer.clear();
        self.buffered_bytes = self.buffered_bytes - before + buffer.bytes;

        // The files are durable; until the commit lands, a crash replays
        // them and the in-flight marker discards them.
        crate::crash::point("flush.before_commit");
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
        crate::crash::point("flush.after_commit");
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
