//! Ingest killed at each named point of its write-then-commit protocol
//! (`KLAXON_CRASH_AT`, see `klaxon::crash`): the restarted member reads every
//! point exactly once (klaxon and DuckDB), and the recovery path the point
//! needs is the one that ran.
//!
//! Every record holds points of two hours, so every flush writes its
//! in-flight marker and then two data files: arrival 1 of a write point is
//! the marker, 2 the first data file.

mod common;

use std::{collections::BTreeSet, path::Path};

use common::*;

const POINTS: u64 = 3000;

/// Records of 20 points each: ten in the hour before last, ten in the last
/// hour (whole hours, so no record reaches into a third).
fn two_hour_records(first: u64) -> Vec<(String, String)> {
    let hour = 3_600_000;
    let last_hour = (chrono::Utc::now().timestamp_millis() / hour - 1) * hour;
    seq_records(first, POINTS, 20, |i, k| {
        let start = if k < 10 { last_hour - hour } else { last_hour };
        start + i as i64
    })
}

/// The lake's data files, by path.
fn data_files(lake: &Path) -> BTreeSet<String> {
    files_where(lake, |name| name.ends_with(".parquet"))
}

/// Files a write killed before its rename left.
fn temporaries(lake: &Path) -> BTreeSet<String> {
    files_where(lake, |name| name.starts_with('.') && name.contains(".tmp-"))
}

fn files_where(lake: &Path, keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    walkdir::WalkDir::new(lake)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && keep(&e.file_name().to_string_lossy()))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// A broker, a config and a lake, and an ingest member that was killed at
/// `point` while writing [`two_hour_records`].
struct Crashed {
    dir: tempfile::TempDir,
    broker: Broker,
    config: std::path::PathBuf,
    lake: std::path::PathBuf,
    log: String,
}

/// Compaction off: it would merge the files each test looks for.
const NO_COMPACTION: &str = "[lake.compaction]\nenabled = false\n";

async fn crash_at(point: &str) -> Crashed {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    // The crashed member flushes on size alone (35 records of 20 points),
    // the restarted one every 15 records: the replay cannot rewrite the
    // crashed flush's files under the same names, so only their deletion
    // keeps the lake exactly once.
    let crashing = flushing_config(dir.path(), "crashing.toml", NO_COMPACTION, 700, "10m");
    let config = flushing_config(dir.path(), "restarted.toml", NO_COMPACTION, 300, "300ms");
    let lake = dir.path().join("lake");
    let mut ingest = start_ingest_with_env(
        dir.path(),
        &crashing,
        &broker.bootstrap(),
        lake.to_str().unwrap(),
        &[("KLAXON_CRASH_AT", point)],
        "crashing",
    );
    ingest.wait_for_assignment().await;
    produce_all(
        &producer(&broker.bootstrap()),
        "metrics",
        &two_hour_records(0),
    )
    .await;
    ingest.wait_for_crash(point).await;
    let log = ingest.log_text();
    Crashed {
        dir,
        broker,
        config,
        lake,
        log,
    }
}

impl Crashed {
    /// Restarts ingest without a crash point, produces as many points again
    /// (so every partition, the crashed one included, gets new records),
    /// waits until every point is in the lake exactly once, and returns the
    /// restarted member's log.
    async fn recover(&self) -> String {
        let ingest = start_ingest(
            self.dir.path(),
            &self.config,
            &self.broker.bootstrap(),
            &self.lake,
            "restarted",
        );
        produce_all(
            &producer(&self.broker.bootstrap()),
            "metrics",
            &two_hour_records(POINTS),
        )
        .await;
        assert_exactly_once(&self.lake, 2 * POINTS as i64).await;
        assert!(
            temporaries(&self.lake).is_empty(),
            "temporary files left: {:?}",
            temporaries(&self.lake)
        );
        ingest.log_text()
    }
}

const DISCARDED: &str = "removed files of an interrupted flush";

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_the_inflight_marker_replays_and_discards_the_flush() {
    let crashed = crash_at("flush.after_marker").await;
    assert!(crashed.lake.join("_klaxon/inflight/metrics").exists());
    assert!(data_files(&crashed.lake).is_empty(), "{}", crashed.log);
    let log = crashed.recover().await;
    assert!(log.contains(DISCARDED), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_a_data_files_rename_removes_its_temporary() {
    // Arrival 2: the first data file, after the marker.
    let crashed = crash_at("write.before_rename:2").await;
    assert!(data_files(&crashed.lake).is_empty(), "{}", crashed.log);
    assert_eq!(temporaries(&crashed.lake).len(), 1, "{}", crashed.log);
    let log = crashed.recover().await;
    assert!(log.contains(DISCARDED), "{log}");
    assert!(
        log.contains("removed temporary files of a write killed before its rename"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_between_rename_and_directory_sync_discards_the_half_written_flush() {
    let crashed = crash_at("write.before_dir_sync:2").await;
    // One of the flush's two files is in place: DuckDB would read it now.
    let at_crash = data_files(&crashed.lake);
    assert_eq!(at_crash.len(), 1, "{}", crashed.log);
    let log = crashed.recover().await;
    assert!(log.contains(DISCARDED), "{log}");
    assert!(at_crash.is_disjoint(&data_files(&crashed.lake)));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_the_commit_discards_the_written_files() {
    let crashed = crash_at("flush.before_commit").await;
    let at_crash = data_files(&crashed.lake);
    assert_eq!(at_crash.len(), 2, "{}", crashed.log);
    let log = crashed.recover().await;
    assert!(log.contains(DISCARDED), "{log}");
    // Deleted, not rewritten: the replay flushes other offset ranges.
    assert!(at_crash.is_disjoint(&data_files(&crashed.lake)));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_the_commit_keeps_the_committed_files() {
    let crashed = crash_at("flush.after_commit").await;
    let at_crash = data_files(&crashed.lake);
    assert_eq!(at_crash.len(), 2, "{}", crashed.log);
    let log = crashed.recover().await;
    // Replay starts after the committed range: the marker's files stay.
    assert!(!log.contains(DISCARDED), "{log}");
    assert!(at_crash.is_subset(&data_files(&crashed.lake)));
}

/// Killed right after the group took partitions away, having dropped
/// their unflushed points: the members after it replay them from the last
/// commit.
#[tokio::test(flavor = "multi_thread")]
async fn killed_after_a_revocation_loses_and_duplicates_nothing() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    // Nobody flushes by size or age: what a holds at the revocation is in
    // its buffers, and b cannot flush before a has crashed.
    let holding = holding_config(dir.path(), NO_COMPACTION);
    let config = flushing_config(dir.path(), "flushing.toml", NO_COMPACTION, 700, "300ms");
    let lake = dir.path().join("lake");
    let mut a = start_ingest_with_env(
        dir.path(),
        &holding,
        &broker.bootstrap(),
        lake.to_str().unwrap(),
        &[("KLAXON_CRASH_AT", "ingest.after_revoke")],
        "a",
    );
    a.wait_for_assignment().await;
    let producer = producer(&broker.bootstrap());
    produce_all(&producer, "metrics", &two_hour_records(0)).await;
    wait_for_points(&a, POINTS).await;

    let b = start_ingest(dir.path(), &holding, &broker.bootstrap(), &lake, "b");
    a.wait_for_crash("ingest.after_revoke").await;
    let a_log = a.log_text();
    assert!(
        a_log.contains("dropped the buffer of a revoked partition"),
        "{a_log}"
    );
    assert!(!a_log.contains(": flushed "), "a flushed: {a_log}");
    assert!(data_files(&lake).is_empty());

    // b flushes what it holds as it stops; a2 then takes every partition.
    let _a2 = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "a2");
    let mut b = b;
    b.wait_for_assignment().await;
    assert!(b.terminate().success(), "{}", b.log_text());
    produce_all(&producer, "metrics", &two_hour_records(POINTS)).await;
    assert_exactly_once(&lake, 2 * POINTS as i64).await;
}

/// A member stalled between writing a flush and committing it, long enough
/// to be taken out of the group while a second member joins: it does not
/// commit (Kafka would refuse the commit; tansu 0.6 takes it), drops the
/// partition, and the partition's new owner discards the files and replays
/// them.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_refused_by_a_rebalance_is_dropped_and_replayed() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let config = flushing_config(
        dir.path(),
        "klaxon-flushing.toml",
        NO_COMPACTION,
        700,
        "300ms",
    );
    // a stalls past max.poll.interval.ms: librdkafka takes it out of the
    // group, b is given every partition, and a's commit comes too late.
    let stalling = dir.path().join("stalling.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"heartbeat.interval.ms\" = \"500\"",
        "\"heartbeat.interval.ms\" = \"500\"\n\"max.poll.interval.ms\" = \"7000\"",
    );
    std::fs::write(&stalling, text).unwrap();
    let lake = dir.path().join("lake");
    let a = start_ingest_with_env(
        dir.path(),
        &stalling,
        &broker.bootstrap(),
        lake.to_str().unwrap(),
        &[
            ("KLAXON_CRASH_AT", "flush.before_commit"),
            ("KLAXON_STALL_FOR", "20s"),
        ],
        "a",
    );
    a.wait_for_assignment().await;
    let producer = producer(&broker.bootstrap());
    produce_all(&producer, "metrics", &two_hour_records(0)).await;
    a.wait_for_log("crash point flush.before_commit reached: stalling")
        .await;
    let b = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "b");
    a.wait_for_log("not committing: past max.poll.interval.ms since the last poll")
        .await;
    produce_all(&producer, "metrics", &two_hour_records(POINTS)).await;
    assert_exactly_once(&lake, 2 * POINTS as i64).await;
    let logs = format!("{}{}", a.log_text(), b.log_text());
    assert!(logs.contains(DISCARDED), "{logs}");
}
