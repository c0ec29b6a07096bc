//! Reading the lake back: SQL through klaxon's own query engine and through
//! DuckDB (an independent reader of the files), the exactly-once assertion
//! every ingest test ends with, and the past points the lake tests age.

use std::{convert::Infallible, path::Path, process::Command, time::Duration};

use super::{produce_all, producer, run_ok, seq_records, test_python, write_config};

use klaxon::{config::LakeConfig, lake::Lake, query::QueryEngine};

/// Runs SQL over the lake with a fresh engine (files change between calls).
pub async fn query(lake: &Path, sql: &str) -> Vec<arrow::array::RecordBatch> {
    try_query(lake, sql).await.unwrap()
}

/// [`query`], its error returned: a file listed and then deleted before it
/// is read (the files of an interrupted flush, discarded by a restarted
/// member) fails that one query.
pub async fn try_query(
    lake: &Path,
    sql: &str,
) -> Result<Vec<arrow::array::RecordBatch>, klaxon::query::QueryError> {
    let lake = Lake::open(&LakeConfig {
        url: lake.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    QueryEngine::open(&lake).await?.sql(sql).await
}

/// (rows, distinct values) of `test.seq` in the lake.
pub async fn seq_counts(lake: &Path) -> (i64, i64) {
    try_seq_counts(lake).await.unwrap()
}

/// [`seq_counts`], or the query's error.
pub async fn try_seq_counts(lake: &Path) -> Result<(i64, i64), klaxon::query::QueryError> {
    use arrow::array::AsArray;
    let batches = try_query(
        lake,
        "SELECT count(*) AS n, count(DISTINCT value) AS d FROM metrics WHERE name = 'test.seq'",
    )
    .await?;
    let b = &batches[0];
    let n = b
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let d = b
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    Ok((n, d))
}

/// Waits until the lake holds `expected` rows of `test.seq`, then checks
/// each value is there exactly once, with klaxon's engine and with DuckDB,
/// which reads the files as they are.
pub async fn assert_exactly_once(lake: &Path, expected: i64) {
    assert_exactly_once_in_klaxon(lake, expected).await;
    assert_eq!(
        duckdb_seq_counts(lake),
        (expected, expected),
        "(rows, distinct values) as DuckDB reads the lake"
    );
}

/// [`assert_exactly_once`] by klaxon's engine alone: for a lake being
/// compacted, where covered files may stand for a while (and DuckDB would
/// count them).
pub async fn assert_exactly_once_in_klaxon(lake: &Path, expected: i64) {
    // Past the deadline, the assertion below says what the lake holds.
    let _ = klaxon::harness::poll_until(
        Duration::from_secs(120),
        Duration::from_millis(250),
        async || {
            // A query that lost a file to a discard is tried again.
            Ok::<_, Infallible>(
                lake.join("metrics").exists()
                    && try_seq_counts(lake).await.is_ok_and(|(n, _)| n >= expected),
            )
        },
    )
    .await;
    // Give a duplicate time to show up if one is coming.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rows, distinct) = seq_counts(lake).await;
    assert_eq!(
        (rows, distinct),
        (expected, expected),
        "(rows, distinct values) in the lake; expected every point exactly once"
    );
}

/// Points of `test.seq` the lake tests produce.
pub const POINTS: i64 = 12_000;

pub const HOUR_MS: i64 = 3_600_000;

/// `test.seq` points 0..POINTS spread evenly over the four hours from
/// `start`, 20 to a record.
pub fn past_points(start: i64) -> Vec<(String, String)> {
    seq_records(0, POINTS as u64, 20, |i, _| {
        start + (i as i64 * 4 * HOUR_MS) / POINTS
    })
}

/// (rows, distinct values) of `test.seq` as DuckDB reads the lake's files.
pub fn duckdb_seq_counts(lake: &std::path::Path) -> (i64, i64) {
    let script = format!(
        "import duckdb\n\
         n, d = duckdb.sql(\"\"\"SELECT count(*), count(DISTINCT value) \
         FROM read_parquet('{}/metrics/**/*.parquet', hive_partitioning=true, union_by_name=true) \
         WHERE name = 'test.seq'\"\"\").fetchall()[0]\n\
         print(n, d)\n",
        lake.display()
    );
    let out = run_ok(Command::new(test_python()).args(["-c", &script]));
    let mut numbers = out.split_whitespace().map(|n| n.parse().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

pub fn parquet_files(lake: &std::path::Path) -> usize {
    walkdir::WalkDir::new(lake.join("metrics"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .count()
}

/// `write_config` with flushes of 150 rows, so each hour and partition gets
/// many small files, and `extra`.
pub fn small_flush_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let config = write_config(dir, extra);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("flush_rows = 700", "flush_rows = 150");
    std::fs::write(&config, text).unwrap();
    config
}

/// Produces [`past_points`] over the four whole hours that ended 2-6 hours
/// ago; returns (now, the first hour's start) in epoch ms.
pub async fn produce_past_hours(brokers: &str) -> (i64, i64) {
    let now = chrono::Utc::now().timestamp_millis();
    let start = (now / HOUR_MS - 6) * HOUR_MS;
    produce_all(&producer(brokers), "metrics", &past_points(start)).await;
    (now, start)
}
