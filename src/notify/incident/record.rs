//! The parts of an incident record: its status, the notifications it owes
//! and how each went, its timeline entries, its escalation state, what
//! opens it, and its id. Serialised as they are into the changelog.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    notify::oncall::{ContactKind, Target},
    paging::{EventAction, PageTarget, PagingEvent, Severity},
};

/// One timeline entry's detail, measured as JSON (escapes included), so 71
/// entries stay far below a record's limit whatever they contain.
pub const MAX_DETAIL_BYTES: usize = 2048;
/// Each of an entry's [`Facts`] texts, measured the same way.
pub const MAX_FACT_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Triggered,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Triggered => "triggered",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Page,
    /// Tells someone who was paged that the incident is resolved.
    Resolved,
    /// Tells someone who was paged what changed in the incident's group
    /// (see [`crate::notify::group`]).
    Update,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Page => "page",
            Purpose::Resolved => "resolved",
            Purpose::Update => "update",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Planned,
    Sending,
    Delivered,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique within the incident.
    pub seq: u32,
    pub user: String,
    pub contact: String,
    pub kind: ContactKind,
    pub address: String,
    pub purpose: Purpose,
    pub due_at: DateTime<Utc>,
    pub state: Delivery,
    /// What an update says changed in the incident's group (a page's
    /// group line is made when it is sent, not kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Triggered,
    Repeated,
    Escalated,
    NobodyOnCall,
    PolicyExhausted,
    Notified,
    NotifyFailed,
    Unreachable,
    DeliveryUncertain,
    Acknowledged,
    AckExpired,
    Resolved,
    /// A silence keeps the incident from paging anyone.
    Silenced,
    /// Its silence ended.
    Unsilenced,
    /// Its route holds the first page a while.
    Paused,
    /// A reminder: paged again while nobody acknowledges.
    Renotified,
    /// Its alert flaps: changes are noted, nobody is paged until it settles.
    Flapping,
    /// It stopped flapping.
    Settled,
    /// Its group changed, or it was grouped into another incident's.
    Grouped,
    /// Stands for the entries left out of a long timeline.
    Elided,
}

/// Timeline entries kept from the start: how the incident began.
pub const TIMELINE_HEAD: usize = 20;
/// Timeline entries kept from the end: what happened last.
pub const TIMELINE_TAIL: usize = 50;

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub kind: EntryKind,
    pub detail: String,
    /// The entry's facts as columns of the lake's `incidents` table; absent
    /// from entries written before they were kept.
    #[serde(flatten)]
    pub facts: Facts,
}

/// What an entry is about, beyond its kind and time: who acted, who was
/// reached on which channel and how it went, which escalation level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Who acknowledged or resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Who was notified, or could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The contact method's kind: `sms`, `slack`, `email`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// How a notification went: `delivered`, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// What a notification was for: `page`, or `resolved` (telling someone
    /// paged that it is over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The escalation level paged (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// The level paged last (0-based).
    pub level: usize,
    /// How many times the policy has started over.
    pub cycle: u32,
    /// When the next level is due, while triggered.
    pub next_at: Option<DateTime<Utc>>,
    /// When an acknowledgement runs out.
    pub ack_expires_at: Option<DateTime<Utc>>,
    /// While its route's pause holds the first page: when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<DateTime<Utc>>,
    /// When the next reminder is due, and how many were sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renotify_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub renotified: u32,
    /// Whom the last level paged: whom a reminder pages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paged: Vec<String>,
}

/// While an incident's alert flaps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Flapping {
    /// Whether it fired last (a resolve while flapping keeps it open).
    pub firing: bool,
    /// When it settles if nothing changes before.
    pub settle_at: DateTime<Utc>,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// What the event that opens an incident says.
#[derive(Debug, Clone)]
pub struct Opening {
    pub dedup_key: String,
    pub summary: String,
    pub severity: Severity,
    pub source: Option<String>,
    pub policy: Option<String>,
    /// A manual page: this user or schedule instead of a policy.
    pub target: Option<Target>,
    /// The rule that fired, and the alert's labels, when a rule sent it.
    pub rule: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl Opening {
    /// What a trigger event opens; `None` for an event without a payload
    /// (the contract refuses those) or one that is not a trigger.
    pub fn of(event: &PagingEvent) -> Option<Self> {
        let payload = event.payload.as_ref()?;
        if event.event_action != EventAction::Trigger {
            return None;
        }
        Some(Self {
            dedup_key: event.dedup_key.clone(),
            summary: payload.summary.clone(),
            severity: payload.severity,
            source: Some(payload.source.clone()),
            policy: event.escalation_policy.clone(),
            // A manual page names its target in klaxon's `page_user` or
            // `page_schedule` custom details.
            target: PageTarget::of(event).map(|t| match t {
                PageTarget::User(u) => Target::User(u),
                PageTarget::Schedule(s) => Target::Schedule(s),
            }),
            rule: event.rule.clone(),
            labels: event.labels.clone(),
        })
    }
}

/// A short, stable id: the start of a hash of the key and the opening time.
pub fn incident_id(dedup_key: &str, opened_at: DateTime<Utc>) -> String {
    let digest = Sha256::digest(format!("{dedup_key}@{}", opened_at.timestamp_millis()));
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}
