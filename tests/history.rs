//! The lake's `incidents` table: every timeline entry of every incident as
//! the notifier itself shows it (`klaxon incident ID`), with its facts as
//! columns and its labels as columns, exactly once across a crash of its
//! writer, joinable with `metrics` and read alike by DuckDB.

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use arrow::{
    array::{AsArray, RecordBatch},
    datatypes::Int64Type,
};
use common::*;
use klaxon::query::values::{ints, texts};
use serde_json::json;

/// Points the notifier's history at `dir/lake`, flushed every 200ms.
fn with_lake(s: &Setup) -> PathBuf {
    let lake = s.dir.path().join("lake");
    s.notify_settings(r#"history_flush_interval = "200ms""#);
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("{text}\n[lake]\nurl = \"{}\"\n", lake.display()),
    )
    .unwrap();
    lake
}

/// A trigger as a rule sends it: its rule and labels (one of them named
/// like a column).
fn rule_trigger(dedup_key: &str) -> (String, String) {
    let event = json!({
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": { "summary": "api latency", "source": "klaxon", "severity": "critical" },
        "rule": "api_latency",
        "labels": { "service": "api", "rule": "shadowed" },
    });
    (dedup_key.to_owned(), event.to_string())
}

/// Column `name` of `batches` as text (null as `None`).
fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    texts(batches, name).unwrap()
}

/// The lake's rows of incident `id`, printed as `klaxon incident` prints
/// its timeline.
async fn lake_timeline(lake: &std::path::Path, id: &str) -> Vec<String> {
    if !lake.join("incidents").exists() {
        return Vec::new();
    }
    let Ok(batches) = try_query(
        lake,
        &format!(
            "SELECT CAST(time AS BIGINT) AS t, event, detail FROM incidents \
             WHERE incident_id = '{id}' ORDER BY seq"
        ),
    )
    .await
    else {
        return Vec::new();
    };
    let times: Vec<i64> = ints(&batches, "t").unwrap().into_iter().flatten().collect();
    let (events, details) = (column(&batches, "event"), column(&batches, "detail"));
    times
        .iter()
        .zip(events.iter().zip(&details))
        .map(|(t, (event, detail))| {
            let at = chrono::DateTime::from_timestamp_millis(*t)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!(
                "  {at}  {:<18} {}",
                event.as_deref().unwrap(),
                detail.as_deref().unwrap()
            )
        })
        .collect()
}

/// The timeline lines of `klaxon incident ID`.
fn cli_timeline(s: &Setup, id: &str) -> Vec<String> {
    let out = s.klaxon(&["incident", id]);
    let (_, timeline) = out.split_once("timeline\n").unwrap();
    timeline.lines().map(str::to_owned).collect()
}

/// Waits until the lake holds the incident's timeline as the notifier
/// shows it, and it ends with alice told of the resolve.
async fn wait_for_whole_timeline(s: &Setup, lake: &std::path::Path, id: &str) -> Vec<String> {
    let mut seen = (Vec::new(), Vec::new());
    wait_until(
        Duration::from_secs(60),
        "the whole timeline in the lake",
        async || {
            let cli = cli_timeline(s, id);
            let rows = lake_timeline(lake, id).await;
            let done = cli
                .last()
                .is_some_and(|l| l.contains("told of the resolve"))
                && rows == cli;
            seen = (cli, rows);
            done
        },
    )
    .await;
    seen.0
}

#[tokio::test(flavor = "multi_thread")]
async fn every_timeline_entry_lands_in_the_lake_with_its_facts_and_joins_metrics() {
    let s = Setup::new().await;
    let lake = with_lake(&s);
    s.no_repeat();
    let _notifier = s.notifier("notify.log").await;
    produce_all(&s.producer(), "paging", &[rule_trigger("api{service=api}")]).await;
    let (_, id) = s.alices_first_page().await;
    s.klaxon(&["ack", &id, "--by", "bob"]);
    s.klaxon(&["resolve", &id, "--by", "carol"]);
    let timeline = wait_for_whole_timeline(&s, &lake, &id).await;
    assert!(timeline.len() >= 6, "{timeline:#?}");

    let rows = query(
        &lake,
        &format!(
            "SELECT event, actor, \"user\", channel, result, level, rule, service, label_rule \
             FROM incidents WHERE incident_id = '{id}' ORDER BY seq"
        ),
    )
    .await;
    let facts: Vec<Vec<Option<String>>> = [
        "event",
        "actor",
        "user",
        "channel",
        "result",
        "level",
        "rule",
        "service",
        "label_rule",
    ]
    .iter()
    .map(|c| column(&rows, c))
    .collect();
    let row_of = |event: &str, user: Option<&str>| {
        (0..facts[0].len())
            .find(|&i| {
                facts[0][i].as_deref() == Some(event)
                    && (user.is_none() || facts[2][i].as_deref() == user)
            })
            .unwrap_or_else(|| panic!("no {event} row: {facts:?}"))
    };
    let fact = |i: usize, c: usize| facts[c][i].as_deref();
    let escalated = row_of("escalated", None);
    assert_eq!(fact(escalated, 5), Some("1"), "level 1 paged");
    let paged = row_of("notified", Some("alice"));
    assert_eq!(
        (fact(paged, 3), fact(paged, 4)),
        (Some("webhook"), Some("delivered"))
    );
    assert_eq!(fact(row_of("acknowledged", None), 1), Some("bob"));
    assert_eq!(fact(row_of("resolved", None), 1), Some("carol"));
    for i in 0..facts[0].len() {
        assert_eq!(
            (fact(i, 6), fact(i, 7), fact(i, 8)),
            (Some("api_latency"), Some("api"), Some("shadowed")),
            "rule and labels on every row"
        );
    }

    // Points of the same service, written as ingest writes them: the two
    // tables join on the label.
    let now = chrono::Utc::now().timestamp_millis();
    let mut points = klaxon::points::PointBatchBuilder::default();
    for i in 0..5 {
        points.push("api.latency", now - i * 1000, 0.5, &[("service", "api")]);
    }
    points.push("api.latency", now, 0.5, &[("service", "web")]);
    let handle = klaxon::lake::Lake::open(&klaxon::config::LakeConfig {
        url: lake.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let range = klaxon::lake::writer::FlushRange {
        table: klaxon::lake::layout::TABLE_DIR,
        topic: "metrics".into(),
        partition: 0,
        first_offset: 0,
        last_offset: 0,
    };
    klaxon::lake::writer::write_flush(&handle, &range, points.finish().unwrap(), 1024)
        .await
        .unwrap();
    let joined = query(
        &lake,
        &format!(
            "SELECT count(*) FROM incidents i JOIN metrics m ON m.service = i.service \
             WHERE i.incident_id = '{id}' AND i.event = 'triggered'"
        ),
    )
    .await;
    assert_eq!(joined[0].column(0).as_primitive::<Int64Type>().value(0), 5);

    // DuckDB reads the same rows from the files.
    let script = format!(
        "import duckdb\n\
         print(duckdb.sql(\"\"\"SELECT count(*), count(DISTINCT seq), max(\"user\") \
         FROM read_parquet('{}/incidents/**/*.parquet', hive_partitioning=true, union_by_name=true) \
         WHERE incident_id = '{id}'\"\"\").fetchall()[0])\n",
        lake.display()
    );
    let out = run_ok(Command::new(test_python()).args(["-c", &script]));
    let n = timeline.len();
    assert_eq!(out.trim(), format!("({n}, {n}, 'alice')"));
}

/// Killed after its second flush of entries is durable and before that
/// flush's offsets are committed: the restart discards those files, reads
/// what the first flush wrote from the lake, and writes every entry the
/// lake lacks, none twice.
#[tokio::test(flavor = "multi_thread")]
async fn history_lands_once_across_a_crash_before_its_commit() {
    let s = Setup::new().await;
    let lake = with_lake(&s);
    s.no_repeat();
    let mut notifier = s
        .notifier_with_env(
            "notify-crashing.log",
            &[("KLAXON_CRASH_AT", "history.before_commit:2")],
        )
        .await;
    produce_all(&s.producer(), "paging", &[rule_trigger("api{service=api}")]).await;
    let (_, id) = s.alices_first_page().await;
    // The first flush is in the lake before anything else happens.
    wait_until(Duration::from_secs(60), "a first flush", async || {
        !lake_timeline(&lake, &id).await.is_empty()
    })
    .await;
    s.klaxon(&["ack", &id, "--by", "bob", "--wait", "0s"]);
    notifier.wait_for_crash("history.before_commit").await;

    let restarted = s.notifier("notify-restarted.log").await;
    s.klaxon(&["resolve", &id, "--by", "carol"]);
    let timeline = wait_for_whole_timeline(&s, &lake, &id).await;
    assert!(
        timeline.iter().any(|l| l.contains("acknowledged")),
        "{timeline:#?}"
    );
    assert!(
        restarted
            .log_text()
            .contains("removed incident history files of an interrupted flush"),
        "the restart found the crashed flush"
    );
    let counts = query(
        &lake,
        &format!(
            "SELECT count(*), count(DISTINCT seq), max(seq) FROM incidents WHERE incident_id = '{id}'"
        ),
    )
    .await;
    let n = timeline.len() as i64;
    let c = |i: usize| counts[0].column(i).as_primitive::<Int64Type>().value(0);
    assert_eq!(
        (c(0), c(1), c(2)),
        (n, n, n - 1),
        "each entry once, none missing"
    );
}
