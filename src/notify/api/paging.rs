//! The API's one producer of paging events, shared by every request: one
//! client's connections, producer id and topic lookup rather than a new
//! client per request (a burst of webhooks is not a burst of clients).
//!
//! Shared, a record outlives its request, which a per-request producer
//! purged when the request was dropped. Two rules keep that honest:
//! librdkafka gives up on a record before the HTTP deadline answers the
//! request with 503 (a sender told 503 retries, and a trigger without a
//! `dedup_key` would then open a second incident), and a producer that has
//! failed fatally (an idempotent producer can) is replaced, not kept.

use std::sync::Mutex;

use rdkafka::{
    ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
};

use crate::{
    config::Config,
    kafka::{Role, client_config},
    paging::{PagingEvent, Publisher},
};

/// librdkafka's names for how long a record may wait for delivery.
const DELIVERY_TIMEOUTS: [&str; 2] = ["message.timeout.ms", "delivery.timeout.ms"];

#[derive(Debug)]
pub(super) struct SharedPublisher {
    producer: ClientConfig,
    topic: String,
    current: Mutex<Option<Publisher>>,
}

impl SharedPublisher {
    /// Makes no client yet: the first request does.
    pub(super) fn new(config: &Config) -> Self {
        Self {
            producer: producer_config(config),
            topic: config.notify.paging_topic.clone(),
            current: Mutex::new(None),
        }
    }

    /// The publisher, made if there is none.
    pub(super) fn get(&self) -> Result<Publisher, KafkaError> {
        let mut current = self.current.lock().expect("not poisoned");
        if let Some(publisher) = current.as_ref() {
            return Ok(publisher.clone());
        }
        let made = Publisher::with_producer(self.producer.create()?, &self.topic);
        *current = Some(made.clone());
        Ok(made)
    }

    /// Drops the publisher after a fatal error, so the next request makes
    /// a new one.
    pub(super) fn failed(&self, error: &KafkaError) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::warn!(%error, "the API's paging producer failed fatally: making a new one");
            *self.current.lock().expect("not poisoned") = None;
        }
    }

    /// Publishes events of no incident yet (keyed, partitioned by
    /// dedup_key).
    pub(super) async fn publish(&self, events: &[PagingEvent]) -> Result<(), KafkaError> {
        let result = self.get()?.publish(events, None).await;
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }
}

/// A keyed producer whose records expire a second before the HTTP request
/// that sent them does (librdkafka gets at least a second), unless the
/// configuration sets a delivery timeout of its own.
fn producer_config(config: &Config) -> ClientConfig {
    let mut producer = client_config(&config.kafka, &config.kafka.brokers, Role::KeyedProducer);
    let set_by_user = DELIVERY_TIMEOUTS
        .iter()
        .any(|key| config.kafka.properties.contains_key(*key));
    if !set_by_user {
        let deadline = config
            .http
            .request_timeout
            .as_millis()
            .saturating_sub(1_000);
        producer.set(DELIVERY_TIMEOUTS[0], deadline.max(1_000).to_string());
    }
    producer
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn records_expire_before_the_request_does() {
        let mut config = Config::default();
        config.http.request_timeout = Duration::from_secs(30);
        assert_eq!(
            producer_config(&config).get("message.timeout.ms"),
            Some("29000")
        );
        config.http.request_timeout = Duration::from_millis(500);
        assert_eq!(
            producer_config(&config).get("message.timeout.ms"),
            Some("1000"),
            "librdkafka needs some time"
        );
        config
            .kafka
            .properties
            .insert("delivery.timeout.ms".to_owned(), "5000".to_owned());
        let producer = producer_config(&config);
        assert_eq!(producer.get("message.timeout.ms"), None, "the user's own");
        assert_eq!(producer.get("delivery.timeout.ms"), Some("5000"));
    }
}
