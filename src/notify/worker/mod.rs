//! `klaxon notify`: one member of consumer group `klaxon-notify`.
//!
//! It consumes `paging` (Events v2 from the rules, from any other producer,
//! and acknowledgements and resolves from people) and keeps one incident per
//! open `dedup_key`. Every change is written to the `incidents` changelog
//! before anything depends on it: a notification is marked `Sending` there
//! before it is sent, and the paging position is recorded with the incident
//! it changed. A member assigned a paging partition restores that partition
//! from the changelog first, so incidents, escalation timers and planned
//! notifications survive kill -9 and move between members.
//!
//! Sends run as tasks (bounded), so a slow provider never holds up the
//! loop; their results come back over a channel and land in the timeline.
//!
//! A changelog write that fails is counted and logged, never fatal: the
//! incident stays in memory, pages still go out, and the write is tried
//! again. Until it succeeds, its partition's position and offsets stay
//! where they were, so a restart in between replays the events instead of
//! losing the incident. (A notifier that exits pages nobody.)
//!
//! Here: the member, its stage's wiring (partitions assigned and revoked,
//! timers, the stop) and the metrics. Applying a batch of paging events
//! durably is in `apply`; due notifications and their results are in
//! `sending`; silences starting and ending on open incidents in
//! `silencing`.

mod apply;
mod sending;
mod silencing;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use rdkafka::{error::KafkaError, message::BorrowedMessage};
use thiserror::Error;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{
    changelog::read_changelog, channels::Channels, inhibit::Firing, links::AckLinks,
    oncall::ContactKind, oncall_file::LoadedOnCall, partition::PartitionState,
    silence::SilenceState,
};
use crate::{
    ErrorKind,
    config::Config,
    kafka::{
        Commits, DeadLetters, Member, Producer, Role, Timer, client_config, keyed_producer,
        member::{Partition, Stage},
    },
    paging::{EVENT_REJECT_REASONS, EventAction},
};

/// At most this many sends in flight.
const MAX_SENDS: usize = 64;
/// Paging events applied together, with one round of changelog writes.
const MAX_BATCH: usize = 500;
const TICK: Duration = Duration::from_millis(250);
/// How often incidents whose changelog write failed are written again
/// when nothing else writes them sooner.
const UNSAVED_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

impl NotifyError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::External
    }
}

/// A finished send, back to the loop.
#[derive(Debug)]
pub(crate) struct SendResult {
    partition: i32,
    incident: String,
    seq: u32,
    result: Result<(), String>,
}

/// One member of the notifier group.
#[derive(Debug)]
pub struct Notifier {
    member: Member,
    stage: NotifierStage,
}

/// What the notifier does with the paging events its member receives.
struct NotifierStage {
    config: Config,
    oncall: LoadedOnCall,
    producer: Producer,
    commits: Commits,
    dead_letters: DeadLetters,
    channels: Arc<Channels>,
    partitions: HashMap<i32, PartitionState>,
    results_tx: mpsc::Sender<SendResult>,
    results_rx: mpsc::Receiver<SendResult>,
    sends: Arc<Semaphore>,
    /// Incidents whose latest version the changelog lacks (a failed write),
    /// by partition and id.
    unsaved: HashSet<(i32, String)>,
    /// When `unsaved` is tried again.
    unsaved_retry_at: tokio::time::Instant,
    /// Every silence, as the follower last read them.
    silences: watch::Receiver<Arc<SilenceState>>,
    /// When the silences must next be applied to open incidents (one
    /// starts or ends); `None` until something changes.
    silences_due: Option<chrono::DateTime<Utc>>,
    /// Apply them at the next tick whatever the time: set when partitions
    /// are restored.
    silences_stale: bool,
    /// Silences that suppressed an incident, to be marked used.
    silence_uses: Vec<(String, String)>,
    /// Silences this member has marked used already (or is marking).
    silences_marked: HashSet<String>,
    /// Marks that failed in the background, to be made again.
    silence_marks_failed: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// The alerts firing in every partition, for inhibitions and groups,
    /// as the follower of the whole changelog last saw them.
    firing: watch::Receiver<Arc<Firing>>,
    /// The same, sorted into the groups of the on-call file's routes.
    view: Arc<Firing>,
    /// `view` must be made again: the on-call file was reloaded.
    view_stale: bool,
    /// `view` changed since its alerts last went through the open
    /// incidents' mutes and groups.
    view_unapplied: bool,
    /// When the stage started: a view not loaded [`VIEW_GRACE`] after it
    /// is overdue.
    view_since: std::time::Instant,
}

/// How long grouped alerts stay muted, after a start, while the follower
/// has not read the changelog to its end.
const VIEW_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

impl std::fmt::Debug for NotifierStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierStage")
            .field("partitions", &self.partitions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(config: Config, oncall: LoadedOnCall) -> Result<Self, NotifyError> {
        let settings = &config.notify;
        let brokers = &config.kafka.brokers;
        let paging = Role::PagingMember {
            group_id: &settings.group_id,
        };
        let member = Member::new(
            "notify",
            &client_config(&config.kafka, brokers, paging),
            &[settings.paging_topic.as_str()],
        )?
        .with_batch(MAX_BATCH);
        let producer = keyed_producer(&config.kafka, brokers)?;
        let links = match (&settings.public_url, &settings.signing_key) {
            (Some(url), Some(key)) => {
                Some(AckLinks::new(url, key.as_bytes(), settings.ack_link_ttl))
            }
            _ => None,
        };
        let channels = Channels::new(
            settings.twilio.clone(),
            settings.smtp.clone(),
            settings.retry,
            links,
        );
        let (results_tx, results_rx) = mpsc::channel(MAX_SENDS);
        register_metrics();
        let stage = NotifierStage {
            commits: member.commits(),
            dead_letters: DeadLetters::new(
                producer.clone(),
                settings.dead_letter.clone(),
                config.topics.dead_letter_max_bytes.as_u64() as usize,
            ),
            producer,
            channels: Arc::new(channels),
            partitions: HashMap::new(),
            results_tx,
            results_rx,
            sends: Arc::new(Semaphore::new(MAX_SENDS)),
            unsaved: HashSet::new(),
            unsaved_retry_at: tokio::time::Instant::now(),
            // Replaced by the follower's when the notifier runs.
            silences: watch::channel(Arc::default()).1,
            silences_due: None,
            silences_stale: true,
            silence_uses: Vec::new(),
            silences_marked: HashSet::new(),
            silence_marks_failed: Arc::default(),
            firing: watch::channel(Arc::default()).1,
            view: Arc::default(),
            view_stale: true,
            view_unapplied: false,
            view_since: std::time::Instant::now(),
            oncall,
            config,
        };
        Ok(Self { member, stage })
    }

    /// Runs until `shutdown`, then waits (briefly) for sends under way.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), NotifyError> {
        let Self { member, mut stage } = self;
        stage.silences = super::silence::store::follow(&stage.config, shutdown.child_token()).await;
        // Always, as inhibitions may come with a reload of the on-call file.
        stage.firing = super::inhibit::follow::follow(&stage.config, shutdown.child_token());
        let settings = &stage.config.notify;
        tracing::info!(group = %settings.group_id, topic = %settings.paging_topic, "notifier started");
        let timers = [
            Timer {
                every: TICK,
                at_start: true,
            },
            Timer {
                every: settings.reload_interval,
                at_start: true,
            },
        ];
        member.run(&mut stage, &timers, &shutdown).await
    }
}

/// [`NotifierStage`]'s timers, by index.
const TIMER_TICK: usize = 0;

impl Stage for NotifierStage {
    type Error = NotifyError;
    type Event = SendResult;

    /// Forgets revoked partitions: their new owner restores them.
    async fn on_revoked(&mut self, partitions: Vec<Partition>) -> Result<(), NotifyError> {
        for (_, partition) in partitions {
            self.partitions.remove(&partition);
            // Its position was held back: the new owner replays those events.
            self.unsaved.retain(|(p, _)| *p != partition);
        }
        Ok(())
    }

    /// Restores newly assigned partitions from the changelog.
    async fn on_assigned(&mut self, partitions: Vec<Partition>) -> Result<(), NotifyError> {
        let assigned: Vec<i32> = partitions.into_iter().map(|(_, p)| p).collect();
        let (kafka, brokers, topic) = (
            self.config.kafka.clone(),
            self.config.kafka.brokers.clone(),
            self.config.notify.incidents_topic.clone(),
        );
        let wanted = assigned.clone();
        let logs = tokio::task::spawn_blocking(move || {
            read_changelog(&kafka, &brokers, &topic, Some(&wanted))
        })
        .await
        .expect("the changelog reader does not panic")?;
        let now = Utc::now();
        let mut recovered = Vec::new();
        for partition in assigned {
            let mut state = PartitionState::default();
            if let Some((_, log)) = logs.iter().find(|(p, _)| *p == partition) {
                state.position = log.position.unwrap_or(0);
                for incident in &log.incidents {
                    let mut incident = incident.clone();
                    // Flap detection goes on across the restart.
                    if !incident.is_open() && !incident.changes.is_empty() {
                        state
                            .changes
                            .insert(incident.dedup_key.clone(), incident.changes.clone());
                    }
                    if incident.is_open() {
                        state
                            .open
                            .insert(incident.dedup_key.clone(), incident.id.clone());
                    }
                    if incident.recover(now) {
                        recovered.push((partition, incident.id.clone()));
                    }
                    state.incidents.insert(incident.id.clone(), incident);
                }
            }
            tracing::info!(
                partition,
                incidents = state.incidents.len(),
                open = state.open.len(),
                position = state.position,
                "restored incidents"
            );
            self.partitions.insert(partition, state);
        }
        // A silence may have ended (or begun) while nobody owned these.
        self.silences_stale = true;
        self.save(recovered).await;
        Ok(())
    }

    /// One round of changelog writes and one tick for the whole batch.
    async fn on_messages(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        _: &CancellationToken,
    ) -> Result<(), NotifyError> {
        self.apply_batch(batch).await
    }

    async fn on_timer(&mut self, timer: usize, _: &CancellationToken) -> Result<(), NotifyError> {
        if timer == TIMER_TICK {
            self.on_tick().await
        } else {
            self.oncall.reload();
            // Its maintenance windows, routes and groups may have changed.
            self.silences_stale = true;
            self.view_stale = true;
            Ok(())
        }
    }

    async fn next_event(&mut self) -> SendResult {
        match self.results_rx.recv().await {
            Some(done) => done,
            // Never: the stage holds a sender.
            None => std::future::pending().await,
        }
    }

    async fn on_event(&mut self, done: SendResult) -> Result<(), NotifyError> {
        self.on_sent(done).await
    }

    /// Lets sends under way finish and be recorded, so a clean stop sends
    /// nothing twice; past the wait they count as uncertain.
    async fn on_stop(&mut self) -> Result<(), NotifyError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.sends.available_permits() < MAX_SENDS {
            match tokio::time::timeout_at(deadline, self.results_rx.recv()).await {
                Ok(Some(done)) => self.on_sent(done).await?,
                _ => break,
            }
        }
        // Sends that finished before the stop may still be queued.
        while let Ok(done) = self.results_rx.try_recv() {
            self.on_sent(done).await?;
        }
        Ok(())
    }
}

/// Registers the notifier's counters at zero: those without labels, events
/// by action and by refusal reason, notifications by channel and outcome.
fn register_metrics() {
    use crate::telemetry::{register_unlabeled, register_zero};
    register_unlabeled("klaxon_notify_");
    for action in [
        EventAction::Trigger,
        EventAction::Acknowledge,
        EventAction::Resolve,
    ] {
        register_zero(
            "klaxon_notify_events_total",
            &[("action", action.as_str().to_owned())],
        );
    }
    for reason in EVENT_REJECT_REASONS {
        register_zero(
            "klaxon_notify_events_rejected_total",
            &[("reason", reason.to_owned())],
        );
    }
    for channel in ContactKind::ALL.map(ContactKind::as_str) {
        for outcome in ["delivered", "failed"] {
            register_zero(
                "klaxon_notify_notifications_total",
                &[
                    ("channel", channel.to_owned()),
                    ("outcome", outcome.to_owned()),
                ],
            );
        }
        register_zero(
            "klaxon_notify_delivery_retries_total",
            &[("channel", channel.to_owned())],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{notify::partition::tests::one_user_oncall, paging::parse_event};

    #[tokio::test]
    async fn a_failed_changelog_write_is_kept_and_the_page_still_goes_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("oncall.toml");
        std::fs::write(
            &file,
            one_user_oncall(r#"{ type = "console", address = "log" }"#),
        )
        .unwrap();
        let mut config = Config::default();
        // Nothing listens there: every changelog write fails, quickly.
        config.kafka.brokers = "127.0.0.1:1".into();
        config
            .kafka
            .properties
            .insert("message.timeout.ms".into(), "200".into());
        let loaded = LoadedOnCall::load(file).unwrap();
        let mut notifier = Notifier::new(config, loaded).unwrap().stage;
        let (trigger, _) = parse_event(
            br#"{"event_action":"trigger","dedup_key":"k","payload":{"summary":"s","source":"x","severity":"critical"}}"#,
        )
        .unwrap();
        let id = notifier.apply(0, &trigger).unwrap();
        notifier.save(vec![(0, id.clone())]).await;
        assert!(notifier.has_unsaved(0), "the failed write is remembered");

        notifier
            .on_tick()
            .await
            .expect("a failed write does not stop the notifier");
        let sent = notifier.results_rx.recv().await.unwrap();
        assert_eq!(sent.incident, id);
        assert_eq!(sent.result, Ok(()), "the page went out all the same");
        notifier.on_sent(sent).await.unwrap();
        assert!(notifier.has_unsaved(0), "and is still to be written");
        assert!(
            notifier.partitions[&0].incidents.contains_key(&id),
            "kept in memory until written"
        );
    }
}
