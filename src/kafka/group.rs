//! A group member's consumer callbacks: rebalances and librdkafka statistics.

use std::{sync::Mutex, time::Duration};

use rdkafka::{
    ClientContext, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol},
    error::KafkaResult,
    types::RDKafkaRespErr,
};

/// Hands assigned and revoked partitions to the member's loop, starts
/// assigned partitions at their committed offsets, counts rebalances, and
/// turns librdkafka's statistics into a consumer-lag gauge.
#[derive(Debug)]
pub struct GroupContext {
    /// The member's `component` label (`ingest`, `rules`, `notify`).
    component: &'static str,
    /// Partitions assigned and revoked since the loop last looked. Callbacks
    /// run inside the consumer's poll, which the loop drives, so a revocation
    /// can never land between a flush and its commit.
    assigned: Mutex<Vec<(String, i32)>>,
    revoked: Mutex<Vec<(String, i32)>>,
}

impl GroupContext {
    /// The context of a member of `component`; registers its rebalance
    /// counters at zero.
    pub fn new(component: &'static str) -> Self {
        for event in ["assigned", "revoked"] {
            crate::telemetry::register_zero(
                "klaxon_consumer_rebalances_total",
                &[
                    ("component", component.to_owned()),
                    ("event", event.to_owned()),
                ],
            );
        }
        Self {
            component,
            assigned: Mutex::default(),
            revoked: Mutex::default(),
        }
    }

    pub fn take_assigned(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.assigned.lock().expect("assigned lock"))
    }

    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }

    /// Whether partitions were assigned or revoked since the loop last took them.
    pub fn rebalance_pending(&self) -> bool {
        !self.assigned.lock().expect("assigned lock").is_empty()
            || !self.revoked.lock().expect("revoked lock").is_empty()
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // librdkafka reports -1 for partitions this member does not consume.
                if partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(
                        "klaxon_consumer_lag",
                        "component" => self.component,
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    /// Replaces rdkafka's default so every assigned partition starts exactly at
    /// its committed offset. Left to itself, a member that gets back a
    /// partition it just lost (eager rebalance) can resume where its fetcher
    /// was, past records it had buffered and dropped unflushed; that would
    /// lose them.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = start_at_committed(consumer, partitions) {
                    // Without the committed offsets, librdkafka's own lookup is
                    // the best there is; the in-flight marker still prevents
                    // duplicates.
                    tracing::warn!(error = %e, "could not read committed offsets");
                }
                let mut assigned = self.assigned.lock().expect("assigned lock");
                for e in partitions.elements() {
                    tracing::info!(
                        topic = e.topic(),
                        partition = e.partition(),
                        offset = ?e.offset(),
                        "partition assigned"
                    );
                    assigned.push((e.topic().to_owned(), e.partition()));
                }
                drop(assigned);
                self.count_rebalance("assigned", partitions);
                if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut revoked = self.revoked.lock().expect("revoked lock");
                for e in partitions.elements() {
                    tracing::info!(
                        topic = e.topic(),
                        partition = e.partition(),
                        "partition revoked"
                    );
                    revoked.push((e.topic().to_owned(), e.partition()));
                }
                drop(revoked);
                self.count_rebalance("revoked", partitions);
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
    }
}

impl GroupContext {
    fn count_rebalance(&self, event: &'static str, partitions: &TopicPartitionList) {
        if partitions.count() > 0 {
            metrics::counter!(
                "klaxon_consumer_rebalances_total",
                "component" => self.component,
                "event" => event
            )
            .increment(1);
        }
    }
}

/// Sets each partition's start offset to its committed offset, where one exists.
fn start_at_committed(
    consumer: &BaseConsumer<GroupContext>,
    partitions: &mut TopicPartitionList,
) -> KafkaResult<()> {
    let committed = consumer.committed_offsets(partitions.clone(), Duration::from_secs(10))?;
    for e in committed.elements() {
        if let Offset::Offset(offset) = e.offset() {
            partitions.set_partition_offset(e.topic(), e.partition(), Offset::Offset(offset))?;
        }
    }
    Ok(())
}
