//! Ingest's memory stays within `ingest.memory_budget` however far behind it
//! starts: the largest buffer is flushed when the budget is used, and the
//! fetch queue is sized from the budget.

mod common;

use common::*;

/// Points whose series names are long and unique, so a buffer's real
/// memory grows with every point (as a high-cardinality producer's does).
fn wide_points(first: u64, count: u64) -> Vec<(String, String)> {
    let now = chrono::Utc::now().timestamp_millis();
    (first..first + count)
        .collect::<Vec<_>>()
        .chunks(50)
        .map(|chunk| {
            let lines: Vec<String> = chunk
                .iter()
                .map(|i| {
                    format!(
                        r#"{{"name":"test.seq","time":{},"value":{i},"tags":{{"series":"pod-{i:012}-{:064x}"}}}}"#,
                        now + *i as i64,
                        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    )
                })
                .collect();
            (chunk[0].to_string(), lines.join("\n"))
        })
        .collect()
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss(proc: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.child.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_far_larger_than_the_budget_stays_within_it() {
    const BUDGET_MIB: u64 = 8;
    const POINTS: u64 = 700_000;
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    // Nothing flushes on size or age: only the budget bounds the buffers.
    let config = holding_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[ingest]\n",
        &format!("[ingest]\nflush_bytes = \"1GiB\"\nmemory_budget = \"{BUDGET_MIB}MiB\"\n"),
    );
    std::fs::write(&config, text).unwrap();
    let lake = dir.path().join("lake");

    // The peak before is an idle member's: nothing to fetch yet. The
    // backlog then arrives faster than a debug build decodes it.
    let ingest = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "ingest");
    ingest.wait_for_assignment().await;
    let before = peak_rss(&ingest);
    let records = wide_points(0, POINTS);
    let backlog: usize = records.iter().map(|(_, v)| v.len()).sum();
    produce_all(&producer(&broker.bootstrap()), "metrics", &records).await;
    wait_for_points(&ingest, POINTS).await;
    let grown = peak_rss(&ingest).saturating_sub(before);

    assert!(
        ingest
            .log_text()
            .contains("memory budget reached; flushing largest buffer"),
        "the budget was never reached"
    );
    // The budget, plus what does not shrink with it: librdkafka's fetch
    // buffers, one flush's transient copies (a sorted copy, the Parquet
    // encoder's pages and output) and the allocator's per-thread arenas.
    // On this test's data (debug build) the peak grew 39 MiB with an 8 MiB
    // budget, and 112 MiB with none: the bound tells them apart.
    let bound = (BUDGET_MIB + 56) * 1024 * 1024;
    assert!(2 * backlog as u64 > 3 * bound, "backlog {backlog} B");
    assert!(
        grown < bound,
        "peak memory grew {} MiB consuming a {} MiB backlog (budget {BUDGET_MIB} MiB)",
        grown >> 20,
        backlog >> 20
    );
    // What is still buffered (under the budget) is flushed by the stop.
    let mut ingest = ingest;
    assert!(ingest.terminate().success(), "{}", ingest.log_text());
    assert_exactly_once(&lake, POINTS as i64).await;
}
