//! `klaxon up`, the README's first command: embedded broker, topics, ingest,
//! all from a fresh directory, then a clean shutdown on SIGTERM.

mod common;

use std::{process::Command, time::Duration};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_everything_from_an_empty_directory() {
    let dir = test_dir();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut up = Proc::spawn_program(
        KLAXON,
        dir.path(),
        &[
            "up",
            "--broker-listen",
            &listen,
            "--http-listen",
            "127.0.0.1:0",
        ],
        &[],
        dir.path().join("up.log"),
    );
    klaxon::broker::wait_ready(&listen, Duration::from_secs(60))
        .await
        .unwrap();
    // Topics exist once ingest runs; produce after the banner's metrics line.
    wait_until(Duration::from_secs(60), "klaxon up to start ingest", || {
        let log = up.log_text();
        async move { log.contains("ingest started") }
    })
    .await;

    run_ok(Command::new(KLAXON).args([
        "produce",
        "--brokers",
        &listen,
        "--count",
        "5000",
        "--series",
        "50",
    ]));

    let lake = dir.path().join("klaxon-data/lake");
    let query = || {
        let out = Command::new(KLAXON)
            .args(["query", "--lake", lake.to_str().unwrap(), "--format", "csv"])
            .arg("SELECT count(*) AS n, count(DISTINCT host) AS hosts FROM metrics")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The default flush interval is 10s: wait for the timer, not for size.
    wait_until(Duration::from_secs(90), "5000 points in the lake", || {
        let text = query();
        async move { text == "n,hosts\n5000,50\n" }
    })
    .await;

    assert!(
        up.terminate().success(),
        "clean exit on SIGTERM:\n{}",
        up.log_text()
    );
    assert!(
        dir.path().join("klaxon-data/broker.db").exists(),
        "durable broker storage"
    );
}
