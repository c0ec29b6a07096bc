//! The rules' side of the paging contract: which [`PagingEvent`] an alert
//! instance's transition becomes. The live engine and `klaxon rules test`
//! both map transitions here, so a dry run shows exactly what would be sent.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{
    definition::Rule,
    evaluate::render,
    state::{Firing, Transition},
};
use crate::paging::{EventAction, Link, PagingEvent, Payload, Window, dedup_key};

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The paging event for a transition of `rule` at the window `[start, end)`.
pub fn to_event(rule: &Rule, transition: &Transition, start: i64, end: i64) -> PagingEvent {
    let (labels, no_data) = match transition {
        Transition::Fire {
            labels, no_data, ..
        }
        | Transition::Resolve {
            labels, no_data, ..
        } => (labels, *no_data),
    };
    let name = if no_data {
        format!("{}:no_data", rule.name)
    } else {
        rule.name.clone()
    };
    let mut all_labels = rule.labels.clone();
    all_labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let window = Window {
        start: rfc3339(start),
        end: rfc3339(end),
    };
    let mut event = PagingEvent {
        event_action: EventAction::Resolve,
        dedup_key: dedup_key(&name, labels),
        payload: None,
        links: Vec::new(),
        client: Some("klaxon".to_owned()),
        rule: Some(rule.name.clone()),
        labels: all_labels.clone(),
        value: None,
        window: Some(window.clone()),
        escalation_policy: rule.escalation_policy.clone(),
        by: None,
        incident: None,
        until_resolved: false,
    };
    match transition {
        Transition::Resolve { value, .. } => event.value = *value,
        Transition::Fire {
            severity,
            value,
            details,
            ..
        } => {
            let value = (!value.is_nan()).then_some(*value);
            let summary = match (&rule.summary, no_data) {
                (Some(t), false) => render(t.get_ref(), &all_labels, value, details),
                (_, true) => format!("{}: no data since the window before {}", name, window.end),
                (None, false) => format!("{} {}", rule.name, dedup_key("", labels)),
            };
            let mut custom = serde_json::Map::new();
            if let Some(v) = value {
                custom.insert("value".into(), v.into());
            }
            for (k, v) in details {
                custom.insert(k.clone(), (*v).into());
            }
            custom.insert("window_start".into(), window.start.clone().into());
            custom.insert("window_end".into(), window.end.clone().into());
            custom.insert("sql".into(), rule.sql.get_ref().trim().into());
            if let Some(d) = &rule.description {
                custom.insert(
                    "description".into(),
                    render(d.get_ref(), &all_labels, value, details).into(),
                );
            }
            event.event_action = EventAction::Trigger;
            event.value = value;
            event.payload = Some(Payload {
                summary,
                source: "klaxon".to_owned(),
                severity: *severity,
                timestamp: window.end.clone(),
                component: all_labels.get("service").cloned(),
                group: all_labels.get("team").cloned(),
                class: Some(rule.name.clone()),
                custom_details: custom,
            });
            event.links = rule
                .runbook
                .iter()
                .map(|href| Link {
                    href: href.clone(),
                    text: "runbook".to_owned(),
                })
                .collect();
        }
    }
    event
}

/// A resolve for an instance of a rule that no longer exists (removed while
/// klaxon was down): only what Events v2 needs to close the incident.
pub fn resolve_orphan(rule: &str, firing: &Firing) -> PagingEvent {
    let name = if firing.no_data {
        format!("{rule}:no_data")
    } else {
        rule.to_owned()
    };
    PagingEvent {
        event_action: EventAction::Resolve,
        dedup_key: dedup_key(&name, &firing.labels),
        payload: None,
        links: Vec::new(),
        client: Some("klaxon".to_owned()),
        rule: Some(rule.to_owned()),
        labels: firing.labels.clone(),
        value: None,
        window: None,
        escalation_policy: None,
        by: None,
        incident: None,
        until_resolved: false,
    }
}
