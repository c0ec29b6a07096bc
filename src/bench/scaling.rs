//! Query speed as the lake grows, klaxon beside DuckDB on the same files.
//!
//! The same points are written in klaxon's layout, schema and encoding
//! (sorted per file as ingest sorts a flush) as about 100, 10,000 and
//! 100,000 files over one day (a slice of time that straddles an hour is
//! two files, as a flush's would be), the file counts a few minutes, a day
//! and ten days of default flushing leave; the most fragmented lake is then
//! compacted by klaxon's compactor. A one-hour query then runs over a 1-day and a 30-day
//! lake of one file per hour and partition (what compaction leaves), to show
//! whether pruning keeps it independent of the lake's age.
//!
//! Both engines run each query in a new session (klaxon in this process,
//! DuckDB in a Python process the bench starts), so listing the lake,
//! reading file footers and planning count, and process start-up does not.
//! Their answers are compared before a time is reported.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use arrow::{
    array::{AsArray, RecordBatch},
    compute::cast,
    datatypes::{DataType, Float64Type, Int64Type, Schema, SchemaRef},
};
use serde::Serialize;

use super::{BenchError, compact_all, lake_in, median, queries::timestamp, sql_over_lake};
use crate::{
    lake::{
        columns,
        layout::{TABLE_DIR, data_file},
        writer::{Encoding, encode_parquet},
    },
    points::{MS_PER_HOUR, PointBatchBuilder, base_fields, sort_by_series, split_by_hour},
    produce::synthetic_series,
};

const DAY_MS: i64 = 24 * MS_PER_HOUR;
const PARTITIONS: i32 = 4;
const TOPIC: &str = "metrics";
const WHOLE_DAY: &str = "whole day by name";

/// What the lake-scaling section builds and runs.
#[derive(Debug, Clone)]
pub struct ScalingOptions {
    /// Points of the one-day lakes.
    pub points: u64,
    pub series: u64,
    /// File counts of the one-day lakes.
    pub file_counts: Vec<usize>,
    /// Age of the long lake, in days.
    pub days: u32,
    /// Runs per query and engine; the median is reported.
    pub runs: usize,
    /// A Python with the `duckdb` package (`scripts/bench` installs one).
    pub python: PathBuf,
}

/// One query over one lake, in both engines.
#[derive(Debug, Clone, Serialize)]
pub struct ScaledQuery {
    pub lake: String,
    pub files: usize,
    pub points: u64,
    pub query: String,
    pub sql: String,
    pub klaxon_median_ms: f64,
    /// `None` when DuckDB could not be run (the reason is in the report).
    pub duckdb_median_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LakeScaling {
    pub queries: Vec<ScaledQuery>,
    /// How long klaxon's compactor took over the most fragmented lake.
    pub compaction_secs: Option<f64>,
    /// Why DuckDB's column is empty, when it is.
    pub duckdb_missing: Option<String>,
}

/// Builds the lakes under `work` and times the queries over each.
pub(crate) async fn measure(
    work: &Path,
    options: &ScalingOptions,
) -> Result<LakeScaling, BenchError> {
    let root = work.join("scaling");
    // The day before today, so every hour has ended and compaction takes it.
    let today = crate::clock::now_ms().div_euclid(DAY_MS) * DAY_MS;
    let hour = today - DAY_MS + 12 * MS_PER_HOUR;
    let by_name = |filter: &str| {
        format!(
            "SELECT name, count(*) AS points, avg(value) AS mean FROM metrics{filter} \
             GROUP BY name ORDER BY name"
        )
    };
    let one_hour = by_name(&format!(
        " WHERE time >= {} AND time < {}",
        timestamp(hour),
        timestamp(hour + MS_PER_HOUR)
    ));
    let queries = [
        (WHOLE_DAY, by_name("")),
        ("one hour by name", one_hour.clone()),
    ];
    let mut engines = Engines {
        duckdb: Some(options.python.clone()),
        runs: options.runs,
        report: LakeScaling::default(),
    };
    let mut most_fragmented = None;
    for &files in &options.file_counts {
        let dir = root.join(format!("day-{files}-files"));
        eprintln!(
            "lake scaling: writing {} points as {files} files...",
            options.points
        );
        let written = write_lake(
            &dir,
            today - DAY_MS,
            1,
            options.points,
            options.series,
            files,
        )
        .await?;
        let lake = ScaledLake {
            name: format!("1 day, {written} files"),
            dir: &dir,
            files: written,
            points: options.points,
        };
        for (query, sql) in &queries {
            engines.time(&lake, query, sql).await?;
        }
        most_fragmented = Some(dir.clone());
    }
    if let Some(dir) = most_fragmented {
        eprintln!("lake scaling: compacting {}...", dir.display());
        let started = Instant::now();
        let files = compact_all(&dir, crate::clock::now_ms()).await?;
        engines.report.compaction_secs = Some(started.elapsed().as_secs_f64());
        let lake = ScaledLake {
            name: "the same, compacted".to_owned(),
            dir: &dir,
            files,
            points: options.points,
        };
        for (query, sql) in &queries {
            engines.time(&lake, query, sql).await?;
        }
    }
    // One file per hour and partition, as compaction leaves them, with a
    // tenth of the day's points so that a month stays small to write.
    let per_day = (options.points / 10).max(1);
    let hourly = 24 * PARTITIONS as usize;
    let mut ages = vec![1, options.days];
    ages.dedup();
    for days in ages {
        let dir = root.join(format!("{days}-days"));
        eprintln!("lake scaling: writing {days} days of {per_day} points a day...");
        let points = per_day * u64::from(days);
        let first_day = today - i64::from(days) * DAY_MS;
        let files = write_lake(
            &dir,
            first_day,
            days,
            points,
            options.series,
            hourly * days as usize,
        )
        .await?;
        let name = format!(
            "{days} day{}, one file per hour and partition",
            if days == 1 { "" } else { "s" }
        );
        let lake = ScaledLake {
            name,
            dir: &dir,
            files,
            points,
        };
        engines.time(&lake, "one hour by name", &one_hour).await?;
    }
    Ok(engines.report)
}

/// One of the lakes the section builds.
struct ScaledLake<'a> {
    name: String,
    dir: &'a Path,
    files: usize,
    points: u64,
}

/// Runs queries in both engines and collects the figures.
struct Engines {
    /// DuckDB's Python, until it turns out not to run.
    duckdb: Option<PathBuf>,
    runs: usize,
    report: LakeScaling,
}

impl Engines {
    /// Times `sql` in both engines over `lake`; the answers must agree.
    async fn time(
        &mut self,
        lake: &ScaledLake<'_>,
        query: &str,
        sql: &str,
    ) -> Result<(), BenchError> {
        eprintln!("lake scaling: {query} over {}...", lake.name);
        let (ours, klaxon_median_ms) = time_klaxon(lake.dir, sql, self.runs).await?;
        let counted: i64 = ours.iter().map(|row| row.1).sum();
        if query == WHOLE_DAY && counted != lake.points as i64 {
            return Err(BenchError::Wrong(format!(
                "klaxon counts {counted} points in {}, which holds {}",
                lake.name, lake.points
            )));
        }
        let mut duckdb_median_ms = None;
        if let Some(python) = &self.duckdb {
            match time_duckdb(python, lake.dir, sql, self.runs).await? {
                Ok((theirs, ms)) => {
                    if !same_answer(&ours, &theirs) {
                        return Err(BenchError::Wrong(format!(
                            "klaxon and DuckDB disagree on {sql:?} over {}: {ours:?} against {theirs:?}",
                            lake.name
                        )));
                    }
                    duckdb_median_ms = Some(ms);
                }
                Err(reason) => {
                    eprintln!("lake scaling: DuckDB not run: {reason}");
                    self.report.duckdb_missing = Some(reason);
                    self.duckdb = None;
                }
            }
        }
        self.report.queries.push(ScaledQuery {
            lake: lake.name.clone(),
            files: lake.files,
            points: lake.points,
            query: query.to_owned(),
            sql: sql.to_owned(),
            klaxon_median_ms,
            duckdb_median_ms,
        });
        Ok(())
    }
}

/// A query's answer: per metric name, the count and the mean.
type Answer = Vec<(String, i64, f64)>;

/// Whether two engines' answers agree: names and counts exactly, means to
/// within rounding (the engines sum in different orders).
fn same_answer(a: &Answer, b: &Answer) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0 && x.1 == y.1 && (x.2 - y.2).abs() <= 1e-9 * x.2.abs().max(1.0)
        })
}

/// klaxon's answer and the median time of `runs` runs, each opening the
/// lake in a new session.
async fn time_klaxon(dir: &Path, sql: &str, runs: usize) -> Result<(Answer, f64), BenchError> {
    let mut times = Vec::with_capacity(runs);
    let mut answer = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let batches = sql_over_lake(dir, sql).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        answer = name_count_mean(&batches)?;
    }
    Ok((answer, median(times)))
}

fn name_count_mean(batches: &[RecordBatch]) -> Result<Answer, BenchError> {
    let mut rows = Vec::new();
    for batch in batches {
        let column = |i: usize, to: &DataType| {
            cast(batch.column(i), to)
                .map_err(|e| BenchError::Wrong(format!("casting result column {i}: {e}")))
        };
        let (names, counts, means) = (
            column(0, &DataType::Utf8)?,
            column(1, &DataType::Int64)?,
            column(2, &DataType::Float64)?,
        );
        let (names, counts, means) = (
            names.as_string::<i32>(),
            counts.as_primitive::<Int64Type>(),
            means.as_primitive::<Float64Type>(),
        );
        for i in 0..batch.num_rows() {
            rows.push((names.value(i).to_owned(), counts.value(i), means.value(i)));
        }
    }
    Ok(rows)
}

/// DuckDB's answer and median time. `Ok(None)` says why DuckDB could not
/// be run at all (no such Python, no `duckdb` package); a run that fails
/// otherwise fails the bench.
async fn time_duckdb(
    python: &Path,
    dir: &Path,
    sql: &str,
    runs: usize,
) -> Result<Result<(Answer, f64), String>, BenchError> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/duckdb_queries.py");
    let child = tokio::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .arg(runs.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return Ok(Err(format!(
                "starting {}: {e} (scripts/bench installs a Python with DuckDB)",
                python.display()
            )));
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let queries = serde_json::to_vec(&[sql]).expect("a list of strings serialises");
        stdin.write_all(&queries).await?;
    }
    let output = child.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("No module named 'duckdb'") {
            return Ok(Err(format!(
                "{} has no duckdb package (scripts/bench installs one)",
                python.display()
            )));
        }
        return Err(BenchError::Wrong(format!(
            "DuckDB's {script} failed: {}",
            stderr.trim()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Timed {
        rows: Answer,
        times_ms: Vec<f64>,
    }
    let mut timed: Vec<Timed> = serde_json::from_slice(&output.stdout)
        .map_err(|e| BenchError::Wrong(format!("DuckDB's output: {e}")))?;
    let timed = timed
        .pop()
        .ok_or_else(|| BenchError::Wrong("DuckDB answered nothing".into()))?;
    Ok(Ok((timed.rows, median(timed.times_ms))))
}

/// Writes `points` points of `series` series, spread evenly over `days` days
/// from `start_ms`, as about `files` files of consecutive points, each
/// sorted and encoded as ingest writes a flush, over [`PARTITIONS`]
/// partitions in turn, and records their columns as ingest and a first
/// query would ([`crate::lake::columns`]). Returns the number of files
/// written.
async fn write_lake(
    dir: &Path,
    start_ms: i64,
    days: u32,
    points: u64,
    series: u64,
    files: usize,
) -> Result<usize, BenchError> {
    let (written, schema) = write_files(dir, start_ms, days, points, series, files)?;
    let fixed = base_fields();
    columns::backfill(&lake_in(dir)?, TABLE_DIR, &fixed, &schema).await?;
    Ok(written)
}

/// [`write_lake`]'s files; returns their count and the columns of the last.
fn write_files(
    dir: &Path,
    start_ms: i64,
    days: u32,
    points: u64,
    series: u64,
    files: usize,
) -> Result<(usize, SchemaRef), BenchError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let span_ms = i64::from(days) * DAY_MS;
    let files = files.max(1) as i128;
    let row_group_rows = crate::config::IngestConfig::default().row_group_rows;
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let mut builder = PointBatchBuilder::default();
    let mut written = 0;
    let mut schema = Arc::new(Schema::new(base_fields()));
    let mut first = 0u64;
    while first < points {
        // File `chunk` holds the points of the `chunk`th equal slice of the
        // span, so with a file count that is a multiple of the span's hours
        // no file straddles an hour.
        let time = |i: u64| start_ms + (i as i128 * span_ms as i128 / points as i128) as i64;
        let chunk = ((time(first) - start_ms) as i128 * files / span_ms as i128) as u64;
        let mut last = first;
        while last < points
            && ((time(last) - start_ms) as i128 * files / span_ms as i128) as u64 == chunk
        {
            let (name, value, service, host) = synthetic_series(last, series);
            // The tags `klaxon produce` gives the same point.
            let (service, host) = (format!("svc-{service}"), format!("host-{host}"));
            // Three decimals, as `klaxon produce` writes values.
            let value = (value * 1000.0).round() / 1000.0;
            builder.push(
                name,
                time(last),
                value,
                &[("service", service), ("host", host)],
            );
            last += 1;
        }
        let partition = (chunk % PARTITIONS as u64) as i32;
        let batch = builder.finish().map_err(arrow_error)?;
        schema = batch.schema();
        for (hour, part) in split_by_hour(&batch).map_err(arrow_error)? {
            let sorted = sort_by_series(&part).map_err(arrow_error)?;
            let offset = next_offset.entry(partition).or_insert(0);
            let rows = sorted.num_rows() as i64;
            let path = dir.join(data_file(
                TOPIC,
                partition,
                *offset,
                *offset + rows - 1,
                hour,
            ));
            *offset += rows;
            let bytes = encode_parquet(&sorted, row_group_rows, Encoding::Fast)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
            written += 1;
        }
        first = last;
    }
    Ok((written, schema))
}

fn arrow_error(e: arrow::error::ArrowError) -> BenchError {
    BenchError::Wrong(format!("building the bench's points: {e}"))
}
