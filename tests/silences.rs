//! Silences through a real broker, `klaxon notify` and the recording HTTP
//! server: a silenced alert pages nobody and its incident says which
//! silence, whose and why, while an alert beside it pages as usual;
//! `silence list --unused` names the silence that matched nothing; a kill -9
//! of the notifier lifts nothing; expiring the silence pages the alert
//! still firing; the HTTP API makes, lists and
//! expires silences as the CLI does, and refuses bad ones with the reason.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn trigger_with_labels(dedup_key: &str, service: &str) -> (String, String) {
    let event = json!({
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "labels": { "service": service },
        "payload": { "summary": format!("{service} errors"), "source": "test", "severity": "critical" },
    });
    (dedup_key.to_owned(), event.to_string())
}

/// The id in `silence ID active until T`.
fn silence_id(out: &str) -> String {
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("silence"), "{out}");
    words.next().unwrap().to_owned()
}

/// Pages sent to anyone about the alert `dedup_key`: a webhook's body names
/// it; a Slack message carries its summary ("KEY errors" here, as
/// [`trigger_with_labels`] writes it, the key being the service's name).
fn pages_about(s: &Setup, dedup_key: &str) -> usize {
    s.recorder
        .requests()
        .iter()
        .filter(|r| {
            let body = r.json();
            if r.path.starts_with("/slack/") {
                body["text"].as_str().is_some_and(|t| {
                    t.contains(&format!(" {dedup_key} errors (incident")) && !t.contains("RESOLVED")
                })
            } else {
                body["event"] == "page" && body["incident"]["dedup_key"] == dedup_key
            }
        })
        .count()
}

/// Requests to `path` whose body mentions `text`.
fn mentions(s: &Setup, path: &str, text: &str) -> usize {
    s.recorder
        .requests()
        .iter()
        .filter(|r| r.path == path && r.body.contains(text))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silenced_alert_pages_nobody_until_its_silence_is_expired() {
    let s = Setup::new().await;
    s.no_repeat();
    let silence = silence_id(&s.klaxon(&[
        "silence",
        "add",
        "--match",
        "service=api",
        "--match",
        "severity=~crit.*",
        "--for",
        "1h",
        "--comment",
        "deploy 42",
        "--by",
        "dana",
    ]));
    let unused = silence_id(&s.klaxon(&[
        "silence",
        "add",
        "--match",
        "service=nothing",
        "--for",
        "1h",
        "--by",
        "dana",
    ]));
    // The notifier reads the silences before it consumes anything.
    let mut notifier = s.notifier("notify.log").await;
    produce_all(
        &s.producer(),
        "paging",
        &[
            trigger_with_labels("api", "api"),
            trigger_with_labels("db", "db"),
        ],
    )
    .await;

    // db pages alice; api opens, silenced.
    s.recorder.wait_for("/alice", 1).await;
    s.wait_for_incident("api", "suppressed by silence").await;
    let detail = s.klaxon(&["incident", "api"]);
    assert!(
        detail.contains(&format!("suppressed by silence {silence} of dana until ")),
        "{detail}"
    );
    assert!(detail.contains(": deploy 42"), "{detail}");
    assert!(
        detail.contains(&format!("silenced   by {silence} (pages when it ends)")),
        "{detail}"
    );
    assert!(pages_about(&s, "db") >= 1);
    assert_eq!(pages_about(&s, "api"), 0, "the silenced alert paged");

    // The silence that suppressed api is marked used; the other is not.
    wait_until(
        Duration::from_secs(30),
        "the used silence marked",
        async || {
            !s.klaxon(&["silence", "list", "--unused"])
                .contains(&silence)
        },
    )
    .await;
    let unused_list = s.klaxon(&["silence", "list", "--unused"]);
    assert!(unused_list.contains(&unused), "{unused_list}");
    let listing = s.klaxon(&["silence", "list"]);
    assert!(
        listing.contains(&silence) && listing.contains("service=api severity=~crit.*"),
        "{listing}"
    );

    // Bob's level (3s after alice) never comes for api while silenced: db's
    // does, so the wait was long enough to see it.
    s.recorder.wait_for("/slack/bob", 1).await;
    assert_eq!(pages_about(&s, "api"), 0);

    // Killed and restarted, the notifier keeps api silenced: another
    // alert's page comes through the restarted member, api's does not.
    notifier.kill();
    let _restarted = s.notifier("notify-restarted.log").await;
    produce_all(
        &s.producer(),
        "paging",
        &[trigger_with_labels("web", "web")],
    )
    .await;
    wait_until(Duration::from_secs(30), "web paged", async || {
        pages_about(&s, "web") >= 1
    })
    .await;
    assert_eq!(pages_about(&s, "api"), 0, "paged after the restart");

    let out = s.klaxon(&["silence", "expire", &silence, "--by", "erin"]);
    assert_eq!(out, format!("silence {silence} expired\n"));
    wait_until(
        Duration::from_secs(30),
        "api paged once its silence ended",
        async || pages_about(&s, "api") >= 1,
    )
    .await;
    let detail = s.klaxon(&["incident", "api"]);
    assert!(
        detail.contains(&format!("silence {silence} expired by erin: paging")),
        "{detail}"
    );
    // "Acknowledge until resolved" is one command.
    let out = s.klaxon(&["ack", "api", "--until-resolved", "--by", "bob"]);
    assert!(out.ends_with("is acknowledged\n"), "{out}");
    let detail = s.klaxon(&["incident", "api"]);
    assert!(detail.contains("by bob until resolved"), "{detail}");

    let listing = s.klaxon(&["silence", "list"]);
    assert!(!listing.contains(&silence), "{listing}");
    let all = s.klaxon(&["silence", "list", "--all"]);
    assert!(all.contains(&silence) && all.contains("expired"), "{all}");

    let refused = s
        .command(&["silence", "add", "--match", "team!=db", "--for", "1h"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("would silence everything"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_makes_lists_and_expires_silences() {
    let s = Setup::new().await;
    s.notify_settings("api_token = \"t0ken-t0ken-t0ken\"");
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}/api/v1/silences", notifier.http_addr());
    let http = http_client();
    let auth = "Bearer t0ken-t0ken-t0ken";

    let (status, _) = post_json(&http, &base, None, "{}".into()).await;
    assert_eq!(status, 401, "no token");
    let body =
        json!({ "matchers": ["service=checkout"], "for": "2h", "comment": "deploy", "by": "dana" });
    let (status, made) = post_json(&http, &base, Some(auth), body.to_string()).await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["matchers"], json!(["service=checkout"]));
    // A silence reaches the notifiers within about a second: the alerts
    // below come once this one has read it.
    notifier.wait_for_log("silences changed").await;

    let bad = json!({ "matchers": ["service=~("], "for": "2h" });
    let (status, why) = post_json(&http, &base, Some(auth), bad.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        why["error"].as_str().unwrap().contains("not a regex"),
        "{why}"
    );

    let listed = api_get(&http, &base, auth).await;
    let ids: Vec<&Value> = listed["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, [&json!(id)]);
    assert_eq!(listed["silences"][0]["status"], "active");

    // An alert from Alertmanager's webhook is matched by its labels: the
    // silence on service=checkout keeps it from paging; one for another
    // service pages.
    let am = |fingerprint: &str, service: &str| {
        json!({
            "version": "4", "status": "firing", "receiver": "klaxon", "groupKey": "{}:{}",
            "alerts": [{ "status": "firing", "fingerprint": fingerprint,
                "labels": { "alertname": "Errors", "severity": "critical", "service": service },
                "annotations": { "summary": format!("{service} errors") } }]
        })
        .to_string()
    };
    let intake = format!("http://{}/api/v1/alertmanager", notifier.http_addr());
    for (fingerprint, service) in [("c0ffee", "checkout"), ("beef", "search")] {
        let (status, body) = post_json(&http, &intake, Some(auth), am(fingerprint, service)).await;
        assert_eq!(status, 202, "{body}");
    }
    wait_until(Duration::from_secs(30), "search paged", async || {
        pages_about(&s, "alertmanager/beef") >= 1
    })
    .await;
    let suppressed = format!("suppressed by silence {id} of dana");
    s.wait_for_incident("alertmanager/c0ffee", &suppressed)
        .await;
    // Bob's level comes 3s after alice's: once search's has come, the
    // silenced alert had all the time it needed to page anyone.
    wait_until(
        Duration::from_secs(30),
        "search's second level",
        async || mentions(&s, "/slack/bob", "search errors") >= 1,
    )
    .await;
    for path in ["/alice", "/slack/alice", "/slack/bob"] {
        assert_eq!(mentions(&s, path, "checkout errors"), 0, "{path} was paged");
    }

    let expired = http
        .delete(format!("{base}/{id}?by=erin"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 200);
    let listed = api_get(&http, &base, auth).await;
    assert_eq!(
        listed["silences"],
        json!([]),
        "an expired silence is not listed"
    );
    let all = api_get(&http, &format!("{base}?all=true"), auth).await;
    assert_eq!(all["silences"][0]["expired_by"], "erin");
    let again = http
        .delete(format!("{base}/{id}"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "it has ended already");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silence_ended_longer_than_the_retention_is_deleted() {
    let s = Setup::new().await;
    let recent = silence_id(&s.klaxon(&[
        "silence",
        "add",
        "--match",
        "service=web",
        "--for",
        "1h",
        "--by",
        "dana",
    ]));
    // A silence that ended six days ago (the retention is five), written as
    // an older klaxon would have left it, with its use mark.
    let ended = chrono::Utc::now() - chrono::Duration::days(6);
    let old = json!({
        "id": "0ld5113nce", "matchers": ["service=api"],
        "starts_at": ended - chrono::Duration::hours(1), "ends_at": ended,
        "created_by": "dana", "created_at": ended - chrono::Duration::hours(1),
        "comment": "last week's deploy",
    });
    produce_all(
        &s.producer(),
        "silences",
        &[
            ("silence/0ld5113nce".to_owned(), old.to_string()),
            ("used/0ld5113nce".to_owned(), "some-incident".to_owned()),
        ],
    )
    .await;
    let listed = s.klaxon(&["silence", "list", "--all"]);
    assert!(listed.contains("0ld5113nce"), "{listed}");

    let _notifier = s.notifier("notify.log").await;
    wait_until(
        Duration::from_secs(30),
        "the old silence deleted",
        async || {
            !s.klaxon(&["silence", "list", "--all"])
                .contains("0ld5113nce")
        },
    )
    .await;
    let listed = s.klaxon(&["silence", "list", "--all"]);
    assert!(listed.contains(&recent), "{listed}");
}
