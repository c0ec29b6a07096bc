//! `klaxon query` over a drained lake, run as a user runs it: a new process
//! per query, so the figures include opening the lake and planning.

use std::{path::Path, time::Instant};

use arrow::array::{Array, TimestampMillisecondArray};
use serde::Serialize;

use super::{BenchEnv, BenchError, median, sql_over_lake};

/// Each query runs this many times; the median is reported.
const RUNS: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct QueryTiming {
    pub name: String,
    pub sql: String,
    pub rows: usize,
    pub median_ms: f64,
    pub min_ms: f64,
}

/// Times the typical analytics queries over the lake at `lake`.
pub(crate) async fn time_queries(
    env: &BenchEnv,
    lake: &Path,
) -> Result<Vec<QueryTiming>, BenchError> {
    let (start, end) = time_range(lake).await?;
    // The later half of the data: the time predicate has something to prune.
    let middle = start + (end - start) / 2;
    let queries = [
        (
            "time-range aggregate",
            format!(
                "SELECT name, count(*) AS points, avg(value) AS mean, max(value) AS peak \
                 FROM metrics WHERE time >= {} AND time <= {} GROUP BY name ORDER BY name",
                timestamp(middle),
                timestamp(end)
            ),
        ),
        (
            "top-k by tag",
            "SELECT host, max(value) AS peak FROM metrics \
             GROUP BY host ORDER BY peak DESC, host LIMIT 10"
                .to_owned(),
        ),
        (
            "percentile",
            "SELECT service, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY value) AS p99 \
             FROM metrics GROUP BY service ORDER BY service"
                .to_owned(),
        ),
    ];
    let mut timings = Vec::new();
    for (name, sql) in queries {
        let mut runs = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let output = tokio::process::Command::new(std::env::current_exe()?)
                .arg("--lake")
                .arg(lake)
                .args(["query", "--format", "csv", &sql])
                .current_dir(&env.work)
                .output()
                .await?;
            runs.push(started.elapsed().as_secs_f64() * 1e3);
            if !output.status.success() {
                return Err(BenchError::Wrong(format!(
                    "klaxon query {sql:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                )));
            }
            // CSV with a header line.
            rows = output
                .stdout
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                .saturating_sub(1);
        }
        if rows == 0 {
            return Err(BenchError::Wrong(format!("{name}: no rows from {sql:?}")));
        }
        timings.push(QueryTiming {
            name: name.to_owned(),
            sql,
            rows,
            min_ms: runs.iter().copied().fold(f64::INFINITY, f64::min),
            median_ms: median(runs),
        });
    }
    Ok(timings)
}

/// The earliest and latest point time in the lake, in milliseconds.
async fn time_range(dir: &Path) -> Result<(i64, i64), BenchError> {
    let batches = sql_over_lake(dir, "SELECT min(time), max(time) FROM metrics").await?;
    let column = |i: usize| {
        batches
            .first()
            .and_then(|b| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
            })
            .filter(|a| !a.is_empty() && a.is_valid(0))
            .map(|a| a.value(0))
    };
    match (column(0), column(1)) {
        (Some(start), Some(end)) => Ok((start, end)),
        _ => Err(BenchError::Wrong("the lake has no points to query".into())),
    }
}

/// A SQL timestamp literal for `ms`, which DataFusion and DuckDB read alike.
pub(super) fn timestamp(ms: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!("TIMESTAMP '{}'", at.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}
