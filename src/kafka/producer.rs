//! klaxon's Kafka producers: librdkafka's [`BaseProducer`] with a thread of
//! its own that serves delivery reports ([`PolledProducer`]), and on it the
//! producer that answers every record with a future ([`Producer`]).
//!
//! Why not rdkafka's `ThreadedProducer` and `FutureProducer`: their thread
//! calls `poll(100 ms)`, and rdkafka 0.39's `poll` loops until its deadline
//! handing librdkafka the time left truncated to whole milliseconds, so the
//! last millisecond of every call is a busy loop of zero-timeout polls.
//! That is about 1% of a core in every idle process (0.090 CPU-seconds per
//! 10 s measured), and 8.5% of ingest's CPU while it drains a backlog from
//! a slow broker. The spin costs about a millisecond per call whatever the
//! call's length, so this thread polls for a second at a time: delivery
//! reports still wake it the moment they arrive.

use std::{
    ops::Deref,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use futures::channel::oneshot;
use rdkafka::{
    ClientConfig, ClientContext, Message as _, Timestamp,
    config::{FromClientConfig, FromClientConfigAndContext},
    error::{KafkaError, KafkaResult},
    message::{DeliveryResult, OwnedMessage, ToBytes},
    producer::{
        BaseProducer, BaseRecord, FutureRecord, Producer as _, ProducerContext, PurgeConfig,
        future_producer::Delivery,
    },
    types::RDKafkaErrorCode,
};

/// How long one call of the polling thread waits for an event. A delivery
/// report ends the wait at once; this only bounds how long a dropped
/// producer lives on (until the call returns) and how often the idle
/// thread wakes (each wake spins about a millisecond, see above).
const POLL_PERIOD: Duration = Duration::from_secs(1);

/// How long [`Producer::send`] waits between tries while librdkafka's local
/// queue is full (as rdkafka's `FutureProducer` does).
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(100);

/// A [`BaseProducer`] whose events (delivery reports, errors, logs) a thread
/// of its own serves. Clones share the producer. When the last is dropped,
/// what was never delivered is purged at once (its senders hear so, as
/// with rdkafka's producers), and the thread stops after its current wait,
/// destroying the producer there.
pub struct PolledProducer<C: ProducerContext + 'static> {
    handle: Arc<Handle<C>>,
}

impl<C: ProducerContext + 'static> Clone for PolledProducer<C> {
    fn clone(&self) -> Self {
        Self {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<C: ProducerContext + 'static> std::fmt::Debug for PolledProducer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledProducer").finish_non_exhaustive()
    }
}

impl<C: ProducerContext + 'static> Deref for PolledProducer<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.handle.base
    }
}

/// What every clone shares; its drop is the last handle's.
struct Handle<C: ProducerContext + 'static> {
    base: Arc<BaseProducer<C>>,
    stop: Arc<AtomicBool>,
}

impl<C: ProducerContext + 'static> Drop for Handle<C> {
    /// Purges what no one can wait for any more and tells the polling
    /// thread to stop. The purge does not wait for the broker threads (a
    /// drop may be on a tokio worker); the thread reports what it purged,
    /// and destroying the producer there purges again, waiting. The thread
    /// is not joined: that would make every drop wait up to [`POLL_PERIOD`].
    fn drop(&mut self) {
        self.base
            .purge(PurgeConfig::default().queue().inflight().non_blocking());
        self.stop.store(true, Ordering::Release);
    }
}

impl<C: ProducerContext + 'static> PolledProducer<C> {
    /// Hands `record` to librdkafka, trying again every `retry` while its
    /// local queue is full, for up to `timeout` when one is given (a load
    /// generator outpaces the broker by design and waits as long as it
    /// takes). Any other refusal, or a queue still full at `timeout`, gives
    /// the record back.
    #[allow(clippy::result_large_err)] // the record comes back to its caller
    pub async fn send_when_queued<'a, K, P>(
        &self,
        mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
        retry: Duration,
        timeout: Option<Duration>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, C::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let started = Instant::now();
        loop {
            match self.handle.base.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if timeout.is_none_or(|timeout| started.elapsed() < timeout) =>
                {
                    record = back;
                    tokio::time::sleep(retry).await;
                }
                Err(refused) => return Err(refused),
            }
        }
    }
}

impl<C: ProducerContext + 'static> FromClientConfigAndContext<C> for PolledProducer<C> {
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let base = Arc::new(BaseProducer::from_config_and_context(config, context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (Arc::clone(&base), Arc::clone(&stop));
        thread::Builder::new()
            .name("producer poll".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    polled.poll(POLL_PERIOD);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("producer polling thread: {e}")))?;
        Ok(Self {
            handle: Arc::new(Handle { base, stop }),
        })
    }
}

/// What a record's [`DeliveryFuture`] resolves to: where it was written, or
/// why not with the record itself (as rdkafka's `FutureProducer` reports).
pub type OwnedDeliveryResult = Result<Delivery, (KafkaError, OwnedMessage)>;

/// The context of a [`Producer`]: each record carries the sender of its
/// future, completed by the delivery report. Log and error events are
/// reported as by rdkafka's default context.
#[derive(Debug, Default, Clone, Copy)]
pub struct FutureDeliveries;

impl ClientContext for FutureDeliveries {}

impl ProducerContext for FutureDeliveries {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, sender: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(message) => Ok(Delivery {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp(),
            }),
            Err((error, message)) => Err((error.clone(), message.detach())),
        };
        // The receiver is gone when its caller stopped waiting: nothing to tell.
        let _ = sender.send(owned);
    }
}

/// klaxon's producer of records whose delivery someone awaits: paging
/// events, dead letters, checkpoints, the changelog, silences.
pub type Producer = PolledProducer<FutureDeliveries>;

impl FromClientConfig for Producer {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        Self::from_config_and_context(config, FutureDeliveries)
    }
}

/// The delivery of one record handed to librdkafka by
/// [`Producer::send_result`]: `Err(Canceled)` only if the producer was
/// destroyed without reporting it.
#[must_use = "a delivery is only known by awaiting it"]
#[derive(Debug)]
pub struct DeliveryFuture(oneshot::Receiver<OwnedDeliveryResult>);

impl std::future::Future for DeliveryFuture {
    type Output = Result<OwnedDeliveryResult, oneshot::Canceled>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl Producer {
    /// Hands `record` to librdkafka, retrying while its local queue is full
    /// for up to `queue_timeout`, and waits for the broker's answer.
    #[allow(clippy::result_large_err)] // rdkafka's result: the record comes back
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let topic = record.topic;
        let (sender, delivery) = oneshot::channel();
        let record = to_base(record, Box::new(sender));
        if let Err((error, back)) = self
            .send_when_queued(record, QUEUE_FULL_RETRY, Some(queue_timeout))
            .await
        {
            return Err((error, to_owned_message(back)));
        }
        // Only a destroyed producer drops the sender unanswered, and `self`
        // holds this one; still, no panic for it.
        delivery.await.unwrap_or_else(|_| {
            let lost = OwnedMessage::new(
                None,
                None,
                topic.to_owned(),
                Timestamp::NotAvailable,
                -1,
                0,
                None,
            );
            Err((KafkaError::Canceled, lost))
        })
    }

    /// Hands `record` to librdkafka without waiting: its delivery, or the
    /// record back with the reason librdkafka refused it (a full queue
    /// among them).
    #[allow(clippy::result_large_err)] // the record comes back to its caller
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (sender, delivery) = oneshot::channel();
        match self.handle.base.send(to_base(record, Box::new(sender))) {
            Ok(()) => Ok(DeliveryFuture(delivery)),
            Err((error, back)) => Err((error, to_future(back))),
        }
    }
}

type Opaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

fn to_base<'a, K, P>(record: FutureRecord<'a, K, P>, opaque: Opaque) -> BaseRecord<'a, K, P, Opaque>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    BaseRecord {
        topic: record.topic,
        partition: record.partition,
        payload: record.payload,
        key: record.key,
        timestamp: record.timestamp,
        headers: record.headers,
        delivery_opaque: opaque,
    }
}

fn to_future<'a, K, P>(record: BaseRecord<'a, K, P, Opaque>) -> FutureRecord<'a, K, P>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    FutureRecord {
        topic: record.topic,
        partition: record.partition,
        payload: record.payload,
        key: record.key,
        timestamp: record.timestamp,
        headers: record.headers,
    }
}

fn to_owned_message<K, P>(record: BaseRecord<'_, K, P, Opaque>) -> OwnedMessage
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    OwnedMessage::new(
        record.payload.map(|p| p.to_bytes().to_vec()),
        record.key.map(|k| k.to_bytes().to_vec()),
        record.topic.to_owned(),
        record
            .timestamp
            .map_or(Timestamp::NotAvailable, Timestamp::CreateTime),
        record.partition.unwrap_or(-1),
        0,
        record.headers,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use rdkafka::message::{Header, Headers as _, OwnedHeaders};

    use super::*;

    /// A producer that can reach no broker, with librdkafka's timeouts short.
    fn unreachable_config() -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", "200")
            .set("message.max.bytes", "10000");
        config
    }

    #[tokio::test]
    async fn a_failed_delivery_reaches_the_sender_through_the_polling_thread() {
        let producer: Producer = unreachable_config().create().unwrap();
        let record = FutureRecord::<str, str>::to("pages")
            .key("k")
            .payload("body");
        // Without the thread serving delivery reports this never resolves.
        let (error, message) = tokio::time::timeout(
            POLL_PERIOD * 10,
            producer.send(record, Duration::from_secs(1)),
        )
        .await
        .expect("the delivery report arrives")
        .expect_err("no broker can take it");
        assert_eq!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
        );
        assert_eq!(message.payload(), Some(&b"body"[..]));
        assert_eq!(message.topic(), "pages");
    }

    #[tokio::test]
    async fn a_refused_record_comes_back_whole() {
        let producer: Producer = unreachable_config().create().unwrap();
        let payload = vec![b'x'; 20_000];
        let headers = OwnedHeaders::new().insert(Header {
            key: "klaxon.detail",
            value: Some("why"),
        });
        let record = FutureRecord::<str, [u8]>::to("pages")
            .partition(2)
            .key("k")
            .payload(&payload)
            .headers(headers);
        let Err((error, back)) = producer.send_result(record) else {
            panic!("a record past message.max.bytes is refused at once");
        };
        assert_eq!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
        );
        assert_eq!(
            (back.topic, back.partition, back.key),
            ("pages", Some(2), Some("k"))
        );
        assert_eq!(back.payload.map(<[u8]>::len), Some(20_000));
        assert_eq!(detail(back.headers.as_ref()), Some(&b"why"[..]));
        let (error, message) = producer
            .send(back, Duration::from_secs(1))
            .await
            .expect_err("refused again");
        assert_eq!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
        );
        assert_eq!((message.topic(), message.partition()), ("pages", 2));
        assert_eq!(message.payload().map(<[u8]>::len), Some(20_000));
        assert_eq!(detail(message.headers()), Some(&b"why"[..]));
    }

    fn detail(headers: Option<&OwnedHeaders>) -> Option<&[u8]> {
        headers?.iter().find(|h| h.key == "klaxon.detail")?.value
    }

    #[tokio::test]
    async fn a_full_queue_is_retried_until_the_queue_timeout() {
        let mut config = unreachable_config();
        config
            .set("queue.buffering.max.messages", "1")
            .set("message.timeout.ms", "60000");
        let producer: Producer = config.create().unwrap();
        let record = |payload| FutureRecord::<str, str>::to("pages").payload(payload);
        let first = producer
            .send_result(record("first"))
            .expect("the queue has room for one");
        let Err((error, _)) = producer.send_result(record("second")) else {
            panic!("the queue holds one record");
        };
        let queue_full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        assert_eq!(error, queue_full);
        let started = Instant::now();
        let (error, message) = producer
            .send(record("second"), QUEUE_FULL_RETRY * 3)
            .await
            .expect_err("the queue stays full");
        assert_eq!(error, queue_full);
        assert!(
            started.elapsed() >= QUEUE_FULL_RETRY * 3,
            "retried until then"
        );
        assert_eq!(message.payload(), Some(&b"second"[..]));
        drop(producer);
        let (error, _) = first
            .await
            .expect("reported")
            .expect_err("the last handle's drop purges what was queued");
        assert_eq!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue)
        );
    }

    /// A context that says when librdkafka's client (which owns it) is gone.
    /// Its sender is never used: the receiver sees it go.
    struct SaysWhenDestroyed {
        _alive: mpsc::Sender<()>,
    }
    impl ClientContext for SaysWhenDestroyed {}
    impl ProducerContext for SaysWhenDestroyed {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
    }

    #[test]
    fn dropping_the_last_handle_stops_the_thread_and_destroys_the_producer() {
        let (alive, destroyed) = mpsc::channel();
        let producer: PolledProducer<SaysWhenDestroyed> = unreachable_config()
            .create_with_context(SaysWhenDestroyed { _alive: alive })
            .unwrap();
        let clone = producer.clone();
        drop(producer);
        assert_eq!(
            destroyed.recv_timeout(POLL_PERIOD * 3),
            Err(mpsc::RecvTimeoutError::Timeout),
            "a clone still holds it"
        );
        drop(clone);
        assert_eq!(
            destroyed.recv_timeout(POLL_PERIOD * 5),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
