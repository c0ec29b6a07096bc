//! `klaxon bench` end to end at a tiny scale: every part runs and its JSON
//! has the figures a reader of the README would compare. The figures
//! themselves are not asserted (speed is for the benchmark, not for tests);
//! what is asserted is what makes them meaningful: every point reached the
//! lake once, every breaching series paged.

mod common;

use std::process::Command;

use common::{KLAXON, test_dir, test_python};
use serde_json::Value;

#[test]
fn bench_runs_every_part_and_writes_its_figures_as_json() {
    let dir = test_dir();
    let json = dir.path().join("bench.json");
    let output = Command::new(KLAXON)
        .args([
            "bench",
            "--points",
            "3000",
            "--series",
            "70",
            "--formats",
            "json,graphite,influx",
            "--latency-series",
            "200",
            "--windows",
            "2",
            "--alerts-per-window",
            "3",
            "--window",
            "5s",
            // Two lakes of a day (24 and 192 files), the second compacted to
            // one file per hour and partition, and a two-day lake.
            "--scaling-files",
            "24,192",
            "--scaling-days",
            "2",
            "--scaling-runs",
            "1",
            "--json",
        ])
        .env("KLAXON_BENCH_PYTHON", test_python())
        .arg(&json)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();

    let drains = report["drains"].as_array().unwrap();
    let formats: Vec<&str> = drains
        .iter()
        .map(|d| d["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["json", "graphite", "influx"]);
    for d in drains {
        assert_eq!(d["points"], 3000, "{d}");
        // 100 points per record: 30 records, all read back by the bare consumer.
        assert_eq!(d["records"], 30, "{d}");
        assert_eq!(d["raw"]["records"], 30, "{d}");
        assert!(d["lake_bytes"].as_u64().unwrap() > 0, "{d}");
        assert!(d["peak_rss_bytes"].as_u64().unwrap() > 0, "{d}");
        assert!(d["cpu_secs"].as_f64().unwrap() > 0.0, "{d}");
        // The bench recounts the compacted copy and fails unless it holds
        // every point once. (At this size ingest writes one file per
        // partition and hour, which compaction has nothing to merge in.)
        let compacted = d["compacted_files"].as_u64().unwrap();
        assert!(
            compacted > 0 && compacted <= d["lake_files"].as_u64().unwrap(),
            "{d}"
        );
        assert!(
            d["compacted_bytes_per_point"].as_f64().unwrap() > 0.0,
            "{d}"
        );
    }
    // The hand-written Python consumer read the JSON backlog beside ingest
    // (the bench fails unless it wrote every point), and only that one.
    let python = &drains[0]["python"];
    assert!(python["missing"].is_null(), "{python}");
    assert!(
        python["points_per_cpu_sec"].as_f64().unwrap() > 0.0,
        "{python}"
    );
    assert!(python["klaxon_ratio"].as_f64().unwrap() > 0.0, "{python}");
    assert!(drains[1]["python"].is_null() && drains[2]["python"].is_null());
    assert!(stdout.contains("hand-written Python consumer"), "{stdout}");

    // Each lake-scaling query ran in both engines, whose answers the bench
    // compares before it reports a time.
    let scaling = &report["scaling"];
    assert!(scaling["duckdb_missing"].is_null(), "{scaling}");
    let lakes: Vec<(&str, &str, u64, u64)> = scaling["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            assert!(q["duckdb_median_ms"].as_f64().unwrap() > 0.0, "{q}");
            assert!(q["klaxon_median_ms"].as_f64().unwrap() > 0.0, "{q}");
            (
                q["lake"].as_str().unwrap(),
                q["query"].as_str().unwrap(),
                q["files"].as_u64().unwrap(),
                q["points"].as_u64().unwrap(),
            )
        })
        .collect();
    let (day, hour) = ("whole day by name", "one hour by name");
    let (one_day, two_days) = (
        "1 day, one file per hour and partition",
        "2 days, one file per hour and partition",
    );
    assert_eq!(
        lakes,
        [
            ("1 day, 24 files", day, 24, 3000),
            ("1 day, 24 files", hour, 24, 3000),
            ("1 day, 192 files", day, 192, 3000),
            ("1 day, 192 files", hour, 192, 3000),
            ("the same, compacted", day, 96, 3000),
            ("the same, compacted", hour, 96, 3000),
            (one_day, hour, 96, 300),
            (two_days, hour, 192, 600),
        ]
    );

    let queries = report["queries"].as_array().unwrap();
    let rows: Vec<(&str, u64)> = queries
        .iter()
        .map(|q| (q["name"].as_str().unwrap(), q["rows"].as_u64().unwrap()))
        .collect();
    // synthetic points: 4 metric names, 70 hosts (top 10), 50 services.
    assert_eq!(
        rows,
        [
            ("time-range aggregate", 4),
            ("top-k by tag", 10),
            ("percentile", 50)
        ]
    );

    let latency = report["latency"].as_array().unwrap();
    assert_eq!(latency.len(), 1);
    assert_eq!(latency[0]["series"], 200);
    assert_eq!(latency[0]["alerts"], 6);
    let (to_paging, to_webhook) = (&latency[0]["to_paging_ms"], &latency[0]["to_webhook_ms"]);
    // The webhook hears of an alert after it is on paging.
    assert!(
        to_webhook["p50"].as_f64().unwrap() >= to_paging["p50"].as_f64().unwrap(),
        "{}",
        latency[0]
    );

    // The table has a row for each of them.
    for needle in [
        "ingest influx",
        "transport ceiling",
        "query: percentile",
        "alert latency (200 series, 6 alerts)",
        "lake: the same, compacted (96 files, 3,000 points)",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from\n{stdout}");
    }
}
