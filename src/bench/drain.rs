//! Ingest draining a pre-filled backlog into the lake, and the transport's
//! ceiling: a bare consumer reading the same topic.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use arrow::array::{Array, Int64Array};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde::Serialize;

use super::{
    BenchEnv, BenchError, BenchOptions,
    child::{Child, Usage, free_port, scrape, wait_until, wait_until_every},
    compact_all, lake_in, sql_over_lake,
};
use crate::{
    config::SourceConfig,
    decode::Format,
    kafka::prefetch_limits,
    kafka::{Role, client_config},
    lake::{
        files::{list_data_files, split_covered},
        layout::TABLE_DIR,
    },
    produce::{ProduceOptions, produce},
};

/// One format's drain, and the bare consumer on the same topic.
#[derive(Debug, Clone, Serialize)]
pub struct DrainResult {
    pub format: String,
    pub points: u64,
    pub series: u64,
    pub records: u64,
    pub input_bytes: u64,
    /// How fast the backlog was produced, for context.
    pub produce_points_per_sec: f64,
    /// From ingest's first point to its last row written to the lake.
    pub drain_secs: f64,
    pub points_per_sec: f64,
    pub input_mb_per_sec: f64,
    /// User + system time of the ingest process while it drained.
    pub cpu_secs: f64,
    pub points_per_cpu_sec: f64,
    pub cores_used: f64,
    pub peak_rss_bytes: u64,
    pub memory_budget_bytes: u64,
    /// The embedded broker's CPU time over the same interval, when it runs.
    pub broker_cpu_secs: Option<f64>,
    pub lake_files: usize,
    pub lake_bytes: u64,
    pub lake_bytes_per_point: f64,
    /// Files and bytes per point once a copy of the lake is compacted.
    pub compacted_files: usize,
    pub compacted_bytes_per_point: f64,
    pub raw: RawConsume,
    /// Ingest's points/s over the bare consumer's.
    pub fraction_of_ceiling: f64,
    /// The hand-written Python consumer over the same backlog (JSON only).
    pub python: Option<PythonBaseline>,
}

/// `benches/python_consumer.py` over the same backlog: confluent-kafka,
/// `json.loads`, pyarrow, a Parquet file per 100,000 points.
#[derive(Debug, Clone, Serialize)]
pub struct PythonBaseline {
    /// `None` when it could not run; the reason is in `missing`.
    pub points_per_cpu_sec: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub wall_secs: Option<f64>,
    /// klaxon's points per CPU-second over Python's.
    pub klaxon_ratio: Option<f64>,
    pub missing: Option<String>,
}

/// The bare consumer's reading of the same topic.
#[derive(Debug, Clone, Serialize)]
pub struct RawConsume {
    pub records: u64,
    pub bytes: u64,
    pub secs: f64,
    pub points_per_sec: f64,
    pub mb_per_sec: f64,
    pub cpu_secs: f64,
}

/// Pre-fills a topic with `options.points` points in `format`, drains it
/// with `klaxon ingest`, checks the lake, and reads the topic bare.
pub(crate) async fn drain(
    env: &mut BenchEnv,
    options: &BenchOptions,
    format: Format,
) -> Result<(DrainResult, PathBuf), BenchError> {
    let label = format!("{format:?}").to_lowercase();
    let topic = env.name(&label);
    env.create_topic(&topic).await?;
    let produced = produce(
        &env.kafka,
        ProduceOptions {
            brokers: env.brokers.clone(),
            topic: topic.clone(),
            format,
            rate: None,
            series: options.series,
            count: Some(options.points),
            duration: None,
            points_per_record: options.points_per_record,
            // One point per series a second, so that no two points are alike.
            backlog_every: Some(Duration::from_secs(1)),
            progress: false,
        },
    )
    .await?;
    if produced.failed_records > 0 {
        return Err(BenchError::Wrong(format!(
            "{} records of the backlog were not delivered",
            produced.failed_records
        )));
    }

    let lake = env.work.join(format!("lake-{label}"));
    let port = free_port()?;
    let mut config = env.config();
    config.topics.dead_letter = env.name("dlq");
    config.sources = vec![SourceConfig {
        topic: topic.clone(),
        format,
    }];
    config.ingest.group_id = env.name(&format!("ingest-{label}"));
    config.ingest.memory_budget = options.memory_budget;
    // Short, so the last partial buffers reach the lake soon after the backlog ends.
    config.ingest.flush_interval = Duration::from_secs(1);
    config.lake.url = lake.display().to_string();
    config.http.listen = format!("127.0.0.1:{port}");
    let config = env.write_config(&format!("ingest-{label}.toml"), &config)?;
    let config = config.display().to_string();
    let mut ingest = Child::spawn(
        &format!("ingest-{label}"),
        &env.work,
        &["--config", &config, "ingest"],
    )?;

    let http = env.http.clone();
    let generous = Duration::from_secs(120 + options.points / 20_000);
    wait_until(
        "ingest's first point",
        generous,
        &mut [&mut ingest],
        || async { scrape(&http, port, "klaxon_ingest_points_total").await > 0.0 },
    )
    .await?;
    let started = Instant::now();
    let (ingest_start, broker_start) = (ingest.usage()?, broker_usage(env)?);
    let target = options.points as f64;
    // Polled four times a second, not twenty: each scrape renders ingest's
    // `/metrics`, and at 20 a second that rendering was a tenth of the CPU
    // this measures (a Prometheus server scrapes every 15 s or so). The
    // drain's end is known to within 250 ms, about 1% of a 2M-point drain.
    wait_until_every(
        "ingest to write every point to the lake",
        generous,
        Duration::from_millis(250),
        &mut [&mut ingest],
        || async { scrape(&http, port, "klaxon_lake_rows_written_total").await >= target },
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let (ingest_end, broker_end) = (ingest.usage()?, broker_usage(env)?);
    drop(ingest);

    // Every generated point differs from the others in series or time, so
    // a duplicate shows as rows > distinct rows.
    let (in_lake, distinct) = count_points(&lake).await?;
    if (in_lake, distinct) != (options.points, options.points) {
        return Err(BenchError::Wrong(format!(
            "the {label} lake holds {in_lake} points, {distinct} distinct; {} were produced",
            options.points
        )));
    }
    let (lake_files, lake_bytes) = parquet_files(&lake.join("metrics"))?;
    let (compacted_files, compacted_bytes) = compacted_copy(&lake, options.points, &label).await?;
    let raw = raw_consume(env, &topic, options, produced.records).await?;

    let cpu = (ingest_end.cpu - ingest_start.cpu).as_secs_f64();
    let points = options.points as f64;
    let python = match format {
        Format::Json => Some(
            match python_consume(env, &topic, options, &env.work.join("lake-python")).await? {
                Ok((python_cpu, wall)) => PythonBaseline {
                    points_per_cpu_sec: Some(points / python_cpu.max(1e-3)),
                    cpu_secs: Some(python_cpu),
                    wall_secs: Some(wall),
                    klaxon_ratio: Some(python_cpu / cpu.max(1e-3)),
                    missing: None,
                },
                Err(reason) => {
                    eprintln!("bench: the Python baseline did not run: {reason}");
                    PythonBaseline {
                        points_per_cpu_sec: None,
                        cpu_secs: None,
                        wall_secs: None,
                        klaxon_ratio: None,
                        missing: Some(reason),
                    }
                }
            },
        ),
        _ => None,
    };
    let points_per_sec = points / secs;
    let raw_points_per_sec = raw.points_per_sec;
    Ok((
        DrainResult {
            format: label,
            points: options.points,
            series: options.series,
            records: produced.records,
            input_bytes: produced.bytes,
            produce_points_per_sec: points / produced.elapsed.as_secs_f64(),
            drain_secs: secs,
            points_per_sec,
            input_mb_per_sec: produced.bytes as f64 / secs / 1e6,
            cpu_secs: cpu,
            points_per_cpu_sec: points / cpu.max(1e-3),
            cores_used: cpu / secs,
            peak_rss_bytes: ingest_end.peak_rss_bytes,
            memory_budget_bytes: options.memory_budget.as_u64(),
            broker_cpu_secs: broker_start
                .zip(broker_end)
                .map(|(a, b)| (b.cpu - a.cpu).as_secs_f64()),
            lake_files,
            lake_bytes,
            lake_bytes_per_point: lake_bytes as f64 / points,
            compacted_files,
            compacted_bytes_per_point: compacted_bytes as f64 / points,
            fraction_of_ceiling: points_per_sec / raw_points_per_sec,
            raw,
            python,
        },
        lake,
    ))
}

fn broker_usage(env: &BenchEnv) -> Result<Option<Usage>, BenchError> {
    env.broker.as_ref().map(Child::usage).transpose()
}

/// (rows, distinct rows) over the lake at `dir`.
async fn count_points(dir: &Path) -> Result<(u64, u64), BenchError> {
    let batches = sql_over_lake(
        dir,
        "SELECT (SELECT count(*) FROM metrics) AS n, (SELECT count(*) FROM (SELECT DISTINCT * FROM metrics)) AS d",
    )
    .await?;
    let value = |column: usize| {
        batches
            .first()
            .and_then(|b| b.column(column).as_any().downcast_ref::<Int64Array>())
            .filter(|a| !a.is_empty())
            .map_or(0, |a| a.value(0)) as u64
    };
    Ok((value(0), value(1)))
}

/// Compacts a copy of the drained lake (every hour counted as ended) and
/// checks it still holds every point once: (files, bytes) afterwards.
async fn compacted_copy(lake: &Path, points: u64, label: &str) -> Result<(usize, u64), BenchError> {
    let copy = lake.with_extension("compacted");
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    // The files a reader sees: a copy gives every file a new modification
    // time, which would end the grace of a file already merged away.
    let (readable, _merged_away) =
        split_covered(list_data_files(&lake_in(lake)?, TABLE_DIR).await?);
    for file in readable {
        let to = copy.join(&file.path);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(lake.join(&file.path), to)?;
    }
    let files = compact_all(&copy, i64::MAX / 2).await?;
    let (rows, distinct) = count_points(&copy).await?;
    if (rows, distinct) != (points, points) {
        return Err(BenchError::Wrong(format!(
            "the compacted {label} lake holds {rows} points, {distinct} distinct; {points} were produced"
        )));
    }
    Ok((files, parquet_files(&copy.join("metrics"))?.1))
}

/// How many Parquet files there are under `dir`, and their bytes.
fn parquet_files(dir: &Path) -> Result<(usize, u64), BenchError> {
    let (mut files, mut bytes) = (0, 0);
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(std::io::Error::from)?;
        if entry.path().extension().is_some_and(|e| e == "parquet") {
            files += 1;
            bytes += entry.metadata().map_err(std::io::Error::from)?.len();
        }
    }
    Ok((files, bytes))
}

/// Runs the hand-written Python consumer over `topic` into `out`: its
/// (CPU seconds, wall seconds) from its first record, `Err` with the reason
/// when this Python lacks its packages. It must write every point.
async fn python_consume(
    env: &BenchEnv,
    topic: &str,
    options: &BenchOptions,
    out: &Path,
) -> Result<Result<(f64, f64), String>, BenchError> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_consumer.py");
    let run = tokio::process::Command::new(&options.python)
        .arg(script)
        .arg(&env.brokers)
        .arg(topic)
        .arg(env.name("python"))
        .arg(options.points.to_string())
        .arg(out)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let generous = Duration::from_secs(300 + options.points / 10_000);
    let output = match tokio::time::timeout(generous, run).await {
        Err(_) => {
            return Err(BenchError::Wrong(format!(
                "the Python consumer did not finish in {generous:?}"
            )));
        }
        Ok(Err(e)) => {
            return Ok(Err(format!(
                "starting {}: {e} (scripts/bench installs a Python with confluent-kafka and pyarrow)",
                options.python.display()
            )));
        }
        Ok(Ok(output)) => output,
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("No module named") {
            return Ok(Err(format!(
                "{} lacks confluent-kafka or pyarrow (scripts/bench installs them)",
                options.python.display()
            )));
        }
        return Err(BenchError::Wrong(format!(
            "the Python consumer failed: {}",
            stderr.trim()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Figures {
        points: u64,
        cpu_secs: f64,
        wall_secs: f64,
    }
    let figures: Figures = serde_json::from_slice(&output.stdout)
        .map_err(|e| BenchError::Wrong(format!("the Python consumer's output: {e}")))?;
    if figures.points != options.points {
        return Err(BenchError::Wrong(format!(
            "the Python consumer wrote {} points of {}",
            figures.points, options.points
        )));
    }
    Ok(Ok((figures.cpu_secs, figures.wall_secs)))
}

/// Reads every record of `topic` with a bare consumer (prefetch as ingest
/// configures it, no decoding, no writing), timed from its first record.
async fn raw_consume(
    env: &BenchEnv,
    topic: &str,
    options: &BenchOptions,
    expected_records: u64,
) -> Result<RawConsume, BenchError> {
    let mut settings = vec![
        ("group.id", env.name("raw")),
        ("enable.auto.commit", "false".to_owned()),
    ];
    settings.extend(prefetch_limits(options.memory_budget.as_u64() as usize));
    let consumer: BaseConsumer =
        client_config(&env.kafka, &env.brokers, Role::Tool(&settings)).create()?;
    let (topic, partitions) = (topic.to_owned(), env.partitions);
    let points_per_record = options.points as f64 / expected_records.max(1) as f64;
    tokio::task::spawn_blocking(move || {
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let (mut records, mut bytes) = (0u64, 0u64);
        let mut first: Option<(Instant, Usage)> = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while records < expected_records {
            if Instant::now() > deadline {
                return Err(BenchError::Wrong(format!(
                    "the bare consumer read {records} of {expected_records} records in 10 minutes"
                )));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    if first.is_none() {
                        first = Some((Instant::now(), Usage::own()?));
                    }
                    records += 1;
                    bytes += message.payload_len() as u64;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "bare consumer"),
                None => {}
            }
        }
        let (started, usage) = first.unwrap_or((Instant::now(), Usage::own()?));
        let secs = started.elapsed().as_secs_f64();
        Ok(RawConsume {
            records,
            bytes,
            secs,
            points_per_sec: records as f64 * points_per_record / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
            cpu_secs: (Usage::own()?.cpu - usage.cpu).as_secs_f64(),
        })
    })
    .await
    .expect("the bare consumer does not panic")
}
