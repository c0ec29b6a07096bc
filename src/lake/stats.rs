//! `klaxon lake stats`: files, rows and bytes per day, so a user sees what
//! ingest, compaction and retention did. Rows are those a query reads.

use std::collections::BTreeMap;

use super::{
    Lake, LakeError,
    files::{list_data_files, split_covered},
};

/// One day of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayStats {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Files whose footer could not be read (not counted above).
    pub unreadable: usize,
}

impl DayStats {
    /// Bytes on storage per point (row); `None` for an empty day.
    pub fn bytes_per_point(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.bytes as f64 / self.rows as f64)
    }
}

/// Every day of `table`, oldest first. Rows come from each file's Parquet
/// footer: one ranged read per file, no data read.
pub async fn day_stats(lake: &Lake, table: &str) -> Result<Vec<DayStats>, LakeError> {
    let mut days: BTreeMap<String, DayStats> = BTreeMap::new();
    let files = list_data_files(lake, table).await?;
    // Covered files (inputs of a compaction that stopped before deleting
    // them) hold rows of another file: readers skip them, and so do stats.
    let (readable, _covered) = split_covered(files);
    for file in readable {
        let (path, size) = (&file.path, file.size);
        let Some(date) = file.dir.split("/date=").nth(1).and_then(|d| d.get(..10)) else {
            continue;
        };
        let day = days.entry(date.to_owned()).or_insert_with(|| DayStats {
            date: date.to_owned(),
            ..DayStats::default()
        });
        // A corrupt file is reported, not allowed to hide every other day;
        // the store failing is an error.
        let rows = match lake.parquet_rows(path, size).await {
            Ok(rows) => rows,
            Err(LakeError::Parquet(e)) => {
                tracing::warn!(error = %e, "a data file's footer is unreadable");
                day.unreadable += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        day.files += 1;
        day.rows += rows;
        day.bytes += size;
    }
    Ok(days.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::LakeConfig,
        lake::writer::{FlushRange, write_flush},
        points::{MS_PER_HOUR, PointBatchBuilder},
    };

    #[tokio::test]
    async fn days_count_their_files_rows_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            url: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        // 2026-01-01T23:00Z and the next hour, which is the next day.
        let t = 1_767_308_400_000;
        let mut b = PointBatchBuilder::default();
        for i in 0..30 {
            b.push("x", t + i * 200_000, i as f64, &[("h", "a")]);
        }
        let range = FlushRange {
            table: crate::lake::layout::TABLE_DIR,
            topic: "m".into(),
            partition: 0,
            first_offset: 0,
            last_offset: 29,
        };
        let out = write_flush(&lake, &range, b.finish().unwrap(), 100)
            .await
            .unwrap();
        assert_eq!(out.files.len(), 2);
        let days = day_stats(&lake, "metrics").await.unwrap();
        let summary: Vec<_> = days
            .iter()
            .map(|d| (d.date.as_str(), d.files, d.rows))
            .collect();
        // 18 points in 23:00-24:00 (every 200 s), 12 after midnight.
        assert_eq!(summary, [("2026-01-01", 1, 18), ("2026-01-02", 1, 12)]);
        assert_eq!(days.iter().map(|d| d.bytes).sum::<u64>(), out.bytes as u64);
        assert!(days[0].bytes_per_point().unwrap() > 0.0);
        assert_eq!(t % MS_PER_HOUR, 0);

        // A corrupt file is counted as unreadable; the other days stand.
        let garbage = crate::lake::layout::data_file("m", 1, 0, 9, t / MS_PER_HOUR);
        lake.put_durable(&garbage, "not parquet".into())
            .await
            .unwrap();
        let days = day_stats(&lake, "metrics").await.unwrap();
        let summary: Vec<_> = days
            .iter()
            .map(|d| (d.date.as_str(), d.files, d.rows, d.unreadable))
            .collect();
        assert_eq!(
            summary,
            [("2026-01-01", 1, 18, 1), ("2026-01-02", 1, 12, 0)]
        );
    }
}
