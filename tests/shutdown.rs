//! Stopping ingest: the first SIGTERM flushes and commits what is buffered;
//! a second signal, or the grace period, exits at once, and what was not
//! committed is replayed by the next start.

mod common;

use std::{os::unix::process::ExitStatusExt, path::Path};

use common::*;

const POINTS: i64 = 2000;
const DISCARDED: &str = "removed files of an interrupted flush";

/// Produces [`POINTS`] and waits until `ingest` holds them all.
async fn buffer_points(broker: &Broker, ingest: &Proc, first: u64) {
    ingest.wait_for_assignment().await;
    produce_all(
        &producer(&broker.bootstrap()),
        "metrics",
        &json_points(first, POINTS as u64, 20),
    )
    .await;
    wait_for_points(ingest, POINTS as u64).await;
}

fn signal(proc: &Proc, signal: i32) {
    unsafe {
        libc::kill(proc.child.id() as i32, signal);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_sigterm_flushes_and_commits_what_is_buffered() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let config = holding_config(dir.path(), "");
    let lake = dir.path().join("lake");
    let mut ingest = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "ingest");
    buffer_points(&broker, &ingest, 0).await;
    assert_eq!(parquet_files(&lake), 0, "nothing flushed before the stop");

    assert!(ingest.terminate().success(), "{}", ingest.log_text());
    // Flushed by the stop itself: no member runs now.
    assert_exactly_once(&lake, POINTS).await;

    // Committed too: the next member starts after those offsets, so it has
    // no interrupted flush to discard.
    let ingest = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "next");
    buffer_points(&broker, &ingest, POINTS as u64).await;
    let log = ingest.log_text();
    assert!(!log.contains(DISCARDED), "{log}");
    let mut ingest = ingest;
    assert!(ingest.terminate().success());
    assert_exactly_once(&lake, 2 * POINTS).await;
}

/// A lake every write to fails: a file where the table directory belongs.
fn block_lake(lake: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(lake).unwrap();
    let blocker = lake.join("metrics");
    std::fs::write(&blocker, b"not a directory").unwrap();
    blocker
}

/// Stops a member whose flush cannot finish: it exits by `how` with 130,
/// commits nothing, and the next start replays every point exactly once.
/// Returns the stopped member's log.
async fn stop_a_stuck_member(how: impl AsyncFnOnce(&mut Proc)) -> String {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let config = holding_config(dir.path(), "");
    let lake = dir.path().join("lake");
    let blocker = block_lake(&lake);
    let mut ingest = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "stuck");
    buffer_points(&broker, &ingest, 0).await;

    signal(&ingest, libc::SIGTERM);
    ingest
        .wait_for_log("ingest stopping: flushing buffers")
        .await;
    ingest.wait_for_log("lake write failed; retrying").await;
    how(&mut ingest).await;
    let status = ingest.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{status:?}\n{}",
        ingest.log_text()
    );
    assert_eq!(status.signal(), None);

    std::fs::remove_file(&blocker).unwrap();
    let usual = dir.path().join("klaxon.toml");
    let _next = start_ingest(dir.path(), &usual, &broker.bootstrap(), &lake, "next");
    assert_exactly_once(&lake, POINTS).await;
    ingest.log_text()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once_and_the_next_start_replays() {
    let log = stop_a_stuck_member(async |ingest: &mut Proc| signal(ingest, libc::SIGINT)).await;
    assert!(!log.contains("grace period over"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grace_period_ends_a_stop_that_cannot_finish() {
    stop_a_stuck_member(async |ingest: &mut Proc| {
        ingest.wait_for_log("grace period over").await;
    })
    .await;
}
