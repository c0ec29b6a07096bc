//! One incident: triggered → acknowledged → resolved, its escalation, the
//! notifications it owes, and its timeline. Pure code; time is passed in.
//!
//! - Opening an incident pages level 1 of its policy. While nobody
//!   acknowledges, each level's `delay` moves it to the next level, and after
//!   the last level the policy runs again `repeat` times; then the timeline
//!   says the policy is exhausted.
//! - A level whose targets have nobody on call (a schedule gap) is recorded
//!   and skipped at once: escalation never waits on nobody.
//! - Paging a user plans one notification per personal rule ("SMS at once,
//!   phone after 5m"); an acknowledgement or resolve cancels those not sent.
//!   A notification whose delivery failed (after the channel's retries) falls
//!   through to the user's next contact method.
//! - An acknowledgement stops escalation; with an `ack_timeout` the incident
//!   triggers again when it runs out, and escalation starts over.
//! - A notification is marked `Sending` (and that is persisted) before it is
//!   sent. One found `Sending` after a restart was perhaps delivered, perhaps
//!   not: it is sent again and the timeline says so. `Delivered` ones never are.
//! - A silenced incident pages nobody: its planned pages are cancelled and
//!   its escalation stops until the silence ends (`silencing`; which
//!   silence applies is decided by [`super::silence`]).
//! - The timeline is bounded, so an incident triggered thousands of times
//!   still fits one changelog record: it keeps its first
//!   [`TIMELINE_HEAD`] and last [`TIMELINE_TAIL`] entries, and between them
//!   one `elided` entry says how many were left out. Counts (`triggers`,
//!   `elided`) stay exact.
//!
//! Here: the incident record and its life (open, trigger again,
//! acknowledge, resolve, deliver, recover). The parts of the record are in
//! `record`; the escalation that decides whom to page when is in
//! `escalation`, and the bounded, numbered timeline in `timeline`, each a
//! further `impl Incident`.

mod escalation;
mod flapping;
mod grouping;
mod record;
mod routing;
mod silencing;
mod timeline;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use self::record::{
    Delivery, Entry, EntryKind, Escalation, Facts, Flapping, MAX_DETAIL_BYTES, MAX_FACT_BYTES,
    Notification, Opening, Purpose, Status, TIMELINE_HEAD, TIMELINE_TAIL, incident_id,
};
use super::{
    group::Group,
    oncall::{ContactKind, OnCall, Target},
};
use crate::paging::Severity;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub dedup_key: String,
    pub status: Status,
    pub summary: String,
    /// Lowercase, as on the wire: records written when this was a string
    /// held one of the same four names, so they load unchanged.
    pub severity: Severity,
    pub source: Option<String>,
    /// The escalation policy in use.
    pub policy: Option<String>,
    /// For a manual page, who is paged (no escalation beyond them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The rule that opened it, when a rule did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The route it took (see [`crate::notify::route`]), if one matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The labels of the alert that opened it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub resolved_by: Option<String>,
    /// Trigger events folded into this incident.
    pub triggers: u32,
    pub escalation: Escalation,
    pub notifications: Vec<Notification>,
    pub timeline: Vec<Entry>,
    /// Timeline entries left out (see the module docs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub elided: u64,
    /// The silence that keeps it from paging anyone, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    /// When its alert changed state lately (fired, resolved), carried over
    /// from the alert's previous incident, for its route's flap detection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DateTime<Utc>>,
    /// While its alert flaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flapping: Option<Flapping>,
    /// The group it pages for, while it is its group's incident (see
    /// [`crate::notify::group`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn std_duration(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

impl Incident {
    /// Opens an incident and pages the first level of its policy.
    pub fn open(opening: Opening, now: DateTime<Utc>, oncall: &OnCall) -> Self {
        let mut incident = Self::opened(opening, now, oncall);
        incident.page_level(now, oncall);
        incident
    }

    /// Opens an incident that has paged nobody yet: the caller pages
    /// ([`Self::page`]) or silences it.
    pub fn opened(opening: Opening, now: DateTime<Utc>, oncall: &OnCall) -> Self {
        let policy = oncall
            .policy(opening.policy.as_deref())
            .map(|p| p.id.clone());
        let mut incident = Self {
            id: incident_id(&opening.dedup_key, now),
            dedup_key: opening.dedup_key,
            status: Status::Triggered,
            summary: opening.summary,
            severity: opening.severity,
            source: opening.source,
            policy,
            target: opening.target,
            rule: opening.rule,
            route: None,
            labels: opening.labels,
            opened_at: now,
            acknowledged_by: None,
            resolved_by: None,
            triggers: 1,
            escalation: Escalation::default(),
            notifications: Vec::new(),
            timeline: Vec::new(),
            elided: 0,
            silenced_by: None,
            changes: Vec::new(),
            flapping: None,
            group: None,
        };
        let detail = format!("{} ({})", incident.summary, incident.severity);
        incident.log(now, EntryKind::Triggered, detail);
        incident
    }

    /// Pages the first level of its policy (or its manual page's target).
    pub fn page(&mut self, now: DateTime<Utc>, oncall: &OnCall) {
        self.page_level(now, oncall);
    }

    pub fn is_open(&self) -> bool {
        self.status != Status::Resolved
    }

    /// Another trigger for this open incident: noted, nobody paged again.
    pub fn retrigger(&mut self, summary: &str, severity: Severity, now: DateTime<Utc>) {
        self.triggers += 1;
        self.alert_fires_again(now);
        let changed = self.severity != severity || self.summary != summary;
        self.summary = summary.to_owned();
        self.severity = severity;
        let detail = if changed {
            format!("trigger {}: now {summary} ({severity})", self.triggers)
        } else {
            format!("trigger {}", self.triggers)
        };
        self.log(now, EntryKind::Repeated, detail);
    }

    /// Stops escalation, until the on-call file's `ack_timeout` runs out
    /// or, `until_resolved`, for good. Returns false when there was
    /// nothing to acknowledge.
    pub fn acknowledge(
        &mut self,
        by: &str,
        now: DateTime<Utc>,
        oncall: &OnCall,
        until_resolved: bool,
    ) -> bool {
        // Acknowledged already with a timeout: until resolved lifts it.
        if self.status == Status::Acknowledged
            && until_resolved
            && self.escalation.ack_expires_at.take().is_some()
        {
            self.acknowledged_by = Some(by.to_owned());
            let facts = Facts {
                actor: Some(by.to_owned()),
                ..Facts::default()
            };
            let detail = format!("by {by} until resolved");
            self.log_facts(now, EntryKind::Acknowledged, detail, facts);
            return true;
        }
        if self.status != Status::Triggered {
            return false;
        }
        self.status = Status::Acknowledged;
        self.acknowledged_by = Some(by.to_owned());
        self.escalation.next_at = None;
        self.escalation.paused_until = None;
        self.escalation.renotify_at = None;
        self.escalation.ack_expires_at = oncall
            .ack_timeout
            .filter(|_| !until_resolved)
            .map(|t| now + std_duration(t));
        self.cancel_pages();
        let until = match self.escalation.ack_expires_at {
            Some(t) => format!(" until {}", t.to_rfc3339()),
            None if until_resolved => " until resolved".to_owned(),
            None => String::new(),
        };
        let facts = Facts {
            actor: Some(by.to_owned()),
            ..Facts::default()
        };
        self.log_facts(
            now,
            EntryKind::Acknowledged,
            format!("by {by}{until}"),
            facts,
        );
        true
    }

    /// Closes the incident and tells everyone who was paged. Returns false
    /// when it was already resolved.
    pub fn resolve(&mut self, by: &str, now: DateTime<Utc>) -> bool {
        if self.status == Status::Resolved {
            return false;
        }
        self.status = Status::Resolved;
        self.resolved_by = Some(by.to_owned());
        self.escalation.next_at = None;
        self.escalation.ack_expires_at = None;
        self.escalation.renotify_at = None;
        let paused = self.escalation.paused_until.take().is_some();
        self.flapping = None;
        if let Some(group) = &mut self.group {
            group.due_at = None;
        }
        self.cancel_pages();
        let facts = Facts {
            actor: Some(by.to_owned()),
            ..Facts::default()
        };
        let detail = if paused {
            format!("by {by}; paused, resolved before paging")
        } else {
            format!("by {by}")
        };
        self.log_facts(now, EntryKind::Resolved, detail, facts);
        for n in self.reached() {
            self.plan(
                &n.user,
                &n.contact,
                n.kind,
                &n.address,
                Purpose::Resolved,
                now,
            );
        }
        true
    }

    /// Everyone a page reached, once each, on the method that reached them:
    /// whom a resolve or an update is told to.
    fn reached(&self) -> Vec<Notification> {
        let mut users = BTreeSet::new();
        self.notifications
            .iter()
            .filter(|n| n.purpose == Purpose::Page && n.state == Delivery::Delivered)
            .filter(|n| users.insert(n.user.clone()))
            .cloned()
            .collect()
    }

    fn cancel_pages(&mut self) {
        for n in &mut self.notifications {
            if n.purpose == Purpose::Page && n.state == Delivery::Planned {
                n.state = Delivery::Cancelled;
            }
        }
    }

    fn plan(
        &mut self,
        user: &str,
        contact: &str,
        kind: ContactKind,
        address: &str,
        purpose: Purpose,
        due_at: DateTime<Utc>,
    ) {
        let seq = self.notifications.len() as u32;
        self.notifications.push(Notification {
            seq,
            user: user.to_owned(),
            contact: contact.to_owned(),
            kind,
            address: address.to_owned(),
            purpose,
            due_at,
            state: Delivery::Planned,
            note: None,
        });
    }

    /// Whether a notification is planned or under way.
    pub fn has_pending(&self) -> bool {
        self.notifications
            .iter()
            .any(|n| matches!(n.state, Delivery::Planned | Delivery::Sending))
    }

    /// Notifications due at `now`, by `seq`.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<u32> {
        self.notifications
            .iter()
            .filter(|n| n.state == Delivery::Planned && n.due_at <= now)
            .map(|n| n.seq)
            .collect()
    }

    /// The next instant something is due.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        let planned = self
            .notifications
            .iter()
            .filter(|n| n.state == Delivery::Planned)
            .map(|n| n.due_at);
        let e = &self.escalation;
        let settle = self.flapping.map(|f| f.settle_at);
        // Records written before resolve cleared it may still carry one.
        let group = self
            .group
            .as_ref()
            .and_then(|g| g.due_at)
            .filter(|_| self.is_open());
        let timers = [
            e.next_at,
            e.ack_expires_at,
            e.paused_until,
            e.renotify_at,
            settle,
            group,
        ]
        .into_iter()
        .flatten();
        planned.chain(timers).min()
    }

    pub fn notification(&self, seq: u32) -> Option<&Notification> {
        self.notifications.get(seq as usize)
    }

    /// Marks a notification as being sent; persist this before sending.
    pub fn sending(&mut self, seq: u32) {
        if let Some(n) = self.notifications.get_mut(seq as usize) {
            n.state = Delivery::Sending;
            if n.purpose == Purpose::Page {
                let at = n.due_at;
                self.group_paged(at);
            }
        }
    }

    /// Records how a send ended. A failed page falls through to the user's
    /// next contact method, while the incident is still triggered.
    pub fn delivered(
        &mut self,
        seq: u32,
        result: Result<(), String>,
        now: DateTime<Utc>,
        oncall: &OnCall,
    ) {
        let Some(n) = self.notifications.get_mut(seq as usize) else {
            return;
        };
        let sent = n.clone();
        // Sent (or given up): its timeline entry keeps what an update
        // said, the record need not.
        n.note = None;
        let n = sent;
        let what = match n.purpose {
            Purpose::Page => "paged",
            Purpose::Resolved => "told of the resolve",
            Purpose::Update => "told of the group's changes",
        };
        let facts = |result: String| Facts {
            user: Some(n.user.clone()),
            channel: Some(n.kind.as_str().to_owned()),
            result: Some(result),
            purpose: Some(n.purpose.as_str().to_owned()),
            ..Facts::default()
        };
        match result {
            Ok(()) => {
                self.notifications[seq as usize].state = Delivery::Delivered;
                self.log_facts(
                    now,
                    EntryKind::Notified,
                    format!("{} {what} by {} ({})", n.user, n.contact, n.kind.as_str()),
                    facts("delivered".to_owned()),
                );
            }
            Err(reason) => {
                self.notifications[seq as usize].state = Delivery::Failed;
                self.log_facts(
                    now,
                    EntryKind::NotifyFailed,
                    format!(
                        "{} not {what} by {} ({}): {reason}",
                        n.user,
                        n.contact,
                        n.kind.as_str()
                    ),
                    facts(format!("failed: {reason}")),
                );
                if n.purpose != Purpose::Page
                    || self.status != Status::Triggered
                    || self.pages_held()
                {
                    return;
                }
                let next = oncall.user(&n.user).and_then(|u| {
                    let at = u.contact.iter().position(|c| c.name() == n.contact)?;
                    u.contact.get(at + 1).cloned()
                });
                match next {
                    Some(c) => self.plan(&n.user, c.name(), c.kind, &c.address, Purpose::Page, now),
                    None => self.log(
                        now,
                        EntryKind::Unreachable,
                        format!("{}: no contact method left to try", n.user),
                    ),
                }
            }
        }
    }

    /// After a restart: a send that was under way may or may not have
    /// happened, so it is planned again. True when there was one.
    pub fn recover(&mut self, now: DateTime<Utc>) -> bool {
        let uncertain: Vec<Notification> = self
            .notifications
            .iter()
            .filter(|n| n.state == Delivery::Sending)
            .cloned()
            .collect();
        let any = !uncertain.is_empty();
        for n in uncertain {
            // A page under a silence (or while its alert flaps) is not sent
            // again: it is no longer wanted.
            let unwanted = (n.purpose != Purpose::Resolved && self.pages_held())
                || (n.purpose == Purpose::Update && !self.is_open());
            let (state, what) = if unwanted {
                (Delivery::Cancelled, "not sent again, pages are held")
            } else {
                (Delivery::Planned, "sending again")
            };
            self.notifications[n.seq as usize].state = state;
            self.log(
                now,
                EntryKind::DeliveryUncertain,
                format!("{} by {}: {what}", n.user, n.contact),
            );
        }
        any
    }

    /// Whether it pages nobody for now: it is silenced, or its alert flaps.
    pub fn pages_held(&self) -> bool {
        self.silenced_by.is_some() || self.flapping.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    const ONCALL: &str = r#"
ack_timeout = "1h"
default_policy = "p"

[[user]]
id = "alice"
contact = [{ id = "sms", type = "sms", address = "+15550100" }, { id = "phone", type = "phone", address = "+15550100" }]
notify = [{ contact = "sms" }, { after = "5m", contact = "phone" }]

[[user]]
id = "bob"
contact = [{ type = "webhook", address = "http://127.0.0.1:1/bob" }, { type = "email", address = "bob@example.com" }]

[[schedule]]
id = "days"
[[schedule.layer]]
users = ["alice"]
rotation = "1d"
start = "2026-01-01T00:00:00"
restrictions = [{ from = "08:00", to = "20:00" }]

[[policy]]
id = "p"
repeat = 1
[[policy.level]]
targets = [{ schedule = "days" }]
delay = "10m"
[[policy.level]]
targets = [{ user = "bob" }]
delay = "10m"
"#;

    fn oncall() -> OnCall {
        toml::from_str(ONCALL).unwrap()
    }

    fn open(now: &str) -> Incident {
        let opening = Opening {
            dedup_key: "errors{service=checkout}".into(),
            summary: "checkout: 12 errors".into(),
            severity: Severity::Critical,
            source: None,
            policy: None,
            target: None,
            rule: None,
            labels: Default::default(),
        };
        Incident::open(opening, at(now), &oncall())
    }

    fn kinds(i: &Incident) -> Vec<EntryKind> {
        i.timeline.iter().map(|e| e.kind).collect()
    }

    fn who(i: &Incident, seqs: &[u32]) -> Vec<String> {
        seqs.iter()
            .map(|s| {
                let n = i.notification(*s).unwrap();
                format!("{} {}", n.user, n.contact)
            })
            .collect()
    }

    #[test]
    fn escalates_level_by_level_repeats_then_stops() {
        let oncall = oncall();
        let mut i = open("2026-03-02T10:00:00Z");
        assert_eq!(who(&i, &i.due(at("2026-03-02T10:00:00Z"))), ["alice sms"]);
        assert_eq!(
            who(&i, &i.due(at("2026-03-02T10:05:00Z"))),
            ["alice sms", "alice phone"],
            "the personal rule calls after 5m"
        );
        i.advance(at("2026-03-02T10:09:59Z"), &oncall);
        assert_eq!(i.escalation.level, 0);
        i.advance(at("2026-03-02T10:10:00Z"), &oncall);
        assert_eq!(i.escalation.level, 1);
        assert_eq!(i.timeline.last().unwrap().detail, "level 2: paging bob");
        i.advance(at("2026-03-02T10:20:00Z"), &oncall);
        assert_eq!(
            i.timeline.last().unwrap().detail,
            "level 1 (repeat 1): paging alice"
        );
        i.advance(at("2026-03-02T10:30:00Z"), &oncall);
        i.advance(at("2026-03-02T10:40:00Z"), &oncall);
        assert_eq!(*kinds(&i).last().unwrap(), EntryKind::PolicyExhausted);
        assert_eq!(i.escalation.next_at, None, "nothing more is ever due");
        i.advance(at("2026-03-02T12:00:00Z"), &oncall);
        assert_eq!(*kinds(&i).last().unwrap(), EntryKind::PolicyExhausted);
    }

    #[test]
    fn a_gap_in_the_schedule_escalates_at_once() {
        // 22:00: the day schedule has nobody; level 1 is skipped, not waited on.
        let i = open("2026-03-02T22:00:00Z");
        assert_eq!(
            i.timeline
                .iter()
                .map(|e| e.detail.as_str())
                .collect::<Vec<_>>(),
            [
                "checkout: 12 errors (critical)",
                "schedule days has nobody on call",
                "level 1: nobody to page; escalating at once",
                "level 2: paging bob",
            ]
        );
        assert_eq!(who(&i, &i.due(at("2026-03-02T22:00:00Z"))), ["bob webhook"]);
    }

    #[test]
    fn acknowledging_stops_escalation_until_it_expires() {
        let oncall = oncall();
        let mut i = open("2026-03-02T10:00:00Z");
        assert!(i.acknowledge("alice", at("2026-03-02T10:02:00Z"), &oncall, false));
        assert!(
            !i.acknowledge("bob", at("2026-03-02T10:03:00Z"), &oncall, false),
            "once"
        );
        assert_eq!(
            i.due(at("2026-03-02T10:05:00Z")),
            Vec::<u32>::new(),
            "the phone call is cancelled"
        );
        i.advance(at("2026-03-02T10:30:00Z"), &oncall);
        assert_eq!(i.escalation.level, 0, "no escalation while acknowledged");
        i.advance(at("2026-03-02T11:02:00Z"), &oncall);
        assert_eq!(i.status, Status::Triggered, "the acknowledgement ran out");
        assert_eq!(
            &kinds(&i)[3..],
            [EntryKind::AckExpired, EntryKind::Escalated]
        );
        assert_eq!(who(&i, &i.due(at("2026-03-02T11:02:00Z"))), ["alice sms"]);
    }

    #[test]
    fn a_failing_channel_falls_through_and_resolve_tells_who_was_reached() {
        let oncall = oncall();
        let mut i = open("2026-03-02T22:00:00Z");
        let first = i.due(at("2026-03-02T22:00:00Z"))[0];
        i.sending(first);
        i.delivered(
            first,
            Err("connection refused".into()),
            at("2026-03-02T22:00:01Z"),
            &oncall,
        );
        let next = i.due(at("2026-03-02T22:00:01Z"));
        assert_eq!(
            who(&i, &next),
            ["bob email"],
            "falls through to the next contact"
        );
        i.delivered(next[0], Ok(()), at("2026-03-02T22:00:02Z"), &oncall);
        i.retrigger(
            "checkout: 30 errors",
            Severity::Critical,
            at("2026-03-02T22:01:00Z"),
        );
        assert_eq!(
            i.due(at("2026-03-02T22:01:00Z")),
            Vec::<u32>::new(),
            "a repeated trigger pages nobody"
        );
        assert!(i.resolve("klaxon", at("2026-03-02T22:05:00Z")));
        let notices = i.due(at("2026-03-02T22:05:00Z"));
        assert_eq!(who(&i, &notices), ["bob email"]);
        assert_eq!(
            i.notification(notices[0]).unwrap().purpose,
            Purpose::Resolved
        );
        assert_eq!(
            kinds(&i),
            [
                EntryKind::Triggered,
                EntryKind::NobodyOnCall,
                EntryKind::NobodyOnCall,
                EntryKind::Escalated,
                EntryKind::NotifyFailed,
                EntryKind::Notified,
                EntryKind::Repeated,
                EntryKind::Resolved,
            ]
        );
    }

    #[test]
    fn thousands_of_triggers_keep_a_bounded_record() {
        let mut i = open("2026-03-02T10:00:00Z");
        let start = i.timeline.clone();
        let long = "\u{1}".repeat(crate::paging::limits::MAX_SUMMARY_CHARS);
        for n in 0..5000 {
            let now = at("2026-03-02T10:00:00Z") + Duration::seconds(n);
            i.retrigger(&format!("{long}{n}"), Severity::Critical, now);
        }
        assert_eq!(i.triggers, 5001, "the count stays exact");
        assert_eq!(i.timeline.len(), TIMELINE_HEAD + 1 + TIMELINE_TAIL);
        assert_eq!(i.timeline[..start.len()], start[..], "how it began is kept");
        let marker = &i.timeline[TIMELINE_HEAD];
        assert_eq!(marker.kind, EntryKind::Elided);
        let kept = i.timeline.len() - 1;
        let elided = (start.len() as u64 + 5000) - kept as u64;
        assert_eq!(i.elided, elided);
        assert_eq!(
            marker.detail,
            format!("{elided} entries left out, the last at this time")
        );
        let last = i.timeline.last().unwrap();
        assert!(last.detail.starts_with("trigger 5001: now "), "{last:?}");
        assert_eq!(
            last.at,
            at("2026-03-02T10:00:00Z") + Duration::seconds(4999)
        );
        let size = serde_json::to_vec(&i).unwrap().len();
        assert!(size < 256 * 1024, "{size} bytes: far below a record's 1 MB");
        let back: Incident = serde_json::from_slice(&serde_json::to_vec(&i).unwrap()).unwrap();
        assert_eq!(back, i, "the changelog reads it back");
    }

    #[test]
    fn an_uncertain_send_is_sent_again_a_delivered_one_never() {
        let oncall = oncall();
        let mut i = open("2026-03-02T10:00:00Z");
        let sms = i.due(at("2026-03-02T10:00:00Z"))[0];
        i.sending(sms);
        i.delivered(sms, Ok(()), at("2026-03-02T10:00:01Z"), &oncall);
        let phone = i.due(at("2026-03-02T10:05:00Z"))[0];
        i.sending(phone);
        // Crash here; the restarted worker reads the incident back.
        let text = serde_json::to_string(&i).unwrap();
        let mut back: Incident = serde_json::from_str(&text).unwrap();
        back.recover(at("2026-03-02T10:06:00Z"));
        assert_eq!(back.due(at("2026-03-02T10:06:00Z")), [phone]);
        assert_eq!(*kinds(&back).last().unwrap(), EntryKind::DeliveryUncertain);
        assert_eq!(
            back.escalation.next_at,
            Some(at("2026-03-02T10:10:00Z")),
            "timers resume"
        );
    }
}

/// Incidents built from whatever senders put in events stay small records.
#[cfg(test)]
mod bounded {
    use proptest::prelude::*;
    use serde_json::Map;

    use super::*;
    use crate::paging::{
        EventAction, Link, PagingEvent, Payload,
        limits::{MAX_EVENT_BYTES, cap_event},
    };

    /// Text that stresses the cuts: any characters, or only ones JSON
    /// escapes (a control character takes 6 bytes), repeated up to long.
    fn hostile_text() -> impl Strategy<Value = String> {
        (
            prop_oneof!["\\PC{0,8}", "[\\x00-\\x1f\"\\\\]{1,8}"],
            0usize..20_000,
        )
            .prop_map(|(unit, n)| unit.repeat(n))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever a sender puts in an event, the capped event fits one
        /// Events v2 request, capping it again changes nothing, and the
        /// incident it opens is a small record.
        #[test]
        fn capped_events_and_their_incidents_stay_bounded(
            texts in proptest::collection::vec(hostile_text(), 10),
            links in 0usize..40,
        ) {
            let mut custom_details = Map::new();
            custom_details.insert(texts[3].clone(), texts[4].clone().into());
            custom_details.insert("page_user".into(), texts[5].clone().into());
            let mut event = PagingEvent {
                event_action: EventAction::Trigger,
                dedup_key: format!("k{}", texts[0]),
                payload: Some(Payload {
                    summary: texts[1].clone(),
                    source: texts[2].clone(),
                    severity: Severity::Critical,
                    timestamp: String::new(),
                    component: Some(texts[6].clone()),
                    group: None,
                    class: None,
                    custom_details,
                }),
                links: (0..links)
                    .map(|_| Link { href: texts[7].clone(), text: texts[8].clone() })
                    .collect(),
                client: None,
                rule: None,
                labels: [(texts[8].clone(), texts[9].clone()), ("k".into(), texts[9].clone())].into(),
                value: None,
                window: None,
                escalation_policy: None,
                by: Some(texts[9].clone()),
                incident: None,
                until_resolved: false,
            };
            cap_event(&mut event);
            let size = serde_json::to_vec(&event).unwrap().len();
            prop_assert!(size <= MAX_EVENT_BYTES, "{} bytes", size);
            let once = event.clone();
            prop_assert_eq!(cap_event(&mut event), Vec::<&str>::new());
            prop_assert_eq!(&event, &once);

            let payload = event.payload.as_ref().unwrap();
            let opening = Opening {
                dedup_key: event.dedup_key.clone(),
                summary: payload.summary.clone(),
                severity: Severity::Critical,
                source: Some(payload.source.clone()),
                policy: None,
                target: None,
                rule: None,
                labels: Default::default(),
            };
            let mut incident = Incident::open(opening, chrono::Utc::now(), &OnCall::default());
            for _ in 0..200 {
                incident.retrigger(&payload.summary, Severity::Critical, chrono::Utc::now());
            }
            let size = serde_json::to_vec(&incident).unwrap().len();
            prop_assert!(size < 256 * 1024, "{} bytes", size);
        }
    }

    /// What the changelog holds for an incident written before severity
    /// was typed (a string then): it loads, and writes back the same.
    #[test]
    fn an_incident_in_the_old_shape_loads() {
        let old = r#"{"id":"3f2a9c01bd","dedup_key":"errors{service=checkout}","status":"acknowledged","summary":"checkout: 12 errors","severity":"critical","source":"klaxon","policy":"p","opened_at":"2026-03-02T10:00:00Z","acknowledged_by":"alice","resolved_by":null,"triggers":2,"escalation":{"level":0,"cycle":0,"next_at":null,"ack_expires_at":null},"notifications":[{"seq":0,"user":"alice","contact":"sms","kind":"sms","address":"+15550100","purpose":"page","due_at":"2026-03-02T10:00:00Z","state":"delivered"}],"timeline":[{"at":"2026-03-02T10:00:00Z","kind":"triggered","detail":"checkout: 12 errors (critical)"},{"at":"2026-03-02T10:01:00Z","kind":"acknowledged","detail":"by alice"}]}"#;
        let incident: Incident = serde_json::from_str(old).unwrap();
        assert_eq!(incident.severity, Severity::Critical);
        assert_eq!(incident.status, Status::Acknowledged);
        let again: serde_json::Value = serde_json::to_value(&incident).unwrap();
        let before: serde_json::Value = serde_json::from_str(old).unwrap();
        assert_eq!(again, before, "written back in the same shape");
        for s in ["info", "warning", "error", "critical"] {
            let record = old.replace(r#""severity":"critical""#, &format!(r#""severity":"{s}""#));
            let incident: Incident = serde_json::from_str(&record).unwrap();
            assert_eq!(incident.severity.as_str(), s);
        }
    }
}
