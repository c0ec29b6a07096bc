//! `klaxon postmortem`'s draft from a fixed incident and lake: the whole
//! Markdown as a snapshot (facts, the first breach found by running the
//! rule again, the timeline, the sections to write), the chart, the HTML
//! page, and what the draft says when data is missing.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use klaxon::{
    config::LakeConfig,
    history::{IncidentRows, write_rows},
    lake::{
        Lake,
        layout::{INCIDENTS_DIR, TABLE_DIR},
        writer::{FlushRange, write_flush},
    },
    notify::{Incident, OnCall, Opening},
    paging::Severity,
    points::PointBatchBuilder,
    postmortem,
};

const ONCALL: &str = r#"
default_policy = "p"
[[user]]
id = "alice"
contact = [{ type = "webhook", address = "http://127.0.0.1:1/alice" }]
[[policy]]
id = "p"
[[policy.level]]
targets = [{ user = "alice" }]
delay = "10m"
"#;

const RULE: &str = r#"
[[rule]]
name = "checkout_errors"
sql = "SELECT service, sum(value) AS errors FROM metrics WHERE name = 'http.errors' GROUP BY service"
window = "1m"
summary = "{{service}}: {{errors}} errors"
labels = { team = "web" }
[rule.thresholds]
column = "errors"
warning = 10
critical = 50
"#;

/// When the incident opened.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn lake(dir: &Path) -> Lake {
    Lake::open(&LakeConfig {
        url: dir.display().to_string(),
        ..Default::default()
    })
    .unwrap()
}

/// Opened at t0 by the rule, alice paged by webhook at once, acknowledged
/// by alice 3m later, resolved by bob (`resolve`) 20m after the opening.
fn incident(summary: &str, resolve: bool) -> Incident {
    let oncall: OnCall = toml::from_str(ONCALL).unwrap();
    let opening = Opening {
        dedup_key: "checkout_errors{service=checkout}".into(),
        summary: summary.into(),
        severity: Severity::Warning,
        source: Some("klaxon".into()),
        policy: None,
        target: None,
        rule: Some("checkout_errors".into()),
        labels: [("service", "checkout"), ("team", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    let mut i = Incident::open(opening, t0(), &oncall);
    for seq in i.due(t0()) {
        i.sending(seq);
        i.delivered(seq, Ok(()), t0() + Duration::seconds(5), &oncall);
    }
    i.acknowledge("alice", t0() + Duration::minutes(3), &oncall, false);
    if resolve {
        let at = t0() + Duration::minutes(20);
        i.resolve("bob", at);
        for seq in i.due(at) {
            i.sending(seq);
            i.delivered(seq, Ok(()), at + Duration::seconds(2), &oncall);
        }
    }
    i
}

async fn write_incident(lake: &Lake, incident: &Incident) {
    let mut rows = IncidentRows::default();
    rows.add(incident, None);
    let range = FlushRange {
        table: INCIDENTS_DIR,
        topic: "incidents".into(),
        partition: 0,
        first_offset: 0,
        last_offset: 0,
    };
    write_rows(lake, &range, rows.finish().unwrap().0)
        .await
        .unwrap();
}

/// `http.errors` of checkout every 10s from 09:20 to 10:40: 1 per point
/// (6 a minute), 3 per point (18 a minute, past the warning of 10) from
/// 09:57 until 10:20.
async fn write_points(lake: &Lake) {
    let mut b = PointBatchBuilder::default();
    let (from, to) = (t0() - Duration::minutes(40), t0() + Duration::minutes(40));
    let (bad, good) = (t0() - Duration::minutes(3), t0() + Duration::minutes(20));
    let mut t = from;
    while t < to {
        let value = if t >= bad && t < good { 3.0 } else { 1.0 };
        b.push(
            "http.errors",
            t.timestamp_millis(),
            value,
            &[("service", "checkout")],
        );
        t += Duration::seconds(10);
    }
    let range = FlushRange {
        table: TABLE_DIR,
        topic: "metrics".into(),
        partition: 0,
        first_offset: 0,
        last_offset: 0,
    };
    write_flush(lake, &range, b.finish().unwrap(), 1024)
        .await
        .unwrap();
}

/// A lake and rules directory under `dir`: the incident, the points unless
/// `aged_out`, and `rules` as the rule file.
async fn setup(dir: &Path, incident: &Incident, aged_out: bool, rules: &str) -> Lake {
    let lake = lake(&dir.join("lake"));
    write_incident(&lake, incident).await;
    if !aged_out {
        write_points(&lake).await;
    }
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/errors.toml"), rules).unwrap();
    lake
}

#[tokio::test]
async fn the_draft_of_a_resolved_incident() {
    let dir = tempfile::tempdir().unwrap();
    let incident = incident("checkout: 18 errors", true);
    let lake = setup(dir.path(), &incident, false, RULE).await;
    let draft = postmortem::draft(&lake, Some(&dir.path().join("rules")), &incident.id)
        .await
        .unwrap();
    assert_eq!(
        draft.first_breach(),
        Some(t0() - Duration::minutes(2)),
        "the first 1m window wholly past the warning ends at 09:58"
    );
    insta::assert_snapshot!(postmortem::markdown(&draft, Some("chart.svg")));

    let svg = draft.chart.as_deref().expect("a chart");
    for marker in [
        "first breach",
        "triggered",
        "acknowledged",
        "resolved",
        "warning 10",
    ] {
        assert!(svg.contains(marker), "{marker} on the chart");
    }
    let html = postmortem::html(&draft);
    assert!(
        html.contains("<svg") && !html.contains("<img"),
        "the chart inline"
    );
    assert!(html.contains("<table>"), "tables rendered");
}

#[tokio::test]
async fn the_draft_says_what_data_is_missing() {
    // Still open, its points aged out of the lake.
    let dir = tempfile::tempdir().unwrap();
    let open = incident("checkout <script>alert(1)</script>", false);
    let lake = setup(dir.path(), &open, true, RULE).await;
    let draft = postmortem::draft(&lake, Some(&dir.path().join("rules")), &open.dedup_key)
        .await
        .unwrap();
    assert_eq!(draft.facts.id, open.id, "found by its dedup_key");
    let md = postmortem::markdown(&draft, None);
    assert!(
        md.contains("| Status | still open (as of the lake's last entry, 2026-03-02T10:03:00Z) |"),
        "{md}"
    );
    assert!(md.contains("| Time to resolve | not resolved |"), "{md}");
    assert!(
        md.contains("The lake holds no points that give rule checkout_errors a value"),
        "{md}"
    );
    assert!(
        md.contains("| Time to detect | unknown: the rule returned no value"),
        "{md}"
    );
    assert!(md.contains("No chart: the rule returned no value"), "{md}");
    let html = postmortem::html(&draft);
    assert!(!html.contains("<script>"), "alert text is text, never HTML");
    assert!(html.contains("&lt;script&gt;"));

    // Markdown in alert text stays text: no link, no image, no stolen chart.
    let dir = tempfile::tempdir().unwrap();
    let hostile = incident(
        "[x](javascript:alert(1)) ![p](https://evil.example/p.png) ![c](klaxon-chart.svg) <javascript:alert(2)> | cell",
        true,
    );
    let lake = setup(dir.path(), &hostile, false, RULE).await;
    let draft = postmortem::draft(&lake, Some(&dir.path().join("rules")), &hostile.id)
        .await
        .unwrap();
    let html = postmortem::html(&draft);
    assert!(!html.contains("href="), "no link: {html}");
    assert_eq!(html.matches("<img").count(), 0, "no outside image");
    assert_eq!(html.matches("<svg").count(), 1, "the chart, once");
    let title = &html[html.find("<h1>").unwrap()..html.find("</h1>").unwrap()];
    assert!(
        !title.contains("<svg"),
        "the chart stays in its section: {title}"
    );

    // The rule deleted since.
    let dir = tempfile::tempdir().unwrap();
    let resolved = incident("checkout: 18 errors", true);
    let other = RULE.replace("checkout_errors", "latency");
    let lake = setup(dir.path(), &resolved, false, &other).await;
    let draft = postmortem::draft(&lake, Some(&dir.path().join("rules")), &resolved.id)
        .await
        .unwrap();
    let md = postmortem::markdown(&draft, None);
    assert!(
        md.contains("| Time to detect | unknown: rule checkout_errors is not in"),
        "{md}"
    );
    assert!(
        md.contains("(deleted or renamed since the incident)"),
        "{md}"
    );
    assert!(md.contains("| Time to resolve | 20m by bob |"), "{md}");

    // An incident the lake does not have.
    let err = postmortem::draft(&lake, None, "nope").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no incident nope in the lake's incidents table"
    );
}
