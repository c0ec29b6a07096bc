//! The lake as it ages: compaction through a real broker while queries run,
//! killed at its named crash points, then retention and `klaxon lake stats`.
//! Every step is checked with DuckDB, which reads the files as they are.

mod common;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn compaction_killed_at_each_crash_point_leaves_every_row_once() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    // Tiny flushes: many small files per hour and partition.
    let config = small_flush_config(
        dir.path(),
        "[lake.compaction]\nsettle = \"0s\"\ninterval = \"1h\"\ngrace = \"2s\"\n",
    );
    let lake = dir.path().join("lake");
    let mut ingest = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "ingest");
    ingest.wait_for_log("ingest started").await;
    let (now, start) = produce_past_hours(&broker.bootstrap()).await;
    assert_exactly_once(&lake, POINTS).await;
    // Stopped cleanly, ingest has committed everything it wrote.
    assert!(ingest.terminate().success());
    assert_eq!(duckdb_seq_counts(&lake), (POINTS, POINTS));
    let before = parquet_files(&lake);
    assert!(before >= 40, "only {before} files: nothing to compact");

    // Queries run all along and must count every row once.
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (lake, stop, queries) = (lake.clone(), Arc::clone(&stop), Arc::clone(&queries));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let counts = seq_counts(&lake).await;
                assert_eq!(counts, (POINTS, POINTS), "a query during compaction");
                queries.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let compact = |crash_at: Option<&str>| {
        let mut command = Command::new(KLAXON);
        command.args([
            "--config",
            config.to_str().unwrap(),
            "--brokers",
            &broker.bootstrap(),
            "compact",
            "--lake",
            lake.to_str().unwrap(),
        ]);
        if let Some(point) = crash_at {
            command.env("KLAXON_CRASH_AT", point);
        }
        command.output().unwrap()
    };
    for point in ["compact.after_output", "compact.after_first_delete"] {
        let out = compact(Some(point));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&format!("crash point {point}")),
            "{point}: {stderr}"
        );
        // Output written, inputs (some) still there: DuckDB, which reads
        // every file, would double count; klaxon's readers do not.
        assert_eq!(seq_counts(&lake).await, (POINTS, POINTS), "after {point}");
    }
    // A clean run finishes what the killed ones left: their covered inputs
    // are deleted (the recovery path) once their grace period is over.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let out = compact(None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let covered: usize = stdout
        .split("deleted ")
        .nth(1)
        .and_then(|s| s.split(" covered").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no covered count in {stdout}"));
    assert!(covered >= 1, "{stdout}");
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(queries.load(Ordering::Relaxed) >= 3);

    assert_eq!(duckdb_seq_counts(&lake), (POINTS, POINTS));
    let after = parquet_files(&lake);
    // At most one file per hour (5 hour directories at most) and partition.
    assert!(after <= 5 * 4, "{before} files became {after}");
    // Nothing left to do.
    let again = compact(None);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("merged 0 files"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(parquet_files(&lake), after);

    // Stats see the same rows.
    let stats = || {
        run_ok(Command::new(KLAXON).args([
            "--config",
            config.to_str().unwrap(),
            "lake",
            "stats",
            "--lake",
            lake.to_str().unwrap(),
        ]))
    };
    let rows = |stats: &str| -> u64 {
        stats
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
            .sum()
    };
    let table = stats();
    assert_eq!(rows(&table), POINTS as u64, "{table}");

    // A retention that puts the cutoff half an hour into the last of the
    // four hours (whatever the clock says when the test runs): the three
    // hours before it go, the last one, holding points 9,000 and up, stays.
    let retention_s = (now - (start + 3 * HOUR_MS + HOUR_MS / 2)) / 1000;
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[lake.compaction]",
        &format!("[lake]\nretention = \"{retention_s}s\"\n\n[lake.compaction]"),
    );
    std::fs::write(&config, text).unwrap();
    let out = compact(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = POINTS / 4;
    assert_eq!(duckdb_seq_counts(&lake), (kept, kept));
    assert_eq!(seq_counts(&lake).await, (kept, kept));
    let script = format!(
        "import duckdb\n\
         print(duckdb.sql(\"\"\"SELECT min(value) FROM read_parquet('{}/metrics/**/*.parquet')\"\"\").fetchall()[0][0])\n",
        lake.display()
    );
    let min = run_ok(Command::new(test_python()).args(["-c", &script]));
    assert_eq!(min.trim(), format!("{}.0", POINTS - kept));
    let table = stats();
    assert_eq!(rows(&table), kept as u64, "{table}");
}

/// Without `klaxon compact`: a running ingest member compacts the hours of
/// the partitions it owns, and the lake stays exactly-once for DuckDB too
/// once the grace period has passed.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_member_compacts_what_it_owns_while_it_runs() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let config = small_flush_config(
        dir.path(),
        "[lake.compaction]\nsettle = \"0s\"\ninterval = \"1s\"\ngrace = \"1s\"\n",
    );
    let lake = dir.path().join("lake");
    let mut ingest = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "ingest");
    ingest.wait_for_log("ingest started").await;
    produce_past_hours(&broker.bootstrap()).await;
    assert_exactly_once_in_klaxon(&lake, POINTS).await;
    // Four hours, four partitions: one merged file each, plus at most a
    // partition's last flush that no pass has merged yet, and at that moment
    // no covered file for DuckDB to count twice. (A pass that starts after
    // it covers files for its grace period, so DuckDB is checked only here.)
    let compacted = klaxon::harness::poll_until(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        async || {
            Ok::<_, std::convert::Infallible>(
                parquet_files(&lake) <= 5 * 4 && duckdb_seq_counts(&lake) == (POINTS, POINTS),
            )
        },
    )
    .await
    .unwrap();
    assert!(compacted, "{} files after a minute", parquet_files(&lake));
    assert_eq!(seq_counts(&lake).await, (POINTS, POINTS));
    let merged = metric_value(
        &http_get(&ingest, "/metrics"),
        "klaxon_lake_compacted_files_total",
    );
    assert!(merged.is_some_and(|n| n > 0.0), "{merged:?}");
    assert!(ingest.terminate().success());
}
