//! What the notifier promises across crashes and repeats: events applied
//! before a crash are skipped after it, timers that fell due while it was
//! down fire at once, a repeated resolve or trigger changes nothing it
//! should not, acks reach incidents whatever partitioner produced their
//! trigger, and the HTTP API acts on incidents by id.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::ClientConfig;
use serde_json::{Value, json};

const TOKEN: &str = "operator-token-0123456789";

fn resolve_event(dedup_key: &str) -> (String, String) {
    let event = json!({ "routing_key": "r", "event_action": "resolve", "dedup_key": dedup_key });
    (dedup_key.to_owned(), event.to_string())
}

/// The `event` field of each request alice's webhook received.
fn alices_events(s: &Setup) -> Vec<String> {
    s.recorder
        .to("/alice")
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_applied_before_a_crash_are_skipped_after_it() {
    let s = Setup::new().await;
    // Alice is paged once: no repeat of the policy while the test runs.
    s.no_repeat();
    // Killed once the trigger is applied and its position recorded, before
    // the offset commit: the restart reads the trigger again.
    let mut notifier = s
        .notifier_with_env(
            "notify-crashing.log",
            &[("KLAXON_CRASH_AT", "notify.after_position")],
        )
        .await;
    s.trigger("api{}", "api latency").await;
    notifier.wait_for_crash("notify.after_position").await;

    let notifier = s.notifier("notify-restarted.log").await;
    let (_, id) = s.alices_first_page().await;
    wait_until(
        Duration::from_secs(30),
        "the trigger read again",
        async || {
            metric_value(
                &http_get(&notifier, "/metrics"),
                "klaxon_notify_events_skipped_total",
            ) == Some(1.0)
        },
    )
    .await;
    let detail = s.klaxon(&["incident", &id]);
    assert!(detail.contains("triggers   1\n"), "{detail}");
    // The same partition's next event comes after the skipped one: once it
    // is applied, alice has had exactly one page and its resolve.
    produce_all(&s.producer(), "paging", &[resolve_event("api{}")]).await;
    s.recorder.wait_for("/alice", 2).await;
    assert_eq!(alices_events(&s), ["page", "resolved"]);
}

/// Level 1 (alice) escalates to bob after 20s. The notifier is down when
/// that time comes; restarted, it pages bob at its first tick rather than
/// arming the 20s again. (Bob paged within 10s of the restart tells the
/// two apart; it is not a measure of speed.)
#[tokio::test(flavor = "multi_thread")]
async fn a_timer_that_fell_due_while_down_fires_at_once() {
    let s = Setup::new().await;
    s.edit_oncall(|text| text.replacen("delay = \"3s\"", "delay = \"20s\"", 1));
    let mut notifier = s.notifier("notify-1.log").await;
    s.trigger("api{}", "api latency").await;
    let (_, id) = s.alices_first_page().await;
    let paged = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "alice's page recorded",
        async || {
            s.klaxon(&["incident", &id])
                .contains("alice paged by webhook")
        },
    )
    .await;
    notifier.kill();
    // Down until bob's escalation is overdue.
    tokio::time::sleep(Duration::from_secs(21).saturating_sub(paged.elapsed())).await;

    let _notifier = s.notifier("notify-2.log").await;
    let restored = Instant::now();
    s.recorder.wait_for("/slack/bob", 1).await;
    assert!(
        restored.elapsed() < Duration::from_secs(10),
        "bob was paged {:?} after the restart: the overdue escalation waited its delay again",
        restored.elapsed()
    );
    assert_eq!(
        s.recorder.to("/alice").len(),
        1,
        "alice's page is not repeated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_resolve_changes_nothing() {
    let s = Setup::new().await;
    s.no_repeat();
    let _notifier = s.notifier("notify.log").await;
    s.trigger("db{}", "db down").await;
    let (_, id) = s.alices_first_page().await;
    let producer = s.producer();
    produce_all(&producer, "paging", &[resolve_event("db{}")]).await;
    s.recorder.wait_for("/alice", 2).await;
    // Again, as a rules runner re-publishing after a crash would; then a
    // new trigger under the same key (same partition, so applied after).
    produce_all(&producer, "paging", &[resolve_event("db{}")]).await;
    s.trigger("db{}", "db down again").await;
    let pages = s.recorder.wait_for("/alice", 3).await;
    assert_eq!(alices_events(&s), ["page", "resolved", "page"]);
    assert_ne!(incident_id(&pages[2].json()), id, "a new incident");
    let detail = s.klaxon(&["incident", &id]);
    assert_eq!(
        detail.matches("resolved ").count(),
        1,
        "one resolve on the timeline:\n{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_trigger_folds_into_the_open_incident() {
    let s = Setup::new().await;
    s.no_repeat();
    let _notifier = s.notifier("notify.log").await;
    s.trigger("db{}", "db down").await;
    let (_, id) = s.alices_first_page().await;
    s.trigger("db{}", "db down").await;
    produce_all(&s.producer(), "paging", &[resolve_event("db{}")]).await;
    s.recorder.wait_for("/alice", 2).await;
    assert_eq!(alices_events(&s), ["page", "resolved"]);
    let detail = s.klaxon(&["incident", &id]);
    assert!(detail.contains("triggers   2\n"), "{detail}");
    assert!(detail.contains("repeated"), "{detail}");
    let listing = s.klaxon(&["incidents", "--status", "resolved"]);
    assert_eq!(
        listing.lines().skip(1).count(),
        1,
        "one incident:\n{listing}"
    );
}

/// Triggers produced by librdkafka's default partitioner (CRC32 of the key,
/// not Java's murmur2): `klaxon ack KEY` still finds each incident.
#[tokio::test(flavor = "multi_thread")]
async fn acks_reach_incidents_whatever_partitioner_produced_the_trigger() {
    let s = Setup::new().await;
    let _notifier = s.notifier("notify.log").await;
    let crc32 = ClientConfig::new()
        .set("bootstrap.servers", s.broker.bootstrap())
        .create()
        .unwrap();
    // Eight keys over four partitions: CRC32 and murmur2 place some apart.
    let keys: Vec<String> = (0..8).map(|i| format!("svc-{i}{{}}")).collect();
    let triggers: Vec<_> = keys.iter().map(|k| trigger(k, "down")).collect();
    produce_all(&crc32, "paging", &triggers).await;
    s.recorder.wait_for("/alice", keys.len()).await;
    for key in &keys {
        let out = s.klaxon(&["ack", key, "--by", "bob"]);
        assert!(out.ends_with("is acknowledged\n"), "{key}: {out}");
    }
    let listing = s.klaxon(&["incidents", "--status", "acknowledged"]);
    assert_eq!(listing.lines().skip(1).count(), keys.len(), "{listing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_acknowledges_and_resolves_by_id_and_routes_alertmanager_by_policy() {
    let s = Setup::new().await;
    s.notify_settings(&format!("api_token = \"{TOKEN}\""));
    s.edit_oncall(|text| {
        text + r#"
[[policy]]
id = "carol-first"
[[policy.level]]
targets = [{ user = "carol" }]
delay = "1h"
"#
    });
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}", notifier.http_addr());
    let http = http_client();
    let auth = format!("Bearer {TOKEN}");

    s.trigger("db{}", "db down").await;
    let (_, id) = s.alices_first_page().await;
    let incident = format!("{base}/api/v1/incidents/{id}");
    let (status, reply) = post_json(
        &http,
        &format!("{incident}/ack"),
        Some(&auth),
        json!({ "by": "dave" }).to_string(),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["id"], id.as_str());
    wait_for_api(&http, &incident, &auth, "the ack", |i| {
        i["status"] == "acknowledged" && i["acknowledged_by"] == "dave"
    })
    .await;
    let (status, reply) = post_json(
        &http,
        &format!("{incident}/resolve"),
        Some(&auth),
        "{}".into(),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    wait_for_api(&http, &incident, &auth, "the resolve", |i| {
        i["status"] == "resolved"
    })
    .await;
    let (status, _) = post_json(
        &http,
        &format!("{base}/api/v1/incidents/no-such-incident/ack"),
        Some(&auth),
        "{}".into(),
    )
    .await;
    assert_eq!(status, 404);

    // ?policy= routes an Alertmanager alert to that policy: carol, by SMS.
    let alert = json!({
        "version": "4", "status": "firing", "receiver": "klaxon", "groupKey": "{}:{alertname=\"Down\"}",
        "alerts": [{ "status": "firing", "fingerprint": "beef",
            "labels": { "alertname": "Down", "severity": "critical" },
            "annotations": { "summary": "routed by policy" } }]
    });
    let (status, reply) = post_json(
        &http,
        &format!("{base}/api/v1/alertmanager?policy=carol-first"),
        Some(&auth),
        alert.to_string(),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let sms = s
        .recorder
        .wait_for("/2010-04-01/Accounts/AC123/Messages.json", 1)
        .await;
    assert!(sms[0].body.contains("routed+by+policy"), "{}", sms[0].body);
    let listing: Value = api_get(
        &http,
        &format!("{base}/api/v1/incidents?status=open"),
        &auth,
    )
    .await;
    assert_eq!(
        listing["incidents"][0]["policy"], "carol-first",
        "{listing}"
    );
    assert_eq!(
        s.recorder.to("/alice").len(),
        2,
        "alice: the db page and its resolve only"
    );
}
