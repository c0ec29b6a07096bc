//! Metric points as Arrow: the SQL surface of DESIGN.md.
//!
//! A batch has `time` (timestamp ms, UTC), `name`, `value` (float64) and one
//! nullable string column per tag key, in key order. Decoders append straight
//! into [`PointBatchBuilder`]; no point is materialised as a Rust struct.

mod builder;
mod dictionary;
mod sort;

use std::borrow::Cow;

use arrow::{
    array::{RecordBatch, TimestampMillisecondArray},
    compute::filter_record_batch,
    datatypes::{DataType, Field, TimeUnit},
    error::ArrowError,
};

pub use builder::{PointBatchBuilder, SeriesId, TagSetId};
pub use sort::{series_order, sort_by_series};

pub const TIME: &str = "time";
pub const NAME: &str = "name";
pub const VALUE: &str = "value";

/// Column names a tag may not take. The lake's hive partition columns are
/// reserved too, or a tag would shadow them in queries.
pub const RESERVED: [&str; 5] = [TIME, NAME, VALUE, "date", "hour"];

/// A tag whose key is reserved is stored under this prefix: `tags.time` becomes
/// the column `tag_time`, so no point is lost and no column is ambiguous.
pub const RESERVED_TAG_PREFIX: &str = "tag_";

/// The column a tag key is stored in.
pub fn tag_column_name(key: &str) -> Cow<'_, str> {
    if RESERVED.contains(&key) {
        Cow::Owned(format!("{RESERVED_TAG_PREFIX}{key}"))
    } else {
        Cow::Borrowed(key)
    }
}

pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Names and tag values repeat endlessly, so they are dictionary-encoded.
pub fn string_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The fixed columns every batch starts with.
pub fn base_fields() -> Vec<Field> {
    vec![
        Field::new(TIME, time_type(), false),
        Field::new(NAME, string_type(), false),
        Field::new(VALUE, DataType::Float64, false),
    ]
}

pub const MS_PER_HOUR: i64 = 3_600_000;

/// Splits a batch into one batch per UTC hour (the lake's partitions), in hour
/// order, each keeping the input's row order.
pub fn split_by_hour(batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>, ArrowError> {
    let time = batch
        .column_by_name(TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("batch has no millisecond `time`".into()))?;
    let hours: Vec<i64> = time
        .values()
        .iter()
        .map(|t| t.div_euclid(MS_PER_HOUR))
        .collect();
    // A flush spans few hours: a set of them costs one pass, not a sort.
    let distinct: std::collections::BTreeSet<i64> = hours.iter().copied().collect();
    if let (1, Some(&only)) = (distinct.len(), distinct.first()) {
        return Ok(vec![(only, batch.clone())]);
    }
    distinct
        .into_iter()
        .map(|hour| {
            let mask = hours.iter().map(|h| Some(*h == hour)).collect();
            Ok((hour, filter_record_batch(batch, &mask)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_utc_hour_including_before_1970() {
        let mut b = PointBatchBuilder::default();
        for t in [-1, 0, MS_PER_HOUR - 1, MS_PER_HOUR, 5 * MS_PER_HOUR] {
            b.push("x", t, 0.0, &[] as &[(&str, &str)]);
        }
        let parts = split_by_hour(&b.finish().unwrap()).unwrap();
        let shape: Vec<(i64, usize)> = parts.iter().map(|(h, b)| (*h, b.num_rows())).collect();
        assert_eq!(shape, [(-1, 1), (0, 2), (1, 1), (5, 1)]);
    }

    #[test]
    fn reserved_tag_keys_are_prefixed() {
        assert_eq!(tag_column_name("time"), "tag_time");
        assert_eq!(tag_column_name("hour"), "tag_hour");
        assert_eq!(tag_column_name("service"), "service");
    }
}
