//! Producing to and reading from topics as a plain Kafka client would.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
    producer::FutureRecord,
};

pub fn producer(brokers: &str) -> klaxon::kafka::Producer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "2")
        // Fail a test in seconds, not librdkafka's default five minutes.
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap()
}

/// A consumer reading `topic` from its first record, in its own group.
pub fn topic_reader(brokers: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Produces `records` (key, payload) and waits for every delivery.
pub async fn produce_all(
    producer: &klaxon::kafka::Producer,
    topic: &str,
    records: &[(String, String)],
) {
    let sends = records.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(30),
        )
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("delivery");
    }
}

/// `count` JSON points whose value is their sequence number, packed
/// `per_record` to a record.
pub fn json_points(first: u64, count: u64, per_record: u64) -> Vec<(String, String)> {
    let now = chrono::Utc::now().timestamp_millis();
    seq_records(first, count, per_record, |i, _| now + i as i64)
}

/// Records of `test.seq` points whose values are `first..first + count`,
/// `per_record` to a record, keyed by their first value; point `i`, the
/// `k`th of its record, is at `time(i, k)` (epoch ms). The shape every
/// exactly-once check counts.
pub fn seq_records(
    first: u64,
    count: u64,
    per_record: u64,
    time: impl Fn(u64, usize) -> i64,
) -> Vec<(String, String)> {
    (first..first + count)
        .collect::<Vec<_>>()
        .chunks(per_record as usize)
        .map(|chunk| {
            let lines: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    format!(
                        r#"{{"name":"test.seq","time":{},"value":{i},"tags":{{"series":"s{}"}}}}"#,
                        time(i, k),
                        i % 7
                    )
                })
                .collect();
            (chunk[0].to_string(), lines.join("\n"))
        })
        .collect()
}

/// One record of a dead-letter topic: its headers (`klaxon.reason`,
/// `klaxon.topic`, …) and the payload as klaxon kept it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
}

impl DeadLetter {
    /// A header's value, or "" when the record has no such header.
    pub fn header(&self, key: &str) -> &str {
        self.headers.get(key).map_or("", String::as_str)
    }

    pub fn payload_text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Reads `n` records of `topic` (from its start).
pub async fn read_dead_letters(brokers: &str, topic: &str, n: usize) -> Vec<DeadLetter> {
    let consumer = topic_reader(brokers, topic);
    let mut seen = Vec::with_capacity(n);
    while seen.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{n} dead letters arrive; {} so far", seen.len()))
            .unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        seen.push(DeadLetter {
            headers,
            payload: m.payload().unwrap_or_default().to_vec(),
        });
    }
    seen
}
