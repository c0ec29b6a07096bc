//! Where each file of the lake lives, and the marker of an unfinished flush.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::points::MS_PER_HOUR;

/// Directory of the table `metrics` under the lake root.
pub const TABLE_DIR: &str = "metrics";
/// Directory of the table `incidents`: every incident's timeline entries
/// (see [`crate::history`]).
pub const INCIDENTS_DIR: &str = "incidents";

/// The hive partition directory of a UTC hour (hours since the epoch).
pub fn partition_dir(hour: i64) -> String {
    let (date, hour) = partition_values(hour);
    format!("date={date}/hour={hour}")
}

/// The `date` and `hour` partition values of a UTC hour (hours since the
/// epoch), as its directory spells them.
pub fn partition_values(hour: i64) -> (String, String) {
    let start = DateTime::<Utc>::from_timestamp_millis(hour.saturating_mul(MS_PER_HOUR))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    (
        start.format("%Y-%m-%d").to_string(),
        start.format("%H").to_string(),
    )
}

/// The path of a data file of `metrics`, relative to the lake root.
pub fn data_file(topic: &str, partition: i32, first: i64, last: i64, hour: i64) -> String {
    table_file(TABLE_DIR, topic, partition, first, last, hour)
}

/// The path of a data file of `table`, relative to the lake root.
pub fn table_file(
    table: &str,
    topic: &str,
    partition: i32,
    first: i64,
    last: i64,
    hour: i64,
) -> String {
    format!(
        "{table}/{}/{}",
        partition_dir(hour),
        file_name(topic, partition, first, last)
    )
}

/// A data file's name: the topic partition and offsets it holds.
pub fn file_name(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}-{partition:05}-{first:020}-{last:020}.parquet")
}

/// Written before a flush's data files and overwritten by the next flush.
///
/// Offsets are committed only after every listed file is durable. A consumer
/// that (re)starts a partition and receives an offset `<= last_offset` knows
/// that commit never happened: the listed files are orphans that the replay
/// will write again, perhaps split at other offsets, so it deletes them first.
/// A first offset past `last_offset` means the flush completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InflightMarker {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub files: Vec<String>,
}

impl InflightMarker {
    /// The marker of a flush of `topic` into `table`. Markers of `metrics`
    /// keep the path they had before there were other tables, so a lake
    /// written then still finds them.
    pub fn path(table: &str, topic: &str, partition: i32) -> String {
        if table == TABLE_DIR {
            format!("_klaxon/inflight/{topic}/{partition}.json")
        } else {
            format!("_klaxon/inflight/{table}/{topic}/{partition}.json")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_sortable() {
        let hour = 1_764_000_000_000 / MS_PER_HOUR;
        assert_eq!(
            data_file("metrics", 3, 100, 199, hour),
            "metrics/date=2025-11-24/hour=16/metrics-00003-00000000000000000100-00000000000000000199.parquet"
        );
    }
}
