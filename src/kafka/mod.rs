//! Client settings shared by every Kafka client klaxon creates (by
//! [`Role`]), and the consumer-group member loop every stage runs
//! ([`member`]).

mod committed;
mod compacted;
mod dead_letter;
mod group;
pub mod member;
mod producer;

pub use committed::committed_offsets;
pub use compacted::{Latest, read_compacted};
pub use dead_letter::{DeadLetters, Origin, Rejection, Stopped};
pub use group::GroupContext;
pub use member::{Commits, Committed, Member, Timer};
pub use producer::{
    DeliveryFuture, FutureDeliveries, OwnedDeliveryResult, PolledProducer, Producer,
};
use rdkafka::{ClientConfig, ClientContext, error::KafkaError, types::RDKafkaErrorCode};

use crate::config::KafkaConfig;

/// The context of a client that reads to the end of partitions (with
/// `enable.partition.eof`): librdkafka reports each end reached as an
/// error event, which rdkafka's default context logs at ERROR although the
/// poll also returns it as the expected `PartitionEOF`. A user reads those
/// lines as failures of a command that succeeded, so they are dropped here;
/// every other error is logged as before.
#[derive(Debug, Default, Clone, Copy)]
pub struct EndOfPartitionIsNoError;

impl ClientContext for EndOfPartitionIsNoError {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_partition_eof(&error) {
            tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndOfPartitionIsNoError {}

fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
}

/// What a client is for. Each role carries klaxon's settings for it, and
/// [`client_config`] is the one place they are set.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// Admin requests and metadata lookups: the connection settings only.
    Admin,
    /// A producer batching for throughput (`klaxon produce`, the bench's bulk load).
    BulkProducer,
    /// A producer whose retries must not duplicate (ingest's dead letters).
    IdempotentProducer,
    /// A producer for keyed topics that other clients also write to
    /// (`paging`): idempotent, and partitioning keys with murmur2 as Java
    /// clients do, so an acknowledgement from klaxon lands on the same
    /// partition as a trigger from any Kafka client.
    KeyedProducer,
    /// A reader of a compacted topic to its end: it assigns partitions
    /// itself and commits nothing (changelog, checkpoints).
    CompactedReader,
    /// A member of the ingest group, prefetching within `memory_budget`
    /// bytes (see [`prefetch_limits`]).
    IngestMember {
        group_id: &'a str,
        memory_budget: usize,
    },
    /// A member of a group that pages people (the rules runner, the notifier).
    PagingMember { group_id: &'a str },
    /// Reads a group's committed offsets without joining the group
    /// (`klaxon compact`).
    GroupReader { group_id: &'a str },
    /// A tool klaxon runs against a broker (the bench), with its own settings.
    Tool(&'a [(&'a str, String)]),
}

/// The client config of a client in `role` for `brokers`: klaxon's settings
/// for the role, then the user's extra properties (`kafka.properties`),
/// applied last so they can override any default klaxon picks.
pub fn client_config(kafka: &KafkaConfig, brokers: &str, role: Role<'_>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", &kafka.client_id);
    match role {
        Role::Admin => {}
        Role::BulkProducer => {
            config
                .set("linger.ms", "5")
                .set("batch.size", "1000000")
                .set("queue.buffering.max.kbytes", "262144");
        }
        Role::IdempotentProducer => {
            config.set("enable.idempotence", "true");
        }
        Role::KeyedProducer => {
            config
                .set("enable.idempotence", "true")
                .set("partitioner", "murmur2_random");
        }
        Role::CompactedReader => {
            config
                .set("group.id", "klaxon-changelog-reader")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "true");
        }
        Role::IngestMember {
            group_id,
            memory_budget,
        } => {
            config
                .set("group.id", group_id)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("statistics.interval.ms", "5000");
            for (key, value) in prefetch_limits(memory_budget) {
                config.set(key, value);
            }
        }
        Role::PagingMember { group_id } => paging_member(&mut config, kafka, group_id),
        Role::GroupReader { group_id } => {
            config
                .set("group.id", group_id)
                .set("enable.auto.commit", "false");
        }
        Role::Tool(settings) => {
            for (key, value) in settings {
                config.set(*key, value);
            }
        }
    }
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// A producer in [`Role::KeyedProducer`].
pub fn keyed_producer(kafka: &KafkaConfig, brokers: &str) -> rdkafka::error::KafkaResult<Producer> {
    client_config(kafka, brokers, Role::KeyedProducer).create()
}

/// The consumer of a group member that pages people (the rules runner, the
/// notifier): offsets committed by hand, from the start of the topic when the
/// group is new, and fetches that return within 50ms.
///
/// A broker answers a fetch when data arrives or when `fetch.wait.max.ms`
/// runs out, whichever is first; some (tansu 0.6) always wait the full time,
/// and librdkafka's default of 500ms then adds half a second to every alert.
/// An idle member pays with about 20 small fetches a second per broker.
///
/// A member that dies without leaving (kill -9, a lost host) holds its
/// partitions until the broker expires its session: librdkafka's default of
/// 45s would leave pages unsent that long, so these members use 10s (the
/// least Kafka's default `group.min.session.timeout.ms` of 6s allows, with
/// room for a slow heartbeat). With `kafka.group_instance_id` set, a
/// restarted member rejoins under the same static identity and Kafka hands
/// its partitions straight back, without waiting for the session at all.
fn paging_member(config: &mut ClientConfig, kafka: &KafkaConfig, group_id: &str) {
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .set("fetch.wait.max.ms", "50")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // tansu 0.6 never returns a record larger than this (Kafka does), so
        // librdkafka's 1 MiB default would let one oversized event stall a
        // partition of pages; 16 MiB is past any Kafka broker's default limit.
        .set("max.partition.fetch.bytes", "16777216");
    if let Some(id) = &kafka.group_instance_id {
        config.set("group.instance.id", id);
    }
}

/// librdkafka's prefetch limits for a memory budget of `budget` bytes.
///
/// The budget is split: a quarter for records librdkafka prefetches, half for
/// decoded buffers, a quarter for the flush being encoded (hence no single
/// flush larger than that). When all are full, fetching stops.
///
/// One partition may fill a whole fetch: Kafka returns a record larger than
/// `max.partition.fetch.bytes` anyway, but tansu 0.6 returns nothing, so a
/// single record over librdkafka's 1 MiB default would stall its partition.
pub(crate) fn prefetch_limits(budget: usize) -> [(&'static str, String); 3] {
    let prefetch_kib = (budget / 4 / 1024).max(1024);
    let fetch_bytes = (prefetch_kib * 1024 / 2).min(52_428_800).to_string();
    [
        ("queued.max.messages.kbytes", prefetch_kib.to_string()),
        ("fetch.max.bytes", fetch_bytes.clone()),
        ("max.partition.fetch.bytes", fetch_bytes),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_end_of_a_partition_is_not_an_error() {
        assert!(is_partition_eof(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(is_partition_eof(&KafkaError::PartitionEOF(3)));
        assert!(!is_partition_eof(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
    }

    #[test]
    fn paging_members_fail_over_within_seconds_unless_told_otherwise() {
        let mut kafka = KafkaConfig::default();
        let paging = Role::PagingMember { group_id: "g" };
        let config = client_config(&kafka, "b:9092", paging);
        assert_eq!(config.get("session.timeout.ms"), Some("10000"));
        assert_eq!(config.get("group.instance.id"), None);

        kafka.group_instance_id = Some("notify-a".into());
        kafka
            .properties
            .insert("session.timeout.ms".into(), "30000".into());
        let config = client_config(&kafka, "b:9092", paging);
        assert_eq!(
            config.get("session.timeout.ms"),
            Some("30000"),
            "the user's properties win"
        );
        assert_eq!(config.get("group.instance.id"), Some("notify-a"));
    }

    #[test]
    fn the_users_properties_win_in_every_role() {
        let mut kafka = KafkaConfig::default();
        for key in [
            "linger.ms",
            "enable.idempotence",
            "group.id",
            "fetch.wait.max.ms",
        ] {
            kafka.properties.insert(key.into(), "mine".into());
        }
        let tool = [("linger.ms", "0".to_owned())];
        for role in [
            Role::Admin,
            Role::BulkProducer,
            Role::IdempotentProducer,
            Role::KeyedProducer,
            Role::CompactedReader,
            Role::IngestMember {
                group_id: "g",
                memory_budget: 1 << 30,
            },
            Role::PagingMember { group_id: "g" },
            Role::Tool(&tool),
        ] {
            let config = client_config(&kafka, "b:9092", role);
            for key in kafka.properties.keys() {
                assert_eq!(config.get(key), Some("mine"), "{key} in {role:?}");
            }
            assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
        }
    }
}
