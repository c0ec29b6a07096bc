//! Reading the lake back: SQL through klaxon's own query engine, and the
//! exactly-once assertion every ingest test ends with.

use std::{convert::Infallible, path::Path, time::Duration};

use klaxon::{config::LakeConfig, lake::Lake, query::QueryEngine};

/// Runs SQL over the lake with a fresh engine (files change between calls).
pub async fn query(lake: &Path, sql: &str) -> Vec<arrow::array::RecordBatch> {
    let lake = Lake::open(&LakeConfig {
        url: lake.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    QueryEngine::open(&lake)
        .await
        .unwrap()
        .sql(sql)
        .await
        .unwrap()
}

/// (rows, distinct values) of `test.seq` in the lake.
pub async fn seq_counts(lake: &Path) -> (i64, i64) {
    use arrow::array::AsArray;
    let batches = query(
        lake,
        "SELECT count(*) AS n, count(DISTINCT value) AS d FROM metrics WHERE name = 'test.seq'",
    )
    .await;
    let b = &batches[0];
    let n = b
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let d = b
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    (n, d)
}

/// Waits until the lake holds `expected` rows of `test.seq`, then checks
/// each value is there exactly once.
pub async fn assert_exactly_once(lake: &Path, expected: i64) {
    // Past the deadline, the assertion below says what the lake holds.
    let _ = klaxon::harness::poll_until(
        Duration::from_secs(120),
        Duration::from_millis(250),
        async || {
            Ok::<_, Infallible>(
                lake.join("metrics").exists() && seq_counts(lake).await.0 >= expected,
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
