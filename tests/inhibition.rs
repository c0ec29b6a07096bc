//! Inhibition through a real broker and `klaxon notify`: while a
//! cluster-down alert fires for a cluster, that cluster's lesser alerts
//! page nobody, though they arrive on other paging partitions than the
//! source (the notifier follows the whole incidents changelog, not its own
//! partitions' incidents); another cluster's alert pages; when the source
//! resolves, what it inhibited and still fires pages; a target that comes
//! before its source, within the wait, ends the same.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const INHIBIT: &str = r#"
[[inhibit]]
id = "cluster-down"
source = ["rule=cluster-down"]
target = ["severity!=critical", "cluster=~.+"]
equal = ["cluster"]
wait = "3s"
"#;

fn alert(dedup_key: &str, cluster: &str, severity: &str, rule: Option<&str>) -> serde_json::Value {
    json!({
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "rule": rule,
        "labels": { "cluster": cluster },
        "payload": { "summary": format!("{dedup_key} alert"), "source": "test", "severity": severity },
    })
}

/// Pages to alice's webhook about `dedup_key`.
fn pages_about(s: &Setup, dedup_key: &str) -> usize {
    s.recorder
        .requests()
        .iter()
        .filter(|r| {
            let body = r.json();
            r.path == "/alice"
                && body["event"] == "page"
                && body["incident"]["dedup_key"] == dedup_key
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firing_alert_inhibits_its_clusters_lesser_alerts_across_partitions() {
    let s = Setup::new().await;
    s.no_repeat();
    s.edit_oncall(|text| text + INHIBIT);
    let check = s.klaxon(&["oncall", "check", s.oncall.to_str().unwrap()]);
    assert!(!check.contains("error"), "{check}");
    let _notifier = s.notifier("notify.log").await;

    s.produce_to(0, alert("down-eu", "eu", "critical", Some("cluster-down")))
        .await;
    wait_until(Duration::from_secs(30), "the source paged", async || {
        pages_about(&s, "down-eu") >= 1
    })
    .await;
    s.produce_to(3, alert("api-eu", "eu", "warning", None))
        .await;
    s.produce_to(2, alert("api-us", "us", "warning", None))
        .await;
    // api-us waits the inhibition's 3 seconds, then pages: nothing
    // inhibits it. By then api-eu has long been applied.
    wait_until(
        Duration::from_secs(30),
        "the other cluster paged",
        async || pages_about(&s, "api-us") >= 1,
    )
    .await;
    let detail = s.klaxon(&["incident", "api-eu"]);
    assert!(
        detail.contains("suppressed by alert down-eu firing"),
        "{detail}"
    );
    assert!(
        detail.contains("silenced   by inhibited/cluster-down/"),
        "{detail}"
    );
    assert_eq!(pages_about(&s, "api-eu"), 0, "the inhibited alert paged");
    assert!(!detail.contains("Escalated"), "{detail}");

    // The other order (#2783): a target first, its source within the wait,
    // on other partitions: the target ends inhibited, never paged.
    s.produce_to(1, alert("cache-sa", "sa", "error", None))
        .await;
    s.produce_to(2, alert("down-sa", "sa", "critical", Some("cluster-down")))
        .await;
    let detail = s
        .wait_for_incident("cache-sa", "suppressed by alert down-sa firing")
        .await;
    assert!(
        detail.contains("paused 3s by inhibit cluster-down"),
        "{detail}"
    );
    assert!(
        !detail.contains("Escalated"),
        "paged before its source came: {detail}"
    );
    assert_eq!(pages_about(&s, "cache-sa"), 0);

    // The source resolves: the alert it inhibited still fires, and pages.
    s.produce_to(
        0,
        json!({ "event_action": "resolve", "dedup_key": "down-eu" }),
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the inhibited alert paged",
        async || pages_about(&s, "api-eu") >= 1,
    )
    .await;
    let detail = s.klaxon(&["incident", "api-eu"]);
    assert!(detail.contains("no longer inhibited"), "{detail}");
}
