//! `klaxon rules run` through a real broker: points on `metrics`, alert
//! events on `paging`, in event time; kill -9 and restart; hot reload.

mod common;

use std::{path::Path, time::Duration};

use common::*;
use klaxon::config::KafkaConfig;
use rdkafka::{Message, consumer::StreamConsumer};
use serde_json::Value;

const ERRORS_RULE: &str = r#"
[[rule]]
name = "checkout-errors"
sql = "SELECT service, sum(value) AS errors FROM metrics WHERE name = 'http.errors' GROUP BY service HAVING sum(value) > 10"
window = "1m"
severity = "critical"
summary = "{{service}}: {{errors}} errors"
"#;

/// Starts `klaxon rules run` on `rules` with a 2s idle timeout and waits
/// until it consumes.
async fn start_rules(dir: &Path, broker: &Broker, rules: &Path, log: &str) -> Proc {
    start_rules_idle(dir, broker, rules, log, "2s").await
}

async fn start_rules_idle(
    dir: &Path,
    broker: &Broker,
    rules: &Path,
    log: &str,
    idle_timeout: &str,
) -> Proc {
    start_rules_with_env(dir, broker, rules, log, idle_timeout, &[]).await
}

/// [`start_rules_idle`] with extra environment variables.
async fn start_rules_with_env(
    dir: &Path,
    broker: &Broker,
    rules: &Path,
    log: &str,
    idle_timeout: &str,
    env: &[(&str, &str)],
) -> Proc {
    let config = write_config(dir, "");
    let runner = Proc::component(
        dir,
        &config,
        &broker.bootstrap(),
        &[
            "rules",
            "run",
            rules.to_str().unwrap(),
            "--idle-timeout",
            idle_timeout,
            "--allowed-lateness",
            "0s",
            "--reload-interval",
            "200ms",
        ],
        env,
        log,
    );
    runner.wait_for_log("rules started").await;
    runner
}

/// A minute boundary half an hour ago: event time well behind the wall clock.
fn minute_half_an_hour_ago() -> i64 {
    (chrono::Utc::now().timestamp_millis() - 30 * 60_000) / 60_000 * 60_000
}

/// One JSON point of `http.errors` for service checkout, keyed by series.
fn errors_point(t0: i64, offset_s: i64, value: f64) -> (String, String) {
    (
        "checkout".to_owned(),
        format!(
            r#"{{"name":"http.errors","time":{},"value":{value},"tags":{{"service":"checkout"}}}}"#,
            t0 + offset_s * 1000
        ),
    )
}

/// Reads the next `n` events from `paging`, checking each is keyed by its dedup_key.
async fn next_events(consumer: &StreamConsumer, n: usize, runner: &Proc) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("events so far: {events:?}\n{}", runner.log_text()))
            .unwrap();
        let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
        let event: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(event["dedup_key"], key.as_str(), "keyed by dedup_key");
        events.push(event);
    }
    events
}

fn rfc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread")]
async fn points_on_metrics_raise_and_resolve_an_alert_on_paging() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let rules = write_rules(dir.path(), "errors.toml", ERRORS_RULE);
    let runner = start_rules(dir.path(), &broker, &rules, "rules.log").await;

    let t0 = minute_half_an_hour_ago();
    let point = |offset_s, value| errors_point(t0, offset_s, value);
    let records = vec![
        point(10, 6.0),
        point(20, 6.0),
        point(70, 1.0),
        point(130, 1.0),
    ];
    produce_all(&producer(&broker.bootstrap()), "metrics", &records).await;

    let consumer = topic_reader(&broker.bootstrap(), "paging");
    let events = next_events(&consumer, 2, &runner).await;
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

/// The runner's checkpoint of `rule` on the state topic, once it has closed
/// the window ending at `end`.
async fn wait_for_checkpoint(brokers: &str, rule: &str, end: i64) {
    let consumer = topic_reader(brokers, "klaxon-rules-state");
    let key = format!("rule/{rule}");
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("a checkpoint on the state topic")
            .unwrap();
        if m.key() != Some(key.as_bytes()) {
            continue;
        }
        let state: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if state["closed_until_ms"].as_i64() >= Some(end) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firing_alert_survives_kill_9_without_a_second_trigger() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let rules = write_rules(dir.path(), "errors.toml", ERRORS_RULE);
    // One partition, which never goes idle here: windows close on its event
    // time alone. With idle partitions, [1m, 2m) would close on the wall
    // clock whenever the kill came later than the idle timeout.
    broker.create_topic("metrics", 1).await;
    let mut runner = start_rules_idle(dir.path(), &broker, &rules, "rules-1.log", "10m").await;
    let producer = producer(&broker.bootstrap());
    let t0 = minute_half_an_hour_ago();
    let point = |offset_s, value| errors_point(t0, offset_s, value);

    produce_all(
        &producer,
        "metrics",
        &[point(10, 6.0), point(20, 6.0), point(70, 1.0)],
    )
    .await;
    let consumer = topic_reader(&broker.bootstrap(), "paging");
    let first = next_events(&consumer, 1, &runner).await;
    assert_eq!(first[0]["event_action"], "trigger");
    wait_for_checkpoint(&broker.bootstrap(), "checkout-errors", t0 + 60_000).await;
    runner.kill();

    // The window [1m, 2m) is open across the crash: the 70s point before it
    // and the 80s point after it both count, so the alert keeps firing.
    let runner = start_rules_idle(dir.path(), &broker, &rules, "rules-2.log", "10m").await;
    assert!(
        runner.log_text().contains("state restored rules=1"),
        "{}",
        runner.log_text()
    );
    // 1 + 10 errors fire; the 10 after the crash alone would not.
    produce_all(
        &producer,
        "metrics",
        &[point(80, 10.0), point(130, 1.0), point(190, 1.0)],
    )
    .await;
    let rest = next_events(&consumer, 1, &runner).await;
    assert_eq!(
        rest[0]["event_action"], "resolve",
        "no second trigger after the restart: {rest:?}"
    );
    assert_eq!(
        rest[0]["window"]["end"],
        rfc(t0 + 180_000),
        "[1m, 2m) kept firing with 11 errors, the point before the crash included"
    );
    let text = http_get(&runner, "/metrics");
    assert_eq!(
        metric_value(&text, "klaxon_rules_late_points_total"),
        Some(0.0),
        "replayed points are not late"
    );
}

/// Killed after publishing a trigger and before the checkpoint that records
/// it: the restart re-evaluates the window from the last commit and
/// publishes the same event again (at least once; the notifier folds it),
/// with the same value, and the alert then fires on across the crash.
#[tokio::test(flavor = "multi_thread")]
async fn killed_between_publish_and_checkpoint_publishes_the_same_event_again() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let rules = write_rules(dir.path(), "errors.toml", ERRORS_RULE);
    broker.create_topic("metrics", 1).await;
    let mut runner = start_rules_with_env(
        dir.path(),
        &broker,
        &rules,
        "rules-crashing.log",
        "10m",
        &[("KLAXON_CRASH_AT", "rules.after_publish")],
    )
    .await;
    let producer = producer(&broker.bootstrap());
    let t0 = minute_half_an_hour_ago();
    let point = |offset_s, value| errors_point(t0, offset_s, value);
    produce_all(
        &producer,
        "metrics",
        &[point(10, 6.0), point(20, 6.0), point(70, 1.0)],
    )
    .await;
    runner.wait_for_crash("rules.after_publish").await;
    let consumer = topic_reader(&broker.bootstrap(), "paging");
    let before = next_events(&consumer, 1, &runner).await;

    let runner = start_rules_idle(dir.path(), &broker, &rules, "rules-restarted.log", "10m").await;
    let again = next_events(&consumer, 1, &runner).await;
    for field in ["event_action", "dedup_key", "value", "window"] {
        assert_eq!(
            before[0][field], again[0][field],
            "{field}: {before:?} {again:?}"
        );
    }
    assert_eq!(again[0]["event_action"], "trigger");
    assert_eq!(again[0]["value"], 12.0);
    assert_eq!(again[0]["window"]["end"], rfc(t0 + 60_000));

    produce_all(
        &producer,
        "metrics",
        &[point(80, 10.0), point(130, 1.0), point(190, 1.0)],
    )
    .await;
    let rest = next_events(&consumer, 1, &runner).await;
    assert_eq!(rest[0]["event_action"], "resolve", "{rest:?}");
    assert_eq!(rest[0]["window"]["end"], rfc(t0 + 180_000));
}

/// A rule deleted while the runner was down: the restart resolves what it
/// had firing, so no incident stays open for an alert nobody evaluates.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_removed_while_down_resolves_what_it_had_firing() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let rules = write_rules(dir.path(), "errors.toml", ERRORS_RULE);
    broker.create_topic("metrics", 1).await;
    let mut runner = start_rules_idle(dir.path(), &broker, &rules, "rules-1.log", "10m").await;
    let t0 = minute_half_an_hour_ago();
    produce_all(
        &producer(&broker.bootstrap()),
        "metrics",
        &[errors_point(t0, 10, 12.0), errors_point(t0, 70, 1.0)],
    )
    .await;
    let consumer = topic_reader(&broker.bootstrap(), "paging");
    let first = next_events(&consumer, 1, &runner).await;
    assert_eq!(first[0]["event_action"], "trigger");
    wait_for_checkpoint(&broker.bootstrap(), "checkout-errors", t0 + 60_000).await;
    runner.kill();

    std::fs::remove_file(rules.join("errors.toml")).unwrap();
    write_rules(dir.path(), "hosts.toml", HOSTS_RULE);
    let runner = start_rules_idle(dir.path(), &broker, &rules, "rules-2.log", "10m").await;
    let rest = next_events(&consumer, 1, &runner).await;
    assert_eq!(rest[0]["event_action"], "resolve", "{rest:?}");
    assert_eq!(rest[0]["dedup_key"], first[0]["dedup_key"]);
}

const HOSTS_RULE: &str = r#"
[[rule]]
name = "hosts-up"
sql = "SELECT host, max(value) AS value FROM metrics WHERE name = 'up' GROUP BY host"
window = "1m"
severity = "warning"
summary = "{{host}} is up"
"#;

/// The runner's checkpoint of `rule` as a restart reads it, once it has
/// closed the window ending at `end`.
async fn wait_for_stored(brokers: &str, rule: &str, end: i64) -> klaxon::rules::RuleCheckpoint {
    for _ in 0..120 {
        let brokers = brokers.to_owned();
        let stored = tokio::task::spawn_blocking(move || {
            klaxon::rules::read_checkpoint(&KafkaConfig::default(), &brokers, "klaxon-rules-state")
        })
        .await
        .unwrap()
        .unwrap();
        if let Some(r) = stored.rules.into_iter().find(|r| r.rule == rule)
            && r.closed_until_ms >= Some(end)
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no checkpoint of {rule} up to {end}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_with_thousands_of_firing_instances_checkpoints_and_restarts() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let rules = write_rules(dir.path(), "hosts.toml", HOSTS_RULE);
    broker.create_topic("metrics", 1).await;
    let mut runner = start_rules_idle(dir.path(), &broker, &rules, "rules-1.log", "10m").await;
    let producer = producer(&broker.bootstrap());
    let t0 = minute_half_an_hour_ago();
    // 3000 instances with 500-byte labels: a checkpoint of about 2 MB,
    // twice the broker's default record limit.
    const HOSTS: usize = 3000;
    let pad = "h".repeat(500);
    let lines: Vec<String> = (0..HOSTS)
        .map(|i| {
            format!(
                r#"{{"name":"up","time":{},"value":1,"tags":{{"host":"{i:05}-{pad}"}}}}"#,
                t0 + 10_000
            )
        })
        .collect();
    let mut records: Vec<(String, String)> = lines
        .chunks(500)
        .map(|c| ("hosts".to_owned(), c.join("\n")))
        .collect();
    records.push((
        "tick".to_owned(),
        format!(r#"{{"name":"tick","time":{},"value":1}}"#, t0 + 70_000),
    ));
    produce_all(&producer, "metrics", &records).await;
    let consumer = topic_reader(&broker.bootstrap(), "paging");
    let fired = next_events(&consumer, HOSTS, &runner).await;
    assert!(fired.iter().all(|e| e["event_action"] == "trigger"));
    let stored = wait_for_stored(&broker.bootstrap(), "hosts-up", t0 + 60_000).await;
    assert_eq!(stored.alerts.firing().len(), HOSTS, "restored whole");
    assert!(serde_json::to_vec(&stored).unwrap().len() > 1_500_000);
    runner.kill();

    // The restarted runner restores every instance: the next window, with
    // no hosts in it, resolves each one, and nothing triggers again.
    let runner = start_rules_idle(dir.path(), &broker, &rules, "rules-2.log", "10m").await;
    assert!(
        runner.log_text().contains("state restored rules=1"),
        "{}",
        runner.log_text()
    );
    produce_all(
        &producer,
        "metrics",
        &[(
            "tick".to_owned(),
            format!(r#"{{"name":"tick","time":{},"value":1}}"#, t0 + 130_000),
        )],
    )
    .await;
    let after = next_events(&consumer, HOSTS, &runner).await;
    assert!(
        after.iter().all(|e| e["event_action"] == "resolve"),
        "no trigger again after the restart"
    );
    let text = http_get(&runner, "/metrics");
    assert_eq!(
        metric_value(&text, "klaxon_rules_checkpoint_failures_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rule_files_reload_and_a_broken_one_keeps_its_previous_version() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    let rules = write_rules(dir.path(), "errors.toml", ERRORS_RULE);
    let errors = rules.join("errors.toml");
    let runner = start_rules(dir.path(), &broker, &rules, "rules.log").await;

    std::fs::write(
        &errors,
        ERRORS_RULE.replace("sum(value) AS", "sum(value) AS AS"),
    )
    .unwrap();
    std::fs::write(
        rules.join("peak.toml"),
        r#"
[[rule]]
name = "peak"
sql = "SELECT service, max(value) AS peak FROM metrics GROUP BY service HAVING max(value) >= 15"
window = "1m"
severity = "warning"
"#,
    )
    .unwrap();
    let refused = format!("{}:4: rule \"checkout-errors\": SQL", errors.display());
    wait_until(Duration::from_secs(30), "the reload", || {
        let log = runner.log_text();
        let refused = refused.clone();
        async move { log.contains(&refused) && log.contains("rules reloaded") }
    })
    .await;
    let log = runner.log_text();
    assert!(log.contains("previous version stays active"), "{log}");

    let t0 = minute_half_an_hour_ago();
    produce_all(
        &producer(&broker.bootstrap()),
        "metrics",
        &[errors_point(t0, 10, 20.0), errors_point(t0, 70, 1.0)],
    )
    .await;
    let consumer = topic_reader(&broker.bootstrap(), "paging");
    let mut keys: Vec<String> = next_events(&consumer, 2, &runner)
        .await
        .iter()
        .map(|e| format!("{} {}", e["event_action"], e["dedup_key"]))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            r#""trigger" "checkout-errors{service=checkout}""#,
            r#""trigger" "peak{service=checkout}""#
        ],
        "the broken file's previous version and the new file both evaluate"
    );
}
