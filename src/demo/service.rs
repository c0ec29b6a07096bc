//! The synthetic checkout service: every tick, its requests, errors and
//! memory as JSON points on the metrics topic, in the state the story sets.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{clock::now_ms, kafka::Producer};

/// What the service is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// v2.4.0: healthy.
    Stable,
    /// v2.4.1: leaks memory; once near its limit, requests start failing
    /// as the process is killed and restarted.
    Leaking,
    /// Back on v2.4.0.
    RolledBack,
}

/// Requests per tick.
const REQUESTS: f64 = 200.0;
/// The memory limit, in bytes.
const LIMIT: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;

/// Produces the service's points until `stop`, following `release`.
pub(super) async fn run(
    producer: Producer,
    topic: String,
    tick: Duration,
    mut release: watch::Receiver<Release>,
    stop: CancellationToken,
) {
    let mut memory = 0.4 * LIMIT;
    let mut ticker = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = *release.borrow_and_update();
        // The leak adds 5% of the limit a tick; a rollback frees it.
        memory = match now {
            Release::Leaking => (memory + 0.05 * LIMIT).min(0.99 * LIMIT),
            Release::Stable | Release::RolledBack => 0.4 * LIMIT,
        };
        let failing = if memory > 0.85 * LIMIT { 0.12 } else { 0.005 };
        let time = now_ms();
        let lines = [
            ("checkout.requests", REQUESTS),
            ("checkout.errors", (REQUESTS * failing).round()),
            ("checkout.memory_used_bytes", memory.round()),
        ]
        .map(|(name, value)| {
            json!({ "name": name, "time": time, "value": value, "tags": { "service": "checkout" } })
                .to_string()
        })
        .join("\n");
        let record = FutureRecord::to(&topic).key("checkout").payload(&lines);
        if let Err((e, _)) = producer.send(record, Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "the demo's checkout service could not send its points");
        }
    }
}
