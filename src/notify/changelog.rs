//! The notifier's state on the compacted `incidents` topic, partitioned like
//! `paging`: partition `p` holds the incidents opened by events of paging
//! partition `p` (key `incident/ID`, the incident as JSON) and the next
//! paging offset already applied (key `position`). A member that is assigned
//! paging partition `p` restores it from incidents partition `p`, so two
//! notifiers share incidents by partition the way Kafka Streams tasks do.

use std::time::Duration;

use rdkafka::{error::KafkaError, producer::FutureRecord};

use super::incident::Incident;
use crate::{
    config::KafkaConfig,
    kafka::{Producer, read_compacted},
};

/// Keys of incident records: `incident/ID`.
pub const INCIDENT_PREFIX: &str = "incident/";
const POSITION_KEY: &str = "position";

/// What one partition of the changelog holds.
#[derive(Debug, Default)]
pub struct PartitionLog {
    pub incidents: Vec<Incident>,
    /// The next paging offset whose event is not yet applied.
    pub position: Option<i64>,
}

/// Reads `partitions` (all when `None`) of the changelog. Blocking.
pub fn read_changelog(
    kafka: &KafkaConfig,
    brokers: &str,
    topic: &str,
    partitions: Option<&[i32]>,
) -> Result<Vec<(i32, PartitionLog)>, KafkaError> {
    let latest = read_compacted(kafka, brokers, topic, partitions, Duration::from_secs(60))?;
    let mut out: Vec<(i32, PartitionLog)> = Vec::new();
    for ((partition, key), body) in latest {
        let at = match out.iter().position(|(p, _)| *p == partition) {
            Some(at) => at,
            None => {
                out.push((partition, PartitionLog::default()));
                out.len() - 1
            }
        };
        let log = &mut out[at].1;
        if key == POSITION_KEY {
            log.position = serde_json::from_slice(&body).ok();
        } else if key.starts_with(INCIDENT_PREFIX) {
            match serde_json::from_slice(&body) {
                Ok(incident) => log.incidents.push(incident),
                Err(e) => {
                    tracing::error!(%key, error = %e, "unreadable incident in the changelog; skipped")
                }
            }
        }
    }
    for (_, log) in &mut out {
        log.incidents.sort_by_key(|i| i.opened_at);
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}

/// Writes an incident to its partition and waits for the broker.
pub async fn write_incident(
    producer: &Producer,
    topic: &str,
    partition: i32,
    incident: &Incident,
) -> Result<(), KafkaError> {
    let key = format!("{INCIDENT_PREFIX}{}", incident.id);
    let body = serde_json::to_vec(incident).expect("incidents serialise");
    send(producer, topic, partition, &key, &body).await
}

/// Records that paging events before `next` are applied.
pub async fn write_position(
    producer: &Producer,
    topic: &str,
    partition: i32,
    next: i64,
) -> Result<(), KafkaError> {
    send(
        producer,
        topic,
        partition,
        POSITION_KEY,
        next.to_string().as_bytes(),
    )
    .await
}

async fn send(
    producer: &Producer,
    topic: &str,
    partition: i32,
    key: &str,
    body: &[u8],
) -> Result<(), KafkaError> {
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(body),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}
