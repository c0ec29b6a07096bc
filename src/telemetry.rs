//! klaxon's own logs and metrics.
//!
//! [`METRICS`] is the one list of every metric klaxon emits, with its HELP
//! text: `/metrics` passes `promtool check metrics`, and a test keeps the
//! list in step with the `counter!`, `gauge!` and `histogram!` calls in
//! `src/`. Each component registers its series at zero when it starts
//! ([`register_unlabeled`], [`register_zero`]), so `increase()` over a
//! counter's first event is not lost to a series that did not exist yet.

use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,librdkafka=warn,tansu=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Installs the Prometheus recorder behind `/metrics` and keeps it trimmed.
pub fn init_metrics() -> PrometheusHandle {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            &[
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .expect("bucket list is not empty")
        .install_recorder()
        .expect("the metrics recorder is installed once");
    describe_all();
    register_unlabeled("klaxon_http_");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    handle
}

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric klaxon emits.
#[derive(Debug)]
pub struct MetricInfo {
    pub name: &'static str,
    pub kind: MetricKind,
    /// Metadata only: the exporter does not append it (names already end in
    /// their unit, as Prometheus asks).
    pub unit: Unit,
    /// The label names its series carry; a metric without labels is
    /// registered at zero by [`register_unlabeled`].
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric klaxon emits. Add a metric here when you add its
/// `counter!`/`gauge!`/`histogram!` call: `every_metric_used_in_src_is_described`
/// fails otherwise.
pub const METRICS: &[MetricInfo] = &[
    // HTTP server (every component).
    metric(
        "klaxon_http_connections",
        Gauge,
        Unit::Count,
        &[],
        "HTTP connections open.",
    ),
    metric(
        "klaxon_http_request_timeouts_total",
        Counter,
        Unit::Count,
        &[],
        "Requests answered 503 because they took longer than http.request_timeout.",
    ),
    metric(
        "klaxon_http_header_timeouts_total",
        Counter,
        Unit::Count,
        &[],
        "Connections closed because request headers did not arrive within http.header_read_timeout (idle keep-alive connections included).",
    ),
    metric(
        "klaxon_http_tls_handshake_failures_total",
        Counter,
        Unit::Count,
        &[],
        "HTTPS connections closed because the TLS handshake failed or did not finish within http.header_read_timeout.",
    ),
    // Every consumer-group member (ingest, rules, notify), by component.
    metric(
        "klaxon_consumer_lag",
        Gauge,
        Unit::Count,
        &["component", "topic", "partition"],
        "Records behind the end of a partition this member consumes.",
    ),
    metric(
        "klaxon_consumer_rebalances_total",
        Counter,
        Unit::Count,
        &["component", "event"],
        "Group rebalances that assigned partitions to this member or revoked them, by event.",
    ),
    metric(
        "klaxon_consumer_commit_failures_total",
        Counter,
        Unit::Count,
        &["component"],
        "Offset commits that failed (retried, or left to the next commit; a replay covers them).",
    ),
    // Ingest.
    metric(
        "klaxon_ingest_records_total",
        Counter,
        Unit::Count,
        &["topic"],
        "Kafka records read from a points topic.",
    ),
    metric(
        "klaxon_ingest_points_total",
        Counter,
        Unit::Count,
        &["topic"],
        "Points decoded from a points topic.",
    ),
    metric(
        "klaxon_ingest_bytes_total",
        Counter,
        Unit::Bytes,
        &["topic"],
        "Record payload bytes read from a points topic.",
    ),
    metric(
        "klaxon_ingest_rejected_total",
        Counter,
        Unit::Count,
        &["topic", "reason"],
        "Lines refused to the dead-letter topic, by reason.",
    ),
    metric(
        "klaxon_ingest_buffered_bytes",
        Gauge,
        Unit::Bytes,
        &[],
        "Input bytes held in buffers, not yet in the lake.",
    ),
    metric(
        "klaxon_ingest_flush_duration_seconds",
        Histogram,
        Unit::Seconds,
        &[],
        "Time to write one partition's buffer to the lake and commit its offsets.",
    ),
    metric(
        "klaxon_lake_files_written_total",
        Counter,
        Unit::Count,
        &[],
        "Parquet files written to the lake.",
    ),
    metric(
        "klaxon_lake_rows_written_total",
        Counter,
        Unit::Count,
        &[],
        "Rows written to the lake.",
    ),
    metric(
        "klaxon_lake_bytes_written_total",
        Counter,
        Unit::Bytes,
        &[],
        "Parquet bytes written to the lake.",
    ),
    metric(
        "klaxon_lake_write_errors_total",
        Counter,
        Unit::Count,
        &[],
        "Lake writes that failed and were retried.",
    ),
    metric(
        "klaxon_lake_compacted_files_total",
        Counter,
        Unit::Count,
        &[],
        "Data files merged into larger ones by compaction.",
    ),
    metric(
        "klaxon_lake_compaction_outputs_total",
        Counter,
        Unit::Count,
        &[],
        "Merged files compaction wrote.",
    ),
    metric(
        "klaxon_lake_compaction_failures_total",
        Counter,
        Unit::Count,
        &[],
        "Compaction runs of files that failed and left their files as they were.",
    ),
    metric(
        "klaxon_lake_retention_deleted_files_total",
        Counter,
        Unit::Count,
        &[],
        "Data files deleted because their hour was past the table's retention.",
    ),
    metric(
        "klaxon_dead_letters_written_total",
        Counter,
        Unit::Count,
        &["topic"],
        "Rejections published to a dead-letter topic.",
    ),
    metric(
        "klaxon_dead_letters_failed_total",
        Counter,
        Unit::Count,
        &["topic"],
        "Rejections that could not be published to a dead-letter topic (logged instead).",
    ),
    // Rules runner.
    metric(
        "klaxon_rules_points_total",
        Counter,
        Unit::Count,
        &[],
        "Points the rules runner recorded.",
    ),
    metric(
        "klaxon_rules_late_points_total",
        Counter,
        Unit::Count,
        &[],
        "Points dropped because their window had closed.",
    ),
    metric(
        "klaxon_rules_rejected_points_total",
        Counter,
        Unit::Count,
        &["topic", "reason"],
        "Lines the rules runner could not decode, by reason.",
    ),
    metric(
        "klaxon_rules_evaluations_total",
        Counter,
        Unit::Count,
        &[],
        "Rule windows evaluated.",
    ),
    metric(
        "klaxon_rules_evaluation_failures_total",
        Counter,
        Unit::Count,
        &["rule"],
        "Rule windows whose evaluation failed and was skipped, by rule.",
    ),
    metric(
        "klaxon_rules_events_published_total",
        Counter,
        Unit::Count,
        &[],
        "Paging events published.",
    ),
    metric(
        "klaxon_rules_reloads_total",
        Counter,
        Unit::Count,
        &[],
        "Rule directory changes applied.",
    ),
    metric(
        "klaxon_rules_reload_failures_total",
        Counter,
        Unit::Count,
        &[],
        "Problems that kept a changed rule file from being applied.",
    ),
    metric(
        "klaxon_rules_checkpoint_failures_total",
        Counter,
        Unit::Count,
        &[],
        "Checkpoints not written (tried again at the next tick).",
    ),
    metric(
        "klaxon_rules_points_held",
        Gauge,
        Unit::Count,
        &[],
        "Points held in open windows.",
    ),
    metric(
        "klaxon_rules_active",
        Gauge,
        Unit::Count,
        &[],
        "Rules being evaluated.",
    ),
    metric(
        "klaxon_rules_tick_duration_seconds",
        Histogram,
        Unit::Seconds,
        &[],
        "Time to evaluate the windows due at one tick.",
    ),
    // Notifier.
    metric(
        "klaxon_notify_events_total",
        Counter,
        Unit::Count,
        &["action"],
        "Paging events applied, by event_action.",
    ),
    metric(
        "klaxon_notify_events_rejected_total",
        Counter,
        Unit::Count,
        &["reason"],
        "Paging events refused to the dead-letter topic, by reason.",
    ),
    metric(
        "klaxon_notify_events_truncated_total",
        Counter,
        Unit::Count,
        &[],
        "Paging events with fields cut to klaxon's limits.",
    ),
    metric(
        "klaxon_notify_incidents_opened_total",
        Counter,
        Unit::Count,
        &[],
        "Incidents opened.",
    ),
    metric(
        "klaxon_notify_notifications_total",
        Counter,
        Unit::Count,
        &["channel", "outcome"],
        "Notifications sent, by channel and outcome (delivered or failed after retries).",
    ),
    metric(
        "klaxon_notify_delivery_retries_total",
        Counter,
        Unit::Count,
        &["channel"],
        "Notification attempts that failed and were retried, by channel.",
    ),
    metric(
        "klaxon_notify_events_skipped_total",
        Counter,
        Unit::Count,
        &[],
        "Paging events read again after a restart and skipped: the changelog's position shows they were applied.",
    ),
    metric(
        "klaxon_notify_firing_read_failures_total",
        Counter,
        Unit::Count,
        &[],
        "Times the follower of the incidents changelog (the alerts firing everywhere, for inhibitions) failed and started again.",
    ),
    metric(
        "klaxon_notify_silence_read_failures_total",
        Counter,
        Unit::Count,
        &[],
        "Reads of the silences topic that failed (the last silences stay in force).",
    ),
    metric(
        "klaxon_notify_changelog_write_failures_total",
        Counter,
        Unit::Count,
        &[],
        "Incident versions not written to the changelog (tried again).",
    ),
    metric(
        "klaxon_history_rows_written_total",
        Counter,
        Unit::Count,
        &[],
        "Incident timeline entries written to the lake's `incidents` table.",
    ),
    metric(
        "klaxon_history_restarts_total",
        Counter,
        Unit::Count,
        &[],
        "Times the incident history writer failed and was started again (paging goes on meanwhile).",
    ),
    metric(
        "klaxon_history_unreadable_total",
        Counter,
        Unit::Count,
        &[],
        "Changelog records that are not a readable incident (not written to the lake).",
    ),
    metric(
        "klaxon_notify_oncall_reload_failures_total",
        Counter,
        Unit::Count,
        &[],
        "Changed on-call files refused (the previous one stays active).",
    ),
];

/// Gives every metric in [`METRICS`] its HELP text and unit.
fn describe_all() {
    for m in METRICS {
        match m.kind {
            Counter => metrics::describe_counter!(m.name, m.unit, m.help),
            Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
            Histogram => metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

/// Registers at zero every counter and gauge without labels whose name
/// starts with `prefix` (a component's, e.g. `klaxon_notify_`).
pub fn register_unlabeled(prefix: &str) {
    for m in METRICS
        .iter()
        .filter(|m| m.labels.is_empty() && m.name.starts_with(prefix))
    {
        match m.kind {
            Counter => metrics::counter!(m.name).absolute(0),
            // A gauge registered and never set reads 0.
            Gauge => drop(metrics::gauge!(m.name)),
            // An empty histogram has no value worth showing.
            Histogram => {}
        }
    }
}

/// Registers the counter `name{labels}` at zero (a no-op once it counts:
/// `absolute` keeps the larger value).
pub fn register_zero(name: &'static str, labels: &[(&'static str, String)]) {
    metrics::counter!(name, labels).absolute(0);
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path};

    use super::*;

    /// Where a metric name is given in `src/`: a macro and the kind it makes.
    const CALLS: [(&str, MetricKind); 3] = [
        ("counter!(", Counter),
        ("gauge!(", Gauge),
        ("histogram!(", Histogram),
    ];

    /// Every metric name used in `src/` (but this file), with its kind.
    fn used_in_src() -> BTreeMap<String, MetricKind> {
        let mut used = BTreeMap::new();
        let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("telemetry.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (call, kind) in CALLS {
                for (at, _) in text.match_indices(call) {
                    let arg = text[at + call.len()..]
                        .trim_start()
                        .split([',', ')'])
                        .next()
                        .unwrap()
                        .trim();
                    let name = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"'));
                    let Some(name) = name else {
                        panic!(
                            "{}: a metric name that is not a literal ({arg}); give it as one so this test can check it is described",
                            path.display()
                        )
                    };
                    let before = used.insert(name.to_owned(), kind);
                    assert!(
                        before.is_none_or(|k| k == kind),
                        "{name} is used as two kinds"
                    );
                }
            }
        }
        used
    }

    #[test]
    fn every_metric_used_in_src_is_described() {
        let used = used_in_src();
        assert!(used.len() > 30, "the scan found too little: {used:?}");
        let described: BTreeMap<String, MetricKind> = METRICS
            .iter()
            .map(|m| (m.name.to_owned(), m.kind))
            .collect();
        assert_eq!(
            described.len(),
            METRICS.len(),
            "a metric is described twice"
        );
        let missing: Vec<_> = used
            .iter()
            .filter(|(name, kind)| described.get(*name) != Some(kind))
            .collect();
        assert!(
            missing.is_empty(),
            "used in src/ but not in METRICS (or as another kind): {missing:?}"
        );
        let stale: Vec<_> = described
            .keys()
            .filter(|n| !used.contains_key(*n))
            .collect();
        assert!(
            stale.is_empty(),
            "in METRICS but used nowhere in src/: {stale:?}"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for m in METRICS {
            assert!(m.name.starts_with("klaxon_"), "{}", m.name);
            assert_eq!(
                m.kind == Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            assert!(m.help.ends_with('.'), "{}: HELP is a sentence", m.name);
        }
    }
}
