//! `klaxon rules run` through a real broker: points on `metrics`, alert
//! events on `paging`, in event time.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::Message;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn points_on_metrics_raise_and_resolve_an_alert_on_paging() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let config = write_config(dir.path(), "");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("errors.toml"),
        r#"
[[rule]]
name = "checkout-errors"
sql = "SELECT service, sum(value) AS errors FROM metrics WHERE name = 'http.errors' GROUP BY service HAVING sum(value) > 10"
window = "1m"
severity = "critical"
summary = "{{service}}: {{errors}} errors"
"#,
    )
    .unwrap();
    let runner = Proc::spawn_program(
        KLAXON,
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--brokers",
            &broker.bootstrap(),
            "rules",
            "run",
            rules.to_str().unwrap(),
            "--idle-timeout",
            "2s",
            "--allowed-lateness",
            "0s",
            "--http-listen",
            "127.0.0.1:0",
        ],
        &[],
        dir.path().join("rules.log"),
    );
    wait_until(Duration::from_secs(60), "the rules runner", || {
        let log = runner.log_text();
        async move { log.contains("rules started") }
    })
    .await;

    // Event time half an hour ago, on a minute boundary.
    let t0 = (chrono::Utc::now().timestamp_millis() - 30 * 60_000) / 60_000 * 60_000;
    let point = |offset_s: i64, value: f64| {
        (
            "checkout".to_owned(),
            format!(
                r#"{{"name":"http.errors","time":{},"value":{value},"tags":{{"service":"checkout"}}}}"#,
                t0 + offset_s * 1000
            ),
        )
    };
    let records = vec![
        point(10, 6.0),
        point(20, 6.0),
        point(70, 1.0),
        point(130, 1.0),
    ];
    produce_all(&producer(&broker.bootstrap()), "metrics", &records).await;

    let consumer = topic_reader(&broker.bootstrap(), "paging");
    let mut events = Vec::new();
    while events.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("events so far: {events:?}\n{}", runner.log_text()))
            .unwrap();
        let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
        let event: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(event["dedup_key"], key.as_str(), "keyed by dedup_key");
        events.push(event);
    }
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[0]["dedup_key"], "checkout-errors{service=checkout}");
    assert_eq!(events[0]["payload"]["severity"], "critical");
    assert_eq!(events[0]["payload"]["summary"], "checkout: 12 errors");
    assert_eq!(events[0]["value"], 12.0);
    assert_eq!(events[0]["window"]["end"], rfc(t0 + 60_000));
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[1]["dedup_key"], "checkout-errors{service=checkout}");
    assert_eq!(events[1]["window"]["end"], rfc(t0 + 120_000));

    // A point for the closed first window is late: counted, never evaluated.
    produce_all(
        &producer(&broker.bootstrap()),
        "metrics",
        &[point(30, 100.0)],
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the late point to be counted",
        || {
            let text = http_get(&runner, "/metrics");
            async move { metric_value(&text, "klaxon_rules_late_points_total") == Some(1.0) }
        },
    )
    .await;
    let text = http_get(&runner, "/metrics");
    assert_eq!(
        metric_value(&text, "klaxon_rules_events_published_total"),
        Some(2.0),
        "{text}"
    );
}
