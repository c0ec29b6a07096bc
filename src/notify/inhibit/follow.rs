//! Following the whole `incidents` changelog for the alerts that fire in
//! every paging partition: one long-lived reader per notifier, assigned
//! every partition from the start (no group, nothing committed), keeping
//! each open incident's labels and publishing the set when it changes.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Firing, FiringAlert};
use crate::{
    config::{Config, KafkaConfig},
    kafka::{EndOfPartitionIsNoError, Role, client_config},
    notify::{changelog::INCIDENT_PREFIX, incident::Incident},
};

/// How often a changed set is published, at most.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// The wait before a failed reader starts again.
const RETRY: Duration = Duration::from_secs(5);

/// Follows the firing alerts of every partition until `shutdown`.
pub fn follow(config: &Config, shutdown: CancellationToken) -> watch::Receiver<Arc<Firing>> {
    let (tx, rx) = watch::channel(Arc::new(Firing::default()));
    let (kafka, topic) = (config.kafka.clone(), config.notify.incidents_topic.clone());
    tokio::task::spawn_blocking(move || {
        while !shutdown.is_cancelled() {
            if let Err(e) = read(&kafka, &topic, &tx, &shutdown) {
                metrics::counter!("klaxon_notify_firing_read_failures_total").increment(1);
                tracing::warn!(error = %e, "following firing alerts failed; starting again");
                std::thread::sleep(RETRY);
            }
        }
    });
    rx
}

/// Reads the changelog from its start until `shutdown` or an error.
fn read(
    kafka: &KafkaConfig,
    topic: &str,
    tx: &watch::Sender<Arc<Firing>>,
    shutdown: &CancellationToken,
) -> Result<(), KafkaError> {
    let consumer: BaseConsumer<EndOfPartitionIsNoError> =
        client_config(kafka, &kafka.brokers, Role::CompactedReader)
            .create_with_context(EndOfPartitionIsNoError)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    // A topic the broker does not know (yet), or without partitions, is a
    // failed read: read as empty, it would release every inhibited alert.
    for t in metadata.topics() {
        if let Some(code) = t.error() {
            return Err(KafkaError::MetadataFetch(code.into()));
        }
    }
    if metadata.topics().iter().all(|t| t.partitions().is_empty()) {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    let mut assignment = TopicPartitionList::new();
    let mut behind = HashSet::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        // An empty partition has nothing to catch up on.
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(30))?;
        if high > low {
            behind.insert(p.id());
        }
    }
    consumer.assign(&assignment)?;
    // Read again from the start; the set last published (if complete)
    // stays in force until this read has caught up: a partial read would
    // show alerts resolved long ago as open, and open ones as missing.
    let mut firing = Firing {
        loaded: behind.is_empty(),
        ..Firing::default()
    };
    let mut dirty = firing.loaded;
    let mut published = Instant::now() - PUBLISH_EVERY;
    while !shutdown.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // Caught up once on every partition: now complete.
                let caught_up = behind.remove(&p) && behind.is_empty();
                firing.loaded |= caught_up;
                dirty |= caught_up;
            }
            // librdkafka recovers from the rest itself (a broker gone for a
            // while): counted and logged, the read goes on where it was.
            Some(Err(e)) => {
                metrics::counter!("klaxon_notify_firing_read_failures_total").increment(1);
                tracing::warn!(error = %e, "following firing alerts: {e}");
            }
            Some(Ok(m)) => {
                let Some(id) = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.strip_prefix(INCIDENT_PREFIX))
                else {
                    continue;
                };
                let incident = match m.payload().map(serde_json::from_slice::<Incident>) {
                    None => None,
                    Some(Ok(incident)) => Some(incident),
                    // Not the source resolving: what was known stays.
                    Some(Err(e)) => {
                        tracing::error!(%id, error = %e, "unreadable incident in the changelog; kept as it was");
                        continue;
                    }
                };
                let alert = incident.as_ref().and_then(FiringAlert::of);
                let before = match alert {
                    Some(alert) => {
                        firing.alerts.insert(id.to_owned(), alert.clone()) != Some(alert)
                    }
                    None => firing.alerts.remove(id).is_some(),
                };
                dirty |= before;
            }
        }
        if dirty && firing.loaded && published.elapsed() >= PUBLISH_EVERY {
            tx.send_replace(Arc::new(firing.clone()));
            published = Instant::now();
            dirty = false;
        }
    }
    Ok(())
}
