//! Dead-letter topics: each rejected record (or line of one), with why and
//! where it came from.
//!
//! The value is the original bytes; headers carry the context, the way Kafka
//! Connect's dead-letter queues do, so the record can be fixed and produced
//! again: `klaxon.reason`, `klaxon.detail`, `klaxon.topic`,
//! `klaxon.partition`, `klaxon.offset`, and `klaxon.line` for a line of a
//! newline-delimited record.
//!
//! A dead letter is input an attacker or a careless producer controls, so
//! everything klaxon writes is bounded: a value longer than the configured
//! maximum is cut, marked `klaxon.truncated: true`, and carries its full
//! length (`klaxon.original_bytes`) and SHA-256 (`klaxon.sha256`); the detail
//! is cut to [`MAX_DETAIL_BYTES`]. A dead letter that still cannot be written
//! is counted (`klaxon_dead_letters_failed_total{topic}`) and logged: losing
//! a rejected line must never stop the good lines beside it.

use std::{collections::VecDeque, time::Duration};

use futures::FutureExt;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureRecord, Producer as _, PurgeConfig},
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{DeliveryFuture, OwnedDeliveryResult, Producer};

/// The longest `klaxon.detail` header: details quote input at times.
pub(crate) const MAX_DETAIL_BYTES: usize = 1024;

/// Dead letters handed to the producer and not yet confirmed, per publisher,
/// by count and by bytes. Past either, [`DeadLetters::enqueue`] waits for the
/// oldest: a storm of rejected lines is bounded in memory and keeps moving
/// without one round trip per line (librdkafka batches them), yet never
/// queues so much ahead of a commit that a slow broker times the commit out.
const MAX_IN_FLIGHT: usize = 1_000;
const MAX_IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;

/// How long [`DeadLetters::publish`] waits for the broker.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// How long a dead letter may wait for room in the producer's queue before
/// it counts as failed (the broker's answer is bounded by `message.timeout.ms`).
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(60);

/// Publishes rejected input to one dead-letter topic.
pub struct DeadLetters {
    producer: Producer,
    topic: String,
    max_bytes: usize,
    /// Deliveries not yet confirmed, oldest first; see [`DeadLetters::drain`].
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    failed: metrics::Counter,
    written: metrics::Counter,
}

/// A dead letter handed to the producer, and the partition it came from, so
/// a flush waits only for its own.
struct InFlight {
    topic: String,
    partition: i32,
    bytes: usize,
    delivery: DeliveryFuture,
}

/// A wait for room in flight was cut short by shutdown: the rejection was
/// not published, so the offset it came from must not be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

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
            .field("max_bytes", &self.max_bytes)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// A publisher to `topic` whose values are at most `max_bytes` long.
    pub fn new(producer: Producer, topic: String, max_bytes: usize) -> Self {
        let label = ("topic", topic.clone());
        Self {
            failed: metrics::counter!(
                "klaxon_dead_letters_failed_total",
                std::slice::from_ref(&label)
            ),
            written: metrics::counter!("klaxon_dead_letters_written_total", &[label]),
            producer,
            topic,
            max_bytes,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
        }
    }

    /// Publishes one rejection and waits until the broker has it (or it
    /// failed, which is counted), for callers that reject rarely. Waits at
    /// most [`PUBLISH_WAIT`]: a dead-letter topic that cannot be written
    /// must not hold up the pages behind a bad event for librdkafka's
    /// `message.timeout.ms`. What is not confirmed by then is left to the
    /// producer, and settled by a later call.
    pub async fn publish(&mut self, origin: Origin<'_>, rejection: Rejection<'_>) {
        let never = CancellationToken::new();
        let published = tokio::time::timeout(PUBLISH_WAIT, async {
            // Cannot stop: `never` is never cancelled.
            let _ = self.enqueue(origin, rejection, &never).await;
            self.drain().await;
        })
        .await;
        if published.is_err() {
            tracing::warn!(topic = %self.topic, "dead letter not confirmed within {PUBLISH_WAIT:?}; moving on");
        }
    }

    /// Hands one rejection to the producer without waiting for the broker.
    /// Waits only while too much is unconfirmed (see [`MAX_IN_FLIGHT`]) or
    /// the producer's queue is full, and gives up if `stop` is cancelled
    /// meanwhile. Call [`DeadLetters::drain_partition`] before committing
    /// the offsets the rejections came from.
    pub async fn enqueue(
        &mut self,
        origin: Origin<'_>,
        rejection: Rejection<'_>,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let value = BoundedValue::new(rejection.bytes, self.max_bytes);
        while self.in_flight.len() >= MAX_IN_FLIGHT
            || (self.in_flight_bytes + value.bytes.len() > MAX_IN_FLIGHT_BYTES
                && !self.in_flight.is_empty())
        {
            self.settle_oldest(stop).await?;
        }
        let detail = truncate_str(rejection.detail, MAX_DETAIL_BYTES);
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let line = rejection.line.map(|l| l.to_string());
        let original = value.original_len.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(9)
            .insert(header("klaxon.reason", rejection.reason))
            .insert(header("klaxon.detail", detail))
            .insert(header("klaxon.topic", origin.topic))
            .insert(header("klaxon.partition", &partition))
            .insert(header("klaxon.offset", &offset));
        if let Some(line) = &line {
            headers = headers.insert(header("klaxon.line", line));
        }
        if let Some(sha256) = &value.sha256 {
            headers = headers
                .insert(header("klaxon.truncated", "true"))
                .insert(header("klaxon.original_bytes", &original))
                .insert(header("klaxon.sha256", sha256));
        }
        // Owned: waiting for room below needs `self` while the record lives.
        let topic = self.topic.clone();
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic)
            .payload(value.bytes)
            .headers(headers);
        if let Some(key) = origin.key {
            // Keys are input too; one longer than a line is not a key.
            record = record.key(&key[..key.len().min(self.max_bytes / 4)]);
        }
        let started = tokio::time::Instant::now();
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight_bytes += value.bytes.len();
                    self.in_flight.push_back(InFlight {
                        topic: origin.topic.to_owned(),
                        partition: origin.partition,
                        bytes: value.bytes.len(),
                        delivery,
                    });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < QUEUE_FULL_TIMEOUT =>
                {
                    record = back;
                    if self.in_flight.is_empty() {
                        tokio::select! {
                            biased;
                            () = stop.cancelled() => return Err(Stopped),
                            () = tokio::time::sleep(Duration::from_millis(5)) => {}
                        }
                    } else {
                        self.settle_oldest(stop).await?;
                    }
                }
                Err((e, _)) => {
                    self.fail(&e);
                    return Ok(());
                }
            }
        }
    }

    /// Waits until every enqueued dead letter is written or has failed.
    pub async fn drain(&mut self) {
        while let Some(oldest) = self.in_flight.pop_front() {
            self.in_flight_bytes -= oldest.bytes;
            self.settle(oldest.delivery.await);
        }
    }

    /// Waits until the dead letters of one partition are written or have
    /// failed, so its offsets can be committed; gives up when `stop` is
    /// cancelled first.
    pub async fn drain_partition(
        &mut self,
        topic: &str,
        partition: i32,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let ours = |entry: &InFlight| entry.topic == topic && entry.partition == partition;
        while let Some(index) = self.in_flight.iter().position(ours) {
            let entry = &mut self.in_flight[index];
            let outcome = tokio::select! {
                biased;
                outcome = &mut entry.delivery => outcome,
                () = stop.cancelled() => return Err(Stopped),
            };
            if let Some(done) = self.in_flight.remove(index) {
                self.in_flight_bytes -= done.bytes;
            }
            self.settle(outcome);
        }
        Ok(())
    }

    /// Stops tracking a partition's dead letters (it was revoked, or is
    /// abandoned at shutdown): its offsets will not be committed here, so
    /// its new owner publishes them again.
    pub fn forget_partition(&mut self, topic: &str, partition: i32) {
        self.in_flight
            .retain(|entry| entry.topic != topic || entry.partition != partition);
        self.in_flight_bytes = self.in_flight.iter().map(|entry| entry.bytes).sum();
    }

    /// Whether some dead letter of this partition is still unconfirmed, after
    /// settling every delivery the broker has already answered.
    pub fn has_pending(&mut self, topic: &str, partition: i32) -> bool {
        let mut pending = false;
        let mut index = 0;
        while index < self.in_flight.len() {
            let entry = &mut self.in_flight[index];
            match (&mut entry.delivery).now_or_never() {
                Some(outcome) => {
                    if let Some(done) = self.in_flight.remove(index) {
                        self.in_flight_bytes -= done.bytes;
                    }
                    self.settle(outcome);
                }
                None => {
                    pending |= entry.topic == topic && entry.partition == partition;
                    index += 1;
                }
            }
        }
        pending
    }

    /// Drops the dead letters the producer has not sent yet. For a stop,
    /// once every partition that will commit has drained its own: what is
    /// left belongs to partitions that replay.
    pub fn purge_queued(&mut self) {
        self.producer.purge(PurgeConfig::default().queue());
        self.in_flight.clear();
        self.in_flight_bytes = 0;
    }

    async fn settle_oldest(&mut self, stop: &CancellationToken) -> Result<(), Stopped> {
        let Some(oldest) = self.in_flight.front_mut() else {
            return Ok(());
        };
        let outcome = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Stopped),
            outcome = &mut oldest.delivery => outcome,
        };
        if let Some(done) = self.in_flight.pop_front() {
            self.in_flight_bytes -= done.bytes;
        }
        self.settle(outcome);
        Ok(())
    }

    fn settle(&self, outcome: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>) {
        match outcome {
            Ok(Ok(_)) => self.written.increment(1),
            Ok(Err((e, _))) => self.fail(&e),
            Err(_) => self.fail(&KafkaError::Canceled),
        }
    }

    fn fail(&self, error: &KafkaError) {
        self.failed.increment(1);
        tracing::warn!(topic = %self.topic, %error, "dead letter lost: the rejected line is counted but not kept");
    }
}

/// A dead letter's value: the rejected bytes, cut to the limit.
#[derive(Debug)]
struct BoundedValue<'a> {
    bytes: &'a [u8],
    original_len: usize,
    /// Hex SHA-256 of the whole original, set only when it was cut.
    sha256: Option<String>,
}

impl<'a> BoundedValue<'a> {
    fn new(bytes: &'a [u8], max_bytes: usize) -> Self {
        if bytes.len() <= max_bytes {
            return Self {
                bytes,
                original_len: bytes.len(),
                sha256: None,
            };
        }
        let digest = Sha256::digest(bytes);
        Self {
            bytes: &bytes[..max_bytes],
            original_len: bytes.len(),
            sha256: Some(digest.iter().map(|b| format!("{b:02x}")).collect()),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_with_their_length_and_hash() {
        let line = vec![b'x'; 5000];
        let value = BoundedValue::new(&line, 1024);
        assert_eq!(value.bytes.len(), 1024);
        assert_eq!(value.original_len, 5000);
        let expected: String = Sha256::digest(&line)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(value.sha256.as_deref(), Some(expected.as_str()));

        let short = BoundedValue::new(b"abc", 1024);
        assert_eq!((short.bytes, short.sha256), (&b"abc"[..], None));
    }

    #[test]
    fn details_are_cut_on_a_character_boundary() {
        assert_eq!(truncate_str("héllo", 2), "h");
        assert_eq!(truncate_str("héllo", 3), "hé");
        assert_eq!(truncate_str("abc", 10), "abc");
    }
}
