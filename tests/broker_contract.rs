//! What klaxon relies on from the broker, checked against the one the tests
//! use. Exactly-once ingest restarts partitions at committed offsets, which
//! usually fall inside a producer's record batch.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_from_inside_a_batch_starts_at_that_offset() {
    let dir = test_dir();
    let broker = Broker::start(dir.path()).await;
    klaxon::topics::ensure_topics(
        &Default::default(),
        &broker.bootstrap(),
        &[klaxon::topics::TopicSpec {
            name: "batched".into(),
            partitions: 1,
            replication_factor: 1,
            configs: vec![],
        }],
    )
    .await
    .unwrap();
    // Lingering lets the producer put all 50 records in one batch.
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "200")
        .create()
        .unwrap();
    let records: Vec<(String, String)> =
        (0..50).map(|i| (i.to_string(), format!("r{i}"))).collect();
    produce_all(&producer, "batched", &records).await;

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "contract")
        .create()
        .unwrap();
    let mut at = TopicPartitionList::new();
    at.add_partition_offset("batched", 0, Offset::Offset(17))
        .unwrap();
    consumer.assign(&at).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record arrives")
        .unwrap();
    assert_eq!(
        (first.offset(), first.payload()),
        (17, Some(&b"r17"[..])),
        "the broker skipped records when fetching from inside a batch"
    );
}
