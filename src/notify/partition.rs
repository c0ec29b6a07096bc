//! The incidents of one paging partition and how an event changes them:
//! one open incident per dedup_key. Pure code; time is passed in. The
//! notifier's loop ([`super::worker`]) owns one per assigned partition.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    group::{GROUPED_PREFIX, Group, group_key},
    incident::{Incident, Opening},
    inhibit::Firing,
    oncall::OnCall,
    route::{Flap, MAX_FLAP_WINDOW},
    silence::{Mutes, SilenceState, UNKNOWN_SILENCE_GRACE, alert_labels},
};
use crate::paging::{EventAction, PagingEvent};

/// The incidents of one paging partition.
#[derive(Debug, Default)]
pub(super) struct PartitionState {
    pub(super) incidents: HashMap<String, Incident>,
    /// Open incident per dedup_key.
    pub(super) open: HashMap<String, String>,
    /// Paging events before this offset are already applied.
    pub(super) position: i64,
    /// The changes of each alert's last closed incident, for flap
    /// detection across incidents (see [`super::route::Flap`]).
    pub(super) changes: HashMap<String, Vec<DateTime<Utc>>>,
}

impl PartitionState {
    /// Applies an event at `now`; returns the incident it changed. An
    /// acknowledge or resolve that names its incident acts on that one
    /// only: when it is closed, a later incident opened under the same
    /// dedup_key is left alone.
    pub(super) fn apply(
        &mut self,
        event: &PagingEvent,
        now: DateTime<Utc>,
        oncall: &OnCall,
        silences: &SilenceState,
        firing: &Firing,
    ) -> Option<String> {
        let by = event.by.clone().unwrap_or_else(|| {
            event
                .client
                .clone()
                .unwrap_or_else(|| "events api".to_owned())
        });
        self.forget_closed(&event.dedup_key);
        let open = self
            .open
            .get(&event.dedup_key)
            .filter(|open| match (event.event_action, &event.incident) {
                (EventAction::Acknowledge | EventAction::Resolve, Some(named)) => *open == named,
                _ => true,
            })
            .cloned();
        match (event.event_action, open) {
            (EventAction::Trigger, Some(id)) => {
                let payload = event.payload.as_ref()?;
                let incident = self.incidents.get_mut(&id)?;
                let flap = flap_of(incident, oncall);
                // A trigger while it flaps resolved is a flip; one while it
                // already fires (a source repeating itself) is not, and
                // must not put its settling off.
                match (flap, incident.flapping) {
                    (Some(flap), Some(f)) if !f.firing => {
                        incident.retrigger(&payload.summary, payload.severity, now);
                        incident.flapped(now, &flap, true);
                    }
                    _ => incident.retrigger(&payload.summary, payload.severity, now),
                }
                // Its severity may have changed what silences it.
                let mutes = Mutes::new(silences, oncall, firing);
                apply_mutes(incident, &mutes, now, oncall);
                Some(id)
            }
            (EventAction::Trigger, None) => {
                let mut incident = Incident::opened(Opening::of(event)?, now, oncall);
                let labels = alert_labels(&incident);
                // A manual page is someone asking for help: no route, no mute.
                let route = incident
                    .can_be_silenced()
                    .then(|| oncall.route_for(&labels))
                    .flatten();
                if let Some(route) = route {
                    incident.route = Some(route.id.clone());
                    if event.escalation_policy.is_none() && route.policy.is_some() {
                        incident.policy = route.policy.clone();
                    }
                }
                let mutes = Mutes::new(silences, oncall, firing);
                let group = route.and_then(|r| group_key(r, &labels, incident.policy.as_deref()));
                let mute = incident
                    .can_be_silenced()
                    .then(|| {
                        mutes.matching(&labels, now).or_else(|| {
                            group
                                .as_deref()
                                .and_then(|key| mutes.grouped(key, &incident))
                        })
                    })
                    .flatten();
                // The alert's changes go on from its last incident.
                let flap = route.and_then(|r| r.flap);
                let flaps = match (flap, self.changes.remove(&event.dedup_key)) {
                    (Some(flap), history) => {
                        incident.changes = history.unwrap_or_default();
                        incident.note_change(now, &flap)
                    }
                    (None, _) => false,
                };
                // A route's pause, or an inhibition's wait (a source just
                // behind this alert still inhibits it), the longer one.
                let route_pause =
                    route.and_then(|r| r.pause.map(|p| (format!("route {}", r.id), p)));
                // Its group's incident: the first page waits for the rest.
                let group_wait = match (route, group) {
                    (Some(r), Some(key)) if mute.is_none() => {
                        let others = firing.groups.firing(&key, &incident.dedup_key);
                        incident.group = Some(Group::new(key, others, &incident.dedup_key));
                        Some((format!("group_wait of route {}", r.id), r.group_wait()))
                    }
                    _ => None,
                };
                let inhibit_wait = oncall
                    .inhibit
                    .iter()
                    .map(toml::Spanned::get_ref)
                    .filter(|i| incident.can_be_silenced() && i.could_mute(&labels))
                    .filter_map(|i| i.wait.map(|w| (format!("inhibit {}", i.id), w)))
                    .max_by_key(|(_, w)| *w);
                let pause = [route_pause, inhibit_wait, group_wait]
                    .into_iter()
                    .flatten()
                    .max_by_key(|(_, w)| *w);
                match (mute, flap.filter(|_| flaps), pause) {
                    (Some(m), flapping, _) => {
                        incident.silence(now, &m.id, m.why, &m.by);
                        if let Some(flap) = flapping {
                            incident.start_flapping(now, &flap, true);
                        }
                    }
                    (None, Some(flap), _) => incident.start_flapping(now, &flap, true),
                    (None, None, Some((by, pause))) => incident.pause(now, &by, pause),
                    (None, None, None) => incident.page(now, oncall),
                }
                tracing::info!(incident = %incident.id, dedup_key = %incident.dedup_key, "incident opened");
                metrics::counter!("klaxon_notify_incidents_opened_total").increment(1);
                let id = incident.id.clone();
                self.open.insert(event.dedup_key.clone(), id.clone());
                self.incidents.insert(id.clone(), incident);
                Some(id)
            }
            (EventAction::Acknowledge, Some(id)) => {
                let incident = self.incidents.get_mut(&id)?;
                incident
                    .acknowledge(&by, now, oncall, event.until_resolved)
                    .then_some(id)
            }
            (EventAction::Resolve, Some(id)) => {
                let incident = self.incidents.get_mut(&id)?;
                // A resolve sent by a person is never a flap.
                if event.by.is_none()
                    && let Some(flap) = flap_of(incident, oncall)
                {
                    match incident.flapping {
                        Some(f) if f.firing => {
                            incident.flapped(now, &flap, false);
                            return Some(id);
                        }
                        // Resolved again while it flaps resolved: nothing new.
                        Some(_) => return None,
                        None => {}
                    }
                    if incident.note_change(now, &flap) {
                        incident.start_flapping(now, &flap, false);
                        return Some(id);
                    }
                }
                // The group's incident stays open while its group fires.
                if event.by.is_none() && incident.hold_for_group(now) {
                    return Some(id);
                }
                self.open.remove(&event.dedup_key);
                self.changes
                    .insert(event.dedup_key.clone(), incident.changes.clone());
                incident.resolve(&by, now).then_some(id)
            }
            (action, None) => {
                tracing::info!(dedup_key = %event.dedup_key, incident = ?event.incident, action = action.as_str(), "no open incident; event ignored");
                None
            }
        }
    }

    /// Forgets the changes of alerts quiet for longer than any route's
    /// flap window.
    pub(super) fn forget_old_changes(&mut self, now: DateTime<Utc>) {
        let since = now - chrono::Duration::from_std(MAX_FLAP_WINDOW).expect("a day fits");
        self.changes
            .retain(|_, changes| changes.last().is_some_and(|t| *t > since));
    }

    /// Drops the open entry of `dedup_key` if its incident closed by
    /// itself (its flapping settled resolved), keeping its changes.
    pub(super) fn forget_closed(&mut self, dedup_key: &str) {
        let Some(id) = self.open.get(dedup_key) else {
            return;
        };
        match self.incidents.get(id) {
            Some(incident) if incident.is_open() => {}
            Some(incident) => {
                self.changes
                    .insert(dedup_key.to_owned(), incident.changes.clone());
                self.open.remove(dedup_key);
            }
            None => {
                self.open.remove(dedup_key);
            }
        }
    }

    /// Brings every open incident in line with the silences and the
    /// maintenance windows at `now`: one that something mutes is silenced
    /// (or moves to another mute when its own ended), one whose mute ended
    /// is released and pages. Returns the incidents changed, each with the
    /// mute it is under.
    pub(super) fn apply_silences(
        &mut self,
        now: DateTime<Utc>,
        oncall: &OnCall,
        silences: &SilenceState,
        firing: &Firing,
    ) -> Vec<(String, Option<String>)> {
        let mutes = Mutes::new(silences, oncall, firing);
        let mut changed = Vec::new();
        let mut closed = Vec::new();
        for id in self.open.values() {
            let Some(incident) = self.incidents.get_mut(id) else {
                continue;
            };
            if apply_mutes(incident, &mutes, now, oncall) {
                changed.push((id.clone(), incident.silenced_by.clone()));
            }
            if !incident.is_open() {
                closed.push(incident.dedup_key.clone());
            }
        }
        for dedup_key in closed {
            self.forget_closed(&dedup_key);
        }
        changed
    }
}

/// Brings one incident in line with the mutes at `now`; true if it changed.
/// A silence this member does not know yet (none read so far, or one made
/// within [`UNKNOWN_SILENCE_GRACE`]) keeps the incident silenced: a silence
/// is never lifted for want of reading it.
fn apply_mutes(
    incident: &mut Incident,
    mutes: &Mutes,
    now: DateTime<Utc>,
    oncall: &OnCall,
) -> bool {
    if !incident.can_be_silenced() {
        return false;
    }
    let labels = alert_labels(incident);
    let route = incident.route.as_deref().and_then(|r| oncall.route(r));
    let policy = incident.policy.as_deref();
    let group = route.and_then(|r| Some((r, group_key(r, &labels, policy)?)));
    let grouped = group
        .as_ref()
        .and_then(|(_, key)| mutes.grouped(key, incident));
    let matching = mutes.matching(&labels, now);
    if let Some(current) = &incident.silenced_by {
        let keep = if current.starts_with(GROUPED_PREFIX) {
            // Until the view of every partition is read (for a while),
            // the group it was put in stands.
            let unread = !mutes.firing.loaded && !mutes.firing.overdue;
            matching.is_none() && (unread || grouped.as_ref().is_some_and(|m| m.id == *current))
        } else {
            match mutes.holds(current, &labels, now) {
                Some(holds) => holds,
                None => {
                    !mutes.silences.loaded
                        || incident
                            .silenced_at()
                            .is_some_and(|at| now - at < UNKNOWN_SILENCE_GRACE)
                }
            }
        };
        if keep {
            return false;
        }
    }
    let mute = matching.or(grouped);
    // Nothing mutes it: it is its group's incident (told of the group
    // before a release pages it); muted, it is not.
    let mut changed = match (&mute, group) {
        (Some(_), _) => incident.stop_leading(now),
        (None, Some((route, key))) if mutes.firing.loaded => {
            let others = mutes.firing.groups.firing(&key, &incident.dedup_key);
            incident.lead_group(key, others, now, route.group_interval())
        }
        // Its route no longer groups (the on-call file changed).
        (None, None) => incident.stop_leading(now),
        (None, Some(_)) => false,
    };
    match (mute, incident.silenced_by.clone()) {
        (None, None) => {}
        (Some(_), _) if !incident.is_open() => {}
        (Some(m), _) => {
            incident.silence(now, &m.id, m.why, &m.by);
            changed = true;
        }
        (None, Some(current)) => {
            incident.unsilence(now, mutes.ending(&current), oncall);
            changed = true;
        }
    }
    changed
}

/// The flap detection of an incident's route, if it has one.
fn flap_of(incident: &Incident, oncall: &OnCall) -> Option<Flap> {
    incident
        .route
        .as_deref()
        .and_then(|r| oncall.route(r))
        .and_then(|r| r.flap)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{notify::Status, paging::parse_event};

    /// One user `a`, reached by `contact`, under the default policy `p`.
    pub(in crate::notify) fn one_user_oncall(contact: &str) -> String {
        format!(
            r#"
default_policy = "p"
[[user]]
id = "a"
contact = [{contact}]
[[policy]]
id = "p"
[[policy.level]]
targets = [{{ user = "a" }}]
delay = "5m"
"#
        )
    }

    #[test]
    fn an_ack_for_a_closed_incident_leaves_the_next_one_alone() {
        let oncall: OnCall = toml::from_str(&one_user_oncall(
            r#"{ type = "webhook", address = "http://127.0.0.1:1/a" }"#,
        ))
        .unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let trigger = parse_event(
            br#"{"event_action":"trigger","dedup_key":"k","payload":{"summary":"s","source":"x","severity":"critical"}}"#,
        )
        .unwrap()
        .0;
        let for_incident = |action, id: &str| {
            PagingEvent::by_person(action, "k", "someone", "test").for_incident(id)
        };
        let none = SilenceState::default();
        let mut state = PartitionState::default();
        let first = state
            .apply(
                &trigger,
                at("2026-03-02T10:00:00Z"),
                &oncall,
                &none,
                &Firing::default(),
            )
            .unwrap();
        let resolve = PagingEvent::resolve("k", "someone", "test");
        state.apply(
            &resolve,
            at("2026-03-02T10:01:00Z"),
            &oncall,
            &none,
            &Firing::default(),
        );
        let second = state
            .apply(
                &trigger,
                at("2026-03-02T10:02:00Z"),
                &oncall,
                &none,
                &Firing::default(),
            )
            .unwrap();
        assert_ne!(first, second);

        let stale = for_incident(EventAction::Acknowledge, &first);
        assert_eq!(
            state.apply(
                &stale,
                at("2026-03-02T10:03:00Z"),
                &oncall,
                &none,
                &Firing::default()
            ),
            None
        );
        let stale = for_incident(EventAction::Resolve, &first);
        assert_eq!(
            state.apply(
                &stale,
                at("2026-03-02T10:03:00Z"),
                &oncall,
                &none,
                &Firing::default()
            ),
            None
        );
        assert_eq!(state.incidents[&second].status, Status::Triggered);
        let ack = for_incident(EventAction::Acknowledge, &second);
        assert_eq!(
            state.apply(
                &ack,
                at("2026-03-02T10:04:00Z"),
                &oncall,
                &none,
                &Firing::default()
            ),
            Some(second.clone())
        );
        assert_eq!(state.incidents[&second].status, Status::Acknowledged);
    }

    fn event(dedup_key: &str, service: &str, severity: &str) -> PagingEvent {
        let text = format!(
            r#"{{"event_action":"trigger","dedup_key":"{dedup_key}","labels":{{"service":"{service}"}},"payload":{{"summary":"s","source":"x","severity":"{severity}"}}}}"#
        );
        parse_event(text.as_bytes()).unwrap().0
    }

    fn loaded(silences: &[crate::notify::silence::Silence]) -> SilenceState {
        SilenceState {
            silences: silences.iter().map(|s| (s.id.clone(), s.clone())).collect(),
            loaded: true,
            ..SilenceState::default()
        }
    }

    #[test]
    fn what_a_silence_holds_back_is_not_sent_by_another_way() {
        use crate::notify::{
            incident::Delivery,
            silence::tests::{at, silence},
        };
        let oncall: OnCall = toml::from_str(&one_user_oncall(
            r#"{ type = "webhook", address = "http://127.0.0.1:1/a" }, { type = "webhook", id = "b", address = "http://127.0.0.1:1/b" }"#,
        ))
        .unwrap();
        let none = loaded(&[]);
        let api = loaded(&[silence(
            "s1",
            &["service=api"],
            "2026-03-02T10:00:30Z",
            "2026-03-02T12:00:00Z",
        )]);
        let mut state = PartitionState::default();
        let (t0, t1) = (at("2026-03-02T10:00:00Z"), at("2026-03-02T10:01:00Z"));
        let failing = state
            .apply(
                &event("a", "api", "critical"),
                t0,
                &oncall,
                &none,
                &Firing::default(),
            )
            .unwrap();
        let uncertain = state
            .apply(
                &event("b", "api", "critical"),
                t0,
                &oncall,
                &none,
                &Firing::default(),
            )
            .unwrap();
        let mut sending = Vec::new();
        for id in [&failing, &uncertain] {
            let incident = state.incidents.get_mut(id).unwrap();
            let seq = incident.due(t0)[0];
            incident.sending(seq);
            sending.push(seq);
        }
        // The silence arrives while both first pages are under way.
        assert_eq!(
            state
                .apply_silences(t1, &oncall, &api, &Firing::default())
                .len(),
            2
        );
        // A failed page does not fall through to the next contact...
        let incident = state.incidents.get_mut(&failing).unwrap();
        incident.delivered(sending[0], Err("refused".into()), t1, &oncall);
        assert!(incident.due(t1 + chrono::Duration::hours(1)).is_empty());
        assert_eq!(incident.next_wakeup(), None);
        // ...and a send left uncertain by a crash is not made again.
        let incident = state.incidents.get_mut(&uncertain).unwrap();
        assert!(incident.recover(t1));
        assert_eq!(
            incident.notification(sending[1]).unwrap().state,
            Delivery::Cancelled
        );
        assert!(incident.due(t1 + chrono::Duration::hours(1)).is_empty());
    }

    #[test]
    fn a_silence_not_read_yet_is_not_lifted_and_a_new_severity_is_checked() {
        use crate::notify::silence::tests::{at, silence};
        let oncall: OnCall = toml::from_str(&one_user_oncall(
            r#"{ type = "webhook", address = "http://127.0.0.1:1/a" }"#,
        ))
        .unwrap();
        let api = loaded(&[silence(
            "s1",
            &["service=api"],
            "2026-03-02T10:00:00Z",
            "2026-03-02T12:00:00Z",
        )]);
        let mut state = PartitionState::default();
        let id = state
            .apply(
                &event("a", "api", "critical"),
                at("2026-03-02T10:00:00Z"),
                &oncall,
                &api,
                &Firing::default(),
            )
            .unwrap();
        let silenced = |state: &PartitionState| state.incidents[&id].silenced_by.clone();
        assert_eq!(silenced(&state).as_deref(), Some("s1"));
        // Nothing read yet (the first read failed): s1 holds.
        let unread = SilenceState::default();
        assert!(
            state
                .apply_silences(
                    at("2026-03-02T10:30:00Z"),
                    &oncall,
                    &unread,
                    &Firing::default()
                )
                .is_empty()
        );
        // Read, but without s1: within the grace it may be a silence made
        // an instant ago elsewhere; past it, it is gone, and the alert pages.
        let without = loaded(&[]);
        assert!(
            state
                .apply_silences(
                    at("2026-03-02T10:00:20Z"),
                    &oncall,
                    &without,
                    &Firing::default()
                )
                .is_empty()
        );
        assert_eq!(
            state
                .apply_silences(
                    at("2026-03-02T10:00:40Z"),
                    &oncall,
                    &without,
                    &Firing::default()
                )
                .len(),
            1
        );
        assert_eq!(silenced(&state), None);
        assert!(
            state.incidents[&id]
                .timeline
                .iter()
                .any(|e| e.detail == "silence s1 was deleted: paging")
        );

        // A retrigger that raises the severity is checked again.
        let critical = loaded(&[silence(
            "crit",
            &["service=web", "severity=critical"],
            "2026-03-02T10:00:00Z",
            "2026-03-02T12:00:00Z",
        )]);
        let web = state
            .apply(
                &event("w", "web", "warning"),
                at("2026-03-02T10:01:00Z"),
                &oncall,
                &critical,
                &Firing::default(),
            )
            .unwrap();
        assert_eq!(state.incidents[&web].silenced_by, None);
        state.apply(
            &event("w", "web", "critical"),
            at("2026-03-02T10:02:00Z"),
            &oncall,
            &critical,
            &Firing::default(),
        );
        assert_eq!(state.incidents[&web].silenced_by.as_deref(), Some("crit"));
    }
}
