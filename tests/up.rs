//! `klaxon up`, the README's first command: embedded broker, topics, ingest,
//! the alert rules of `./rules` and the notifier of `./oncall.toml` (found
//! without flags), all from a fresh directory, then a clean shutdown on SIGTERM.

mod common;

use std::{process::Command, time::Duration};

use common::*;
use rdkafka::Message;

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_everything_from_an_empty_directory() {
    let dir = test_dir();
    // A rule that fires on any point, with short event-time waits so the
    // window closes soon after producing stops.
    write_rules(
        dir.path(),
        "seen.toml",
        r#"
[[rule]]
name = "points-seen"
sql = "SELECT count(*) AS points FROM metrics HAVING count(*) > 0"
window = "5s"
severity = "info"
"#,
    );
    // The notifier pages the operator on klaxon's console.
    console_oncall(dir.path());
    std::fs::write(
        dir.path().join("klaxon.toml"),
        "[rules]\nidle_timeout = \"2s\"\nallowed_lateness = \"0s\"\n",
    )
    .unwrap();
    let (mut up, port) = spawn_listening("klaxon up's broker", |port| {
        Proc::spawn_program(
            KLAXON,
            dir.path(),
            &[
                "--config",
                "klaxon.toml",
                // No --rules or --oncall: `./rules` and `./oncall.toml`
                // are found by themselves.
                "up",
                "--broker-listen",
                &format!("127.0.0.1:{port}"),
                "--http-listen",
                "127.0.0.1:0",
            ],
            &[],
            dir.path().join(format!("up-{port}.log")),
        )
    })
    .await;
    let listen = format!("127.0.0.1:{port}");
    klaxon::broker::wait_ready(&listen, Duration::from_secs(60))
        .await
        .unwrap();
    // Topics exist once ingest runs; produce after the banner's metrics line.
    up.wait_for_log("ingest started").await;

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

    // The rules runner saw the points and paged.
    let paging = topic_reader(&listen, "paging");
    let m = tokio::time::timeout(Duration::from_secs(60), paging.recv())
        .await
        .unwrap_or_else(|_| panic!("no event on paging\n{}", up.log_text()))
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
    assert_eq!(event["dedup_key"], "points-seen{}");
    assert_eq!(event["event_action"], "trigger");
    assert!(event["value"].as_f64().unwrap() >= 1.0, "{event}");
    wait_until(Duration::from_secs(60), "the page on the console", || {
        let log = up.log_text();
        async move { log.contains("PAGE [info] points-seen") && log.contains("user=operator") }
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
