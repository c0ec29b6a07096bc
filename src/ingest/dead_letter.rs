//! The dead-letter topic: each rejected line, with why and where it came from.
//!
//! The value is the original line's bytes; headers carry the context, the way
//! Kafka Connect's dead-letter queues do, so the record can be fixed and
//! produced again:
//! `klaxon.reason`, `klaxon.detail`, `klaxon.topic`, `klaxon.partition`,
//! `klaxon.offset`, `klaxon.line`.

use std::time::Duration;

use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::decode::Rejected;

#[derive(Clone)]
pub(super) struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

/// Where a rejected line came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: &'a [u8],
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub(super) fn new(producer: FutureProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    /// Publishes each rejection and waits until the broker has them all, so
    /// the offset that covers them can be committed.
    pub(super) async fn publish(
        &self,
        origin: Origin<'_>,
        rejects: &[Rejected],
    ) -> Result<(), rdkafka::error::KafkaError> {
        for r in rejects {
            let partition = origin.partition.to_string();
            let offset = origin.offset.to_string();
            let line = r.line.to_string();
            let headers = OwnedHeaders::new_with_capacity(6)
                .insert(header("klaxon.reason", r.reason.as_str()))
                .insert(header("klaxon.detail", &r.detail))
                .insert(header("klaxon.topic", origin.topic))
                .insert(header("klaxon.partition", &partition))
                .insert(header("klaxon.offset", &offset))
                .insert(header("klaxon.line", &line));
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .payload(&origin.payload[r.bytes.clone()])
                .headers(headers);
            if let Some(key) = origin.key {
                record = record.key(key);
            }
            self.producer
                .send(record, Duration::from_secs(60))
                .await
                .map_err(|(e, _)| e)?;
            metrics::counter!(
                "klaxon_ingest_rejected_total",
                "topic" => origin.topic.to_owned(),
                "reason" => r.reason.as_str()
            )
            .increment(1);
        }
        Ok(())
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
