//! The incidents of one paging partition and how an event changes them:
//! one open incident per dedup_key. Pure code; time is passed in. The
//! notifier's loop ([`super::worker`]) owns one per assigned partition.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    incident::{Incident, Opening},
    oncall::OnCall,
    route::{Flap, MAX_FLAP_WINDOW},
    silence::{Mutes, SilenceState, alert_labels},
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
                match (flap, incident.flapping.is_some()) {
                    (Some(flap), true) => incident.flapped(now, &flap, true),
                    _ => incident.retrigger(&payload.summary, payload.severity, now),
                }
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
                let mutes = Mutes {
                    silences,
                    maintenance: &oncall.maintenance,
                };
                let mute = incident
                    .can_be_silenced()
                    .then(|| mutes.matching(&labels, now))
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
                let pause = route.and_then(|r| r.pause.map(|p| (r.id.as_str(), p)));
                match (mute, flap.filter(|_| flaps), pause) {
                    (Some(m), flapping, _) => {
                        incident.silence(now, &m.id, m.why, &m.by);
                        if let Some(flap) = flapping {
                            incident.start_flapping(now, &flap, true);
                        }
                    }
                    (None, Some(flap), _) => incident.start_flapping(now, &flap, true),
                    (None, None, Some((route, pause))) => incident.pause(now, route, pause),
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
                    if incident.flapping.is_some() {
                        incident.flapped(now, &flap, false);
                        return Some(id);
                    }
                    if incident.note_change(now, &flap) {
                        incident.start_flapping(now, &flap, false);
                        return Some(id);
                    }
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
    fn forget_closed(&mut self, dedup_key: &str) {
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
    ) -> Vec<(String, Option<String>)> {
        let mutes = Mutes {
            silences,
            maintenance: &oncall.maintenance,
        };
        let mut changed = Vec::new();
        for id in self.open.values() {
            let Some(incident) = self.incidents.get_mut(id) else {
                continue;
            };
            if !incident.can_be_silenced() {
                continue;
            }
            let labels = alert_labels(incident);
            if let Some(current) = &incident.silenced_by
                && mutes.holds(current, &labels, now)
            {
                continue;
            }
            match (mutes.matching(&labels, now), incident.silenced_by.clone()) {
                (None, None) => continue,
                (Some(m), _) => incident.silence(now, &m.id, m.why, &m.by),
                (None, Some(current)) => incident.unsilence(now, mutes.ending(&current), oncall),
            }
            changed.push((id.clone(), incident.silenced_by.clone()));
        }
        changed
    }
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
            .apply(&trigger, at("2026-03-02T10:00:00Z"), &oncall, &none)
            .unwrap();
        let resolve = PagingEvent::resolve("k", "someone", "test");
        state.apply(&resolve, at("2026-03-02T10:01:00Z"), &oncall, &none);
        let second = state
            .apply(&trigger, at("2026-03-02T10:02:00Z"), &oncall, &none)
            .unwrap();
        assert_ne!(first, second);

        let stale = for_incident(EventAction::Acknowledge, &first);
        assert_eq!(
            state.apply(&stale, at("2026-03-02T10:03:00Z"), &oncall, &none),
            None
        );
        let stale = for_incident(EventAction::Resolve, &first);
        assert_eq!(
            state.apply(&stale, at("2026-03-02T10:03:00Z"), &oncall, &none),
            None
        );
        assert_eq!(state.incidents[&second].status, Status::Triggered);
        let ack = for_incident(EventAction::Acknowledge, &second);
        assert_eq!(
            state.apply(&ack, at("2026-03-02T10:04:00Z"), &oncall, &none),
            Some(second.clone())
        );
        assert_eq!(state.incidents[&second].status, Status::Acknowledged);
    }
}
