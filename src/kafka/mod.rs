//! Client settings shared by every Kafka client klaxon creates, and the
//! consumer-group callbacks its members share.

mod compacted;
mod dead_letter;
mod group;

pub use compacted::{Latest, read_compacted};
pub use dead_letter::{DeadLetters, Origin, Rejection};
pub use group::GroupContext;
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// A client config for `brokers` with the user's extra properties applied last,
/// so they can override any default klaxon picks.
pub fn client_config(kafka: &KafkaConfig, brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", &kafka.client_id);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}
