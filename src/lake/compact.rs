//! Compaction: merges the small files ingest writes into files of a target
//! size, one run of consecutive offsets of one topic partition in one hour
//! directory at a time, sorted as ingest sorts them.
//!
//! Safety rests on two facts, so compaction needs no lock and no log:
//! - only files below the group's committed offset are merged: ingest never
//!   rewrites those (a replay after a crash starts at the committed offset,
//!   and its orphans lie above it), and, the committed offsets being read
//!   before the listing, every such file is in the listing;
//! - the merged file is named after the whole offset range it covers and is
//!   durable before any input is deleted. From then on its inputs are
//!   *covered* ([`super::files`]): klaxon's readers skip them, and they are
//!   deleted after `grace` (by this pass, or by the next of any member or
//!   `klaxon compact`). A compaction killed at any moment therefore leaves
//!   every row readable exactly once.
//!
//! Two passes at once may choose runs that overlap without one containing
//! the other; each pass checks for that right after writing and withdraws
//! its own output (`check_no_partial_overlap`), while the inputs are still
//! there.

use std::{collections::HashMap, time::Duration};

use super::{
    Lake, LakeError, columns,
    files::{DataFile, list_data_files, split_covered},
    layout::{self, TABLE_DIR},
    merge::{MergedFile, merge_sorted},
    writer::Encoding,
};
use crate::points::{MS_PER_HOUR, base_fields};

/// How compaction chooses and writes.
#[derive(Debug, Clone)]
pub struct CompactionSettings {
    /// Inputs of one merged file add up to at most this many bytes; merging
    /// holds them and the (smaller) merged file in memory, plus each input's
    /// reader state and a bounded slice of rows ([`super::merge`]).
    pub target_file_size: u64,
    /// An hour is compacted once it ended this long ago, so the late points
    /// that still trickle in do not make every run rewrite it.
    pub settle: Duration,
    /// Rows per row group of merged files.
    pub row_group_rows: usize,
    /// How long a covered file stays after the file covering it was
    /// written: a query that listed it before still reads it.
    pub grace: Duration,
}

impl From<&crate::config::CompactionConfig> for CompactionSettings {
    fn from(c: &crate::config::CompactionConfig) -> Self {
        Self {
            target_file_size: c.target_file_size.as_u64(),
            settle: c.settle,
            row_group_rows: c.row_group_rows,
            grace: c.grace,
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Files merged into others.
    pub merged: usize,
    /// Merged files written.
    pub written: usize,
    /// Covered files deleted: inputs of this pass or of an earlier one
    /// that stopped early, once their grace period had passed.
    pub covered_deleted: usize,
    /// Covered files left for a later pass: their grace period runs.
    pub covered_waiting: usize,
    pub rows: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What a run will do, decided from the listing alone.
#[derive(Debug, Default)]
pub struct CompactionPlan {
    /// Covered files past their grace period: to delete.
    pub covered: Vec<DataFile>,
    /// Covered files still in their grace period.
    pub covered_waiting: usize,
    /// Each run becomes one file.
    pub runs: Vec<Vec<DataFile>>,
}

/// Chooses what to merge. `committed` holds each topic partition's committed
/// offset (the next one the group reads), read before `files` was listed; a
/// partition without one is left alone.
pub fn plan(
    files: Vec<DataFile>,
    committed: &HashMap<(String, i32), i64>,
    now_ms: i64,
    settings: &CompactionSettings,
) -> CompactionPlan {
    let (kept, all_covered) = split_covered(files);
    let (covered, waiting): (Vec<_>, Vec<_>) = all_covered
        .into_iter()
        .partition(|c| grace_passed(c.since_ms, now_ms, settings.grace));
    let covered = covered.into_iter().map(|c| c.file).collect();
    let settle_ms = i64::try_from(settings.settle.as_millis()).unwrap_or(i64::MAX);
    let mut groups: HashMap<(String, String, i32), Vec<DataFile>> = HashMap::new();
    for file in kept {
        let Some(&next) = committed.get(&(file.topic.clone(), file.partition)) else {
            continue;
        };
        let settled = file.hour().is_some_and(|h| {
            (h + 1)
                .saturating_mul(MS_PER_HOUR)
                .saturating_add(settle_ms)
                <= now_ms
        });
        if file.last_offset < next && settled {
            groups
                .entry((file.dir.clone(), file.topic.clone(), file.partition))
                .or_default()
                .push(file);
        }
    }
    let mut runs = Vec::new();
    for mut files in groups.into_values() {
        // Ranges in a group are disjoint once covered files are set aside,
        // so offset order is also the order of the ranges: a run of
        // neighbours covers no file outside it.
        files.sort_by_key(|f| f.first_offset);
        // Unless two passes raced (see `check_no_partial_overlap`) or a
        // topic was recreated with its offsets reset: then leave the group
        // alone rather than merge rows twice.
        if let Some(pair) = files.windows(2).find(|w| w[0].overlaps(&w[1])) {
            metrics::counter!("klaxon_lake_compaction_failures_total").increment(1);
            tracing::warn!(first = %pair[0].path, second = %pair[1].path,
                "two files of one partition overlap without one covering the other; not compacting them");
            continue;
        }
        let mut run: Vec<DataFile> = Vec::new();
        let mut run_bytes = 0;
        for file in files {
            if !run.is_empty() && run_bytes + file.size > settings.target_file_size {
                runs.push(std::mem::take(&mut run));
                run_bytes = 0;
            }
            run_bytes += file.size;
            run.push(file);
        }
        runs.push(run);
    }
    runs.retain(|run| run.len() > 1);
    runs.sort_by(|a, b| a[0].path.cmp(&b[0].path));
    CompactionPlan {
        covered,
        covered_waiting: waiting.len(),
        runs,
    }
}

/// Whether a file covered since `since_ms` may go. A zero grace deletes at
/// once (tests and one-off runs with no reader about).
fn grace_passed(since_ms: i64, now_ms: i64, grace: Duration) -> bool {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    grace.is_zero() || since_ms.saturating_add(grace_ms) <= now_ms
}

/// Lists the lake, deletes the covered files whose grace period has passed
/// and merges what [`plan`] chooses. A merged run's inputs are covered once
/// its output is durable; they are deleted after the grace period, at the
/// end of this pass (which waits for it) or, if it is stopped, by the next.
pub async fn compact(
    lake: &Lake,
    committed: &HashMap<(String, i32), i64>,
    now_ms: i64,
    settings: &CompactionSettings,
) -> Result<CompactionReport, LakeError> {
    let files = list_data_files(lake, TABLE_DIR).await?;
    let plan = plan(files, committed, now_ms, settings);
    let mut report = CompactionReport {
        covered_waiting: plan.covered_waiting,
        ..CompactionReport::default()
    };
    for file in &plan.covered {
        if delete_covered(lake, &file.path).await {
            report.covered_deleted += 1;
        }
    }
    let mut now_covered = Vec::new();
    for run in plan.runs {
        match merge_run(lake, &run, settings.row_group_rows).await {
            Ok(merged) => {
                report.merged += run.len();
                report.written += 1;
                report.rows += merged.rows;
                report.bytes_in += run.iter().map(|f| f.size).sum::<u64>();
                report.bytes_out += merged.bytes;
                metrics::counter!("klaxon_lake_compacted_files_total").increment(run.len() as u64);
                metrics::counter!("klaxon_lake_compaction_outputs_total").increment(1);
                now_covered.extend(run);
            }
            // One run failing (an input deleted by a concurrent run, a bad
            // file) leaves its inputs as they are; the others go on.
            Err(e) => {
                metrics::counter!("klaxon_lake_compaction_failures_total").increment(1);
                tracing::warn!(error = %e, first = %run[0].path, "compacting a run failed; its files stay");
            }
        }
    }
    if !now_covered.is_empty() {
        tokio::time::sleep(settings.grace).await;
    }
    for (i, file) in now_covered.iter().enumerate() {
        if delete_covered(lake, &file.path).await {
            report.covered_deleted += 1;
        }
        if i == 0 {
            crate::crash::point("compact.after_first_delete");
        }
    }
    Ok(report)
}

/// Deletes a covered file; one that will not go is counted and left to the
/// next pass (it is hidden from readers either way), and the pass goes on.
async fn delete_covered(lake: &Lake, path: &str) -> bool {
    match lake.delete(path).await {
        Ok(()) => true,
        Err(e) => {
            metrics::counter!("klaxon_lake_compaction_failures_total").increment(1);
            tracing::warn!(error = %e, path, "deleting a covered file failed; the next pass retries");
            false
        }
    }
}

struct Merged {
    rows: usize,
    bytes: u64,
}

/// Writes the run's rows as one file, durably: from then on the inputs are
/// covered.
async fn merge_run(
    lake: &Lake,
    run: &[DataFile],
    row_group_rows: usize,
) -> Result<Merged, LakeError> {
    let mut inputs = Vec::with_capacity(run.len());
    for file in run {
        let bytes = lake.get(&file.path).await?.ok_or_else(|| LakeError::Io {
            path: file.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone before it was merged"),
        })?;
        inputs.push(bytes);
    }
    let MergedFile {
        rows,
        schema,
        encoded,
    } = tokio::task::spawn_blocking(move || {
        merge_sorted(inputs, row_group_rows, Encoding::Compact)
    })
    .await
    .expect("compaction task panicked")?;
    let first = &run[0];
    let hour = first.hour().expect("planned files have an hour");
    let output = layout::data_file(
        &first.topic,
        first.partition,
        first.first_offset,
        run.iter()
            .map(|f| f.last_offset)
            .max()
            .expect("runs are not empty"),
        hour,
    );
    let bytes = encoded.len() as u64;
    // The inputs' columns, which their writers recorded; but an input may
    // predate the markers, and the merged file outlives it.
    columns::record(lake, TABLE_DIR, &base_fields(), &schema).await?;
    lake.put_durable(&output, encoded).await?;
    crate::crash::point("compact.after_output");
    check_no_partial_overlap(lake, &output).await?;
    Ok(Merged { rows, bytes })
}

/// Two passes at once (a member and `klaxon compact`, two members around a
/// rebalance, different target sizes) can choose runs that overlap without
/// one containing the other; neither output would then be covered, and the
/// shared rows would be read twice. So each pass lists the directory again
/// after writing and withdraws its own output if it overlaps another file
/// that way. Inputs are deleted only after the grace period, so they are
/// still there to read: whichever output survives, every row is once.
async fn check_no_partial_overlap(lake: &Lake, output: &str) -> Result<(), LakeError> {
    let mine = DataFile::parse(output, 0).expect("outputs are data files");
    let clash = lake
        .list(&mine.dir)
        .await?
        .into_iter()
        .filter_map(|(path, size)| DataFile::parse(&path, size))
        .find(|f| {
            f.topic == mine.topic
                && f.partition == mine.partition
                && f.overlaps(&mine)
                && !f.contains(&mine)
                && !mine.contains(f)
        });
    match clash {
        None => Ok(()),
        Some(other) => {
            lake.delete(output).await?;
            Err(LakeError::Io {
                path: output.to_owned(),
                source: std::io::Error::other(format!(
                    "withdrawn: overlaps {} of a concurrent compaction",
                    other.path
                )),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::{
        config::LakeConfig,
        lake::writer::{FlushRange, write_flush},
        points::PointBatchBuilder,
        points::sort_by_series,
        query::QueryEngine,
    };

    const HOUR: i64 = 490_000;

    fn settings() -> CompactionSettings {
        CompactionSettings {
            target_file_size: 1000,
            settle: Duration::from_secs(600),
            row_group_rows: 1024,
            grace: Duration::ZERO,
        }
    }

    fn file(partition: i32, first: i64, last: i64, size: u64) -> DataFile {
        DataFile::parse(&layout::data_file("m", partition, first, last, HOUR), size).unwrap()
    }

    fn committed(pairs: &[(i32, i64)]) -> HashMap<(String, i32), i64> {
        pairs
            .iter()
            .map(|&(p, o)| (("m".to_owned(), p), o))
            .collect()
    }

    fn paths(run: &[DataFile]) -> Vec<(i64, i64)> {
        run.iter()
            .map(|f| (f.first_offset, f.last_offset))
            .collect()
    }

    #[test]
    fn only_committed_settled_neighbours_are_merged_up_to_the_target_size() {
        let settled = (HOUR + 1) * MS_PER_HOUR + 600_000;
        let files = vec![
            file(0, 0, 9, 400),
            file(0, 10, 19, 400),
            file(0, 20, 29, 400), // would pass 1000 bytes: starts the next run
            file(0, 30, 39, 100),
            file(0, 40, 49, 100), // not committed yet
            file(1, 0, 9, 100),   // alone: nothing to merge with
            file(2, 0, 9, 100),   // partition without a committed offset
            file(2, 10, 19, 100),
        ];
        let plan = plan(
            files.clone(),
            &committed(&[(0, 40), (1, 100)]),
            settled,
            &settings(),
        );
        assert!(plan.covered.is_empty());
        let runs: Vec<_> = plan.runs.iter().map(|r| paths(r)).collect();
        assert_eq!(runs, vec![vec![(0, 9), (10, 19)], vec![(20, 29), (30, 39)]]);
        // A minute too early, the hour is left to settle.
        let early = plan_runs(files, settled - 60_000);
        assert!(early.is_empty(), "{early:?}");
    }

    #[test]
    fn covered_files_wait_out_the_grace_period_of_the_file_covering_them() {
        let written = (HOUR + 2) * MS_PER_HOUR;
        let mut merged = file(0, 0, 19, 800);
        merged.modified_ms = written;
        let files = vec![file(0, 0, 9, 400), file(0, 10, 19, 400), merged];
        let settings = CompactionSettings {
            grace: Duration::from_secs(60),
            ..settings()
        };
        let committed = committed(&[(0, 20)]);
        let soon = plan(files.clone(), &committed, written + 59_000, &settings);
        assert_eq!((soon.covered.len(), soon.covered_waiting), (0, 2));
        assert!(soon.runs.is_empty(), "covered files are never merged again");
        let later = plan(files, &committed, written + 60_000, &settings);
        assert_eq!((later.covered.len(), later.covered_waiting), (2, 0));
    }

    fn plan_runs(files: Vec<DataFile>, now: i64) -> Vec<Vec<(i64, i64)>> {
        plan(files, &committed(&[(0, 40), (1, 100)]), now, &settings())
            .runs
            .iter()
            .map(|r| paths(r))
            .collect()
    }

    fn lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            url: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        (dir, lake)
    }

    /// Three flushes of one hour with different tag keys, as ingest writes them.
    async fn three_flushes(lake: &Lake) {
        let t0 = HOUR * MS_PER_HOUR;
        for (flush, tags) in [[("host", "a")], [("dc", "x")], [("host", "b")]]
            .iter()
            .enumerate()
        {
            let mut b = PointBatchBuilder::default();
            for i in 0..100 {
                b.push("cpu", t0 + i * 1000 + flush as i64, i as f64, tags);
            }
            let range = FlushRange {
                table: crate::lake::layout::TABLE_DIR,
                topic: "m".into(),
                partition: 0,
                first_offset: flush as i64 * 10,
                last_offset: flush as i64 * 10 + 9,
            };
            write_flush(lake, &range, b.finish().unwrap(), 1024)
                .await
                .unwrap();
        }
    }

    async fn count(lake: &Lake, sql: &str) -> String {
        let engine = QueryEngine::open(lake).await.unwrap();
        let batches = engine.sql(sql).await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    const SUMMARY: &str = "SELECT count(*) AS n, count(host) AS hosts, count(dc) AS dcs, \
                           count(DISTINCT time) AS times FROM metrics";

    #[tokio::test]
    async fn merging_keeps_every_row_once_and_a_stopped_run_is_finished_by_the_next() {
        let (_dir, lake) = lake();
        three_flushes(&lake).await;
        let before = count(&lake, SUMMARY).await;
        assert!(before.contains("| 300 | 200   | 100 | 300   |"), "{before}");
        let now = (HOUR + 2) * MS_PER_HOUR;
        let settings = CompactionSettings {
            target_file_size: 1 << 30,
            ..settings()
        };
        let listed = lake.list(TABLE_DIR).await.unwrap();
        assert_eq!(listed.len(), 3);

        // A run stopped after writing its output, before deleting inputs:
        // queries still count each row once.
        let files: Vec<_> = listed
            .iter()
            .filter_map(|(p, s)| DataFile::parse(p, *s))
            .collect();
        let mut run = files.clone();
        run.sort_by_key(|f| f.first_offset);
        let inputs: Vec<Bytes> = {
            let mut v = Vec::new();
            for f in &run {
                v.push(lake.get(&f.path).await.unwrap().unwrap());
            }
            v
        };
        let merged = merge_sorted(inputs, 1024, Encoding::Compact).unwrap();
        let output = layout::data_file("m", 0, 0, 29, HOUR);
        lake.put_durable(&output, merged.encoded).await.unwrap();
        assert_eq!(lake.list(TABLE_DIR).await.unwrap().len(), 4);
        assert_eq!(count(&lake, SUMMARY).await, before);

        // The next run deletes the covered inputs and has nothing to merge.
        let report = compact(&lake, &committed(&[(0, 30)]), now, &settings)
            .await
            .unwrap();
        assert_eq!((report.covered_deleted, report.written), (3, 0));
        let left = lake.list(TABLE_DIR).await.unwrap();
        assert_eq!(
            left.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            vec![output.as_str()]
        );
        assert_eq!(count(&lake, SUMMARY).await, before);
    }

    #[tokio::test]
    async fn an_output_overlapping_a_concurrent_one_is_withdrawn_and_its_inputs_stay() {
        let (_dir, lake) = lake();
        three_flushes(&lake).await;
        // Another pass merged 10-29 (and 30-39, not here) meanwhile: a run of
        // 0-19 would share 10-19 with it without either containing the other.
        let theirs = layout::data_file("m", 0, 10, 39, HOUR);
        lake.put_durable(&theirs, Bytes::from_static(b"x"))
            .await
            .unwrap();
        let mine = layout::data_file("m", 0, 0, 19, HOUR);
        lake.put_durable(&mine, Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert!(check_no_partial_overlap(&lake, &mine).await.is_err());
        let left: Vec<String> = lake
            .list(TABLE_DIR)
            .await
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert!(!left.contains(&mine), "{left:?}");
        assert_eq!(left.len(), 4, "the three inputs and theirs: {left:?}");
        // A file inside another's range, or holding it, is no clash.
        assert!(check_no_partial_overlap(&lake, &theirs).await.is_ok());
    }

    #[tokio::test]
    async fn a_run_merges_sorted_with_every_tag_column() {
        let (dir, lake) = lake();
        three_flushes(&lake).await;
        let before = count(&lake, SUMMARY).await;
        let now = (HOUR + 2) * MS_PER_HOUR;
        let settings = CompactionSettings {
            target_file_size: 1 << 30,
            ..settings()
        };
        let report = compact(&lake, &committed(&[(0, 30)]), now, &settings)
            .await
            .unwrap();
        assert_eq!((report.merged, report.written, report.rows), (3, 1, 300));
        let left = lake.list(TABLE_DIR).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, layout::data_file("m", 0, 0, 29, HOUR));
        assert_eq!(count(&lake, SUMMARY).await, before);
        // Sorted as ingest sorts: name, tags in key order (dc, host), time.
        let file = std::fs::File::open(dir.path().join(&left[0].0)).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["time", "name", "value", "dc", "host"]);
        assert_eq!(&sort_by_series(&batch).unwrap(), &batch);
        // Nothing left to do.
        let again = compact(&lake, &committed(&[(0, 30)]), now, &settings)
            .await
            .unwrap();
        assert_eq!(again, CompactionReport::default());
    }
}
