//! The one way klaxon writes paging events: keyed by `dedup_key` through a
//! [`keyed_producer`] (idempotent, murmur2 as Java clients partition), so
//! an acknowledgement from klaxon lands on the partition of a trigger from
//! any Kafka client. The rules runner, the CLI and the HTTP API all use it.

use std::time::Duration;

use rdkafka::{
    error::{KafkaError, KafkaResult},
    producer::{FutureRecord, Producer as _},
};

use super::PagingEvent;
use crate::{
    config::KafkaConfig,
    kafka::{Producer, keyed_producer},
};

/// How long one event may wait for its acknowledgement.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A producer for the paging topic.
#[derive(Clone)]
pub struct Publisher {
    producer: Producer,
    topic: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher to `topic` with a producer of its own.
    pub fn new(kafka: &KafkaConfig, topic: &str) -> KafkaResult<Self> {
        Ok(Self::with_producer(
            keyed_producer(kafka, &kafka.brokers)?,
            topic,
        ))
    }

    /// A publisher on a [`keyed_producer`] the caller also uses for other
    /// topics (the rules runner writes its state with it).
    pub fn with_producer(producer: Producer, topic: &str) -> Self {
        Self {
            producer,
            topic: topic.to_owned(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces `events` keyed by `dedup_key`, all at once and in order,
    /// waiting for every acknowledgement; to `partition` when given (an
    /// existing incident's, so it reaches the member that holds it whatever
    /// partitioner the trigger's producer used).
    pub async fn publish(
        &self,
        events: &[PagingEvent],
        partition: Option<i32>,
    ) -> Result<(), KafkaError> {
        let bodies: Vec<Vec<u8>> = events
            .iter()
            .map(|e| serde_json::to_vec(e).expect("events serialise"))
            .collect();
        let sends = events.iter().zip(&bodies).map(|(event, body)| {
            let mut record = FutureRecord::to(&self.topic)
                .key(&event.dedup_key)
                .payload(body);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            self.producer.send(record, SEND_TIMEOUT)
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Looks the topic's partition leaders up now, so the first event does
    /// not wait for the lookup (hundreds of milliseconds on a new client).
    pub async fn warm_up(&self) {
        let (client, topic) = (self.producer.clone(), self.topic.clone());
        let lookup = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map(|_| ())
        });
        if let Ok(Err(e)) = lookup.await {
            // Not fatal: the first publish looks it up again.
            tracing::warn!(error = %e, "cannot look the paging topic up yet");
        }
    }
}
