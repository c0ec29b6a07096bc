//! Silences: "page nobody for alerts matching these labels until then".
//!
//! A silence is a set of [`Matcher`]s, a start, an end, who made it and why.
//! Silences live in their own compacted topic (`notify.silences_topic`, one
//! partition, key `silence/ID`), so every notifier member, the CLI and the
//! HTTP API see the same ones whichever paging partitions they own; an
//! expired silence is the same record written again with its new end.
//!
//! What a silence does to an incident, decided on every change of the
//! silences and whenever one starts or ends ([`SilenceState::matching`] and
//! the notifier's partition):
//! - an incident opened while a silence matches it pages nobody; its
//!   timeline says which silence, whose, and why;
//! - a silence that starts matching an open incident cancels the pages not
//!   yet sent and stops its escalation;
//! - when the incident's silence ends (or is expired) and no other matches,
//!   a still-triggered incident pages from its first level;
//! - triggers and resolves of a silenced incident are recorded as usual, so
//!   a silenced alert that resolves is on record; a new incident of the
//!   same alert (it flapped) is silenced by the same silence while it lasts.
//!
//! A silence that suppresses something is marked used (key `used/ID`), once,
//! by the first member that applies it; `klaxon silence list --unused`
//! lists the others, the silences that never matched an alert.
//!
//! Here: the silence and the set of them; matchers in [`matcher`], the
//! topic and the requests of the CLI and API in [`store`].

pub mod matcher;
pub mod store;

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use self::matcher::{Matcher, MatcherError};
use super::{
    group::{GROUPED_PREFIX, Group},
    incident::{Incident, Status},
    inhibit::{Firing, INHIBITED_PREFIX, Inhibit},
    maintenance::Maintenance,
    oncall::OnCall,
};
use crate::paging::Severity;

/// Matchers one silence may have, and its comment's and author's length.
pub const MAX_MATCHERS: usize = 32;
pub const MAX_COMMENT_BYTES: usize = 1024;
pub const MAX_AUTHOR_BYTES: usize = 256;
/// Silences the notifier keeps in force; beyond, the oldest ones that have
/// ended are dropped first, and a request to add one is refused.
pub const MAX_SILENCES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub comment: String,
    /// Who ended it before its time, when someone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceStatus {
    Pending,
    Active,
    Expired,
}

impl SilenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceStatus::Pending => "pending",
            SilenceStatus::Active => "active",
            SilenceStatus::Expired => "expired",
        }
    }
}

impl Silence {
    /// A short, stable id: the start of a hash of what it matches, who
    /// made it and when.
    pub fn new_id(matchers: &[Matcher], created_by: &str, created_at: DateTime<Utc>) -> String {
        let text: Vec<String> = matchers.iter().map(ToString::to_string).collect();
        let digest = Sha256::digest(format!(
            "{}@{created_by}@{}",
            text.join(","),
            created_at.timestamp_nanos_opt().unwrap_or_default()
        ));
        digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
    }

    pub fn status(&self, now: DateTime<Utc>) -> SilenceStatus {
        if now >= self.ends_at {
            SilenceStatus::Expired
        } else if now < self.starts_at {
            SilenceStatus::Pending
        } else {
            SilenceStatus::Active
        }
    }

    /// Whether every matcher matches these labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The timeline's words for it: "silence ID of BY until T: COMMENT".
    pub fn describe(&self) -> String {
        format!(
            "silence {} of {} until {}: {}",
            self.id,
            self.created_by,
            self.ends_at.to_rfc3339(),
            self.comment
        )
    }

    /// How it ended, for the timeline of what it silenced.
    pub fn ending(&self) -> String {
        match &self.expired_by {
            Some(by) => format!("silence {} expired by {by}", self.id),
            None => format!("silence {} ended", self.id),
        }
    }
}

/// What a silence matches an incident by: its labels, and `severity`,
/// `dedup_key` and `rule` unless a label has that name.
pub fn alert_labels(incident: &Incident) -> BTreeMap<String, String> {
    let mut labels = incident.labels.clone();
    labels
        .entry("severity".to_owned())
        .or_insert_with(|| incident.severity.to_string());
    labels
        .entry("dedup_key".to_owned())
        .or_insert_with(|| incident.dedup_key.clone());
    if let Some(rule) = &incident.rule {
        labels
            .entry("rule".to_owned())
            .or_insert_with(|| rule.clone());
    }
    labels
}

/// Whether these matchers match every alert there can be: checked against
/// alerts of each severity with nothing but the labels every alert has
/// (`severity`, `dedup_key`). `team!=db`, `severity=~.+` and
/// `dedup_key=~.*` all do; a silence or window of them would mute
/// everything, and is refused.
pub fn matches_every_alert(matchers: &[Matcher]) -> bool {
    Severity::ALL.iter().all(|severity| {
        ["probe", "rule{service=a}"].iter().all(|key| {
            let labels = BTreeMap::from([
                ("severity".to_owned(), severity.to_string()),
                ("dedup_key".to_owned(), (*key).to_owned()),
            ]);
            matchers.iter().all(|m| m.matches(&labels))
        })
    })
}

/// Every silence, and which have suppressed something.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SilenceState {
    pub silences: BTreeMap<String, Silence>,
    /// Silences that have suppressed an alert: id → the first incident.
    pub used: BTreeMap<String, String>,
    /// Whether this was read from the topic: until a read succeeds, a
    /// notifier knows no silence, and lifts none it does not know.
    pub loaded: bool,
}

impl SilenceState {
    /// The active silence that matches, the one ending last if several do
    /// (so the incident is released as seldom as possible).
    pub fn matching(
        &self,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Option<&Silence> {
        self.silences
            .values()
            .filter(|s| s.status(now) == SilenceStatus::Active && s.matches(labels))
            .max_by(|a, b| (a.ends_at, &b.id).cmp(&(b.ends_at, &a.id)))
    }

    /// The next instant a silence starts or ends, after `now`.
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.silences
            .values()
            .flat_map(|s| [s.starts_at, s.ends_at])
            .filter(|t| *t > now)
            .min()
    }

    /// Every active silence that matches: what `silence list --unused`
    /// must not list once an alert was suppressed, whichever silence won.
    pub fn all_matching<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a Silence> {
        self.silences
            .values()
            .filter(move |s| s.status(now) == SilenceStatus::Active && s.matches(labels))
    }
}

/// How long an incident keeps a silence this member does not know: one
/// made an instant ago (by the member that had the partition) may not have
/// been read here yet.
pub const UNKNOWN_SILENCE_GRACE: TimeDelta = TimeDelta::seconds(30);

/// How an incident's `silenced_by` names a maintenance window.
pub const MAINTENANCE_PREFIX: &str = "maintenance/";

/// What keeps an alert from paging: a silence or a maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub struct Mute {
    /// A silence's id, or `maintenance/ID`.
    pub id: String,
    /// The timeline's words for it.
    pub why: String,
    pub by: String,
}

/// Silences, the on-call file's maintenance windows and inhibitions,
/// asked together.
#[derive(Debug, Clone, Copy)]
pub struct Mutes<'a> {
    pub silences: &'a SilenceState,
    pub maintenance: &'a [Spanned<Maintenance>],
    pub inhibit: &'a [Spanned<Inhibit>],
    /// The alerts firing in every partition, for inhibitions.
    pub firing: &'a Firing,
}

impl<'a> Mutes<'a> {
    pub fn new(silences: &'a SilenceState, oncall: &'a OnCall, firing: &'a Firing) -> Self {
        Self {
            silences,
            maintenance: &oncall.maintenance,
            inhibit: &oncall.inhibit,
            firing,
        }
    }

    fn windows(&self) -> impl Iterator<Item = &Maintenance> {
        self.maintenance.iter().map(Spanned::get_ref)
    }

    fn rules(&self) -> impl Iterator<Item = &'a Inhibit> {
        self.inhibit.iter().map(Spanned::get_ref)
    }

    /// What mutes an alert with these labels at `now`: a silence first (the
    /// one ending last), else a maintenance window in force, else another
    /// alert that inhibits it.
    pub fn matching(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> Option<Mute> {
        if let Some(s) = self.silences.matching(labels, now) {
            return Some(Mute {
                id: s.id.clone(),
                why: s.describe(),
                by: s.created_by.clone(),
            });
        }
        let window = self
            .windows()
            .find(|w| w.in_force(now) && w.matchers.iter().all(|m| m.matches(labels)))
            .map(|w| Mute {
                id: format!("{MAINTENANCE_PREFIX}{}", w.id),
                why: w.describe(),
                by: "maintenance".to_owned(),
            });
        window.or_else(|| {
            self.firing.inhibitor(self.rules(), labels).map(|i| Mute {
                id: i.id(),
                why: i.describe(),
                by: "inhibition".to_owned(),
            })
        })
    }

    /// Whether the mute `id` still mutes these labels at `now`; `None`
    /// for a silence this member does not know (see
    /// [`UNKNOWN_SILENCE_GRACE`]).
    pub fn holds(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Option<bool> {
        if let Some(window) = id.strip_prefix(MAINTENANCE_PREFIX) {
            return Some(self.windows().any(|w| {
                w.id == window && w.in_force(now) && w.matchers.iter().all(|m| m.matches(labels))
            }));
        }
        if id.starts_with(INHIBITED_PREFIX) {
            return self.firing.holds(self.rules(), id, labels);
        }
        self.silences
            .silences
            .get(id)
            .map(|s| s.status(now) == SilenceStatus::Active && s.matches(labels))
    }

    /// The incident of its group that `incident` (of group `key`) is
    /// grouped into, if it is not its group's incident itself.
    pub fn grouped(&self, key: &str, incident: &Incident) -> Option<Mute> {
        let group = incident.group.as_ref();
        let may_lead = incident.flapping.is_none() && !group.is_some_and(Group::spent);
        let rank = may_lead.then(|| {
            (
                !group.is_some_and(|g| g.paged),
                incident.status == Status::Acknowledged,
                incident.opened_at,
                incident.id.as_str(),
            )
        });
        let leader = self.firing.groups.leader(key, &incident.id, rank)?;
        Some(Mute {
            id: format!("{GROUPED_PREFIX}{leader}"),
            why: format!("grouped into incident {leader} (group {key})"),
            by: "grouping".to_owned(),
        })
    }

    /// How the mute `id` ended, for the timeline.
    pub fn ending(&self, id: &str) -> String {
        if let Some(leader) = id.strip_prefix(GROUPED_PREFIX) {
            if self.firing.overdue {
                return "the incidents changelog is still unread since the start: released from its group".to_owned();
            }
            return format!(
                "incident {leader} no longer pages for its group (resolved or muted): this one does"
            );
        }
        if let Some(window) = id.strip_prefix(MAINTENANCE_PREFIX) {
            return format!("maintenance window {window} ended");
        }
        if let Some(inhibition) = id.strip_prefix(INHIBITED_PREFIX) {
            let incident = inhibition.split_once('/').map_or(inhibition, |(_, i)| i);
            return format!(
                "no longer inhibited (incident {incident} resolved or no longer matches)"
            );
        }
        self.silences
            .silences
            .get(id)
            .map_or_else(|| format!("silence {id} was deleted"), Silence::ending)
    }

    /// When the mutes must next be applied again: a silence starts or
    /// ends, or, with maintenance windows (minutes on a wall clock), the
    /// next minute.
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let minute = (!self.maintenance.is_empty())
            .then(|| now.duration_trunc(TimeDelta::minutes(1)).ok())
            .flatten()
            .map(|m| m + TimeDelta::minutes(1));
        [self.silences.next_change(now), minute]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
pub(in crate::notify) mod tests {
    use super::*;

    pub(in crate::notify) fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// A silence of `matchers` from `from` to `until`.
    pub(in crate::notify) fn silence(
        id: &str,
        matchers: &[&str],
        from: &str,
        until: &str,
    ) -> Silence {
        Silence {
            id: id.to_owned(),
            matchers: matchers.iter().map(|m| m.parse().unwrap()).collect(),
            starts_at: at(from),
            ends_at: at(until),
            created_by: "ops".to_owned(),
            created_at: at(from),
            comment: "deploy".to_owned(),
            expired_by: None,
        }
    }

    #[test]
    fn matchers_that_mute_every_alert_are_told_apart() {
        let every = |ms: &[&str]| {
            let ms: Vec<Matcher> = ms.iter().map(|m| m.parse().unwrap()).collect();
            matches_every_alert(&ms)
        };
        for all in [
            &["team!=db"][..],
            &["severity=~.+"],
            &["dedup_key=~.*"],
            &["team!~.+", "severity!=page"],
        ] {
            assert!(every(all), "{all:?}");
        }
        for some in [
            &["service=checkout"][..],
            &["severity=critical"],
            &["severity!=critical"],
            &["team!=db", "service=web"],
            &["dedup_key=~rule.*"],
        ] {
            assert!(!every(some), "{some:?}");
        }
    }

    #[test]
    fn the_active_match_ending_last_wins_and_times_are_exact() {
        let mut state = SilenceState::default();
        for s in [
            silence(
                "short",
                &["service=api"],
                "2026-03-02T10:00:00Z",
                "2026-03-02T11:00:00Z",
            ),
            silence(
                "long",
                &["service=~a.*"],
                "2026-03-02T10:00:00Z",
                "2026-03-02T12:00:00Z",
            ),
            silence(
                "later",
                &["service=api"],
                "2026-03-02T13:00:00Z",
                "2026-03-02T14:00:00Z",
            ),
        ] {
            state.silences.insert(s.id.clone(), s);
        }
        let api: BTreeMap<String, String> = [("service".to_owned(), "api".to_owned())].into();
        let id = |t| state.matching(&api, at(t)).map(|s| s.id.as_str());
        assert_eq!(id("2026-03-02T09:59:59Z"), None);
        assert_eq!(id("2026-03-02T10:00:00Z"), Some("long"));
        assert_eq!(id("2026-03-02T12:00:00Z"), None, "the end is exclusive");
        assert_eq!(id("2026-03-02T13:30:00Z"), Some("later"));
        assert_eq!(
            state.next_change(at("2026-03-02T11:00:00Z")),
            Some(at("2026-03-02T12:00:00Z"))
        );
        let db: BTreeMap<String, String> = [("service".to_owned(), "db".to_owned())].into();
        assert_eq!(state.matching(&db, at("2026-03-02T10:30:00Z")), None);
    }
}
