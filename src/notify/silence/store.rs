//! Silences on their compacted topic: reading them all, following them
//! from the notifier, and the requests of the CLI and the HTTP API (add,
//! expire, list), checked here once for both.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use rdkafka::{error::KafkaError, producer::FutureRecord};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    MAX_AUTHOR_BYTES, MAX_COMMENT_BYTES, MAX_MATCHERS, MAX_SILENCES, Matcher, MatcherError,
    Silence, SilenceState, SilenceStatus, matches_every_alert,
};
use crate::{
    config::{Config, KafkaConfig},
    kafka::{Producer, keyed_producer, read_compacted},
};

const SILENCE_PREFIX: &str = "silence/";
const USED_PREFIX: &str = "used/";
/// How often a notifier reads the silences again: a new or expired
/// silence takes effect within about this long.
pub const REFRESH: Duration = Duration::from_secs(1);
/// The longest silence: a year. Longer is a rule to delete, not a silence.
pub const MAX_SILENCE: Duration = Duration::from_secs(366 * 24 * 3600);
/// How long an ended silence stays listed (`silence list --all`) before a
/// notifier deletes it from the topic: Alertmanager's `data.retention`
/// default, 120h. Without it the topic, and each notifier's read of it,
/// grows with every silence ever made.
pub const SILENCE_RETENTION: Duration = Duration::from_secs(120 * 3600);
/// How often a notifier looks for silences past retention.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Error)]
pub enum SilenceError {
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    #[error("a silence needs at least one matcher (--match label=value)")]
    NoMatchers,
    #[error("at most {MAX_MATCHERS} matchers")]
    TooManyMatchers,
    #[error(
        "these matchers match every alert (a label every alert has, or one it lacks, which reads as empty), so this silence would silence everything; add a matcher such as service=NAME"
    )]
    MatchesEverything,
    #[error("a silence lasts more than 0s and at most a year")]
    Length,
    #[error("a silence starts at most a year ahead, and ends after now")]
    Start,
    #[error("the comment is longer than {MAX_COMMENT_BYTES} bytes")]
    Comment,
    #[error("the author is empty or longer than {MAX_AUTHOR_BYTES} bytes")]
    Author,
    #[error("{MAX_SILENCES} silences are pending or active already")]
    TooMany,
    #[error("no silence {0}")]
    NotFound(String),
    #[error("silence {0} has ended already")]
    Ended(String),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// A silence as someone asks for it.
#[derive(Debug, Clone)]
pub struct NewSilence {
    pub matchers: Vec<String>,
    /// Default: now.
    pub starts_at: Option<DateTime<Utc>>,
    pub length: Duration,
    pub created_by: String,
    pub comment: String,
}

impl NewSilence {
    /// The silence it asks for, or why it cannot be.
    pub fn check(self, now: DateTime<Utc>) -> Result<Silence, SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if self.matchers.len() > MAX_MATCHERS {
            return Err(SilenceError::TooManyMatchers);
        }
        let matchers = self
            .matchers
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<Matcher>, _>>()?;
        if matches_every_alert(&matchers) {
            return Err(SilenceError::MatchesEverything);
        }
        if self.length.is_zero() || self.length > MAX_SILENCE {
            return Err(SilenceError::Length);
        }
        if self.comment.len() > MAX_COMMENT_BYTES {
            return Err(SilenceError::Comment);
        }
        let by = self.created_by.trim();
        if by.is_empty() || by.len() > MAX_AUTHOR_BYTES {
            return Err(SilenceError::Author);
        }
        let starts_at = self.starts_at.unwrap_or(now);
        let length = chrono::Duration::from_std(self.length).map_err(|_| SilenceError::Length)?;
        let ends_at = starts_at
            .checked_add_signed(length)
            .ok_or(SilenceError::Length)?;
        let year = chrono::Duration::from_std(MAX_SILENCE).expect("a year fits");
        if starts_at > now + year || ends_at <= now {
            return Err(SilenceError::Start);
        }
        Ok(Silence {
            id: Silence::new_id(&matchers, by, now),
            matchers,
            starts_at,
            ends_at,
            created_by: by.to_owned(),
            created_at: now,
            comment: self.comment,
            expired_by: None,
        })
    }
}

/// Reads every silence and use mark. Blocking. Unreadable records are
/// logged and skipped; past [`MAX_SILENCES`], the silences that ended
/// longest ago are left out.
pub fn read_silences(
    kafka: &KafkaConfig,
    brokers: &str,
    topic: &str,
) -> Result<SilenceState, KafkaError> {
    let latest = read_compacted(kafka, brokers, topic, None, Duration::from_secs(30))?;
    let mut state = SilenceState {
        loaded: true,
        ..SilenceState::default()
    };
    for ((_, key), body) in latest {
        if let Some(id) = key.strip_prefix(SILENCE_PREFIX) {
            match serde_json::from_slice::<Silence>(&body) {
                Ok(silence) if silence.id == id => {
                    state.silences.insert(silence.id.clone(), silence);
                }
                Ok(_) => tracing::error!(%key, "a silence under another's key; skipped"),
                Err(e) => tracing::error!(%key, error = %e, "unreadable silence; skipped"),
            }
        } else if let Some(id) = key.strip_prefix(USED_PREFIX) {
            let incident = String::from_utf8_lossy(&body).into_owned();
            state.used.insert(id.to_owned(), incident);
        }
    }
    if state.silences.len() > MAX_SILENCES {
        let mut by_end: Vec<(DateTime<Utc>, String)> = state
            .silences
            .values()
            .map(|s| (s.ends_at, s.id.clone()))
            .collect();
        by_end.sort();
        let excess = state.silences.len() - MAX_SILENCES;
        for (_, id) in by_end.into_iter().take(excess) {
            state.silences.remove(&id);
        }
        tracing::warn!(
            excess,
            "more silences than klaxon keeps; those that ended first are left out"
        );
    }
    Ok(state)
}

async fn send(producer: &Producer, topic: &str, key: &str, body: &[u8]) -> Result<(), KafkaError> {
    producer
        .send(
            FutureRecord::to(topic).partition(0).key(key).payload(body),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

pub async fn write_silence(
    producer: &Producer,
    topic: &str,
    silence: &Silence,
) -> Result<(), KafkaError> {
    let body = serde_json::to_vec(silence).expect("silences serialise");
    send(
        producer,
        topic,
        &format!("{SILENCE_PREFIX}{}", silence.id),
        &body,
    )
    .await
}

/// Marks a silence as having suppressed `incident`.
pub async fn mark_used(
    producer: &Producer,
    topic: &str,
    id: &str,
    incident: &str,
) -> Result<(), KafkaError> {
    send(
        producer,
        topic,
        &format!("{USED_PREFIX}{id}"),
        incident.as_bytes(),
    )
    .await
}

/// The silences that ended longer than [`SILENCE_RETENTION`] ago.
pub fn past_retention(state: &SilenceState, now: DateTime<Utc>) -> Vec<String> {
    let retention = chrono::Duration::from_std(SILENCE_RETENTION).expect("120h fits");
    state
        .silences
        .values()
        .filter(|s| s.ends_at + retention < now)
        .map(|s| s.id.clone())
        .collect()
}

/// Deletes silences past retention, and their use marks, with tombstones.
/// Every member may do it at once: a tombstone written twice is one.
async fn forget_past_retention(
    producer: &Producer,
    topic: &str,
    state: &SilenceState,
) -> Result<usize, KafkaError> {
    let old = past_retention(state, Utc::now());
    for id in &old {
        for key in [
            format!("{SILENCE_PREFIX}{id}"),
            format!("{USED_PREFIX}{id}"),
        ] {
            producer
                .send(
                    FutureRecord::<str, [u8]>::to(topic).partition(0).key(&key),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
    }
    Ok(old.len())
}

/// Every silence, as the CLI and the API list them.
pub async fn list(config: &Config) -> Result<SilenceState, KafkaError> {
    let (kafka, topic) = (config.kafka.clone(), config.notify.silences_topic.clone());
    tokio::task::spawn_blocking(move || read_silences(&kafka, &kafka.brokers, &topic))
        .await
        .expect("the silence reader does not panic")
}

/// The silences a listing shows, newest first: those pending or active,
/// ended ones too with `all`; with `unused`, every one that never
/// suppressed an alert, ended or not (Alertmanager #5459).
pub fn listed(state: &SilenceState, all: bool, unused: bool, now: DateTime<Utc>) -> Vec<&Silence> {
    let mut shown: Vec<&Silence> = state
        .silences
        .values()
        .filter(|s| all || unused || s.status(now) != SilenceStatus::Expired)
        .filter(|s| !unused || !state.used.contains_key(&s.id))
        .collect();
    shown.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    shown
}

/// A silence as a JSON listing shows it: the record, its `status` and
/// `used_by` (the first incident it suppressed, or null).
pub fn row(state: &SilenceState, silence: &Silence, now: DateTime<Utc>) -> serde_json::Value {
    let mut value = serde_json::to_value(silence).expect("silences serialise");
    value["status"] = silence.status(now).as_str().into();
    value["used_by"] = state.used.get(&silence.id).cloned().into();
    value
}

/// Checks and stores a new silence.
pub async fn add(config: &Config, request: NewSilence) -> Result<Silence, SilenceError> {
    let now = Utc::now();
    let silence = request.check(now)?;
    let state = list(config).await?;
    let in_force = state
        .silences
        .values()
        .filter(|s| s.status(now) != SilenceStatus::Expired)
        .count();
    if in_force >= MAX_SILENCES {
        return Err(SilenceError::TooMany);
    }
    let producer = keyed_producer(&config.kafka, &config.kafka.brokers)?;
    write_silence(&producer, &config.notify.silences_topic, &silence).await?;
    Ok(silence)
}

/// Ends a silence now; returns it as it is then.
pub async fn expire(config: &Config, id: &str, by: &str) -> Result<Silence, SilenceError> {
    let now = Utc::now();
    let state = list(config).await?;
    let mut silence = state
        .silences
        .get(id)
        .cloned()
        .ok_or_else(|| SilenceError::NotFound(id.to_owned()))?;
    if silence.status(now) == SilenceStatus::Expired {
        return Err(SilenceError::Ended(id.to_owned()));
    }
    let by = by.trim();
    if by.is_empty() || by.len() > MAX_AUTHOR_BYTES {
        return Err(SilenceError::Author);
    }
    // A pending silence ends before it ever starts.
    silence.starts_at = silence.starts_at.min(now);
    silence.ends_at = now;
    silence.expired_by = Some(by.to_owned());
    let producer = keyed_producer(&config.kafka, &config.kafka.brokers)?;
    write_silence(&producer, &config.notify.silences_topic, &silence).await?;
    Ok(silence)
}

/// Follows the silences for a notifier: reads them once before it
/// returns (a notifier that starts must not page for what is silenced),
/// then every [`REFRESH`], publishing each change, until `shutdown`. A
/// failed read keeps the last state (logged and counted): a broker hiccup
/// neither lifts nor adds a silence. If the first read fails, the notifier
/// starts with none: better a page too many than a page lost.
pub async fn follow(
    config: &Config,
    shutdown: CancellationToken,
) -> watch::Receiver<Arc<SilenceState>> {
    let (tx, rx) = watch::channel(Arc::new(SilenceState::default()));
    let (kafka, topic) = (config.kafka.clone(), config.notify.silences_topic.clone());
    let first = read_into(&tx, &kafka, &topic).await;
    tracing::info!(
        silences = rx.borrow().silences.len(),
        read = first,
        "silences read"
    );
    let producer = keyed_producer(&kafka, &kafka.brokers);
    tokio::spawn(async move {
        let mut retention_due = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(REFRESH) => {}
            }
            if !read_into(&tx, &kafka, &topic).await {
                continue;
            }
            // Retention at start and then hourly, beside the reads: a slow
            // or failing write never holds a read back.
            let Ok(producer) = &producer else { continue };
            if tokio::time::Instant::now() < retention_due {
                continue;
            }
            retention_due = tokio::time::Instant::now() + RETENTION_EVERY;
            let (producer, topic, state) = (producer.clone(), topic.clone(), tx.borrow().clone());
            tokio::spawn(async move {
                match forget_past_retention(&producer, &topic, &state).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(silences = n, "ended silences past retention deleted"),
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting old silences failed; trying again within the hour")
                    }
                }
            });
        }
    });
    rx
}

/// Whether `new` lacks a silence of `current` that has not ended: one
/// only leaves the topic long after it ended.
fn lost_silences(current: &SilenceState, new: &SilenceState) -> bool {
    let now = Utc::now();
    current
        .silences
        .values()
        .any(|s| s.ends_at > now && !new.silences.contains_key(&s.id))
}

/// Reads the silences into `tx` if they changed; false if the read failed.
async fn read_into(
    tx: &watch::Sender<Arc<SilenceState>>,
    kafka: &KafkaConfig,
    topic: &str,
) -> bool {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    let read =
        tokio::task::spawn_blocking(move || read_silences(&kafka, &kafka.brokers, &topic)).await;
    match read {
        Ok(Ok(state)) if lost_silences(&tx.borrow(), &state) => {
            // Silences leave the topic only long after they end: a read
            // without one still in force is a broker answering for a topic
            // it does not know yet (stale metadata), not the truth.
            metrics::counter!("klaxon_notify_silence_read_failures_total").increment(1);
            tracing::warn!(
                "a read of the silences lacks silences still kept; the last ones stay in force"
            );
            false
        }
        Ok(Ok(state)) => {
            tx.send_if_modified(|current| {
                let changed = current.silences != state.silences;
                if changed {
                    tracing::info!(silences = state.silences.len(), "silences changed");
                }
                let modified = **current != state;
                if modified {
                    *current = Arc::new(state);
                }
                modified
            });
            true
        }
        Ok(Err(e)) => {
            metrics::counter!("klaxon_notify_silence_read_failures_total").increment(1);
            tracing::warn!(error = %e, "reading silences failed; the last ones stay in force");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the silence reader failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(matchers: &[&str], length: Duration) -> NewSilence {
        NewSilence {
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: None,
            length,
            created_by: "ops".to_owned(),
            comment: "deploy".to_owned(),
        }
    }

    #[test]
    fn a_request_is_checked_before_it_is_stored() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        let ok = request(&["service=checkout", "severity=~warn.*"], hour)
            .check(now)
            .unwrap();
        assert_eq!(ok.ends_at - ok.starts_at, chrono::Duration::hours(1));
        assert_eq!(ok.status(now), SilenceStatus::Active);
        for (bad, expect) in [
            (request(&[], hour), "at least one matcher"),
            (request(&["team!=db"], hour), "silence everything"),
            (request(&["team=~.*"], hour), "silence everything"),
            (request(&["severity=~.+"], hour), "silence everything"),
            (request(&["service"], hour), "a matcher is"),
            (request(&["service=a"], Duration::ZERO), "more than 0s"),
            (
                request(&["service=a"], Duration::from_secs(400 * 24 * 3600)),
                "at most a year",
            ),
        ] {
            let err = bad.check(now).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
        let mut far = request(&["service=a"], hour);
        far.starts_at = Some(now + chrono::Duration::days(400));
        assert!(matches!(far.check(now), Err(SilenceError::Start)));
        let mut past = request(&["service=a"], hour);
        past.starts_at = Some(now - chrono::Duration::hours(2));
        assert!(matches!(past.check(now), Err(SilenceError::Start)));
        let mut nobody = request(&["service=a"], hour);
        nobody.created_by = " ".into();
        assert!(matches!(nobody.check(now), Err(SilenceError::Author)));
    }

    #[test]
    fn ended_silences_are_kept_for_the_retention_then_forgotten() {
        let now = Utc::now();
        let retention = chrono::Duration::from_std(SILENCE_RETENTION).unwrap();
        let mut state = SilenceState::default();
        for (id, ended) in [
            ("recent", retention - chrono::Duration::minutes(1)),
            ("old", retention + chrono::Duration::minutes(1)),
        ] {
            let mut s = request(&["service=a"], Duration::from_secs(60))
                .check(now)
                .unwrap();
            s.id = id.to_owned();
            s.ends_at = now - ended;
            state.silences.insert(s.id.clone(), s);
        }
        assert_eq!(past_retention(&state, now), ["old"]);
    }
}
