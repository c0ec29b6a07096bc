//! The rules runner's state on a compacted Kafka topic, the way Kafka
//! Streams keeps a changelog: one record per rule (`rule/NAME`, the JSON of
//! a [`RuleCheckpoint`], a tombstone once the rule is gone) and one record
//! of partition positions (`positions`). Compaction keeps the latest of each,
//! so reading the topic from the start rebuilds the state.
//!
//! No record is larger than [`MAX_STATE_RECORD_BYTES`], well below the
//! broker's default 1 MB limit, however many instances a rule has (15k
//! firing instances once made one record of over 1 MB, and a runner that
//! died on every restart). A value that does not fit is split:
//!
//! - its JSON goes, in pieces, to chunk records keyed
//!   `chunk/GENERATION/INDEX/KEY`, each acknowledged before the head is sent;
//! - the record under `KEY` then holds only `{"generation": G, "chunks": N}`.
//!   A head is written after its chunks, so a head always names a complete
//!   set: a crash in between leaves the previous head and its chunks intact.
//! - Chunks no head names any more (replaced, or of an interrupted write) are
//!   deleted with tombstones once the new head is durable, and those found
//!   when the topic is read back are deleted on start.
//!
//! A value that fits is written as it always was, in one record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::{error::KafkaError, producer::FutureRecord};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use thiserror::Error;

use super::{
    engine::{CheckpointDelta, RuleCheckpoint},
    watermark::PartitionKey,
};
use crate::{
    config::KafkaConfig,
    kafka::{Producer, read_compacted},
};

const POSITIONS_KEY: &str = "positions";
const RULE_PREFIX: &str = "rule/";
const CHUNK_PREFIX: &str = "chunk/";

/// The largest value of a state record: a quarter of the broker's default
/// `message.max.bytes` (1 MB), leaving room for the key and headers.
pub const MAX_STATE_RECORD_BYTES: usize = 256 * 1024;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("state topic: {0}")]
    Kafka(#[from] KafkaError),
    #[error("state topic {topic:?}: record {key:?} is not a klaxon checkpoint: {source}")]
    Corrupt {
        topic: String,
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "state topic {topic:?}: record {key:?} names chunk {index} of generation {generation}, which is missing"
    )]
    MissingChunk {
        topic: String,
        key: String,
        generation: u64,
        index: u32,
    },
}

/// What the state topic holds.
#[derive(Debug, Default)]
pub struct StoredCheckpoint {
    pub rules: Vec<RuleCheckpoint>,
    pub positions: Vec<(PartitionKey, i64)>,
    /// Writes on from here: knows the live chunks and the stale ones.
    pub writer: CheckpointWriter,
}

/// The record under a key whose value was split into chunks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkedHead {
    generation: u64,
    chunks: u32,
}

/// A record to produce: key and value, `None` for a tombstone.
type Record = (String, Option<Vec<u8>>);

/// The records of one checkpoint, in the order they must become durable.
#[derive(Debug, Default)]
struct Plan {
    /// Pieces of values too large for one record.
    chunks: Vec<Record>,
    /// Values, heads of chunked values, and tombstones of removed keys.
    heads: Vec<Record>,
    /// The chunk keys each written key's head names from now on (none for a
    /// value written whole or deleted).
    live: Vec<(String, Vec<String>)>,
}

/// Writes checkpoints as bounded records and deletes the chunks no head
/// names any more.
#[derive(Debug, Default)]
pub struct CheckpointWriter {
    /// The chunk keys each key's durable head names.
    live: HashMap<String, Vec<String>>,
    /// Chunk keys no durable head names: tombstoned after the next write.
    stale: BTreeSet<String>,
    /// Chunk keys carry a generation, so a write never overwrites a chunk a
    /// durable head still names.
    next_generation: u64,
}

impl CheckpointWriter {
    /// Writes a checkpoint delta and waits until every record is
    /// acknowledged: chunks first, then heads. Then deletes the chunks no
    /// head names any more; a failure there only leaves them for next time.
    pub async fn write(
        &mut self,
        producer: &Producer,
        topic: &str,
        delta: &CheckpointDelta,
    ) -> Result<(), KafkaError> {
        let plan = self.plan(delta);
        let written = async {
            send_all(producer, topic, &plan.chunks).await?;
            send_all(producer, topic, &plan.heads).await
        };
        if let Err(e) = written.await {
            // Some of the new chunks may be on the topic, named by no head.
            self.stale
                .extend(plan.chunks.into_iter().map(|(key, _)| key));
            return Err(e);
        }
        self.applied(plan.live);
        if let Err(e) = self.delete_stale(producer, topic).await {
            tracing::warn!(error = %e, "cannot delete replaced checkpoint chunks yet");
        }
        Ok(())
    }

    /// Tombstones every chunk no durable head names.
    pub async fn delete_stale(
        &mut self,
        producer: &Producer,
        topic: &str,
    ) -> Result<(), KafkaError> {
        let tombstones: Vec<Record> = self.stale.iter().map(|k| (k.clone(), None)).collect();
        send_all(producer, topic, &tombstones).await?;
        for (key, _) in tombstones {
            self.stale.remove(&key);
        }
        Ok(())
    }

    /// The records that write `delta`.
    fn plan(&mut self, delta: &CheckpointDelta) -> Plan {
        let mut plan = Plan::default();
        for rule in &delta.rules {
            let body = serde_json::to_vec(rule).expect("checkpoints serialise");
            self.put(&mut plan, format!("{RULE_PREFIX}{}", rule.rule), body);
        }
        // A rule removed and added again since the last checkpoint is written
        // above; a tombstone after it would delete it.
        let written: BTreeSet<&str> = delta.rules.iter().map(|r| r.rule.as_str()).collect();
        for name in delta
            .removed
            .iter()
            .filter(|n| !written.contains(n.as_str()))
        {
            let key = format!("{RULE_PREFIX}{name}");
            plan.heads.push((key.clone(), None));
            plan.live.push((key, Vec::new()));
        }
        if !delta.positions.is_empty() {
            let body = serde_json::to_vec(&delta.positions).expect("positions serialise");
            self.put(&mut plan, POSITIONS_KEY.to_owned(), body);
        }
        plan
    }

    /// Plans `key = body`, whole when it fits, else in chunks under a head.
    fn put(&mut self, plan: &mut Plan, key: String, body: Vec<u8>) {
        if body.len() <= MAX_STATE_RECORD_BYTES {
            plan.heads.push((key.clone(), Some(body)));
            plan.live.push((key, Vec::new()));
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut names = Vec::new();
        for (index, piece) in body.chunks(MAX_STATE_RECORD_BYTES).enumerate() {
            let name = format!("{CHUNK_PREFIX}{generation}/{index}/{key}");
            plan.chunks.push((name.clone(), Some(piece.to_vec())));
            names.push(name);
        }
        let head = ChunkedHead {
            generation,
            chunks: names.len() as u32,
        };
        plan.heads.push((
            key.clone(),
            Some(serde_json::to_vec(&head).expect("heads serialise")),
        ));
        plan.live.push((key, names));
    }

    /// The heads of a plan are durable: the chunks they replaced are stale.
    fn applied(&mut self, live: Vec<(String, Vec<String>)>) {
        for (key, chunks) in live {
            let replaced = if chunks.is_empty() {
                self.live.remove(&key)
            } else {
                self.live.insert(key, chunks)
            };
            self.stale.extend(replaced.into_iter().flatten());
        }
    }
}

/// Sends `records` and waits until every one is acknowledged.
async fn send_all(producer: &Producer, topic: &str, records: &[Record]) -> Result<(), KafkaError> {
    let sends = records.iter().map(|(key, body)| {
        let mut record = FutureRecord::<String, Vec<u8>>::to(topic).key(key);
        if let Some(body) = body {
            record = record.payload(body);
        }
        producer.send(record, Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Reads the state topic from its start to its end. Blocking: call it from
/// `spawn_blocking`.
pub fn read_checkpoint(
    kafka: &KafkaConfig,
    brokers: &str,
    topic: &str,
) -> Result<StoredCheckpoint, CheckpointError> {
    let latest = read_compacted(kafka, brokers, topic, None, Duration::from_secs(60))?;
    // A key always hashes to the same partition, so keys are unique.
    decode(
        topic,
        latest.into_iter().map(|((_, key), body)| (key, body)),
    )
}

/// Rebuilds the state from the latest record of each key.
fn decode(
    topic: &str,
    latest: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<StoredCheckpoint, CheckpointError> {
    let mut chunks: BTreeMap<(String, u64, u32), Vec<u8>> = BTreeMap::new();
    let mut values = Vec::new();
    for (key, body) in latest {
        match chunk_key(&key) {
            Some((generation, index, owner)) => {
                chunks.insert((owner.to_owned(), generation, index), body);
            }
            None => values.push((key, body)),
        }
    }
    let mut stored = StoredCheckpoint::default();
    stored.writer.next_generation = chunks.keys().map(|(_, g, _)| g + 1).max().unwrap_or(0);
    let mut named = BTreeSet::new();
    for (key, body) in values {
        if key != POSITIONS_KEY && !key.starts_with(RULE_PREFIX) {
            continue;
        }
        let body = match serde_json::from_slice::<ChunkedHead>(&body) {
            Ok(head) => {
                let mut whole = Vec::new();
                let mut names = Vec::new();
                for index in 0..head.chunks {
                    let id = (key.clone(), head.generation, index);
                    let piece = chunks
                        .get(&id)
                        .ok_or_else(|| CheckpointError::MissingChunk {
                            topic: topic.to_owned(),
                            key: key.clone(),
                            generation: head.generation,
                            index,
                        })?;
                    whole.extend_from_slice(piece);
                    names.push(format!("{CHUNK_PREFIX}{}/{index}/{key}", head.generation));
                    named.insert(id);
                }
                stored.writer.live.insert(key.clone(), names);
                whole
            }
            Err(_) => body,
        };
        if key == POSITIONS_KEY {
            stored.positions = parse(topic, &key, &body)?;
        } else {
            stored.rules.push(parse(topic, &key, &body)?);
        }
    }
    stored.writer.stale = chunks
        .into_keys()
        .filter(|id| !named.contains(id))
        .map(|(owner, generation, index)| format!("{CHUNK_PREFIX}{generation}/{index}/{owner}"))
        .collect();
    stored.rules.sort_by(|a, b| a.rule.cmp(&b.rule));
    Ok(stored)
}

fn parse<T: DeserializeOwned>(topic: &str, key: &str, body: &[u8]) -> Result<T, CheckpointError> {
    serde_json::from_slice(body).map_err(|source| CheckpointError::Corrupt {
        topic: topic.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// `chunk/GENERATION/INDEX/KEY` as its parts.
fn chunk_key(key: &str) -> Option<(u64, u32, &str)> {
    let mut parts = key.strip_prefix(CHUNK_PREFIX)?.splitn(3, '/');
    let generation = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    Some((generation, index, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Observation, RuleFile};

    /// What a compacted topic returns: the latest value of each key.
    #[derive(Default)]
    struct Topic(BTreeMap<String, Vec<u8>>);

    impl Topic {
        fn apply(&mut self, records: &[Record]) {
            for (key, body) in records {
                assert!(
                    body.as_ref()
                        .is_none_or(|b| b.len() <= MAX_STATE_RECORD_BYTES),
                    "{key}: {} bytes",
                    body.as_ref().unwrap().len()
                );
                match body {
                    Some(body) => self.0.insert(key.clone(), body.clone()),
                    None => self.0.remove(key),
                };
            }
        }

        /// A write that went through: chunks, heads, then stale chunks deleted.
        fn write(&mut self, writer: &mut CheckpointWriter, delta: &CheckpointDelta) {
            let plan = writer.plan(delta);
            self.apply(&plan.chunks);
            self.apply(&plan.heads);
            writer.applied(plan.live);
            self.delete_stale(writer);
        }

        fn delete_stale(&mut self, writer: &mut CheckpointWriter) {
            let tombstones: Vec<Record> = std::mem::take(&mut writer.stale)
                .into_iter()
                .map(|k| (k, None))
                .collect();
            self.apply(&tombstones);
        }

        fn read(&self) -> StoredCheckpoint {
            decode("state", self.0.clone()).unwrap()
        }
    }

    /// A checkpoint of `rule` with `n` firing instances, labels padded so
    /// each takes about 100 bytes.
    fn firing(rule: &str, n: usize) -> RuleCheckpoint {
        let file: RuleFile = toml::from_str(&format!(
            r#"[[rule]]
            name = "{rule}"
            sql = "SELECT host, max(value) AS value FROM metrics GROUP BY host"
            window = "1m"
            severity = "critical"
            summary = "{{{{host}}}}""#
        ))
        .unwrap();
        let rule = file.rule.into_iter().next().unwrap().into_inner();
        let observed: Vec<Observation> = (0..n)
            .map(|i| Observation {
                labels: [("host".to_owned(), format!("host-{i:06}-{}", "x".repeat(60)))].into(),
                value: 1.0,
                details: BTreeMap::new(),
            })
            .collect();
        let mut alerts = crate::rules::AlertStates::default();
        assert_eq!(
            alerts.advance(&rule, 60_000, &observed).len(),
            n,
            "all fire"
        );
        RuleCheckpoint {
            rule: rule.name,
            closed_until_ms: Some(60_000),
            first_event_ms: Some(1),
            alerts,
        }
    }

    fn delta(rules: Vec<RuleCheckpoint>) -> CheckpointDelta {
        CheckpointDelta {
            rules,
            positions: vec![(("metrics".to_owned(), 0), 42)],
            ..CheckpointDelta::default()
        }
    }

    fn json(rules: &[RuleCheckpoint]) -> Vec<serde_json::Value> {
        rules
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }

    #[test]
    fn twenty_thousand_instances_split_into_bounded_records_and_restore_identically() {
        let big = firing("big", 20_000);
        let small = firing("small", 3);
        assert!(serde_json::to_vec(&big).unwrap().len() > 1_000_000);
        let mut topic = Topic::default();
        let mut writer = CheckpointWriter::default();
        // `apply` asserts every record is within the bound.
        topic.write(&mut writer, &delta(vec![big.clone(), small.clone()]));
        assert!(
            topic.0.len() > 6,
            "split: {:?}",
            topic.0.keys().collect::<Vec<_>>()
        );
        let stored = topic.read();
        assert_eq!(json(&stored.rules), json(&[big, small.clone()]));
        assert_eq!(stored.positions, [(("metrics".to_owned(), 0), 42)]);
        assert!(stored.writer.stale.is_empty());

        // Fewer instances later: the old chunks are deleted, not left behind.
        let mut writer = stored.writer;
        let fewer = firing("big", 5_000);
        topic.write(&mut writer, &delta(vec![fewer.clone()]));
        let chunks = |t: &Topic| t.0.keys().filter(|k| k.starts_with(CHUNK_PREFIX)).count();
        let expected = serde_json::to_vec(&fewer)
            .unwrap()
            .len()
            .div_ceil(MAX_STATE_RECORD_BYTES);
        assert_eq!(chunks(&topic), expected);
        assert_eq!(json(&topic.read().rules), json(&[fewer, small.clone()]));

        // Down to what fits one record, then removed: no chunk stays.
        topic.write(&mut writer, &delta(vec![firing("big", 10)]));
        assert_eq!(chunks(&topic), 0);
        let removed = CheckpointDelta {
            removed: vec!["big".to_owned()],
            ..CheckpointDelta::default()
        };
        topic.write(&mut writer, &removed);
        assert_eq!(json(&topic.read().rules), json(&[small]));
    }

    #[test]
    fn an_interrupted_write_restores_the_previous_checkpoint_and_its_chunks_are_deleted() {
        let mut topic = Topic::default();
        let mut writer = CheckpointWriter::default();
        let before = firing("big", 15_000);
        topic.write(&mut writer, &delta(vec![before.clone()]));
        // The next write dies after some of its chunks, before its head.
        let plan = writer.plan(&delta(vec![firing("big", 16_000)]));
        topic.apply(&plan.chunks[..2]);
        let stored = topic.read();
        assert_eq!(json(&stored.rules), json(std::slice::from_ref(&before)));
        assert_eq!(stored.writer.stale.len(), 2, "the orphan chunks");
        // On start the runner deletes them, and writes on without clashing.
        let mut writer = stored.writer;
        topic.delete_stale(&mut writer);
        let after = firing("big", 17_000);
        topic.write(&mut writer, &delta(vec![after.clone()]));
        assert_eq!(json(&topic.read().rules), json(&[after]));
        let expected = serde_json::to_vec(&firing("big", 17_000)).unwrap().len();
        let chunks = topic
            .0
            .keys()
            .filter(|k| k.starts_with(CHUNK_PREFIX))
            .count();
        assert_eq!(chunks, expected.div_ceil(MAX_STATE_RECORD_BYTES));
    }

    #[test]
    fn a_head_without_its_chunks_is_refused() {
        let mut topic = Topic::default();
        let mut writer = CheckpointWriter::default();
        topic.write(&mut writer, &delta(vec![firing("big", 15_000)]));
        let first = topic
            .0
            .keys()
            .find(|k| k.starts_with(CHUNK_PREFIX))
            .unwrap()
            .clone();
        topic.0.remove(&first);
        assert!(matches!(
            decode("state", topic.0.clone()),
            Err(CheckpointError::MissingChunk { .. })
        ));
    }
}
