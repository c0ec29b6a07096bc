//! An incident as its group's incident (see [`crate::notify::group`]): what
//! its pages say of the group, the updates it sends when the group
//! changes, and staying open while the group fires after its own alert
//! resolved.

use chrono::{DateTime, Utc};

use super::{EntryKind, Incident, Notification, Purpose, Status, std_duration};
use crate::notify::group::{Alerts, Group, MAX_UPDATES};

/// The first instant from `at` on, a whole number of `interval`s after
/// it (at least one), that is not before `now`: changes are told on the
/// group's beat, as Alertmanager flushes a group every `group_interval`,
/// so those that come together are told together.
fn next_tick(
    at: DateTime<Utc>,
    interval: std::time::Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let step = std_duration(interval).num_milliseconds().max(1_000);
    let behind = (now - at).num_milliseconds().max(0);
    // Both are at least 0 and 1000: unsigned ceiling division is exact.
    let ticks = (behind as u64).div_ceil(step as u64).max(1) as i64;
    at + chrono::Duration::milliseconds(ticks.saturating_mul(step))
}

impl Incident {
    /// Leads group `key`, whose other alerts firing are `others` now;
    /// `interval` is its route's `group_interval`. An update is due, on
    /// the group's beat, when its alerts differ from what it last told;
    /// with its own alert resolved and none of the others firing, it
    /// resolves. Taking a group over while acknowledged, it starts from
    /// the group as it is (its changes go on the timeline). True when its
    /// record changed.
    pub fn lead_group(
        &mut self,
        key: String,
        mut others: Alerts,
        now: DateTime<Utc>,
        interval: std::time::Duration,
    ) -> bool {
        let before = self.group.clone();
        let acknowledged = self.status == Status::Acknowledged;
        let group = self
            .group
            .get_or_insert_with(|| Group::new(key.clone(), Alerts::default(), &self.dedup_key));
        if !group.alert_resolved {
            others.insert(&self.dedup_key);
        }
        group.key = key;
        group.firing = others;
        if acknowledged && group.told.is_none() {
            group.told = Some(group.firing.clone());
            group.told_at = Some(now);
        }
        group.due_at = if group.alert_resolved && group.firing.count == 0 {
            Some(now)
        } else {
            match (&group.told, group.told_at) {
                // A beat already due stays due, however late the tick.
                (Some(told), Some(at)) if *told != group.firing => {
                    let from = group.due_at.map_or(now, |due| due.min(now));
                    Some(next_tick(at, interval, from))
                }
                _ => None,
            }
        };
        before != self.group
    }

    /// No longer its group's incident (grouped into another, or muted).
    /// One held open only for its group has nothing left to page for, and
    /// resolves.
    pub fn stop_leading(&mut self, now: DateTime<Utc>) -> bool {
        let Some(group) = self.group.take() else {
            return false;
        };
        if group.alert_resolved {
            self.resolve("klaxon (its alert had resolved; its group moved on)", now);
        }
        true
    }

    /// Its own alert resolved: while others of its group fire, it stays
    /// open for them (true), its timeline says so.
    pub fn hold_for_group(&mut self, now: DateTime<Utc>) -> bool {
        let own = self.dedup_key.clone();
        let Some(group) = self.group.as_mut().filter(|g| g.others() > 0) else {
            return false;
        };
        if group.alert_resolved {
            return true;
        }
        group.alert_resolved = true;
        group.firing.remove(&own);
        let detail = format!(
            "its alert resolved; {} other alerts of group {} still fire: open until they resolve",
            group.firing.count, group.key
        );
        self.log(now, EntryKind::Grouped, detail);
        true
    }

    /// A trigger for an alert whose incident was held open for its group.
    pub(super) fn alert_fires_again(&mut self, now: DateTime<Utc>) {
        let own = self.dedup_key.clone();
        if let Some(group) = self.group.as_mut().filter(|g| g.alert_resolved) {
            group.alert_resolved = false;
            group.firing.insert(&own);
            self.log(now, EntryKind::Grouped, "its alert fires again".to_owned());
        }
    }

    /// A page goes out at `at`, naming the group as it is: it keeps the
    /// group, and its first page is what updates tell changes from (a
    /// later page, to someone else, must not keep them from whoever the
    /// first reached).
    pub(super) fn group_paged(&mut self, at: DateTime<Utc>) {
        if let Some(group) = self.group.as_mut() {
            group.paged = true;
            if group.told.is_none() {
                group.told = Some(group.firing.clone());
                group.told_at = Some(at);
            }
        }
    }

    /// What a notification says besides the incident: a page, the group's
    /// alerts as they are when it is sent; an update, what changed.
    pub fn note(&self, n: &Notification) -> Option<String> {
        match n.purpose {
            Purpose::Page => self.group.as_ref().map(Group::listing),
            Purpose::Update => n.note.clone(),
            Purpose::Resolved => None,
        }
    }

    /// An update due at `now`: whoever a page reached is told what changed,
    /// while nobody has acknowledged; acknowledged, the timeline has it.
    /// Held open for a group that has ended, it resolves.
    pub(super) fn advance_group(&mut self, now: DateTime<Utc>) {
        let open = self.is_open();
        let held = self.pages_held();
        let Some(group) = self.group.as_mut().filter(|_| open) else {
            return;
        };
        if group.due_at.is_none_or(|t| t > now) {
            return;
        }
        group.due_at = None;
        if group.alert_resolved && group.firing.count == 0 {
            self.resolve("klaxon (every alert of its group resolved)", now);
            return;
        }
        let Some(changes) = group.changes() else {
            return;
        };
        group.told = Some(group.firing.clone());
        group.told_at = Some(now);
        let spent = group.updates >= MAX_UPDATES;
        if self.status != Status::Triggered || held || spent {
            let why = match self.status {
                _ if spent => "it sent the most updates an incident sends",
                Status::Triggered => "its pages are held",
                _ => self.status.as_str(),
            };
            self.log(
                now,
                EntryKind::Grouped,
                format!("{changes} (nobody paged: {why})"),
            );
            return;
        }
        let reached = self.reached();
        if let Some(group) = self.group.as_mut().filter(|_| !reached.is_empty()) {
            group.updates += 1;
        }
        let users: Vec<&str> = reached.iter().map(|n| n.user.as_str()).collect();
        let detail = match users.is_empty() {
            true => format!("{changes} (nobody reached yet to tell)"),
            false => format!("{changes}: telling {}", users.join(", ")),
        };
        self.log(now, EntryKind::Grouped, detail);
        for n in reached {
            self.plan(
                &n.user,
                &n.contact,
                n.kind,
                &n.address,
                Purpose::Update,
                now,
            );
            if let Some(update) = self.notifications.last_mut() {
                update.note = Some(changes.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_the_groups_beat() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let told = at("2026-03-02T10:00:00Z");
        let five = std::time::Duration::from_secs(300);
        for (now, due) in [
            ("2026-03-02T10:01:00Z", "2026-03-02T10:05:00Z"),
            ("2026-03-02T10:05:00Z", "2026-03-02T10:05:00Z"),
            ("2026-03-02T10:07:00Z", "2026-03-02T10:10:00Z"),
            ("2026-03-02T11:00:01Z", "2026-03-02T11:05:00Z"),
            ("2026-03-02T09:00:00Z", "2026-03-02T10:05:00Z"),
        ] {
            assert_eq!(next_tick(told, five, at(now)), at(due), "{now}");
        }
    }

    #[test]
    fn a_held_group_incident_counts_its_alert_and_a_resolve_ends_its_timers() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let oncall: crate::notify::oncall::OnCall =
            toml::from_str(&crate::notify::partition::tests::one_user_oncall(
                r#"{ type = "webhook", address = "http://127.0.0.1:1/a" }"#,
            ))
            .unwrap();
        let opening = |key: &str| super::super::Opening {
            dedup_key: key.into(),
            summary: "s".into(),
            severity: crate::paging::Severity::Error,
            source: None,
            policy: None,
            target: None,
            rule: None,
            labels: Default::default(),
        };
        let t0 = at("2026-03-02T10:00:00Z");
        let five = std::time::Duration::from_secs(300);
        let mut i = Incident::opened(opening("a"), t0, &oncall);
        i.lead_group("g".into(), Alerts::new(["b"]), t0, five);
        i.page(t0, &oncall);
        for n in i.due(t0) {
            i.sending(n);
            i.delivered(n, Ok(()), t0, &oncall);
        }
        assert!(i.group.as_ref().unwrap().paged);
        assert_ne!(i.next_wakeup(), Some(t0), "nothing due yet");
        assert!(i.hold_for_group(t0), "b still fires");
        let group = i.group.clone().unwrap();
        assert_eq!((group.firing.count, group.others()), (1, 1));
        // b resolves: the group's incident is due to resolve at once.
        i.lead_group("g".into(), Alerts::default(), t0, five);
        assert_eq!(i.next_wakeup(), Some(t0));
        i.advance(t0, &oncall);
        assert_eq!(i.status, Status::Resolved);
        assert_eq!(
            i.resolved_by.as_deref(),
            Some("klaxon (every alert of its group resolved)")
        );

        // An update pending when a person resolves: no timer is left.
        let mut i = Incident::opened(opening("c"), t0, &oncall);
        i.lead_group("g".into(), Alerts::new(["d"]), t0, five);
        i.page(t0, &oncall);
        for n in i.due(t0) {
            i.sending(n);
            i.delivered(n, Ok(()), t0, &oncall);
        }
        i.lead_group("g".into(), Alerts::new(["d", "e"]), t0, five);
        assert_eq!(
            i.group.as_ref().unwrap().due_at,
            Some(at("2026-03-02T10:05:00Z"))
        );
        i.resolve("alice", t0);
        i.advance(t0, &oncall);
        for n in i.due(t0) {
            i.sending(n);
            i.delivered(n, Ok(()), t0, &oncall);
        }
        assert_eq!(i.next_wakeup(), None, "a closed incident sleeps");
    }
}
