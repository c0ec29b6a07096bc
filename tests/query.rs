//! `klaxon query` over a lake: output formats, time pruning, DuckDB reading
//! the same files.

mod common;

use std::{path::Path, process::Command};

use common::{KLAXON, run};
use klaxon::{
    config::LakeConfig,
    lake::{
        Lake,
        writer::{FlushRange, write_flush},
    },
    points::{MS_PER_HOUR, PointBatchBuilder},
};

/// 2026-11-24T10:00:00Z.
const T0: i64 = 1_795_514_400_000;

/// Writes 6 points over two hours: cpu for hosts a and b, and one mem point.
async fn write_lake(dir: &Path) -> Lake {
    let lake = Lake::open(&LakeConfig {
        url: dir.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let mut b = PointBatchBuilder::default();
    b.push("cpu", T0, 1.0, &[("host", "a")]);
    b.push("cpu", T0 + 60_000, 2.0, &[("host", "a")]);
    b.push("cpu", T0 + MS_PER_HOUR, 3.0, &[("host", "a")]);
    b.push("cpu", T0, 10.0, &[("host", "b")]);
    b.push("cpu", T0 + MS_PER_HOUR + 5, 20.0, &[("host", "b")]);
    b.push("mem", T0 + 30_000, 0.5, &[("zone", "z1")]);
    let range = FlushRange {
        table: klaxon::lake::layout::TABLE_DIR,
        topic: "metrics".into(),
        partition: 0,
        first_offset: 0,
        last_offset: 5,
    };
    write_flush(&lake, &range, b.finish().unwrap(), 1024)
        .await
        .unwrap();
    lake
}

fn klaxon_query(lake: &Path, args: &[&str]) -> (bool, String, String) {
    run(Command::new(KLAXON)
        .arg("query")
        .arg("--lake")
        .arg(lake)
        .args(args))
}

#[tokio::test]
async fn aligned_table_csv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path()).await;
    let sql = "SELECT host, count(*) AS n, sum(value) AS total FROM metrics \
               WHERE name = 'cpu' GROUP BY host ORDER BY host";

    let (ok, table, err) = klaxon_query(dir.path(), &[sql]);
    assert!(ok, "{err}");
    assert_eq!(
        table,
        "\
+------+---+-------+
| host | n | total |
+------+---+-------+
| a    | 3 | 6.0   |
| b    | 2 | 30.0  |
+------+---+-------+
"
    );

    let (ok, csv, err) = klaxon_query(dir.path(), &["--format", "csv", sql]);
    assert!(ok, "{err}");
    assert_eq!(csv, "host,n,total\na,3,6.0\nb,2,30.0\n");

    let (ok, json, err) = klaxon_query(
        dir.path(),
        &[
            "--format",
            "json",
            "SELECT time, name, value, zone FROM metrics WHERE name = 'mem'",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        json,
        "{\"time\":\"2026-11-24T10:00:30Z\",\"name\":\"mem\",\"value\":0.5,\"zone\":\"z1\"}\n"
    );
}

#[tokio::test]
async fn parquet_output_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path()).await;
    let out = dir.path().join("out.parquet");
    let (ok, _, err) = klaxon_query(
        dir.path(),
        &[
            "--format",
            "parquet",
            "--output",
            out.to_str().unwrap(),
            "SELECT * FROM metrics",
        ],
    );
    assert!(ok, "{err}");
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 6);

    let (ok, _, err) = klaxon_query(dir.path(), &["--format", "parquet", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("--output"), "{err}");
}

#[tokio::test]
async fn time_predicates_prune_whole_hours() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path()).await;
    // A corrupt file in a later hour: any query that opens it fails.
    let junk = dir.path().join("metrics/date=2026-11-24/hour=15");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("junk.parquet"), b"not parquet at all").unwrap();

    let (ok, out, err) = klaxon_query(
        dir.path(),
        &["SELECT count(*) AS n FROM metrics \
           WHERE time >= '2026-11-24T10:00:00Z' AND time < '2026-11-24T11:00:00Z'"],
    );
    assert!(ok, "the time filter should have skipped hour 15: {err}");
    assert!(out.contains("| 4 |"), "{out}");

    let (ok, _, _) = klaxon_query(dir.path(), &["SELECT count(*) FROM metrics"]);
    assert!(
        !ok,
        "without a time filter the corrupt file is read, so pruning is what saved the query above"
    );
}

#[tokio::test]
async fn bad_sql_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path()).await;
    let (ok, _, err) = klaxon_query(dir.path(), &["SELECT nope FROM metrics"]);
    assert!(!ok);
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test]
async fn duckdb_reads_the_lake_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path()).await;
    let script = format!(
        "import duckdb\n\
         rows = duckdb.sql(\"\"\"SELECT name, host, count(*), sum(value), min(time)::VARCHAR, max(date), max(hour) \
         FROM read_parquet('{}/metrics/**/*.parquet', hive_partitioning=true) \
         GROUP BY ALL ORDER BY ALL\"\"\").fetchall()\n\
         for r in rows: print('|'.join(str(c) for c in r))\n",
        dir.path().display()
    );
    let text = common::run_ok(Command::new(common::test_python()).args(["-c", &script]));
    assert_eq!(
        text,
        "cpu|a|3|6.0|2026-11-24 10:00:00+00|2026-11-24|11\n\
         cpu|b|2|30.0|2026-11-24 10:00:00+00|2026-11-24|11\n\
         mem|None|1|0.5|2026-11-24 10:00:30+00|2026-11-24|10\n"
    );
}
