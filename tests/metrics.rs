//! Every component's `/metrics` passes `promtool check metrics` (HELP and
//! TYPE for every family, Prometheus naming), and its counters with known
//! labels are there at zero before any input, so `increase()` over the
//! first event of a reason is not lost.
//!
//! promtool comes with Debian's `prometheus` package, which `scripts/test`
//! installs; KLAXON_TEST_PROMTOOL names another one.

mod common;

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

/// promtool, or a failure that says how to get it: a missing promtool must
/// not let this test pass without checking anything.
fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("KLAXON_TEST_PROMTOOL") {
        return PathBuf::from(path);
    }
    program_on_path(&["promtool"]).unwrap_or_else(|| {
        panic!(
            "promtool is not installed: run scripts/test (it installs Debian's `prometheus` \
             package as root), or `apt-get install -y --no-install-recommends prometheus`, \
             or set KLAXON_TEST_PROMTOOL"
        )
    })
}

/// `promtool check metrics` on `text`: its complaints, if any.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The body of `proc`'s `/metrics`.
fn scrape(proc: &Proc) -> String {
    let response = http_get(proc, "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// Waits until every series in `zeros` reads 0 on `proc`'s `/metrics`, then
/// has promtool check the whole page.
async fn check_component(name: &str, proc: &Proc, zeros: &[&str]) {
    wait_until(
        Duration::from_secs(60),
        &format!("{name}'s counters at zero"),
        || {
            let text = scrape(proc);
            let all = zeros.iter().all(|s| metric_value(&text, s) == Some(0.0));
            async move { all }
        },
    )
    .await;
    let text = scrape(proc);
    if let Err(complaints) = promtool_check(&text) {
        panic!("promtool check metrics fails on {name}'s /metrics:\n{complaints}\n---\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_component_passes_promtool_with_known_series_at_zero() {
    // Fail before starting anything when promtool is missing.
    promtool();
    let dir = test_dir();
    let dir = dir.path();
    let broker = Broker::start(dir).await;
    let config = write_config(dir, "");
    write_rules(
        dir,
        "seen.toml",
        r#"
[[rule]]
name = "points-seen"
sql = "SELECT count(*) AS points FROM metrics HAVING count(*) > 0"
window = "1m"
severity = "info"
"#,
    );
    console_oncall(dir);

    let lake = dir.join("lake");
    let ingest = Proc::component(
        dir,
        &config,
        &broker.bootstrap(),
        &["ingest", "--lake", lake.to_str().unwrap()],
        &[],
        "ingest.log",
    );
    ingest.wait_for_log("ingest started").await;
    check_component(
        "ingest",
        &ingest,
        &[
            r#"klaxon_ingest_rejected_total{topic="metrics",reason="invalid_json"}"#,
            "klaxon_lake_write_errors_total",
            "klaxon_http_request_timeouts_total",
            r#"klaxon_consumer_commit_failures_total{component="ingest"}"#,
            r#"klaxon_consumer_rebalances_total{component="ingest",event="revoked"}"#,
        ],
    )
    .await;

    let rules = Proc::component(
        dir,
        &config,
        &broker.bootstrap(),
        &["rules", "run", "rules"],
        &[],
        "rules.log",
    );
    rules.wait_for_log("rules started").await;
    check_component(
        "rules run",
        &rules,
        &[
            r#"klaxon_rules_rejected_points_total{topic="metrics",reason="invalid_json"}"#,
            r#"klaxon_rules_evaluation_failures_total{rule="points-seen"}"#,
            "klaxon_rules_checkpoint_failures_total",
            r#"klaxon_consumer_commit_failures_total{component="rules"}"#,
            r#"klaxon_consumer_rebalances_total{component="rules",event="revoked"}"#,
        ],
    )
    .await;

    let notify = Proc::component(
        dir,
        &config,
        &broker.bootstrap(),
        &["notify", "--oncall", "oncall.toml"],
        &[],
        "notify.log",
    );
    notify.wait_for_log("restored incidents").await;
    check_component(
        "notify",
        &notify,
        &[
            r#"klaxon_notify_events_total{action="trigger"}"#,
            r#"klaxon_notify_events_rejected_total{reason="invalid_json"}"#,
            r#"klaxon_notify_notifications_total{channel="console",outcome="failed"}"#,
            "klaxon_notify_incidents_opened_total",
            "klaxon_notify_changelog_write_failures_total",
            r#"klaxon_consumer_commit_failures_total{component="notify"}"#,
            r#"klaxon_consumer_rebalances_total{component="notify",event="revoked"}"#,
        ],
    )
    .await;

    // With input, the histograms and counted series pass too.
    let mut records = json_points(0, 100, 10);
    records.push(("bad".into(), "not json".into()));
    produce_all(&producer(&broker.bootstrap()), "metrics", &records).await;
    let rejected = r#"{topic="metrics",reason="invalid_json"}"#;
    for (name, proc, series) in [
        ("ingest", &ingest, "klaxon_ingest_rejected_total"),
        ("rules run", &rules, "klaxon_rules_rejected_points_total"),
    ] {
        let counted = format!("{series}{rejected}");
        wait_until(
            Duration::from_secs(60),
            &format!("{name} to count the bad line"),
            || {
                let text = scrape(proc);
                // The lag gauges come with librdkafka's statistics, when
                // it knows a committed offset: not waited for.
                let done = metric_value(&text, &counted) == Some(1.0)
                    && text.contains("_duration_seconds_bucket{");
                async move { done }
            },
        )
        .await;
        let text = scrape(proc);
        if let Err(complaints) = promtool_check(&text) {
            panic!("promtool check metrics fails on {name}'s /metrics:\n{complaints}\n---\n{text}");
        }
    }
}
