//! Reading a compacted topic (a changelog) from its start to its end: the
//! latest value of every key, tombstones applied, the way Kafka Streams
//! restores a state store.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    types::RDKafkaErrorCode,
};

use crate::{
    config::KafkaConfig,
    kafka::{EndOfPartitionIsNoError, Role, client_config},
};

/// The latest value of each key, per partition.
pub type Latest = HashMap<(i32, String), Vec<u8>>;

/// Reads `partitions` of `topic` (all of them when `None`) to their end.
/// Blocking: call it from `spawn_blocking`.
pub fn read_compacted(
    kafka: &KafkaConfig,
    brokers: &str,
    topic: &str,
    partitions: Option<&[i32]>,
    limit: Duration,
) -> Result<Latest, KafkaError> {
    // No group: the reader assigns partitions itself and commits nothing.
    let consumer: BaseConsumer<EndOfPartitionIsNoError> =
        client_config(kafka, brokers, Role::CompactedReader)
            .create_with_context(EndOfPartitionIsNoError)?;
    let metadata = consumer.fetch_metadata(Some(topic), limit)?;
    let mut assignment = TopicPartitionList::new();
    let mut open = 0;
    for t in metadata.topics() {
        // A topic that does not exist yet reads as empty; any other error
        // (no leader, an election under way) is a failed read, never an
        // empty topic: state read as empty would lift every silence and
        // forget every incident.
        match t.error().map(RDKafkaErrorCode::from) {
            None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {}
            Some(code) => return Err(KafkaError::MetadataFetch(code)),
        }
        for p in t.partitions() {
            if partitions.is_some_and(|wanted| !wanted.contains(&p.id())) {
                continue;
            }
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), limit)?;
            if high > low {
                assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                open += 1;
            }
        }
    }
    let mut latest = Latest::new();
    if open == 0 {
        return Ok(latest);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + limit;
    while open > 0 {
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => {
                let Some(key) = m.key() else { continue };
                let key = (m.partition(), String::from_utf8_lossy(key).into_owned());
                match m.payload() {
                    Some(body) => latest.insert(key, body.to_vec()),
                    None => latest.remove(&key),
                };
            }
        }
    }
    Ok(latest)
}
