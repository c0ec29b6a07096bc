//! A consumer group's committed offsets, read without joining the group:
//! what `klaxon compact` needs to know which lake files are final.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaResult,
};

use super::{Role, client_config};
use crate::config::KafkaConfig;

/// Committed offset (the next one the group reads) of every partition of
/// `topics` that has one. Blocking: run it off the async runtime.
pub fn committed_offsets(
    kafka: &KafkaConfig,
    brokers: &str,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> KafkaResult<HashMap<(String, i32), i64>> {
    let consumer: BaseConsumer =
        client_config(kafka, brokers, Role::GroupReader { group_id: group }).create()?;
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                partitions.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect())
}
