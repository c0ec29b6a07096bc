//! `klaxon rules backtest` against a live run: points go through a real
//! broker to ingest (the lake) and to `klaxon rules run` (the paging topic);
//! the backtest of the same rules over that lake must open exactly the
//! incidents the live runner opened, window for window. With `--against`
//! it compares a tighter version of a rule; with the on-call file it says
//! whom each incident would have woken.

mod common;

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use common::*;
use rdkafka::Message;
use serde_json::Value;

const RULES: &str = r#"
[[rule]]
name = "errors"
sql = "SELECT service, sum(value) AS errors FROM metrics WHERE name = 'http.errors' GROUP BY service HAVING sum(value) > 10"
window = "30s"
every = "10s"
severity = "critical"

[[rule]]
name = "latency"
sql = "SELECT service, avg(value) AS latency FROM metrics WHERE name = 'latency' GROUP BY service"
window = "20s"
for = "10s"
thresholds = { column = "latency", warning = 200, critical = 500 }

# Fires on the last points: once the live runner has sent it, every window
# before them has closed.
[[rule]]
name = "end-of-data"
sql = "SELECT count(*) AS n FROM metrics WHERE name = 'test.end' HAVING count(*) > 0"
window = "10s"
severity = "info"
"#;

/// The errors rule as it is "now": a threshold checkout's 30 per window
/// never passes, and api's 48 does.
const ERRORS_NOW: &str = r#"
[[rule]]
name = "errors"
sql = "SELECT service, sum(value) AS errors FROM metrics WHERE name = 'http.errors' GROUP BY service HAVING sum(value) > 35"
window = "30s"
every = "10s"
severity = "critical"
"#;

const STEP_S: i64 = 5;
/// Points every 5 s for 25 minutes, then the end marker and a quiet minute.
const MINUTES: i64 = 25;

/// Errors per point of each service at second `s` of the story: checkout
/// breaks twice, api once, briefly.
fn errors_at(service: &str, s: i64) -> f64 {
    match (service, s) {
        ("checkout", 180..=359) | ("checkout", 720..=839) => 5.0,
        ("api", 480..=519) => 8.0,
        _ => 0.0,
    }
}

/// Latency of checkout: warning from minute 15, critical for a minute, back.
fn latency_at(s: i64) -> f64 {
    match s {
        900..=1019 => 300.0,
        1020..=1079 => 700.0,
        _ => 100.0,
    }
}

fn story(t0: i64) -> Vec<(String, String)> {
    let point = |name: &str, s: i64, value: f64, service: &str| {
        // One key: one partition, so no partition ever holds event time back.
        (
            "story".to_owned(),
            format!(
                r#"{{"name":"{name}","time":{},"value":{value},"tags":{{"service":"{service}"}}}}"#,
                t0 + s * 1000
            ),
        )
    };
    let mut records = Vec::new();
    for s in (0..MINUTES * 60).step_by(STEP_S as usize) {
        for service in ["checkout", "api"] {
            records.push(point("http.errors", s, errors_at(service, s), service));
        }
        records.push(point("latency", s, latency_at(s), "checkout"));
    }
    let end = MINUTES * 60;
    records.push(point("test.end", end, 1.0, "test"));
    for s in (end..end + 60).step_by(STEP_S as usize) {
        records.push(point("quiet", s, 0.0, "test"));
    }
    records
}

/// (dedup_key, opened, resolved) in epoch ms, from paging events in order:
/// the notifier's rule of one open incident per dedup_key.
fn live_incidents(events: &[Value]) -> Vec<(String, i64, Option<i64>)> {
    let mut incidents: Vec<(String, i64, Option<i64>)> = Vec::new();
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
        let key = e["dedup_key"].as_str().unwrap().to_owned();
        let at = ms(&e["window"]["end"]);
        match (e["event_action"].as_str().unwrap(), open.get(&key)) {
            ("trigger", None) => {
                open.insert(key.clone(), incidents.len());
                incidents.push((key, at, None));
            }
            ("resolve", Some(&i)) => {
                incidents[i].2 = Some(at);
                open.remove(&key);
            }
            _ => {}
        }
    }
    incidents.sort();
    incidents
}

fn backtest_incidents(list: &Value) -> Vec<(String, i64, Option<i64>)> {
    let mut incidents: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let resolved = &i["resolved_at"];
            (
                i["dedup_key"].as_str().unwrap().to_owned(),
                ms(&i["opened_at"]),
                (!resolved.is_null()).then(|| ms(resolved)),
            )
        })
        .collect();
    incidents.sort();
    incidents
}

fn ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// An on-call file paging `sam`, whose time zone puts `t0` at 02:00 local.
fn night_oncall(dir: &Path, t0: i64) -> std::path::PathBuf {
    let utc_hour = (t0.div_euclid(3_600_000)).rem_euclid(24);
    // Etc/GMT-N is UTC+N; offsets run from -12 to +14.
    let offset = (2 - utc_hour + 36).rem_euclid(24) - 12;
    let zone = if offset >= 0 {
        format!("Etc/GMT-{offset}")
    } else {
        format!("Etc/GMT+{}", -offset)
    };
    let path = dir.join("oncall.toml");
    std::fs::write(
        &path,
        format!(
            r#"
default_policy = "ops"
[[user]]
id = "sam"
time_zone = "{zone}"
contact = [{{ type = "console" }}]
[[policy]]
id = "ops"
[[policy.level]]
targets = [{{ user = "sam" }}]
delay = "5m"
"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backtest_over_the_recorded_lake_opens_the_incidents_the_live_runner_opened() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    broker.create_topic("metrics", 1).await;
    let rules = write_rules(dir.path(), "story.toml", RULES);
    // The live runner and the backtest read the same settings. Event time
    // alone closes windows: the one partition never goes idle while the
    // runner reads the burst, however slowly the machine runs it.
    let config = write_config(
        dir.path(),
        "[rules]\nidle_timeout = \"10m\"\nallowed_lateness = \"0s\"\n",
    );
    let lake = dir.path().join("lake");
    let ingest = start_ingest(dir.path(), &config, &broker.bootstrap(), &lake, "ingest");
    let runner = Proc::component(
        dir.path(),
        &config,
        &broker.bootstrap(),
        &["rules", "run", rules.to_str().unwrap()],
        &[],
        "rules.log",
    );
    runner.wait_for_log("rules started").await;
    ingest.wait_for_assignment().await;

    // Ten minutes before an hour two or three hours ago: the story crosses
    // an hour of the lake, so the backtest reads two.
    let hour = (chrono::Utc::now().timestamp_millis() - 2 * 3_600_000) / 3_600_000 * 3_600_000;
    let t0 = hour - 10 * 60_000;
    let records = story(t0);
    produce_all(&producer(&broker.bootstrap()), "metrics", &records).await;

    // Every live event: once end-of-data has resolved the runner has sent
    // all it will (its last windows close on the quiet points); what it
    // counts as published says when all of them are read.
    let paging = topic_reader(&broker.bootstrap(), "paging");
    let mut events: Vec<Value> = Vec::new();
    let mut quiet_spells = 0;
    loop {
        let ended = events
            .iter()
            .any(|e| e["rule"] == "end-of-data" && e["event_action"] == "resolve");
        let wait = Duration::from_secs(if ended { 2 } else { 90 });
        match tokio::time::timeout(wait, paging.recv()).await {
            Ok(m) => events.push(serde_json::from_slice(m.unwrap().payload().unwrap()).unwrap()),
            Err(_) if ended && quiet_spells < 15 => {
                let text = http_get(&runner, "/metrics");
                let published = metric_value(&text, "klaxon_rules_events_published_total");
                if published == Some(events.len() as f64) {
                    break;
                }
                quiet_spells += 1;
            }
            Err(_) => panic!("events so far: {events:#?}\n{}", runner.log_text()),
        }
    }
    let live = live_incidents(&events);
    let keys: Vec<&str> = live.iter().map(|(k, ..)| k.as_str()).collect();
    // The story's incidents, as the live runner saw them: something to compare.
    assert_eq!(
        keys,
        [
            "end-of-data{}",
            "errors{service=api}",
            "errors{service=checkout}",
            "errors{service=checkout}",
            "latency{service=checkout}",
        ],
        "{events:#?}"
    );
    assert!(live.iter().all(|(_, _, resolved)| resolved.is_some()));

    wait_until(Duration::from_secs(60), "every point in the lake", || {
        let lake = lake.clone();
        let expected = records.len() as i64;
        async move {
            let batches = query(&lake, "SELECT count(*) AS n FROM metrics").await;
            klaxon::query::values::ints(&batches, "n").ok() == Some(vec![Some(expected)])
        }
    })
    .await;

    let against = dir.path().join("rules-now");
    std::fs::create_dir_all(&against).unwrap();
    std::fs::write(against.join("errors.toml"), ERRORS_NOW).unwrap();
    let oncall = night_oncall(dir.path(), t0);
    let output = Command::new(KLAXON)
        .args(["--config", config.to_str().unwrap()])
        .args(["rules", "backtest", rules.to_str().unwrap()])
        .args(["--lake", lake.to_str().unwrap(), "--since", "1d"])
        .args(["--against", against.to_str().unwrap()])
        .args(["--oncall", oncall.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("of 2 hours with points done"),
        "progress on stderr: {stderr}"
    );
    let backtest: Value = serde_json::from_slice(&output.stdout).unwrap();

    // The same incidents, opened and resolved by the same windows.
    assert_eq!(backtest_incidents(&backtest["incidents"]), live);
    assert_eq!(backtest["points"], records.len() as u64);

    let rule = |name: &str| {
        backtest["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == name)
            .unwrap_or_else(|| panic!("{name} in {backtest:#}"))
            .clone()
    };
    let errors = rule("errors");
    assert_eq!(errors["tested"]["incidents"], 3);
    assert_eq!(errors["tested"]["open_at_end"], 0);
    // Worked by hand: checkout sends 5 errors every 5 s from 3:00 to 5:55.
    // The window [2:50, 3:20) holds four of them (20 > 10) and [2:40, 3:10)
    // two (10): opened by the window ending 3:20. The last is at 5:55:
    // [5:50, 6:20) holds two, so that window resolves it.
    let checkout = backtest_incidents(&backtest["incidents"])
        .into_iter()
        .find(|(k, ..)| k == "errors{service=checkout}")
        .unwrap();
    assert_eq!(checkout.1 - t0, 200_000, "opened by the window ending 3:20");
    assert_eq!(checkout.2.map(|r| r - t0), Some(380_000));
    // Every incident paged sam, at 02:00-something in his zone: at night.
    assert_eq!(errors["tested"]["pages"], 3);
    assert_eq!(errors["tested"]["night_pages"]["sam"], 3);
    // The rule as it is now keeps only api's burst.
    assert_eq!(errors["against"]["incidents"], 1, "{errors:#}");
    assert!(rule("latency")["against"].is_null(), "latency is new");

    // The table says the same in words.
    let table = run_ok(
        Command::new(KLAXON)
            .args(["--config", config.to_str().unwrap()])
            .args(["rules", "backtest", rules.to_str().unwrap()])
            .args(["--lake", lake.to_str().unwrap(), "--since", "1d"])
            .args(["--against", against.to_str().unwrap()])
            .args(["--oncall", oncall.to_str().unwrap()]),
    );
    assert!(table.contains("night pages"), "{table}");
    let errors_line = table
        .lines()
        .find(|l| l.starts_with("errors") && l.contains("tried"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(errors_line.contains("sam 3"), "{table}");
}
