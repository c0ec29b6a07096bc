//! The consumer's callbacks: rebalances and librdkafka statistics.

use std::sync::Mutex;

use rdkafka::{
    ClientContext, Statistics,
    consumer::{BaseConsumer, ConsumerContext, Rebalance},
};

/// Hands revoked partitions to the ingest loop, and turns librdkafka's
/// statistics into the consumer-lag gauge.
#[derive(Debug, Default)]
pub(super) struct IngestContext {
    /// Partitions revoked since the loop last looked. Callbacks run inside the
    /// consumer's poll, which the loop drives, so a revocation can never land
    /// between a flush and its commit.
    revoked: Mutex<Vec<(String, i32)>>,
}

impl IngestContext {
    pub(super) fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // librdkafka reports -1 for partitions this member does not consume.
                if partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(
                        "klaxon_ingest_consumer_lag",
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock");
            for e in list.elements() {
                tracing::info!(topic = e.topic(), partition = e.partition(), "partition revoked");
                revoked.push((e.topic().to_owned(), e.partition()));
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            for e in list.elements() {
                tracing::info!(topic = e.topic(), partition = e.partition(), "partition assigned");
            }
        }
    }
}
