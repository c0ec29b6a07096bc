//! The consumer-group member loop every stage runs (ingest, the rules
//! runner, the notifier).
//!
//! [`Member`] owns the consumer: it receives records, drives the rebalance
//! callbacks ([`GroupContext`]) and hands their outcome to the stage before
//! anything else the stage is given, backs off on consume errors, fires the
//! stage's timers, and stops on the shutdown token. The stage ([`Stage`])
//! keeps only its own logic: what a record does, what a revoked or assigned
//! partition means to it, what a timer does, and what a stop flushes. It
//! commits through [`Commits`] once what the offsets cover is durable, never
//! before.
//!
//! Every member reports the same metrics, labelled by `component`:
//! `klaxon_consumer_lag{component,topic,partition}`,
//! `klaxon_consumer_rebalances_total{component,event}` and
//! `klaxon_consumer_commit_failures_total{component}`.

use std::{future::Future, sync::Arc, task::Poll, time::Duration};

use futures::FutureExt as _;
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::BorrowedMessage,
    types::RDKafkaErrorCode,
};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::GroupContext;

/// A topic and partition.
pub type Partition = (String, i32);

/// How long a member waits after a consume error before it receives again.
/// librdkafka reconnects by itself; a broker outage only pauses consumption.
const CONSUME_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// What a stage does with what its member receives. Callbacks run one at a
/// time, on the member's task, in this order of priority: a stop, the
/// stage's own [`Stage::next_event`], its timers (in the order given), then
/// records. Partitions revoked and assigned since the member last looked are
/// handed over first (revoked before assigned) before every timer and every
/// batch of records; callbacks run inside the consumer's poll, which the
/// member drives, so a revocation can never land between a stage's flush and
/// its commit.
pub(crate) trait Stage {
    type Error;
    /// Something the stage waits for besides records and timers (the
    /// notifier's finished sends).
    type Event;

    /// Partitions this member no longer owns. Their new owner replays them
    /// from their last commit, so the stage drops what it holds of them and
    /// commits nothing more for them.
    async fn on_revoked(&mut self, partitions: Vec<Partition>) -> Result<(), Self::Error> {
        let _ = partitions;
        Ok(())
    }

    /// Partitions newly assigned, each starting at its committed offset;
    /// their records come after this returns.
    async fn on_assigned(&mut self, partitions: Vec<Partition>) -> Result<(), Self::Error> {
        let _ = partitions;
        Ok(())
    }

    /// Records received, in order per partition: one, or up to the
    /// member's batch size when more were already fetched.
    async fn on_messages(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        stop: &CancellationToken,
    ) -> Result<(), Self::Error>;

    /// Timer `timer` (an index into the timers the member runs with) fired.
    async fn on_timer(
        &mut self,
        timer: usize,
        stop: &CancellationToken,
    ) -> Result<(), Self::Error> {
        let _ = (timer, stop);
        Ok(())
    }

    /// The stage's next own event; never ready unless the stage has some.
    async fn next_event(&mut self) -> Self::Event {
        std::future::pending().await
    }

    async fn on_event(&mut self, event: Self::Event) -> Result<(), Self::Error> {
        let _ = event;
        Ok(())
    }

    /// The member stopped receiving: flush, and commit what is durable.
    /// Partitions revoked before the stop were handed over already.
    async fn on_stop(&mut self) -> Result<(), Self::Error>;
}

/// A timer a stage runs on, for [`Member::run`].
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    pub every: Duration,
    /// Whether the first tick is at once (a flush check, a tick) or only
    /// after `every` (a reload of files read at start).
    pub at_start: bool,
}

/// One member of a consumer group.
pub struct Member {
    component: &'static str,
    consumer: Arc<StreamConsumer<GroupContext>>,
    commits: Commits,
    /// Records handed to a stage at once at most; more are taken only when
    /// already fetched.
    batch: usize,
}

impl Member {
    /// Joins the group `config` names as `component` (the `component` label
    /// of its metrics: `ingest`, `rules`, `notify`), subscribed to `topics`.
    pub fn new(
        component: &'static str,
        config: &ClientConfig,
        topics: &[&str],
    ) -> KafkaResult<Self> {
        let consumer: StreamConsumer<GroupContext> =
            config.create_with_context(GroupContext::new(component))?;
        consumer.subscribe(topics)?;
        let consumer = Arc::new(consumer);
        let commit_failures =
            metrics::counter!("klaxon_consumer_commit_failures_total", "component" => component);
        commit_failures.absolute(0);
        // librdkafka's default, which is also the group's rebalance timeout.
        let max_poll_interval = config
            .get("max.poll.interval.ms")
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(300), Duration::from_millis);
        Ok(Self {
            component,
            commits: Commits {
                consumer: Arc::clone(&consumer),
                failures: commit_failures,
                last_poll: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
                max_poll_interval,
            },
            consumer,
            batch: 1,
        })
    }

    /// Hands up to `batch` records to the stage at once (when already fetched).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// What the stage commits through.
    pub fn commits(&self) -> Commits {
        self.commits.clone()
    }

    /// Runs `stage` until `shutdown` is cancelled, then hands it the
    /// partitions revoked meanwhile and stops it.
    pub(crate) async fn run<S: Stage>(
        &self,
        stage: &mut S,
        timers: &[Timer],
        shutdown: &CancellationToken,
    ) -> Result<(), S::Error> {
        let mut timers: Vec<Interval> = timers.iter().map(interval).collect();
        let consumer = Arc::clone(&self.consumer);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // (Each arm below starts with `polled`: the time the stage
                // then takes counts toward max.poll.interval.ms.)
                event = stage.next_event() => {
                    self.commits.polled();
                    stage.on_event(event).await?;
                }
                timer = next_tick(&mut timers) => {
                    self.commits.polled();
                    self.rebalance(stage).await?;
                    stage.on_timer(timer, shutdown).await?;
                }
                received = consumer.recv() => match received {
                    Ok(message) => {
                        self.commits.polled();
                        self.rebalance(stage).await?;
                        // With it, whatever else is already fetched (up to
                        // the batch size). A rebalance ends the batch: what
                        // follows it is handed over after the rebalance.
                        let mut batch = vec![message];
                        let mut after_rebalance = None;
                        while batch.len() < self.batch {
                            match consumer.recv().now_or_never() {
                                Some(Ok(next)) if consumer.context().rebalance_pending() => {
                                    after_rebalance = Some(next);
                                    break;
                                }
                                Some(Ok(next)) => batch.push(next),
                                Some(Err(e)) => tracing::warn!(component = self.component, error = %e, "consume error"),
                                None => break,
                            }
                        }
                        stage.on_messages(&batch, shutdown).await?;
                        if let Some(next) = after_rebalance {
                            self.rebalance(stage).await?;
                            stage.on_messages(std::slice::from_ref(&next), shutdown).await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(component = self.component, error = %e, "consume error");
                        tokio::time::sleep(CONSUME_ERROR_PAUSE).await;
                    }
                },
            }
        }
        // What was revoked is not the stage's to flush or commit any more.
        let revoked = consumer.context().take_revoked();
        if !revoked.is_empty() {
            stage.on_revoked(revoked).await?;
        }
        stage.on_stop().await
    }

    /// Hands the partitions revoked, then those assigned, to the stage.
    async fn rebalance<S: Stage>(&self, stage: &mut S) -> Result<(), S::Error> {
        let context = self.consumer.context();
        let revoked = context.take_revoked();
        if !revoked.is_empty() {
            stage.on_revoked(revoked).await?;
        }
        let assigned = context.take_assigned();
        if !assigned.is_empty() {
            stage.on_assigned(assigned).await?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("component", &self.component)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

fn interval(timer: &Timer) -> Interval {
    let mut interval = if timer.at_start {
        tokio::time::interval(timer.every)
    } else {
        tokio::time::interval_at(tokio::time::Instant::now() + timer.every, timer.every)
    };
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The index of the first of `timers` due; never ready without timers.
fn next_tick(timers: &mut [Interval]) -> impl Future<Output = usize> + '_ {
    std::future::poll_fn(move |cx| {
        for (i, timer) in timers.iter_mut().enumerate() {
            if timer.poll_tick(cx).is_ready() {
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    })
}

/// Commits a member's offsets and counts the commits that fail.
#[derive(Clone)]
pub struct Commits {
    consumer: Arc<StreamConsumer<GroupContext>>,
    /// `klaxon_consumer_commit_failures_total{component}`.
    failures: metrics::Counter,
    /// When the member loop last came back from the consumer.
    last_poll: Arc<std::sync::Mutex<std::time::Instant>>,
    /// Past this without a poll, librdkafka leaves the group and the
    /// coordinator hands the partitions on.
    max_poll_interval: Duration,
}

/// What became of a commit [`Commits::until_committed`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Yes,
    /// The partition moved to another member, which replays it from the
    /// last commit: the stage drops what it did.
    PartitionMoved,
}

impl std::fmt::Debug for Commits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commits").finish_non_exhaustive()
    }
}

impl Commits {
    /// Notes that the member loop just came back from the consumer.
    fn polled(&self) {
        *self.last_poll.lock().expect("last poll lock") = std::time::Instant::now();
    }

    /// Commits `next` (the offset of the next record to read) for one
    /// partition, synchronously, retrying with backoff until it lands or
    /// the partition turns out to belong to another member.
    pub async fn until_committed(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
    ) -> KafkaResult<Committed> {
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(topic, partition, Offset::Offset(next))?;
        let stalled = || {
            // A member that went this long without polling has been taken
            // out of the group, whether or not librdkafka has noticed: its
            // partitions are someone else's, who replays them. Kafka refuses
            // such a commit; tansu 0.6 accepts it, and the offset would then
            // cover files the new owner has deleted.
            let since_poll = self.last_poll.lock().expect("last poll lock").elapsed();
            (since_poll > self.max_poll_interval).then_some(since_poll)
        };
        let commit =
            || tokio::task::block_in_place(|| self.consumer.commit(&offsets, CommitMode::Sync));
        Ok(commit_until_settled(topic, partition, &self.failures, stalled, commit).await)
    }

    /// Commits `offsets` without waiting for the broker's answer. A failure
    /// is counted and returned for the stage to log: its next commit
    /// covers these offsets, and until then a restart replays more.
    pub fn in_background(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        if offsets.count() == 0 {
            return Ok(());
        }
        let result = self.consumer.commit(offsets, CommitMode::Async);
        if result.is_err() {
            self.failures.increment(1);
        }
        result
    }
}

/// The retry loop of [`Commits::until_committed`], apart from the consumer
/// so that tests can play the broker's answers to it: `commit` until it
/// lands, unless the member has `stalled` past its poll interval or the
/// broker says the partition is no longer ours.
async fn commit_until_settled(
    topic: &str,
    partition: i32,
    failures: &metrics::Counter,
    mut stalled: impl FnMut() -> Option<Duration>,
    mut commit: impl FnMut() -> KafkaResult<()>,
) -> Committed {
    let mut backoff = Backoff::up_to(Duration::from_secs(5));
    loop {
        if let Some(since_poll) = stalled() {
            failures.increment(1);
            tracing::warn!(
                topic,
                partition,
                ?since_poll,
                "not committing: past max.poll.interval.ms since the last poll, the partition moved to another member"
            );
            return Committed::PartitionMoved;
        }
        match commit() {
            Ok(()) => return Committed::Yes,
            Err(e) if lost_ownership(&e) => {
                failures.increment(1);
                tracing::warn!(topic, partition, error = %e, "commit refused: partition moved to another member");
                return Committed::PartitionMoved;
            }
            Err(e) => {
                failures.increment(1);
                // What the offsets cover is durable; until the commit
                // lands, a crash replays it (which the stage makes
                // harmless).
                tracing::warn!(topic, partition, error = %e, "commit failed; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// Errors that mean this member no longer owns the partition it tried to
/// commit: its new owner replays from the last commit, so the work is dropped.
fn lost_ownership(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::State
        )
    )
}

/// A delay between retries that doubles from 100ms up to a cap.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn up_to(cap: Duration) -> Self {
        Self {
            next: Duration::from_millis(100),
            cap,
        }
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker's answers to a commit, played in order; past the last, the
    /// commit lands (so a loop that should have stopped ends, and fails).
    fn answers(
        codes: &[Option<RDKafkaErrorCode>],
    ) -> (
        impl FnMut() -> KafkaResult<()> + use<>,
        std::rc::Rc<std::cell::Cell<usize>>,
    ) {
        let codes = codes.to_vec();
        let attempts = std::rc::Rc::new(std::cell::Cell::new(0));
        let seen = attempts.clone();
        let commit = move || {
            let n = seen.get();
            seen.set(n + 1);
            match codes.get(n).copied().flatten() {
                None => Ok(()),
                Some(code) => Err(KafkaError::ConsumerCommit(code)),
            }
        };
        (commit, attempts)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_commit_is_retried_with_backoff_until_it_lands() {
        let transport = Some(RDKafkaErrorCode::BrokerTransportFailure);
        let timeout = Some(RDKafkaErrorCode::RequestTimedOut);
        let (commit, attempts) = answers(&[transport, timeout, transport, None]);
        let started = tokio::time::Instant::now();
        let outcome =
            commit_until_settled("t", 0, &metrics::Counter::noop(), || None, commit).await;
        assert_eq!(outcome, Committed::Yes);
        assert_eq!(attempts.get(), 4);
        // 100 + 200 + 400 ms between the four attempts.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_refused_for_lost_ownership_is_not_retried() {
        for code in [
            RDKafkaErrorCode::RebalanceInProgress,
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::FencedInstanceId,
            RDKafkaErrorCode::State,
        ] {
            let (commit, attempts) =
                answers(&[Some(RDKafkaErrorCode::BrokerTransportFailure), Some(code)]);
            let outcome =
                commit_until_settled("t", 0, &metrics::Counter::noop(), || None, commit).await;
            assert_eq!(outcome, Committed::PartitionMoved, "{code:?}");
            assert_eq!(attempts.get(), 2, "{code:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_member_does_not_commit_at_all() {
        let (commit, attempts) = answers(&[None]);
        let stalled = || Some(Duration::from_secs(301));
        let outcome =
            commit_until_settled("t", 0, &metrics::Counter::noop(), stalled, commit).await;
        assert_eq!(outcome, Committed::PartitionMoved);
        assert_eq!(attempts.get(), 0);
    }

    #[tokio::test]
    async fn timers_fire_at_start_only_when_asked_and_in_their_order() {
        let timers = [
            Timer {
                every: Duration::from_secs(3600),
                at_start: false,
            },
            Timer {
                every: Duration::from_secs(3600),
                at_start: true,
            },
            Timer {
                every: Duration::from_secs(3600),
                at_start: true,
            },
        ];
        let mut timers: Vec<Interval> = timers.iter().map(interval).collect();
        let first = tokio::time::timeout(Duration::from_secs(1), next_tick(&mut timers));
        assert_eq!(first.await.unwrap(), 1, "the first timer due, in order");
        assert_eq!(next_tick(&mut timers).await, 2);
        let none = tokio::time::timeout(Duration::from_millis(50), next_tick(&mut timers));
        assert!(none.await.is_err(), "a reload timer waits its period");
        assert!(
            tokio::time::timeout(Duration::from_millis(10), next_tick(&mut []))
                .await
                .is_err(),
            "no timers never fire"
        );
    }
}
