//! Ingest: Kafka records to the Parquet lake, exactly once.
//!
//! One process is one member of the consumer group `klaxon-ingest`. Each
//! assigned partition has a buffer of decoded points ([`buffer`]); a buffer is
//! flushed to the lake on size or age, and the partition's offset is committed
//! only once the files are durable. Rejected lines go to the dead-letter topic
//! ([`crate::kafka::DeadLetters`]) before the offset that covers them is committed.

mod buffer;
mod run;
mod upkeep;

use thiserror::Error;

use crate::{config::Config, error::ErrorKind, lake::LakeError, topics::TopicSpec};

pub use run::{Ingest, IngestArgs};

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("no brokers configured: pass --brokers or set kafka.brokers")]
    NoBrokers,
}

impl IngestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::Kafka(_) => ErrorKind::External,
            IngestError::Lake(e) => e.kind(),
            IngestError::Arrow(_) => ErrorKind::Internal,
            IngestError::NoBrokers => ErrorKind::User,
        }
    }
}

/// The topics ingest reads, and its dead-letter topic.
pub fn topics(config: &Config) -> Vec<TopicSpec> {
    let mut topics = crate::topics::source_topics(config);
    topics.push(TopicSpec::plain(&config.topics.dead_letter, &config.topics));
    topics
}
