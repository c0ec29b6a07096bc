//! Retention: whole hour directories older than a table's retention go.
//!
//! An hour directory is deleted once its hour *ended* `retention` ago, so no
//! row newer than the cutoff is ever touched. Files are deleted one by one
//! (object stores have no directories); a run stopped halfway leaves an hour
//! with fewer files, which the next run finishes. Queries over an hour being
//! deleted may see part of it: it was past retention either way.

use std::{collections::BTreeMap, time::Duration};

use super::{Lake, LakeError, files::DataFile};
use crate::points::MS_PER_HOUR;

/// What a retention run deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Hour directories emptied, as `date=…/hour=…`.
    pub hours: Vec<String>,
    pub files: usize,
    pub bytes: u64,
}

/// Deletes the hour directories of `table` whose hour ended at least
/// `retention` before `now_ms`. Deletes are idempotent, so every ingest
/// member may run this over the whole table at once.
pub async fn expire(
    lake: &Lake,
    table: &str,
    retention: Duration,
    now_ms: i64,
) -> Result<RetentionReport, LakeError> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(retention_ms);
    let mut expired: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for (path, size) in lake.list(table).await? {
        let Some(dir) = hour_dir(table, &path) else {
            continue;
        };
        let Some(hour) = DataFile::hour_of_dir(dir) else {
            continue;
        };
        if (hour + 1).saturating_mul(MS_PER_HOUR) <= cutoff {
            expired
                .entry(dir.to_owned())
                .or_default()
                .push((path, size));
        }
    }
    let mut report = RetentionReport::default();
    for (dir, files) in expired {
        for (path, size) in files {
            lake.delete(&path).await?;
            report.files += 1;
            report.bytes += size;
        }
        lake.remove_empty_dirs(&dir).await?;
        report.hours.push(
            dir.strip_prefix(table)
                .map(|d| d.trim_start_matches('/'))
                .unwrap_or(&dir)
                .to_owned(),
        );
    }
    metrics::counter!("klaxon_lake_retention_deleted_files_total").increment(report.files as u64);
    Ok(report)
}

/// `table/date=…/hour=…` of a path inside it.
fn hour_dir<'a>(table: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(table)?.strip_prefix('/')?;
    let mut parts = rest.splitn(3, '/');
    let (date, hour) = (parts.next()?, parts.next()?);
    parts.next()?;
    if !date.starts_with("date=") || !hour.starts_with("hour=") {
        return None;
    }
    Some(&path[..table.len() + 1 + date.len() + 1 + hour.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::LakeConfig,
        lake::{
            layout::data_file,
            writer::{Encoding, encode_parquet},
        },
        points::PointBatchBuilder,
    };

    #[tokio::test]
    async fn hours_past_retention_go_and_nothing_newer_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            url: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let now_hour = 500_000;
        let mut b = PointBatchBuilder::default();
        b.push("x", 0, 1.0, &[] as &[(&str, &str)]);
        let bytes = encode_parquet(&b.finish().unwrap(), 10, Encoding::Fast).unwrap();
        // Hours 0..=5 before now, two files each.
        for back in 0..=5 {
            for first in [0, 10] {
                let path = data_file("m", 0, first, first + 9, now_hour - back);
                lake.put_durable(&path, bytes.clone()).await.unwrap();
            }
        }
        lake.put_durable("_klaxon/inflight/m/0.json", "{}".into())
            .await
            .unwrap();
        // Now is 30 minutes into `now_hour`; keep 3 hours. now_hour - 4
        // ended 3.5 h ago and goes; now_hour - 3 ended 2.5 h ago and still
        // holds rows younger than 3 h, so it stays.
        let now = now_hour * MS_PER_HOUR + 30 * 60_000;
        let report = expire(&lake, "metrics", Duration::from_secs(3 * 3600), now)
            .await
            .unwrap();
        assert_eq!(report.files, 4);
        assert_eq!(report.hours.len(), 2);
        let left: Vec<i64> = lake
            .list("metrics")
            .await
            .unwrap()
            .iter()
            .filter_map(|(p, s)| DataFile::parse(p, *s)?.hour())
            .collect();
        assert_eq!(left.len(), 8);
        assert!(left.iter().all(|h| *h >= now_hour - 3), "{left:?}");
        // The expired hours' directories are gone too; other objects stay.
        let expired_dir = data_file("m", 0, 0, 9, now_hour - 5);
        let expired_dir = expired_dir.rsplit_once('/').unwrap().0;
        assert!(!dir.path().join(expired_dir).exists());
        assert!(dir.path().join("_klaxon/inflight/m/0.json").exists());
        // Run again: nothing more to do.
        let again = expire(&lake, "metrics", Duration::from_secs(3 * 3600), now)
            .await
            .unwrap();
        assert_eq!(again, RetentionReport::default());
    }
}
