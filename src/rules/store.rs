//! The points open windows may still need, as Arrow batches, each with the
//! source offsets it came from.
//!
//! The offsets decide what the runner may commit: a partition's commit point
//! is the first offset of any record whose points are still held, so after a
//! crash the replay re-delivers exactly the points that open windows need.

use std::collections::HashMap;

use arrow::{
    array::{AsArray, RecordBatch, Scalar, TimestampMillisecondArray},
    compute::{and, filter_record_batch, kernels::cmp},
    datatypes::TimestampMillisecondType,
    error::ArrowError,
};

use super::watermark::PartitionKey;

#[derive(Debug)]
struct StoredBatch {
    min_time: i64,
    max_time: i64,
    batch: RecordBatch,
    /// The first offset, per partition, of the records this batch holds points of.
    first_offsets: HashMap<PartitionKey, i64>,
}

/// Decoded points, oldest first.
#[derive(Debug, Default)]
pub(crate) struct PointStore {
    batches: Vec<StoredBatch>,
}

impl PointStore {
    /// Keeps `batch`, which holds points of records starting at `first_offsets`.
    pub(crate) fn push(&mut self, batch: RecordBatch, first_offsets: HashMap<PartitionKey, i64>) {
        let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
        if let (Some(min_time), Some(max_time)) = (
            times.values().iter().min().copied(),
            times.values().iter().max().copied(),
        ) {
            self.batches.push(StoredBatch {
                min_time,
                max_time,
                batch,
                first_offsets,
            });
        }
    }

    /// The points with `start <= time < end`.
    pub(crate) fn window(&self, start: i64, end: i64) -> Result<Vec<RecordBatch>, ArrowError> {
        self.batches
            .iter()
            .filter(|b| b.max_time >= start && b.min_time < end)
            .map(|b| {
                if b.min_time >= start && b.max_time < end {
                    Ok(b.batch.clone())
                } else {
                    between(&b.batch, start, end)
                }
            })
            .collect()
    }

    /// Drops batches whose points all lie before `before`.
    pub(crate) fn evict(&mut self, before: i64) {
        self.batches.retain(|b| b.max_time >= before);
    }

    /// The first offset of `partition` still held, if any.
    pub(crate) fn first_offset(&self, partition: &PartitionKey) -> Option<i64> {
        self.batches
            .iter()
            .filter_map(|b| b.first_offsets.get(partition).copied())
            .min()
    }

    /// Points held, for the memory gauge.
    pub(crate) fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.batch.num_rows()).sum()
    }
}

/// The rows of `points` with `start <= time < end`.
pub(crate) fn between(
    points: &RecordBatch,
    start: i64,
    end: i64,
) -> Result<RecordBatch, ArrowError> {
    let time = points
        .column_by_name("time")
        .expect("point batches have time");
    let bound = |ms| Scalar::new(TimestampMillisecondArray::from(vec![ms]).with_timezone("UTC"));
    let mask = and(
        &cmp::gt_eq(time, &bound(start))?,
        &cmp::lt(time, &bound(end))?,
    )?;
    filter_record_batch(points, &mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::points::PointBatchBuilder;

    fn batch(times: &[i64]) -> RecordBatch {
        let mut b = PointBatchBuilder::default();
        for t in times {
            b.push::<&str, &str>("m", *t, 1.0, &[]);
        }
        b.finish().unwrap()
    }

    fn p(n: i32) -> PartitionKey {
        ("metrics".to_owned(), n)
    }

    #[test]
    fn windows_hold_exactly_their_points_and_offsets_follow_eviction() {
        let mut store = PointStore::default();
        store.push(batch(&[10, 20, 30]), [(p(0), 5), (p(1), 7)].into());
        store.push(batch(&[40, 50]), [(p(0), 9)].into());
        let rows = |v: Vec<RecordBatch>| v.iter().map(|b| b.num_rows()).sum::<usize>();
        assert_eq!(rows(store.window(20, 45).unwrap()), 3);
        assert_eq!(rows(store.window(0, 100).unwrap()), 5);
        assert_eq!(rows(store.window(31, 40).unwrap()), 0);
        assert_eq!(store.first_offset(&p(0)), Some(5));
        store.evict(31);
        assert_eq!(store.first_offset(&p(0)), Some(9));
        assert_eq!(
            store.first_offset(&p(1)),
            None,
            "nothing of partition 1 held"
        );
        assert_eq!(store.rows(), 2);
    }
}
