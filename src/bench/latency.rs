//! Alert latency: from producing the point that closes a breaching window to
//! the trigger on `paging`, and to the notifier's webhook call.
//!
//! `klaxon rules run` and `klaxon notify` run as child processes on topics of
//! their own. For each window, every series gets one point (a few of them
//! above the threshold) and the runner consumes them all; then one point per
//! partition, at the next window's start, moves the watermark past the
//! window's end. Its produce time starts the clock. The window's own length
//! is event time and costs nothing here: what is measured is klaxon's part,
//! which a real deployment adds to the rule's window.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, extract::State, routing::post};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    producer::{BaseRecord, DefaultProducerContext, Producer},
};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{
    BenchEnv, BenchError, BenchOptions,
    child::{Child, free_port, scrape, wait_until},
};
use crate::{
    config::SourceConfig,
    decode::Format,
    kafka::{PolledProducer, Role, client_config},
    paging::dedup_key,
    produce::QUEUE_FULL_RETRY,
};

const RULE: &str = "bench-latency";

/// Latency figures for one series count.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    pub series: u64,
    pub windows: usize,
    pub alerts: usize,
    pub window_secs: f64,
    pub to_paging_ms: Percentiles,
    pub to_webhook_ms: Percentiles,
    pub rules_peak_rss_bytes: u64,
    pub rules_cpu_secs: f64,
    pub notify_peak_rss_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` in milliseconds.
    fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| crate::report::nearest_rank(samples, p).unwrap_or(f64::NAN);
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// When each dedup_key was first seen: triggers on `paging`, pages at the webhook.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Runs the rules runner and the notifier on `series` active series.
pub(crate) async fn measure(
    env: &mut BenchEnv,
    options: &BenchOptions,
    series: u64,
) -> Result<LatencyResult, BenchError> {
    let scope = format!("latency-{series}");
    let topic = env.name(&format!("{scope}-metrics"));
    let paging = env.name(&format!("{scope}-paging"));
    env.create_topic(&topic).await?;
    env.create_topic(&paging).await?;

    let (hook_url, pages) = start_webhook_receiver().await?;
    let rules_dir = env.work.join(format!("{scope}-rules"));
    std::fs::create_dir_all(&rules_dir)?;
    std::fs::write(
        rules_dir.join("latency.toml"),
        format!(
            r#"[[rule]]
name = "{RULE}"
sql = "SELECT host, max(value) AS value FROM metrics WHERE name = 'bench.latency' GROUP BY host HAVING max(value) > 100"
window = "{window}"
severity = "critical"
summary = "{{{{host}}}} at {{{{value}}}}"
"#,
            window = humantime::format_duration(options.window),
        ),
    )?;
    let oncall = env.work.join(format!("{scope}-oncall.toml"));
    std::fs::write(
        &oncall,
        format!(
            r#"default_policy = "bench"
[[user]]
id = "bench"
contact = [{{ type = "webhook", address = "{hook_url}" }}]
[[policy]]
id = "bench"
[[policy.level]]
targets = [{{ user = "bench" }}]
delay = "1h"
"#
        ),
    )?;
    let mut config = env.config();
    config.topics.dead_letter = env.name("dlq");
    config.sources = vec![SourceConfig {
        topic: topic.clone(),
        format: Format::Json,
    }];
    let rules = &mut config.rules;
    rules.group_id = env.name(&format!("{scope}-rules"));
    rules.paging_topic = paging.clone();
    rules.state_topic = env.name(&format!("{scope}-state"));
    rules.allowed_lateness = Duration::ZERO;
    // Every partition gets points each window; none is idle.
    rules.idle_timeout = Duration::from_secs(3600);
    let notify = &mut config.notify;
    notify.oncall = Some(oncall.clone());
    notify.group_id = env.name(&format!("{scope}-notify"));
    notify.paging_topic = paging.clone();
    notify.incidents_topic = env.name(&format!("{scope}-incidents"));
    notify.silences_topic = env.name(&format!("{scope}-silences"));
    notify.dead_letter = env.name(&format!("{scope}-paging-dlq"));
    let config = env.write_config(&format!("{scope}.toml"), &config)?;
    let config = config.display().to_string();
    let rules_port = free_port()?;
    let rules_listen = format!("127.0.0.1:{rules_port}");
    let mut runner = Child::spawn(
        &format!("{scope}-rules"),
        &env.work,
        &[
            "--config",
            &config,
            "rules",
            "run",
            &rules_dir.display().to_string(),
            "--http-listen",
            &rules_listen,
        ],
    )?;
    let notify_listen = format!("127.0.0.1:{}", free_port()?);
    let mut notifier = Child::spawn(
        &format!("{scope}-notify"),
        &env.work,
        &[
            "--config",
            &config,
            "notify",
            "--http-listen",
            &notify_listen,
        ],
    )?;
    let (runner_log, notifier_log) = (runner.log_path(), notifier.log_path());
    wait_until(
        "the rules runner and the notifier to start",
        Duration::from_secs(60),
        &mut [&mut runner, &mut notifier],
        || {
            let ready = log_contains(&runner_log, "rules started")
                && log_contains(&notifier_log, "notifier started");
            async move { ready }
        },
    )
    .await?;

    let triggers: Arrivals = Arc::default();
    let stop_reader = CancellationToken::new();
    let reader = tokio::spawn(read_triggers(
        client_config(
            &env.kafka,
            &env.brokers,
            Role::Tool(&[
                ("group.id", env.name(&format!("{scope}-reader"))),
                ("auto.offset.reset", "earliest".to_owned()),
                // Fetch as soon as anything is there: this consumer is the stopwatch.
                ("fetch.wait.max.ms", "5".to_owned()),
            ]),
        )
        .create()?,
        paging.clone(),
        triggers.clone(),
        stop_reader.clone(),
    ));
    // Whatever happens while measuring, the reader is stopped after.
    let measured = async {
        let bulk: PolledProducer<_> = client_config(&env.kafka, &env.brokers, Role::BulkProducer)
            .create_with_context(DefaultProducerContext)?;
        let closer: PolledProducer<_> = client_config(
            &env.kafka,
            &env.brokers,
            Role::Tool(&[("linger.ms", "0".to_owned())]),
        )
        .create_with_context(DefaultProducerContext)?;
        // The first send of a new client would look the topic up first, and
        // that would count against the first window.
        tokio::task::block_in_place(|| {
            closer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
        })?;

        let window_ms = options.window.as_millis() as i64;
        // Event time ten minutes back, on a window boundary: behind the wall
        // clock, so no point is refused as from the future.
        let now_ms = crate::clock::now_ms();
        let first_window_ms = (now_ms - 600_000) / window_ms * window_ms;
        let alerts_per_window = options.alerts_per_window as u64;
        let breaching = |w: usize| -> Vec<u64> {
            (0..alerts_per_window)
                .map(|j| (w as u64 * alerts_per_window + j) % series)
                .collect()
        };
        let key_of = |host: u64| {
            let labels = BTreeMap::from([("host".to_owned(), format!("h-{host}"))]);
            dedup_key(RULE, &labels)
        };

        let (mut to_paging, mut to_webhook) = (Vec::new(), Vec::new());
        let mut sent_points = 0u64;
        let http = env.http.clone();
        for w in 0..=options.windows {
            let window_start = first_window_ms + w as i64 * window_ms;
            if w > 0 {
                // Close window w-1: one point per partition at window w's start.
                let closed_at = Instant::now();
                for partition in 0..env.partitions {
                    let line = format!(
                        r#"{{"name":"bench.clock","time":{window_start},"value":0,"tags":{{"host":"clock"}}}}"#
                    );
                    send(&closer, &topic, partition, &line).await?;
                }
                sent_points += env.partitions as u64;
                flush(&closer).await?;
                let keys: Vec<String> = breaching(w - 1).into_iter().map(key_of).collect();
                let wanted = keys.clone();
                let (seen_triggers, seen_pages) = (triggers.clone(), pages.clone());
                wait_until(
                    &format!("window {} of {}'s alerts", w, options.windows),
                    Duration::from_secs(120),
                    &mut [&mut runner, &mut notifier],
                    || {
                        let done = has_all(&seen_triggers, &wanted) && has_all(&seen_pages, &wanted);
                        async move { done }
                    },
                )
                .await?;
                for key in &keys {
                    to_paging.push(millis_since(closed_at, &triggers, key));
                    to_webhook.push(millis_since(closed_at, &pages, key));
                }
            }
            if w < options.windows {
                let hot: HashSet<u64> = breaching(w).into_iter().collect();
                sent_points += produce_window(
                    &bulk,
                    &topic,
                    env.partitions,
                    series,
                    window_start + 1,
                    &hot,
                )
                .await?;
                let target = sent_points as f64;
                wait_until(
                    &format!("the rules runner to consume window {w}"),
                    Duration::from_secs(300),
                    &mut [&mut runner, &mut notifier],
                    || async { scrape(&http, rules_port, "klaxon_rules_points_total").await >= target },
                )
                .await?;
            }
        }
        Ok::<_, BenchError>((to_paging, to_webhook))
    }
    .await;
    // Closed while the broker is up: a consumer's close waits for it.
    stop_reader.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
    let (mut to_paging, mut to_webhook) = measured?;

    let expected = options.windows * options.alerts_per_window;
    let seen = triggers.lock().expect("not poisoned").len();
    if seen != expected {
        return Err(BenchError::Wrong(format!(
            "{seen} alerts triggered on paging; {expected} series breached"
        )));
    }
    let (rules_usage, notify_usage) = (runner.usage()?, notifier.usage()?);
    Ok(LatencyResult {
        series,
        windows: options.windows,
        alerts: expected,
        window_secs: options.window.as_secs_f64(),
        to_paging_ms: Percentiles::of(&mut to_paging),
        to_webhook_ms: Percentiles::of(&mut to_webhook),
        rules_peak_rss_bytes: rules_usage.peak_rss_bytes,
        rules_cpu_secs: rules_usage.cpu.as_secs_f64(),
        notify_peak_rss_bytes: notify_usage.peak_rss_bytes,
    })
}

fn log_contains(log: &std::path::Path, text: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|log| log.contains(text))
}

fn has_all(arrivals: &Arrivals, keys: &[String]) -> bool {
    let seen = arrivals.lock().expect("not poisoned");
    keys.iter().all(|k| seen.contains_key(k))
}

fn millis_since(start: Instant, arrivals: &Arrivals, key: &str) -> f64 {
    let at = arrivals.lock().expect("not poisoned")[key];
    at.saturating_duration_since(start).as_secs_f64() * 1e3
}

/// Records when each trigger reaches `paging`, until `stop`; then leaves
/// its group.
async fn read_triggers(
    consumer: StreamConsumer,
    topic: String,
    triggers: Arrivals,
    stop: CancellationToken,
) {
    if let Err(e) = consumer.subscribe(&[&topic]) {
        tracing::error!(error = %e, "cannot read the paging topic");
        return;
    }
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => break,
            received = consumer.recv() => received,
        };
        let Ok(message) = received else {
            continue;
        };
        let at = Instant::now();
        let Ok(event) = serde_json::from_slice::<Value>(message.payload().unwrap_or_default())
        else {
            continue;
        };
        if event["event_action"] == "trigger"
            && let Some(key) = event["dedup_key"].as_str()
        {
            triggers
                .lock()
                .expect("not poisoned")
                .entry(key.to_owned())
                .or_insert(at);
        }
    }
    // Leaving the group blocks this thread until the broker answers.
    tokio::task::block_in_place(|| drop(consumer));
}

/// A webhook receiver on 127.0.0.1 recording when each incident is paged.
async fn start_webhook_receiver() -> Result<(String, Arrivals), BenchError> {
    async fn page(State(pages): State<Arrivals>, Json(body): Json<Value>) {
        let at = Instant::now();
        if body["event"] == "page"
            && let Some(key) = body["incident"]["dedup_key"].as_str()
        {
            pages
                .lock()
                .expect("not poisoned")
                .entry(key.to_owned())
                .or_insert(at);
        }
    }
    let pages: Arrivals = Arc::default();
    let app = axum::Router::new()
        .route("/hook", post(page))
        .with_state(pages.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, pages))
}

/// One point per series at `time_ms`, 100 per record, spread over the
/// partitions; `hot` series are above the rule's threshold. Returns the
/// number of points once all are delivered.
async fn produce_window(
    producer: &PolledProducer<DefaultProducerContext>,
    topic: &str,
    partitions: i32,
    series: u64,
    time_ms: i64,
    hot: &HashSet<u64>,
) -> Result<u64, BenchError> {
    let mut record = String::new();
    for (n, host) in (0..series).enumerate() {
        let value = if hot.contains(&host) { 1000 } else { 1 };
        if !record.is_empty() {
            record.push('\n');
        }
        let _ = write!(
            record,
            r#"{{"name":"bench.latency","time":{time_ms},"value":{value},"tags":{{"host":"h-{host}"}}}}"#
        );
        if (n + 1) % 100 == 0 || host + 1 == series {
            let partition = ((n / 100) % partitions as usize) as i32;
            send(producer, topic, partition, &record).await?;
            record.clear();
        }
    }
    flush(producer).await?;
    Ok(series)
}

async fn send(
    producer: &PolledProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    payload: &str,
) -> Result<(), BenchError> {
    let message = BaseRecord::<(), str>::to(topic)
        .partition(partition)
        .payload(payload);
    producer
        .send_when_queued(message, QUEUE_FULL_RETRY, None)
        .await
        .map_err(|(e, _)| BenchError::from(e))
}

async fn flush(producer: &PolledProducer<DefaultProducerContext>) -> Result<(), BenchError> {
    tokio::task::block_in_place(|| producer.flush(Duration::from_secs(60)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<f64> = (1..=200).map(f64::from).collect();
        samples.reverse();
        let p = Percentiles::of(&mut samples);
        assert_eq!((p.p50, p.p99, p.max), (100.0, 198.0, 200.0));
    }
}
