//! The rules runner's state on a compacted Kafka topic, the way Kafka
//! Streams keeps a changelog: one record per rule (`rule/NAME`, the JSON of
//! a [`RuleCheckpoint`], a tombstone once the rule is gone) and one record
//! of partition positions (`positions`). Compaction keeps the latest of each,
//! so reading the topic from the start rebuilds the state.

use std::time::Duration;

use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
};
use thiserror::Error;

use super::{
    engine::{CheckpointDelta, RuleCheckpoint},
    watermark::PartitionKey,
};
use crate::{config::KafkaConfig, kafka::read_compacted};

const POSITIONS_KEY: &str = "positions";
const RULE_PREFIX: &str = "rule/";

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("state topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("state topic {topic:?}: record {key:?} is not a klaxon checkpoint: {source}")]
    Corrupt {
        topic: String,
        key: String,
        source: serde_json::Error,
    },
}

/// What the state topic holds.
#[derive(Debug, Default)]
pub struct StoredCheckpoint {
    pub rules: Vec<RuleCheckpoint>,
    pub positions: Vec<(PartitionKey, i64)>,
}

/// Writes a checkpoint delta and waits until every record is acknowledged.
pub async fn write_checkpoint(
    producer: &FutureProducer,
    topic: &str,
    delta: &CheckpointDelta,
) -> Result<(), KafkaError> {
    let mut records: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for rule in &delta.rules {
        let body = serde_json::to_vec(rule).expect("checkpoints serialise");
        records.push((format!("{RULE_PREFIX}{}", rule.rule), Some(body)));
    }
    for name in &delta.removed {
        records.push((format!("{RULE_PREFIX}{name}"), None));
    }
    if !delta.positions.is_empty() {
        let body = serde_json::to_vec(&delta.positions).expect("positions serialise");
        records.push((POSITIONS_KEY.to_owned(), Some(body)));
    }
    let sends = records.iter().map(|(key, body)| {
        let mut record = FutureRecord::<String, Vec<u8>>::to(topic).key(key);
        if let Some(body) = body {
            record = record.payload(body);
        }
        producer.send(record, Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Reads the state topic from its start to its end. Blocking: call it from
/// `spawn_blocking`.
pub fn read_checkpoint(
    kafka: &KafkaConfig,
    brokers: &str,
    topic: &str,
) -> Result<StoredCheckpoint, CheckpointError> {
    let latest = read_compacted(kafka, brokers, topic, None, Duration::from_secs(60))?;
    let corrupt = |key: &str, source| CheckpointError::Corrupt {
        topic: topic.to_owned(),
        key: key.to_owned(),
        source,
    };
    let mut stored = StoredCheckpoint::default();
    for ((_, key), body) in latest {
        if key == POSITIONS_KEY {
            stored.positions = serde_json::from_slice(&body).map_err(|e| corrupt(&key, e))?;
        } else if key.starts_with(RULE_PREFIX) {
            stored
                .rules
                .push(serde_json::from_slice(&body).map_err(|e| corrupt(&key, e))?);
        }
    }
    stored.rules.sort_by(|a, b| a.rule.cmp(&b.rule));
    Ok(stored)
}
