//! `klaxon report` over a fixed lake of four incidents: every figure as
//! worked out by hand, and the same SQL run by DuckDB over the same files
//! giving the same answers.

mod common;

use std::{path::Path, process::Command};

use chrono::{DateTime, Duration, Utc};
use common::{run_ok, test_python};
use klaxon::{
    config::LakeConfig,
    history::{IncidentRows, write_rows},
    lake::{Lake, layout::INCIDENTS_DIR, writer::FlushRange},
    notify::{Incident, OnCall, Opening, route::Flap},
    paging::Severity,
    query::QueryEngine,
    report::{ByRule, Interruptions, Noisy, report},
};

const ONCALL: &str = r#"
[[user]]
id = "alice"
time_zone = "Europe/Berlin"
contact = [{ type = "webhook", address = "http://127.0.0.1:1/alice" }]
[[user]]
id = "bob"
contact = [{ type = "webhook", address = "http://127.0.0.1:1/bob" }]
[[schedule]]
id = "nights"
time_zone = "America/New_York"
[[schedule.layer]]
users = ["bob"]
rotation = "1w"
start = "2026-01-05T00:00:00"
[[policy]]
id = "p"
[[policy.level]]
targets = [{ user = "alice" }]
delay = "1h"
[[policy.level]]
targets = [{ user = "alice" }]
delay = "1h"
[[policy]]
id = "q"
[[policy.level]]
targets = [{ user = "bob" }]
delay = "1h"
"#;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// Opens an incident of `rule` at `opened`, delivers its first pages
/// `delivered` seconds later (when given), and retriggers it `repeats` times.
fn open(
    rule: &str,
    severity: Severity,
    policy: &str,
    opened: DateTime<Utc>,
    delivered: Option<i64>,
    repeats: u32,
) -> Incident {
    let oncall: OnCall = toml::from_str(ONCALL).unwrap();
    let opening = Opening {
        dedup_key: format!("{rule}@{}", opened.timestamp()),
        summary: format!("{rule} fired"),
        severity,
        source: Some("klaxon".into()),
        policy: Some(policy.into()),
        target: None,
        rule: Some(rule.into()),
        // Errors are the API's; flappy has no service label.
        labels: match rule {
            "errors" => [("service".to_owned(), "api".to_owned())].into(),
            _ => Default::default(),
        },
    };
    let mut i = Incident::open(opening, opened, &oncall);
    if let Some(after) = delivered {
        for seq in i.due(opened) {
            i.sending(seq);
            i.delivered(seq, Ok(()), opened + Duration::seconds(after), &oncall);
        }
    }
    for n in 0..repeats {
        i.retrigger(
            &format!("{rule} fired"),
            severity,
            opened + Duration::seconds(10 + i64::from(n)),
        );
    }
    i
}

fn ack(i: &mut Incident, by: &str, after: i64) {
    let oncall: OnCall = toml::from_str(ONCALL).unwrap();
    i.acknowledge(by, i.opened_at + Duration::seconds(after), &oncall, false);
}

/// Resolves; the resolve notices are delivered too (they are not pages).
fn resolve(i: &mut Incident, by: &str, after: i64) {
    let oncall: OnCall = toml::from_str(ONCALL).unwrap();
    let when = i.opened_at + Duration::seconds(after);
    i.resolve(by, when);
    for seq in i.due(when) {
        i.sending(seq);
        i.delivered(seq, Ok(()), when + Duration::seconds(1), &oncall);
    }
}

/// A: errors, critical, Monday 10:00 UTC, alice paged at once, acked after
/// 2m, resolved by bob after 10m. B: errors, warning, Monday 23:00 UTC,
/// acked after 6m, resolved after 30m. C: flappy, Saturday noon, resolved
/// by the rule after 1m before any page was delivered. D: flappy, Tuesday
/// 19:00 UTC, bob paged, three repeats, flapping, resolved by the rule
/// after 3m.
fn incidents() -> Vec<Incident> {
    let mut a = open(
        "errors",
        Severity::Critical,
        "p",
        at("2026-03-02T10:00:00Z"),
        Some(5),
        0,
    );
    ack(&mut a, "alice", 120);
    resolve(&mut a, "bob", 600);
    let mut b = open(
        "errors",
        Severity::Warning,
        "p",
        at("2026-03-02T23:00:00Z"),
        Some(5),
        0,
    );
    ack(&mut b, "alice", 360);
    resolve(&mut b, "alice", 1800);
    let mut c = open(
        "flappy",
        Severity::Warning,
        "p",
        at("2026-03-07T12:00:00Z"),
        None,
        0,
    );
    resolve(&mut c, "klaxon", 60);
    let mut d = open(
        "flappy",
        Severity::Warning,
        "q",
        at("2026-03-03T19:00:00Z"),
        Some(5),
        3,
    );
    // It flaps after its repeats: the report counts it among flapping ones.
    let flap = Flap {
        changes: 4,
        within: std::time::Duration::from_secs(600),
        settle: std::time::Duration::from_secs(300),
    };
    d.start_flapping(d.opened_at + Duration::seconds(20), &flap, true);
    resolve(&mut d, "klaxon", 180);
    vec![a, b, c, d]
}

async fn lake_with_incidents(dir: &Path) -> Lake {
    let lake = Lake::open(&LakeConfig {
        url: dir.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let mut rows = IncidentRows::default();
    for i in incidents() {
        rows.add(&i, None);
    }
    let range = FlushRange {
        table: INCIDENTS_DIR,
        topic: "incidents".into(),
        partition: 0,
        first_offset: 0,
        last_offset: 3,
    };
    write_rows(&lake, &range, rows.finish().unwrap().0)
        .await
        .unwrap();
    lake
}

#[tokio::test]
async fn the_report_holds_the_figures_worked_out_by_hand_and_duckdb_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_incidents(dir.path()).await;
    let engine = QueryEngine::open(&lake).await.unwrap();
    let oncall: OnCall = toml::from_str(ONCALL).unwrap();
    let since = at("2026-03-01T00:00:00Z");
    let r = report(&engine, since, Some(&oncall)).await.unwrap();

    let by = |service: Option<&str>, rule: &str, severity: &str, incidents| ByRule {
        service: service.map(str::to_owned),
        rule: rule.into(),
        severity: severity.into(),
        incidents,
    };
    assert_eq!(
        r.by_rule,
        [
            by(None, "flappy", "warning", 2),
            by(Some("api"), "errors", "critical", 1),
            by(Some("api"), "errors", "warning", 1)
        ]
    );
    // C never paged anyone: left out. Acks of A and B (2m, 6m): p50 2m,
    // p95 6m. Resolves of A, B, D (10m, 30m, 3m): p50 10m, p95 30m.
    let p = &r.response;
    assert_eq!(p.paged_incidents, 3);
    assert_eq!((p.tta_p50_s, p.tta_p95_s), (Some(120.0), Some(360.0)));
    assert_eq!((p.ttr_p50_s, p.ttr_p95_s), (Some(600.0), Some(1800.0)));
    // Alice (Berlin): A's page at 11:00 Monday, B's at 00:00 Tuesday. Bob
    // (his schedule's New York): D's page at 14:00 Tuesday. Resolve notices
    // are not interruptions.
    assert_eq!(
        r.interruptions,
        [
            Interruptions {
                user: "alice".into(),
                time_zone: "Europe/Berlin".into(),
                business: 1,
                off_hours: 0,
                sleep: 1,
            },
            Interruptions {
                user: "bob".into(),
                time_zone: "America/New_York".into(),
                business: 1,
                off_hours: 0,
                sleep: 0,
            },
        ]
    );
    assert_eq!(
        r.noisiest,
        [
            Noisy {
                rule: "flappy".into(),
                triggers: 5,
                incidents: 2,
                self_resolved_within_5m: 2,
                flapping: 1,
            },
            Noisy {
                rule: "errors".into(),
                triggers: 2,
                incidents: 2,
                self_resolved_within_5m: 0,
                flapping: 0,
            },
        ]
    );

    // DuckDB, the same SQL, the same files.
    let queries: Vec<String> = r.queries.iter().map(|q| q.sql.clone()).collect();
    let script = format!(
        "import duckdb, json\n\
         con = duckdb.connect()\n\
         con.execute(\"CREATE VIEW incidents AS SELECT * FROM read_parquet('{}/incidents/**/*.parquet', hive_partitioning=true, union_by_name=true)\")\n\
         for sql in json.loads({:?}):\n    \
             print(json.dumps([[None if v is None else (round(float(v), 3) if isinstance(v, (int, float)) else str(v)) for v in row] for row in con.execute(sql).fetchall()]))\n",
        dir.path().display(),
        serde_json::to_string(&queries).unwrap()
    );
    let out = run_ok(Command::new(test_python()).args(["-c", &script]));
    let answers: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows = |i: usize| answers[i].as_array().unwrap().clone();
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    let num = |v: &serde_json::Value| v.as_f64();
    let duck_by_rule: Vec<ByRule> = rows(0)
        .iter()
        .map(|r| {
            by(
                r[0].as_str(),
                &text(&r[1]),
                &text(&r[2]),
                num(&r[3]).unwrap() as i64,
            )
        })
        .collect();
    assert_eq!(duck_by_rule, r.by_rule);
    let duck_response = &rows(1)[0];
    assert_eq!(
        (1..5).map(|c| num(&duck_response[c])).collect::<Vec<_>>(),
        [p.tta_p50_s, p.tta_p95_s, p.ttr_p50_s, p.ttr_p95_s]
    );
    assert_eq!(num(&duck_response[0]), Some(p.paged_incidents as f64));
    let duck_pages: Vec<(String, i64)> = rows(2)
        .iter()
        .map(|r| (text(&r[0]), num(&r[1]).unwrap().floor() as i64))
        .collect();
    assert_eq!(
        duck_pages,
        [
            ("alice".to_owned(), at("2026-03-02T10:00:05Z").timestamp()),
            ("alice".to_owned(), at("2026-03-02T23:00:05Z").timestamp()),
            ("bob".to_owned(), at("2026-03-03T19:00:05Z").timestamp()),
        ]
    );
    let duck_noisy: Vec<Noisy> = rows(3)
        .iter()
        .map(|r| Noisy {
            rule: text(&r[0]),
            triggers: num(&r[1]).unwrap() as i64,
            incidents: num(&r[2]).unwrap() as i64,
            self_resolved_within_5m: num(&r[3]).unwrap() as i64,
            flapping: num(&r[4]).unwrap() as i64,
        })
        .collect();
    assert_eq!(duck_noisy, r.noisiest);
}
