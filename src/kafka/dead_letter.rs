//! Dead-letter topics: each rejected record (or line of one), with why and
//! where it came from.
//!
//! The value is the original bytes; headers carry the context, the way Kafka
//! Connect's dead-letter queues do, so the record can be fixed and produced
//! again: `klaxon.reason`, `klaxon.detail`, `klaxon.topic`,
//! `klaxon.partition`, `klaxon.offset`, and `klaxon.line` for a line of a
//! newline-delimited record.

use std::time::Duration;

use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

/// Publishes rejected input to one dead-letter topic.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

/// Where a rejected line came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}

/// Why something was rejected, and which bytes.
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    pub reason: &'a str,
    pub detail: &'a str,
    pub bytes: &'a [u8],
    /// 1-based line within a newline-delimited record.
    pub line: Option<usize>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    /// Publishes one rejection and waits until the broker has it, so the
    /// offset that covers it can be committed.
    pub async fn publish(
        &self,
        origin: Origin<'_>,
        rejection: Rejection<'_>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(6)
            .insert(header("klaxon.reason", rejection.reason))
            .insert(header("klaxon.detail", rejection.detail))
            .insert(header("klaxon.topic", origin.topic))
            .insert(header("klaxon.partition", &partition))
            .insert(header("klaxon.offset", &offset));
        if let Some(line) = rejection.line {
            headers = headers.insert(header("klaxon.line", &line.to_string()));
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(rejection.bytes)
            .headers(headers);
        if let Some(key) = origin.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(60))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
