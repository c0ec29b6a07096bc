//! Which data file holds which records, and which files another one makes
//! redundant.
//!
//! A data file `{dir}/{topic}-{partition}-{first}-{last}.parquet` holds the
//! rows of records `first..=last` of that topic partition whose time falls in
//! the hour of `{dir}`: ingest writes one per flush and hour, compaction one
//! per merged run. Within a directory, two files of one partition either hold
//! disjoint offset ranges or one's range contains the other's, and then the
//! larger holds every row of the smaller (it was merged from it). So a file
//! whose range lies inside another's is *covered*: readers skip it and the
//! compactor deletes it. That one rule makes a compaction that stopped
//! between writing its output and deleting its inputs harmless, without any
//! log or rename.

use std::collections::HashMap;

use super::{Lake, LakeError, layout::TABLE_DIR};

/// A data file of the `metrics` table, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Path relative to the lake root.
    pub path: String,
    /// The hour directory, `metrics/date=…/hour=…`.
    pub dir: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub size: u64,
    /// When it was written (epoch ms), where the listing said; else 0.
    pub modified_ms: i64,
}

impl DataFile {
    /// Reads a data file's coordinates from its relative path; `None` for
    /// anything else (temporary files, markers, foreign files).
    pub fn parse(path: &str, size: u64) -> Option<Self> {
        let (dir, name) = path.rsplit_once('/')?;
        if !dir.starts_with(TABLE_DIR) || !dir.contains("/date=") || !dir.contains("/hour=") {
            return None;
        }
        let stem = name.strip_suffix(".parquet")?;
        // The topic may itself contain '-': take the numbers from the right.
        let mut parts = stem.rsplitn(4, '-');
        let last_offset = parts.next()?.parse().ok()?;
        let first_offset = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let topic = parts.next().filter(|t| !t.is_empty())?;
        Some(DataFile {
            path: path.to_owned(),
            dir: dir.to_owned(),
            topic: topic.to_owned(),
            partition,
            first_offset,
            last_offset,
            size,
            modified_ms: 0,
        })
    }

    /// The hour of the directory, in hours since the epoch.
    pub fn hour(&self) -> Option<i64> {
        Self::hour_of_dir(&self.dir)
    }

    /// The hour of a `…/date=YYYY-MM-DD/hour=HH` directory.
    pub fn hour_of_dir(dir: &str) -> Option<i64> {
        let date = dir.split("/date=").nth(1)?.get(..10)?;
        let hour: u32 = dir.split("/hour=").nth(1)?.parse().ok()?;
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let start = day.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_millis();
        Some(start.div_euclid(crate::points::MS_PER_HOUR))
    }

    /// Whether the two offset ranges share an offset.
    pub fn overlaps(&self, other: &DataFile) -> bool {
        self.first_offset <= other.last_offset && other.first_offset <= self.last_offset
    }

    /// Whether `other`'s offset range lies inside this one's.
    pub fn contains(&self, other: &DataFile) -> bool {
        self.first_offset <= other.first_offset && other.last_offset <= self.last_offset
    }

    fn group(&self) -> (&str, &str, i32) {
        (&self.dir, &self.topic, self.partition)
    }
}

/// The data files under `relative`, each with the time the store says it
/// was written (which decides what covers what).
pub async fn list_data_files(lake: &Lake, relative: &str) -> Result<Vec<DataFile>, LakeError> {
    Ok(lake
        .list_with_times(relative)
        .await?
        .into_iter()
        .filter_map(|(path, size, modified_ms)| {
            let mut file = DataFile::parse(&path, size)?;
            file.modified_ms = modified_ms;
            Some(file)
        })
        .collect())
}

/// A file another one covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub file: DataFile,
    /// When the file covering it was written (epoch ms): from then on new
    /// listings skip this one, so it may be deleted once every reader that
    /// listed it before has had time to finish.
    pub since_ms: i64,
}

/// Splits `files` into those a reader should read and those another file
/// covers (see the module docs), keeping their order within each part.
pub fn split_covered(files: Vec<DataFile>) -> (Vec<DataFile>, Vec<Covered>) {
    let mut by_group: HashMap<(String, String, i32), Vec<usize>> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        let (dir, topic, partition) = f.group();
        by_group
            .entry((dir.to_owned(), topic.to_owned(), partition))
            .or_default()
            .push(i);
    }
    // For each covered file, the index of the file covering it.
    let mut covered: Vec<Option<usize>> = vec![None; files.len()];
    for mut members in by_group.into_values() {
        // Widest first among equal starts: each file is then covered exactly
        // when an earlier one reaches at least as far.
        members.sort_by_key(|&i| {
            (
                files[i].first_offset,
                std::cmp::Reverse(files[i].last_offset),
            )
        });
        let mut reach: Option<usize> = None;
        for i in members {
            match reach {
                // A merged file is written after its inputs. A file inside
                // an older one's range is not one of its inputs (a topic
                // recreated, offsets reset): it stays readable.
                // Sorted by start, `r` starts no later than `i`.
                Some(r)
                    if files[r].contains(&files[i])
                        && files[r].modified_ms >= files[i].modified_ms =>
                {
                    covered[i] = Some(r)
                }
                Some(r) if files[r].contains(&files[i]) => {}
                _ => reach = Some(i),
            }
        }
    }
    let since: Vec<Option<i64>> = covered
        .iter()
        .map(|c| c.map(|r| files[r].modified_ms))
        .collect();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for (file, since) in files.into_iter().zip(since) {
        match since {
            Some(since_ms) => dropped.push(Covered { file, since_ms }),
            None => kept.push(file),
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::layout::data_file;

    fn file(topic: &str, partition: i32, first: i64, last: i64, hour: i64) -> DataFile {
        DataFile::parse(&data_file(topic, partition, first, last, hour), 1).unwrap()
    }

    #[test]
    fn names_are_read_back_even_with_dashes_in_the_topic() {
        let hour = 1_764_000_000_000 / crate::points::MS_PER_HOUR;
        let f = file("app-metrics-eu", 3, 100, 199, hour);
        assert_eq!(
            (f.topic.as_str(), f.partition, f.first_offset, f.last_offset),
            ("app-metrics-eu", 3, 100, 199)
        );
        assert_eq!(f.dir, "metrics/date=2025-11-24/hour=16");
        assert_eq!(f.hour(), Some(hour));
        for other in [
            "metrics/date=2025-11-24/hour=16/.x.parquet.tmp-1",
            "metrics/date=2025-11-24/hour=16/notes.parquet",
            "_klaxon/inflight/metrics/0.json",
            "metrics/x-00001-1-2.parquet",
        ] {
            assert_eq!(DataFile::parse(other, 1), None, "{other}");
        }
    }

    #[test]
    fn a_file_written_after_the_one_whose_range_holds_it_is_not_covered() {
        // A topic recreated with its offsets reset writes 0-99 where an
        // old merged 0-199 lies: the new rows are not in the old file.
        let mut old = file("m", 0, 0, 199, 10);
        old.modified_ms = 1_000;
        let mut new = file("m", 0, 0, 99, 10);
        new.modified_ms = 2_000;
        let (kept, covered) = split_covered(vec![old.clone(), new.clone()]);
        assert_eq!((kept, covered), (vec![old, new], vec![]));
    }

    #[test]
    fn a_file_inside_another_files_range_is_covered_only_in_its_own_group() {
        let files = vec![
            file("m", 0, 0, 99, 10),
            file("m", 0, 100, 199, 10),
            file("m", 0, 0, 199, 10),   // merged from the two above
            file("m", 0, 200, 299, 10), // newer, not merged yet
            file("m", 1, 0, 99, 10),    // another partition
            file("m", 0, 50, 60, 11),   // another hour
        ];
        let (kept, covered) = split_covered(files.clone());
        let covered: Vec<DataFile> = covered.into_iter().map(|c| c.file).collect();
        assert_eq!(covered, vec![files[0].clone(), files[1].clone()]);
        assert_eq!(
            kept,
            vec![
                files[2].clone(),
                files[3].clone(),
                files[4].clone(),
                files[5].clone()
            ]
        );
    }
}
