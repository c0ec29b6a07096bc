//! One partition's points waiting for the next flush.

use std::time::Instant;

use crate::points::PointBatchBuilder;

/// Points of one topic partition, and the offsets they came from.
#[derive(Debug)]
pub(super) struct PartitionBuffer {
    pub(super) builder: PointBatchBuilder,
    /// Offset of the first record since the last flush; `None` when empty.
    pub(super) first_offset: Option<i64>,
    pub(super) last_offset: i64,
    /// Memory the buffer holds: its input bytes, or the batch's own measure
    /// if that is more (tag keys multiply columns, every column is padded
    /// to every row, and a batch of new series stores more per tag than
    /// its input spent). The measure of `flush_bytes` and the memory budget.
    /// Between batches, what the builder keeps for the next one.
    pub(super) bytes: usize,
    /// Input bytes buffered.
    input_bytes: usize,
    /// When the first record since the last flush arrived; ages the buffer.
    pub(super) since: Option<Instant>,
}

impl Default for PartitionBuffer {
    fn default() -> Self {
        Self {
            builder: PointBatchBuilder::default(),
            first_offset: None,
            last_offset: -1,
            bytes: 0,
            input_bytes: 0,
            since: None,
        }
    }
}

impl PartitionBuffer {
    /// Notes that the record at `offset` (of `bytes` bytes) has been decoded
    /// into the builder, and returns how much `self.bytes` grew.
    pub(super) fn record(&mut self, offset: i64, bytes: usize) -> usize {
        if self.first_offset.is_none() {
            self.first_offset = Some(offset);
            self.since = Some(Instant::now());
        }
        self.last_offset = offset;
        self.input_bytes += bytes;
        let held = self.input_bytes.max(self.builder.estimated_bytes());
        let grown = held.saturating_sub(self.bytes);
        self.bytes = held;
        grown
    }

    /// True when records wait to be flushed (even if every line was rejected:
    /// their offsets still need committing).
    pub(super) fn has_records(&self) -> bool {
        self.first_offset.is_some()
    }

    /// Resets after a flush; `bytes` is then what the builder keeps.
    pub(super) fn clear(&mut self) {
        self.first_offset = None;
        self.bytes = self.builder.estimated_bytes();
        self.input_bytes = 0;
        self.since = None;
    }

    /// Frees what the builder keeps between batches, when memory is
    /// short; nothing while records wait to be flushed.
    pub(super) fn forget_kept(&mut self) {
        if !self.has_records() {
            self.builder.forget_kept();
            self.bytes = self.builder.estimated_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Format, Limits, decode_record};

    #[test]
    fn what_the_builder_keeps_is_held_between_batches_until_forgotten() {
        let mut buffer = PartitionBuffer::default();
        // More series than a cleared store keeps room for (4,096).
        let lines: Vec<String> = (0..10_000)
            .map(|i| format!("cpu;host=h{i} 1.5 1700000000"))
            .collect();
        let record = lines.join("\n");
        let decode = |buffer: &mut PartitionBuffer| {
            let limits = Limits::unbounded();
            let mut rejects = Vec::new();
            decode_record(
                Format::Graphite,
                record.as_bytes(),
                0,
                limits,
                &mut buffer.builder,
                &mut rejects,
            );
        };
        decode(&mut buffer);
        buffer.record(0, record.len());
        buffer.builder.finish().unwrap();
        buffer.clear();
        assert!(!buffer.has_records());
        let kept = buffer.bytes;
        assert!(kept > 10_000 * 8, "10k series kept: {kept} bytes");
        assert_eq!(kept, buffer.builder.estimated_bytes());
        // Not while records wait: their batch needs what it stored.
        decode(&mut buffer);
        buffer.record(1, record.len());
        buffer.forget_kept();
        assert!(buffer.bytes >= kept);
        buffer.builder.finish().unwrap();
        buffer.clear();
        buffer.forget_kept();
        assert!(buffer.bytes < kept / 2, "{} of {kept} bytes", buffer.bytes);
    }
}
