//! `klaxon notify` through a real broker and real HTTP servers on 127.0.0.1:
//! an event on `paging` pages whoever is on call, escalates to level 2 when
//! nobody acknowledges, `klaxon ack` stops it, a kill -9 in the middle loses
//! no incident and repeats no delivered page, bad events go to the
//! dead-letter topic, SMS goes out in Twilio's request shape, and a failing
//! channel falls through to the user's next contact method.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn pages_escalate_until_acknowledged_from_the_cli() {
    let s = Setup::new().await;
    let _notifier = s.notifier("notify.log").await;
    s.trigger("db{host=db-1}", "db-1 is down").await;

    let (body, id) = s.alices_first_page().await;
    assert_eq!(body["event"], "page");
    assert_eq!(body["user"], "alice");
    assert_eq!(body["incident"]["summary"], "db-1 is down");
    assert!(
        body["ack_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://klaxon.example/ack/{id}?expires=")),
        "{body}"
    );

    // Nobody acknowledges: level 2 pages bob on Slack after the 3s delay.
    let slack = s.recorder.wait_for("/slack/bob", 1).await[0].json();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("db-1 is down") && text.contains("|Acknowledge>"),
        "{text}"
    );

    let out = s.klaxon(&["ack", "db{host=db-1}", "--by", "bob"]);
    assert_eq!(out, format!("incident {id} is acknowledged\n"));
    // With repeat = 3, alice would be paged again 3s after bob; the ack
    // stops that timer (the CLI waited until the ack was applied).
    let detail = s.klaxon(&["incident", &id]);
    assert!(detail.contains("\nescalates  never\n"), "{detail}");

    let listing = s.klaxon(&["incidents", "--status", "acknowledged"]);
    assert!(
        listing.contains(&format!("{id}\tacknowledged\tcritical\t")),
        "{listing}"
    );
    let detail = s.klaxon(&["incident", &id]);
    for line in [
        "triggered",
        "level 1: paging alice",
        "alice paged by webhook",
        "level 2: paging bob",
        "bob paged by slack",
        "by bob",
    ] {
        assert!(detail.contains(line), "{line:?} missing from\n{detail}");
    }
    let timeline: Vec<&str> = detail.lines().skip_while(|l| *l != "timeline").collect();
    let ack = timeline
        .iter()
        .position(|l| l.contains(" acknowledged ") && l.ends_with("by bob"))
        .unwrap_or_else(|| panic!("no acknowledgement in\n{detail}"));
    assert!(
        !timeline[ack..].iter().any(|l| l.contains(" escalated ")),
        "escalation went on after the ack:\n{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_loses_no_incident_and_repeats_no_delivered_page() {
    let s = Setup::new().await;
    let mut notifier = s.notifier("notify-1.log").await;
    s.trigger("api{}", "api latency").await;
    let (_, id) = s.alices_first_page().await;
    // Delivered means recorded as sent: a kill between the delivery and
    // its record re-sends the page as uncertain, by design.
    wait_until(
        Duration::from_secs(30),
        "alice's page recorded as sent",
        async || {
            s.klaxon(&["incident", &id])
                .contains("alice paged by webhook")
        },
    )
    .await;
    notifier.kill();

    // The escalation timer resumes in the restarted member: bob is paged,
    // alice's delivered page is not sent again.
    let _notifier = s.notifier("notify-2.log").await;
    s.recorder.wait_for("/slack/bob", 1).await;
    assert_eq!(
        s.recorder.to("/alice").len(),
        1,
        "alice's page was delivered before the crash"
    );

    let out = s.klaxon(&["resolve", "api{}", "--by", "carol"]);
    assert!(out.ends_with("is resolved\n"), "{out}");
    // Everyone reached hears of the resolve, once.
    let alice = s.recorder.wait_for("/alice", 2).await;
    assert_eq!(alice[1].json()["event"], "resolved");
    let bob = s.recorder.wait_for("/slack/bob", 2).await;
    assert!(
        bob[1].body.contains("RESOLVED: api latency"),
        "{}",
        bob[1].body
    );
}

/// Killed after a page went out and before its `Sent` record: the restart
/// cannot know whether it went, so it sends it again and says so on the
/// timeline ("uncertain"): twice, never lost.
#[tokio::test(flavor = "multi_thread")]
async fn killed_between_a_send_and_its_record_sends_again_as_uncertain() {
    let s = Setup::new().await;
    let mut notifier = s
        .notifier_with_env(
            "notify-crashing.log",
            &[("KLAXON_CRASH_AT", "notify.after_send")],
        )
        .await;
    s.trigger("api{}", "api latency").await;
    let (first, id) = s.alices_first_page().await;
    notifier.wait_for_crash("notify.after_send").await;
    assert!(
        !s.klaxon(&["incident", &id])
            .contains("alice paged by webhook"),
        "the page was recorded before the crash"
    );

    let _notifier = s.notifier("notify-restarted.log").await;
    let pages = s.recorder.wait_for("/alice", 2).await;
    let again = pages[1].json();
    assert_eq!(again["event"], first["event"]);
    assert_eq!(incident_id(&again), id);
    wait_until(
        Duration::from_secs(30),
        "the page recorded as sent",
        async || {
            s.klaxon(&["incident", &id])
                .contains("alice paged by webhook")
        },
    )
    .await;
    let detail = s.klaxon(&["incident", &id]);
    assert!(detail.contains(": sending again"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_events_go_to_the_dead_letter_topic_with_their_reason() {
    let s = Setup::new().await;
    let _notifier = s.notifier("notify.log").await;
    let bad = [
        ("k1".to_owned(), "not json".to_owned()),
        (
            "k2".to_owned(),
            r#"{"event_action":"explode","dedup_key":"k2"}"#.to_owned(),
        ),
        ("k3".to_owned(), r#"{"event_action":"trigger"}"#.to_owned()),
    ];
    produce_all(&s.producer(), "paging", &bad).await;
    // A good event after them is still handled: nothing stalls.
    s.trigger("after{}", "still paging").await;
    s.recorder.wait_for("/alice", 1).await;

    let mut reasons: Vec<(String, String)> =
        read_dead_letters(&s.broker.bootstrap(), "paging.dlq", 3)
            .await
            .iter()
            .map(|l| (l.header("klaxon.reason").to_owned(), l.payload_text()))
            .collect();
    reasons.sort();
    assert_eq!(reasons[0], ("invalid_event".to_owned(), bad[1].1.clone()));
    assert_eq!(reasons[1], ("invalid_json".to_owned(), bad[0].1.clone()));
    assert_eq!(
        reasons[2],
        ("missing_dedup_key".to_owned(), bad[2].1.clone())
    );
}

/// The fields of a form-encoded request, as Twilio's API receives them.
fn form_fields(request: &Recorded) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(request.body.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_pages_reach_sms_and_failing_channels_fall_through() {
    let s = Setup::new().await;
    let _notifier = s.notifier("notify.log").await;

    // SMS in Twilio's request shape, with basic auth.
    s.klaxon(&[
        "page",
        "--user",
        "carol",
        "--summary",
        "need a DBA",
        "--by",
        "dave",
    ]);
    let sms = s
        .recorder
        .wait_for("/2010-04-01/Accounts/AC123/Messages.json", 1)
        .await;
    let form = form_fields(&sms[0]);
    assert_eq!(form["To"], "+15550102", "{form:?}");
    assert_eq!(form["From"], "+15550000", "{form:?}");
    assert!(form["Body"].contains("need a DBA"), "{form:?}");
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC123:secret")
    );
    assert_eq!(sms[0].authorization.as_deref(), Some(basic.as_str()));
    // Unacknowledged after 1s, her personal rule calls: TwiML says the summary.
    let call = s
        .recorder
        .wait_for("/2010-04-01/Accounts/AC123/Calls.json", 1)
        .await;
    let form = form_fields(&call[0]);
    assert_eq!(form["To"], "+15550103", "{form:?}");
    let twiml = &form["Twiml"];
    assert!(
        twiml.starts_with("<Response><Say>klaxon. [critical] need a DBA"),
        "{twiml}"
    );

    // Alice's webhook fails: after its retries, her Slack is tried.
    s.recorder.fail("/alice");
    s.klaxon(&[
        "page",
        "--schedule",
        "primary",
        "--summary",
        "help with deploy",
    ]);
    s.recorder.wait_for("/slack/alice", 1).await;
    assert_eq!(
        s.recorder.to("/alice").len(),
        2,
        "two attempts (retry.attempts = 2)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_takes_alertmanager_and_events_v2_and_signed_ack_links() {
    let s = Setup::new().await;
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap().replace(
            "[notify]\n",
            "[notify]\napi_token = \"t0ken-t0ken-t0ken\"\n",
        ),
    )
    .unwrap();
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}", notifier.http_addr());
    let http = reqwest::Client::new();
    let auth = "Bearer t0ken-t0ken-t0ken";

    let refused = http
        .get(format!("{base}/api/v1/incidents"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "no token");

    // Alertmanager's webhook (version 4), as Prometheus + Alertmanager send it.
    let alert = json!({
        "version": "4", "status": "firing", "receiver": "klaxon", "groupKey": "{}:{alertname=\"Down\"}",
        "alerts": [{ "status": "firing", "fingerprint": "f00d",
            "labels": { "alertname": "Down", "severity": "critical", "instance": "db-2" },
            "annotations": { "summary": "db-2 is down" } }]
    });
    let sent = http
        .post(format!("{base}/api/v1/alertmanager"))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(alert.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202, "{}", sent.text().await.unwrap());
    let (body, id) = s.alices_first_page().await;
    assert_eq!(body["incident"]["summary"], "db-2 is down");
    assert_eq!(body["incident"]["dedup_key"], "alertmanager/f00d");

    let open = api_get(&http, &format!("{base}/api/v1/incidents?status=open"), auth).await;
    assert_eq!(open["incidents"][0]["id"], id.as_str(), "{open}");

    // The signed link from the message: a GET (what link scanners do) only
    // shows a page; its button POSTs and acknowledges. A tampered one does not.
    let link = body["ack_url"].as_str().unwrap();
    let path = link.strip_prefix("http://klaxon.example").unwrap();
    let forged = format!("{base}{}", path.replace("sig=", "sig=00"));
    assert_eq!(http.get(&forged).send().await.unwrap().status(), 403);
    assert_eq!(http.post(&forged).send().await.unwrap().status(), 403);
    let page = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<form method=\"post\""), "{page}");
    let still: Value = api_get(&http, &format!("{base}/api/v1/incidents/{id}"), auth).await;
    assert_eq!(still["status"], "triggered", "a GET acknowledges nothing");
    let acked = http.post(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(acked.status(), 200);
    assert!(
        acked
            .text()
            .await
            .unwrap()
            .starts_with(&format!("Acknowledged incident {id}"))
    );
    let incident = format!("{base}/api/v1/incidents/{id}");
    wait_for_api(&http, &incident, auth, "the acknowledgement", |i| {
        i["status"] == "acknowledged" && i["acknowledged_by"] == "acknowledge link"
    })
    .await;

    // PagerDuty's Events v2 endpoint shape, the routing key as credential.
    let resolve = json!({ "routing_key": "t0ken-t0ken-t0ken", "event_action": "resolve", "dedup_key": "alertmanager/f00d" });
    let done = http
        .post(format!("{base}/v2/enqueue"))
        .header("content-type", "application/json")
        .body(resolve.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 202);
    let wrong = json!({ "routing_key": "nope", "event_action": "resolve", "dedup_key": "x" });
    assert_eq!(
        http.post(format!("{base}/v2/enqueue"))
            .header("content-type", "application/json")
            .body(wrong.to_string())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let bad = http
        .post(format!("{base}/api/v1/events"))
        .header("authorization", auth)
        .body(r#"{"event_action":"trigger","dedup_key":"k"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status(),
        400,
        "a trigger without payload is refused at the door"
    );
    wait_for_api(&http, &incident, auth, "the resolve", |i| {
        i["status"] == "resolved"
    })
    .await;

    let oncall = api_get(
        &http,
        &format!("{base}/api/v1/oncall?schedule=primary"),
        auth,
    )
    .await;
    assert_eq!(oncall["oncall"][0]["user"], "alice", "{oncall}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_cannot_hold_the_http_api() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Setup::new().await;
    let config = std::fs::read_to_string(&s.config).unwrap().replace(
        "[notify]\n",
        "[notify]\napi_token = \"t0ken-t0ken-t0ken\"\n",
    );
    std::fs::write(
        &s.config,
        format!("{config}\n[http]\nheader_read_timeout = \"2s\"\nrequest_timeout = \"3s\"\n"),
    )
    .unwrap();
    let notifier = s.notifier("notify.log").await;
    let addr = notifier.http_addr();
    let auth = "Bearer t0ken-t0ken-t0ken";

    // A slowloris: 200 clients send half a request's headers and stay; 20
    // more send whole headers and part of the body.
    let mut slow = Vec::new();
    for i in 0..220 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let half = if i < 200 {
            "POST /api/v1/events HTTP/1.1\r\nHost: klaxon\r\nContent-Le".to_owned()
        } else {
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: klaxon\r\nauthorization: {auth}\r\ncontent-length: 1000\r\n\r\n{{\"event"
            )
        };
        c.write_all(half.as_bytes()).await.unwrap();
        slow.push(c);
    }

    // Meanwhile /healthz and the API answer.
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let listing = api_get(&http, &format!("http://{addr}/api/v1/incidents"), auth).await;
    assert!(listing["incidents"].is_array(), "{listing}");

    // And the server closes every slow connection: half-sent headers
    // without an answer, half-sent bodies with a 503.
    let reads = slow.into_iter().map(|mut c| async move {
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    let answers = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(reads))
        .await
        .expect("slow connections stayed open");
    assert!(answers[..200].iter().all(String::is_empty), "{answers:?}");
    for answer in &answers[200..] {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("http.request_timeout"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_carry_no_other_addresses_and_slack_text_is_escaped() {
    let s = Setup::new().await;
    // dave's webhook is down; its URL holds credentials in path and query.
    let mut oncall = std::fs::read_to_string(&s.oncall).unwrap();
    oncall.push_str(
        "\n[[user]]\nid = \"dave\"\ncontact = [{ type = \"webhook\", address = \"http://127.0.0.1:1/hooks/T0SECRET?token=Q1SECRET\" }]\n",
    );
    std::fs::write(&s.oncall, oncall).unwrap();
    let notifier = s.notifier("notify.log").await;

    // Summaries come from producers (and from tag values through rules).
    let summary = "<!channel> db-1 down, see <http://evil.example|the runbook> & call";
    s.trigger("esc{}", summary).await;
    let slack = s.recorder.wait_for("/slack/bob", 1).await[0].json();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains(
            "&lt;!channel&gt; db-1 down, see &lt;http://evil.example|the runbook&gt; &amp; call"
        ),
        "{text}"
    );
    assert!(
        !text.contains("<!channel>") && !text.contains("<http://evil"),
        "{text}"
    );
    assert!(
        text.contains("|Acknowledge>"),
        "klaxon's own link stays: {text}"
    );

    // alice hears of the resolve after bob was paged on Slack: her webhook
    // learns the incident and its timeline, not bob's Slack URL.
    s.klaxon(&["resolve", "esc{}", "--by", "carol"]);
    let told = |r: &Recorded| r.body.contains(r#""event":"resolved""#);
    wait_until(Duration::from_secs(60), "alice told of the resolve", || {
        let done = s.recorder.to("/alice").iter().any(told);
        async move { done }
    })
    .await;
    let alice = s.recorder.to("/alice");
    let resolved = alice.iter().find(|r| told(r)).unwrap().json();
    let incident = &resolved["incident"];
    assert_eq!(incident["summary"], summary);
    assert_eq!(incident["dedup_key"], "esc{}");
    assert_eq!(incident["status"], "resolved");
    assert!(incident.get("notifications").is_none(), "{incident}");
    let timeline = incident["timeline"].as_array().unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("bob paged by slack")),
        "{incident}"
    );
    for r in &alice {
        assert!(!r.body.contains("/slack/"), "{}", r.body);
    }

    // dave's page fails: the timeline and the log name the host only.
    let out = s.klaxon(&["page", "--user", "dave", "--summary", "for dave"]);
    let dedup_key = out
        .split("(dedup_key ")
        .nth(1)
        .and_then(|rest| rest.trim().strip_suffix(')'))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let mut detail = String::new();
    wait_until(Duration::from_secs(60), "dave's failed page", || {
        // Not found until the notifier has written the incident.
        let out = s
            .command(&["incident", &dedup_key])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        detail = String::from_utf8_lossy(&out.stdout).into_owned();
        let done = detail.contains("no contact method left");
        async move { done }
    })
    .await;
    assert!(
        detail.contains("request to http://127.0.0.1:1 failed"),
        "{detail}"
    );
    let log = notifier.log_text();
    for text in [&detail, &log] {
        assert!(
            !text.contains("T0SECRET") && !text.contains("Q1SECRET"),
            "{text}"
        );
    }
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost: the paths
/// of the CA's certificate, the server's certificate and its key.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "klaxon test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread")]
async fn e_mail_pages_reach_a_real_smtp_server_over_starttls_with_auth() {
    let s = Setup::new().await;
    let (ca, cert, key) = tls_files(s.dir.path());
    let maildir = s.dir.path().join("maildir");
    let script = repo_file("tests/smtp_server.py");
    let (_smtp, port) = spawn_listening("the SMTP server", |port| {
        Proc::spawn_program(
            test_python().to_str().unwrap(),
            s.dir.path(),
            &[
                script.to_str().unwrap(),
                "localhost",
                &port.to_string(),
                maildir.to_str().unwrap(),
                cert.to_str().unwrap(),
                key.to_str().unwrap(),
                "klaxon",
                "s3cret",
            ],
            &[],
            s.dir.path().join(format!("smtp-{port}.log")),
        )
    })
    .await;
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(&format!(
        "\n[notify.smtp]\nhost = \"localhost\"\nport = {port}\ntls = \"starttls\"\nusername = \"klaxon\"\nfrom = \"klaxon@example.com\"\nca_file = \"{}\"\n",
        ca.display()
    ));
    std::fs::write(&s.config, config).unwrap();
    let mut oncall = std::fs::read_to_string(&s.oncall).unwrap();
    oncall.push_str("\n[[user]]\nid = \"dave\"\ncontact = [{ type = \"email\", address = \"dave@example.com\" }]\n");
    std::fs::write(&s.oncall, oncall).unwrap();

    // The password comes from the environment, as the README advises.
    let _notifier = s
        .notifier_with_env("notify.log", &[("KLAXON_SMTP_PASSWORD", "s3cret")])
        .await;
    s.klaxon(&["page", "--user", "dave", "--summary", "disk full on db-3"]);
    let new = maildir.join("new");
    wait_until(Duration::from_secs(60), "an e-mail in the maildir", || {
        let n = std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0);
        async move { n >= 1 }
    })
    .await;
    let file = std::fs::read_dir(&new)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mail = std::fs::read_to_string(file).unwrap();
    assert!(mail.contains("To: dave@example.com"), "{mail}");
    assert!(mail.contains("From: klaxon@example.com"), "{mail}");
    assert!(
        mail.contains("Subject: [klaxon] [critical] disk full on db-3"),
        "{mail}"
    );
    assert!(
        mail.contains("Acknowledge: http://klaxon.example/ack/"),
        "{mail}"
    );
}

/// The incident ids in the bodies of webhook pages.
fn paged_ids(requests: &[Recorded]) -> Vec<String> {
    let mut ids: Vec<String> = requests.iter().map(|r| incident_id(&r.json())).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn two_notifiers_share_incidents_by_partition_and_hand_them_over() {
    let s = Setup::new().await;
    s.no_repeat();
    let mut first = s.notifier("notify-1.log").await;
    let second = s.notifier("notify-2.log").await;
    wait_until(
        Duration::from_secs(60),
        "both members to hold partitions",
        || {
            let (a, b) = (first.log_text(), second.log_text());
            async move {
                a.matches("restored incidents").count() >= 1
                    && b.matches("restored incidents").count() >= 1
                    && a.contains("partition revoked")
            }
        },
    )
    .await;
    let triggers: Vec<(String, String)> = (0..8)
        .map(|i| trigger(&format!("svc-{i}{{}}"), &format!("service {i} down")))
        .collect();
    produce_all(&s.producer(), "paging", &triggers).await;
    let alice = s.recorder.wait_for("/alice", 8).await;
    let ids = paged_ids(&alice);
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        8,
        "each incident paged by exactly one member: {ids:?}"
    );
    assert_eq!(
        first.log_text().matches("incident opened").count()
            + second.log_text().matches("incident opened").count(),
        8
    );

    // The first member leaves before level 2 is due; the second restores
    // its partitions and escalates every incident to bob exactly once.
    assert!(first.terminate().success());
    s.recorder.wait_for("/slack/bob", 8).await;
    // Resolve them all: once bob has heard of every resolve, any page the
    // handover repeated would have gone out before it.
    let resolves: Vec<(String, String)> = (0..8)
        .map(|i| {
            let key = format!("svc-{i}{{}}");
            let event = json!({ "routing_key": "r", "event_action": "resolve", "dedup_key": key });
            (key, event.to_string())
        })
        .collect();
    produce_all(&s.producer(), "paging", &resolves).await;
    let bob = s.recorder.wait_for("/slack/bob", 16).await;
    let resolved = |r: &&Recorded| r.body.contains("RESOLVED");
    assert_eq!(bob.iter().filter(resolved).count(), 8, "{bob:?}");
    assert_eq!(bob.len(), 16, "no page repeated by the handover: {bob:?}");
    let alice = s.recorder.wait_for("/alice", 16).await;
    assert_eq!(
        alice.iter().filter(|r| r.json()["event"] == "page").count(),
        8,
        "no page repeated by the handover"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_oncall_file_is_refused_and_the_previous_one_stays() {
    let s = Setup::new().await;
    let notifier = s.notifier("notify.log").await;
    let good = std::fs::read_to_string(&s.oncall).unwrap();
    std::fs::write(
        &s.oncall,
        good.replace("users = [\"alice\"]", "users = [\"alicia\"]"),
    )
    .unwrap();
    let layer_line = good
        .lines()
        .position(|l| l == "[[schedule.layer]]")
        .unwrap()
        + 1;
    let expected = format!(
        "{}:{layer_line}: error: schedule \"primary\" layer 1: unknown user \"alicia\"",
        s.oncall.display()
    );
    wait_until(Duration::from_secs(30), "the refused reload", || {
        let (log, expected) = (notifier.log_text(), expected.clone());
        async move { log.contains(&expected) && log.contains("previous on-call config stays active") }
    })
    .await;
    s.trigger("still{}", "still works").await;
    let page = s.recorder.wait_for("/alice", 1).await;
    assert!(
        page[0].body.contains("still works"),
        "paged with the previous config"
    );
}

/// A token long enough for any check on the API token.
const TOKEN: &str = "operator-token-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn oversized_events_are_refused_or_cut_and_paging_goes_on() {
    let s = Setup::new().await;
    s.notify_settings(&format!("api_token = \"{TOKEN}\""));
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}", notifier.http_addr());
    let http = http_client();
    let auth = format!("Bearer {TOKEN}");
    let events = format!("{base}/api/v1/events");

    // Over PagerDuty's 512 KB for one event: refused, and said why.
    let (status, reply) = post_json(
        &http,
        &events,
        Some(&auth),
        trigger_body("big-1", &"x".repeat(600_000)),
    )
    .await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("over 512 KiB"),
        "{reply}"
    );

    // Under it, but a summary past Events v2's 1024 characters: cut, and
    // the reply says which field.
    let (status, reply) = post_json(
        &http,
        &events,
        Some(&auth),
        trigger_body("long-1", &"y".repeat(100_000)),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["truncated"], json!(["payload.summary"]), "{reply}");
    s.recorder.wait_for("/alice", 1).await;
    let long = api_get(&http, &format!("{base}/api/v1/incidents/long-1"), &auth).await;
    let summary = long["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024, "{long}");
    assert!(summary.ends_with('…'));

    // Anyone may produce to the paging topic: a 900 KB summary there is cut
    // the same way, the incident fits its changelog record, and the
    // notifier keeps paging.
    s.trigger("direct-1", &"z".repeat(900_000)).await;
    s.trigger("after-1", "still paging").await;
    // (Escalation may page alice again for the earlier incidents.)
    wait_until(
        Duration::from_secs(60),
        "the page after the big event",
        || {
            let paged = s
                .recorder
                .to("/alice")
                .iter()
                .any(|p| p.body.contains("still paging"));
            async move { paged }
        },
    )
    .await;

    // Thousands of triggers of one incident keep a bounded record: counts,
    // the first and the last entries.
    let flaps: Vec<(String, String)> = (1..=3000)
        .map(|i| trigger("flap-1", &format!("flap {i}")))
        .collect();
    produce_all(&s.producer(), "paging", &flaps).await;
    let url = format!("{base}/api/v1/incidents/flap-1");
    wait_until(Duration::from_secs(60), "3000 triggers applied", || {
        let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
        async move { api_get(&http, &url, &auth).await["triggers"] == 3000 }
    })
    .await;
    let flap = api_get(&http, &url, &auth).await;
    let timeline = flap["timeline"].as_array().unwrap();
    assert!(timeline.len() <= 71, "{} entries", timeline.len());
    assert_eq!(timeline[0]["kind"], "triggered");
    let elided = timeline.iter().find(|e| e["kind"] == "elided").unwrap();
    assert_eq!(
        elided["detail"],
        format!("{} entries left out, the last at this time", flap["elided"])
    );
    // The tail is kept: the last trigger is there (an escalation may come
    // after it, the policy's delay running meanwhile).
    assert!(
        timeline
            .iter()
            .rev()
            .take(50)
            .any(|e| e["detail"] == "trigger 3000: now flap 3000 (critical)"),
        "{timeline:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ack_link_acts_on_its_own_incident_only() {
    let s = Setup::new().await;
    s.notify_settings(&format!("api_token = \"{TOKEN}\""));
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}", notifier.http_addr());
    let http = http_client();
    let auth = format!("Bearer {TOKEN}");
    let local = |link: &Value| {
        let path = link.as_str().unwrap();
        format!(
            "{base}{}",
            path.strip_prefix("http://klaxon.example").unwrap()
        )
    };
    let incident = |id: &str| format!("{base}/api/v1/incidents/{id}");

    s.trigger("disk-1", "disk full").await;
    let (first, first_id) = s.alices_first_page().await;
    let first_link = local(&first["ack_url"]);
    let (status, reply) = post_json(
        &http,
        &format!("{base}/api/v1/incidents/{first_id}/resolve"),
        Some(&auth),
        json!({ "by": "carol" }).to_string(),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    wait_for_api(&http, &incident(&first_id), &auth, "the resolve", |i| {
        i["status"] == "resolved"
    })
    .await;

    // The same alert fires again: a new incident under the same dedup_key.
    s.trigger("disk-1", "disk full again").await;
    let second_page = || {
        s.recorder
            .to("/alice")
            .iter()
            .map(|r| r.json())
            .find(|p| p["event"] == "page" && p["incident"]["id"] != first_id.as_str())
    };
    wait_until(
        Duration::from_secs(60),
        "the second incident's page",
        || {
            let paged = second_page().is_some();
            async move { paged }
        },
    )
    .await;
    let second = second_page().unwrap();
    let second_id = incident_id(&second);

    // The first incident's link says it is closed, and acknowledges nothing.
    let page = http.get(&first_link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("is already resolved by carol"), "{page}");
    assert!(!page.contains("<form"), "no button: {page}");
    let pressed = http.post(&first_link).send().await.unwrap();
    assert_eq!(pressed.status(), 409);
    let text = pressed.text().await.unwrap();
    assert_eq!(
        text,
        format!(
            "Incident {first_id} is already resolved by carol: this link acknowledges nothing.\n"
        )
    );
    // Whatever the link sent is before this trigger on the incident's
    // partition: once the trigger is applied, the second incident shows
    // whether the link touched it.
    s.trigger("disk-1", "disk still full").await;
    wait_for_api(
        &http,
        &incident(&second_id),
        &auth,
        "the repeated trigger",
        |i| i["triggers"] == 2,
    )
    .await;
    assert_eq!(
        api_get(&http, &incident(&second_id), &auth).await["status"],
        "triggered",
        "the first incident's link acknowledged the second"
    );

    // Its own link does.
    let pressed = http.post(local(&second["ack_url"])).send().await.unwrap();
    assert_eq!(pressed.status(), 200);
    wait_for_api(
        &http,
        &incident(&second_id),
        &auth,
        "the acknowledgement",
        |i| i["status"] == "acknowledged",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn integration_keys_send_events_but_cannot_read_or_act() {
    const ALERTMANAGER: &str = "am-key-0123456789abcdef";
    const GRAFANA: &str = "grafana-key-0123456789abcdef";
    let s = Setup::new().await;
    s.notify_settings(&format!(
        "api_token = \"{TOKEN}\"\nintegration_keys = {{ alertmanager = \"{ALERTMANAGER}\" }}"
    ));
    // The second key from the environment, as secrets are best kept.
    let notifier = s
        .notifier_with_env("notify.log", &[("KLAXON_INTEGRATION_KEY_GRAFANA", GRAFANA)])
        .await;
    let base = format!("http://{}", notifier.http_addr());
    let http = http_client();

    // Each key sends on the intake routes.
    let alert = json!({
        "version": "4", "status": "firing", "receiver": "klaxon", "groupKey": "{}",
        "alerts": [{ "status": "firing", "fingerprint": "f1",
            "labels": { "alertname": "Down", "instance": "db-2" },
            "annotations": { "summary": "db-2 is down" } }]
    });
    let am = format!("Bearer {ALERTMANAGER}");
    let grafana = format!("Bearer {GRAFANA}");
    let (status, reply) = post_json(
        &http,
        &format!("{base}/api/v1/alertmanager"),
        Some(&am),
        alert.to_string(),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let mut enqueue: Value = serde_json::from_str(&trigger_body("k-2", "two")).unwrap();
    enqueue["routing_key"] = ALERTMANAGER.into();
    let (status, reply) = post_json(
        &http,
        &format!("{base}/v2/enqueue"),
        None,
        enqueue.to_string(),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let (status, reply) = post_json(
        &http,
        &format!("{base}/api/v1/events"),
        Some(&grafana),
        trigger_body("k-3", "three"),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    s.recorder.wait_for("/alice", 3).await;

    // A wrong key sends nothing.
    enqueue["routing_key"] = "not-a-key-0123456789".into();
    let (status, _) = post_json(
        &http,
        &format!("{base}/v2/enqueue"),
        None,
        enqueue.to_string(),
    )
    .await;
    assert_eq!(status, 401);

    // Neither key reads incidents or on-call, nor acknowledges or resolves.
    let operator = format!("Bearer {TOKEN}");
    let listed = api_get(&http, &format!("{base}/api/v1/incidents"), &operator).await;
    let id = listed["incidents"][0]["id"].as_str().unwrap().to_owned();
    for key in [&am, &grafana] {
        for (get, path) in [
            (true, "/api/v1/incidents".to_owned()),
            (true, format!("/api/v1/incidents/{id}")),
            (true, "/api/v1/oncall".to_owned()),
            (false, format!("/api/v1/incidents/{id}/ack")),
            (false, format!("/api/v1/incidents/{id}/resolve")),
        ] {
            let url = format!("{base}{path}");
            let request = if get { http.get(&url) } else { http.post(&url) };
            let response = request.header("authorization", key).send().await.unwrap();
            assert_eq!(response.status(), 403, "{path} with {key}");
            let text = response.text().await.unwrap();
            assert!(text.contains("only sends events"), "{text}");
        }
    }
    let still = api_get(&http, &format!("{base}/api/v1/incidents/{id}"), &operator).await;
    assert_eq!(still["status"], "triggered");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_oncall_api_answers_far_instants_and_refuses_out_of_range_ones() {
    let s = Setup::new().await;
    s.notify_settings(&format!("api_token = \"{TOKEN}\""));
    let mut oncall = std::fs::read_to_string(&s.oncall).unwrap();
    oncall.push_str(
        "\n[[schedule]]\nid = \"fast\"\ntime_zone = \"UTC\"\n[[schedule.layer]]\nusers = [\"alice\", \"bob\"]\nrotation = \"1m\"\nstart = \"2026-01-01T00:00:00\"\n",
    );
    std::fs::write(&s.oncall, oncall).unwrap();
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}", notifier.http_addr());
    let http = http_client();
    let auth = format!("Bearer {TOKEN}");

    // About 2.6 billion one-minute turns ahead: once a spin that held the
    // notifier's CPU and stopped its intake.
    let far = api_get(
        &http,
        &format!("{base}/api/v1/oncall?schedule=fast&at=7000-01-01T00:00:00Z"),
        &auth,
    )
    .await;
    let turns = (chrono::NaiveDate::from_ymd_opt(7000, 1, 1).unwrap()
        - chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())
    .num_minutes();
    assert_eq!(
        far["oncall"][0]["user"],
        ["alice", "bob"][(turns % 2) as usize],
        "{far}"
    );
    assert_eq!(far["oncall"][0]["until"], "7000-01-01T00:01:00Z", "{far}");

    let response = http
        .get(format!("{base}/api/v1/oncall?at=1969-12-31T23:59:59Z"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let reply: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        reply["error"].as_str().unwrap().contains("out of range"),
        "{reply}"
    );
}

/// The examples `schemas/paging-event.schema.json` documents the paging
/// topic with.
fn schema_examples() -> Vec<Value> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("schemas/paging-event.schema.json")).unwrap(),
    )
    .unwrap();
    schema["examples"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_v2_senders_are_answered_as_pagerduty_answers_them() {
    let s = Setup::new().await;
    s.notify_settings(&format!("api_token = \"{TOKEN}\""));
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}", notifier.http_addr());
    let http = http_client();
    let enqueue = format!("{base}/v2/enqueue");
    // Authorization schemes are case-insensitive: curl users write `bearer`.
    let lower = format!("bearer {TOKEN}");

    // Every event the schema shows is taken by both intake routes.
    for mut example in schema_examples() {
        example["routing_key"] = TOKEN.into();
        let (status, reply) = post_json(&http, &enqueue, None, example.to_string()).await;
        assert_eq!(status, 202, "{example}: {reply}");
        assert_eq!(reply["status"], "success", "{reply}");
        assert_eq!(reply["dedup_key"], example["dedup_key"], "{reply}");
        let events = format!("{base}/api/v1/events");
        let (status, reply) = post_json(&http, &events, Some(&lower), example.to_string()).await;
        assert_eq!(status, 202, "{example}: {reply}");
    }

    // A trigger without dedup_key gets one, returned as PagerDuty does, and
    // that key resolves the incident.
    let mut keyless: Value = serde_json::from_str(&trigger_body("unused", "no key given")).unwrap();
    keyless["routing_key"] = TOKEN.into();
    keyless.as_object_mut().unwrap().remove("dedup_key");
    let (status, reply) = post_json(&http, &enqueue, None, keyless.to_string()).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["message"], "Event processed", "{reply}");
    let key = reply["dedup_key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 32, "{key}");
    let incident_url = format!("{base}/api/v1/incidents/{key}");
    wait_for_api(
        &http,
        &incident_url,
        &lower,
        "the key-less trigger's incident",
        |i| i["summary"] == "no key given",
    )
    .await;
    let (status, reply) = post_json(&http, &enqueue, None, keyless.to_string()).await;
    assert_eq!(status, 202, "{reply}");
    assert_ne!(
        reply["dedup_key"],
        key.as_str(),
        "each key-less trigger is its own"
    );
    for action in ["acknowledge", "resolve"] {
        let body = json!({ "routing_key": TOKEN, "event_action": action });
        let (status, reply) = post_json(&http, &enqueue, None, body.to_string()).await;
        assert_eq!(status, 400, "{action} without dedup_key: {reply}");
    }
    let resolve = json!({ "routing_key": TOKEN, "event_action": "resolve", "dedup_key": key });
    let (status, _) = post_json(&http, &enqueue, None, resolve.to_string()).await;
    assert_eq!(status, 202);
    wait_for_api(
        &http,
        &incident_url,
        &lower,
        "the resolve by the given key",
        |i| i["status"] == "resolved",
    )
    .await;

    // Malformed bodies are the sender's error (400, in the API's shape), not
    // a wrong key; a time that is not one is refused.
    let (status, reply) = post_json(&http, &enqueue, None, "not json".into()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("invalid_json"),
        "{reply}"
    );
    let mut yesterday: Value = serde_json::from_str(&trigger_body("k-y", "when?")).unwrap();
    yesterday["routing_key"] = TOKEN.into();
    yesterday["payload"]["timestamp"] = "yesterday".into();
    let (status, reply) = post_json(&http, &enqueue, None, yesterday.to_string()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("payload.timestamp"),
        "{reply}"
    );

    // The Alertmanager route checks the credential before the body, and
    // answers in the API's shape.
    let am = format!("{base}/api/v1/alertmanager");
    let (status, reply) = post_json(&http, &am, None, "not json".into()).await;
    assert_eq!(status, 401, "{reply}");
    assert!(reply["error"].is_string(), "{reply}");
    let plain = http.post(&am).body("not json").send().await.unwrap();
    assert_eq!(plain.status(), 401, "without a content type too");
    let (status, reply) = post_json(&http, &am, Some(&lower), "not json".into()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].is_string(), "{reply}");

    // Produced straight to the topic, an event whose link has no text is
    // paged, not dead-lettered.
    let mut linked = schema_examples()
        .into_iter()
        .find(|e| e["links"][0].get("href").is_some() && e["links"][0].get("text").is_none())
        .expect("an example with a link without text");
    linked["dedup_key"] = "from-the-topic".into();
    produce_all(
        &s.producer(),
        "paging",
        &[("from-the-topic".into(), linked.to_string())],
    )
    .await;
    let url = format!("{base}/api/v1/incidents/from-the-topic");
    wait_for_api(&http, &url, &lower, "the topic event's incident", |i| {
        i["dedup_key"] == "from-the-topic"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_commands_and_restarts_log_no_errors() {
    let s = Setup::new().await;
    let first = s.notifier("notify-1.log").await;
    s.trigger("quiet{}", "quiet please").await;
    let (_, id) = s.alices_first_page().await;
    drop(first);
    // A restart finds its topics there and asks for none of them again.
    let second = s.notifier("notify-2.log").await;
    for args in [vec!["incidents"], vec!["incident", &id]] {
        let out = s
            .command(&args)
            // The filter a user has: klaxon's default.
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains(&id), "{args:?}: {stdout}");
        assert!(
            !stderr.contains("ERROR"),
            "{args:?} logged an error:\n{stderr}"
        );
    }
    for log in [second.log_text(), s.broker.proc.log_text()] {
        for noise in ["PartitionEOF", "TopicAlreadyExists"] {
            assert!(!log.contains(noise), "{noise} in\n{log}");
        }
    }
}

/// Runs tests/events_client.py: one event sent by `library`, one of
/// PagerDuty's Python clients, trusting only `ca` when given; the dedup_key
/// it got back.
fn python_client(
    library: &str,
    base: &str,
    routing_key: &str,
    action: &str,
    arg: &str,
    ca: Option<&Path>,
) -> String {
    let script = repo_file("tests/events_client.py");
    let mut command = Command::new(test_python());
    command
        .arg(script)
        .args([library, base, routing_key, action, arg]);
    if let Some(ca) = ca {
        command.env("KLAXON_TEST_CA", ca);
    }
    run_ok(&mut command).trim().to_owned()
}

/// Triggers, acknowledges and resolves an incident with `library`, as its
/// defaults send them, and checks each step on klaxon's side.
async fn python_client_round_trip(
    s: &Setup,
    library: &str,
    base: &str,
    http: &reqwest::Client,
    ca: Option<&Path>,
) {
    let key = python_client(
        library,
        base,
        INTEGRATION_KEY,
        "trigger",
        "disk full on db-3",
        ca,
    );
    assert_eq!(key.len(), 32, "klaxon made the dedup_key: {key}");
    let (body, _) = s.alices_first_page().await;
    assert_eq!(body["incident"]["summary"], "disk full on db-3");
    assert_eq!(body["incident"]["dedup_key"], key.as_str());
    let url = format!("{base}/api/v1/incidents/{key}");
    let auth = format!("Bearer {TOKEN}");
    for (action, status) in [("acknowledge", "acknowledged"), ("resolve", "resolved")] {
        assert_eq!(
            python_client(library, base, INTEGRATION_KEY, action, &key, ca),
            key
        );
        wait_for_api(http, &url, &auth, status, |i| i["status"] == status).await;
    }
}

const INTEGRATION_KEY: &str = "python-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread")]
async fn pagerdutys_python_client_triggers_acknowledges_and_resolves() {
    let s = Setup::new().await;
    s.notify_settings(&format!(
        "api_token = \"{TOKEN}\"\nintegration_keys = {{ python = \"{INTEGRATION_KEY}\" }}"
    ));
    let notifier = s.notifier("notify.log").await;
    let base = format!("http://{}", notifier.http_addr());
    python_client_round_trip(&s, "pdpyras", &base, &http_client(), None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_https_pagerdutys_maintained_client_triggers_acknowledges_and_resolves() {
    let s = Setup::new().await;
    let (ca, cert, key) = tls_files(s.dir.path());
    s.notify_settings(&format!(
        "api_token = \"{TOKEN}\"\nintegration_keys = {{ python = \"{INTEGRATION_KEY}\" }}"
    ));
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(&format!(
        "\n[http]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    std::fs::write(&s.config, text).unwrap();
    let notifier = s.notifier("notify.log").await;
    let addr = notifier.http_addr();

    // HTTPS only: a plain request gets no answer, and a client that does not
    // trust the CA refuses the certificate.
    let plain = http_client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    let untrusting = http_client()
        .get(format!("https://{addr}/healthz"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "an unknown CA was accepted: {untrusting:?}"
    );
    let https = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let health = https
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    // The maintained client refuses http:// URLs; over HTTPS it works.
    let base = format!("https://{addr}");
    python_client_round_trip(&s, "pagerduty", &base, &https, Some(&ca)).await;
}

/// Alertmanager, or a failure that says how to get it.
fn alertmanager() -> PathBuf {
    program_on_path(&["alertmanager", "prometheus-alertmanager"]).unwrap_or_else(|| {
        panic!(
            "Alertmanager is not installed: run scripts/test (it installs Debian's \
             `prometheus-alertmanager` package as root), or `apt-get install -y \
             --no-install-recommends prometheus-alertmanager`"
        )
    })
}

/// The README's Alertmanager configuration, with the test's addresses: alerts
/// labelled `via="events"` go out as PagerDuty Events v2, the others as
/// Alertmanager's own webhook.
fn alertmanager_config(klaxon: &str) -> String {
    format!(
        r#"
route:
  receiver: klaxon
  group_by: [alertname, via]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['via="events"']
      receiver: klaxon-events-v2
receivers:
  - name: klaxon
    webhook_configs:
      - url: {klaxon}/api/v1/alertmanager
        http_config:
          authorization:
            credentials: {TOKEN}
  - name: klaxon-events-v2
    pagerduty_configs:
      - url: {klaxon}/v2/enqueue
        routing_key: {INTEGRATION_KEY}
        severity: '{{{{ .CommonLabels.severity }}}}'
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_pages_through_its_webhook_and_its_pagerduty_receiver() {
    let s = Setup::new().await;
    s.notify_settings(&format!(
        "api_token = \"{TOKEN}\"\nintegration_keys = {{ alertmanager = \"{INTEGRATION_KEY}\" }}"
    ));
    let notifier = s.notifier("notify.log").await;
    let klaxon = format!("http://{}", notifier.http_addr());
    let config = s.dir.path().join("alertmanager.yml");
    std::fs::write(&config, alertmanager_config(&klaxon)).unwrap();
    let (am, port) = spawn_listening("Alertmanager", |port| {
        Proc::spawn_program(
            alertmanager().to_str().unwrap(),
            s.dir.path(),
            &[
                &format!("--config.file={}", config.display()),
                &format!("--storage.path={}", s.dir.path().join("am").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                // A single instance: no gossip port.
                "--cluster.listen-address=",
            ],
            &[],
            s.dir.path().join(format!("alertmanager-{port}.log")),
        )
    })
    .await;
    let am_url = format!("http://127.0.0.1:{port}");
    let http = http_client();
    wait_until(Duration::from_secs(30), "Alertmanager", || {
        let (http, url) = (http.clone(), format!("{am_url}/-/ready"));
        async move { http.get(&url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;

    // What Prometheus would send: two alerts, one to each receiver.
    let alerts = |ends_at: Option<String>| {
        let alert = |via: &str| {
            let mut alert = json!({
                "labels": {"alertname": "DiskFull", "severity": "warning", "instance": "db-3", "via": via},
                "annotations": {"summary": format!("disk full on db-3 ({via})")},
            });
            if let Some(ends_at) = &ends_at {
                alert["endsAt"] = json!(ends_at);
            }
            alert
        };
        json!([alert("webhook"), alert("events")])
    };
    let post = |body: Value| {
        let (http, url) = (http.clone(), format!("{am_url}/api/v2/alerts"));
        async move {
            let answer = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
        }
    };
    post(alerts(None)).await;

    let auth = format!("Bearer {TOKEN}");
    let list = |status: &'static str| {
        let (http, url, auth) = (
            http.clone(),
            format!("{klaxon}/api/v1/incidents?status={status}"),
            auth.clone(),
        );
        async move { api_get(&http, &url, &auth).await["incidents"].clone() }
    };
    wait_until(
        Duration::from_secs(60),
        "two incidents from Alertmanager",
        || {
            let open = list("open");
            async move { open.await.as_array().is_some_and(|a| a.len() == 2) }
        },
    )
    .await;
    let open = list("open").await;
    let open = open.as_array().unwrap();
    let (webhook, events): (Vec<&Value>, Vec<&Value>) = open.iter().partition(|i| {
        i["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("alertmanager/")
    });
    assert_eq!((webhook.len(), events.len()), (1, 1), "{open:?}");
    assert_eq!(webhook[0]["summary"], "disk full on db-3 (webhook)");
    // The Events v2 receiver sends its own summary; the severity is the
    // alert's, not Alertmanager's default `error`, thanks to the template.
    for incident in [webhook[0], events[0]] {
        assert_eq!(incident["severity"], "warning", "{incident}");
    }

    // Prometheus resolves an alert by sending it with `endsAt` in the past.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    post(alerts(Some(past))).await;
    wait_until(Duration::from_secs(60), "both incidents resolved", || {
        let (open, resolved) = (list("open"), list("resolved"));
        async move {
            open.await.as_array().is_some_and(|a| a.is_empty())
                && resolved.await.as_array().is_some_and(|a| a.len() == 2)
        }
    })
    .await;
    drop(am);
}
