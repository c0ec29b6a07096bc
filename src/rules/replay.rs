//! `klaxon rules test`: replays points from a file through rules, stepping
//! event time window by window, and returns the paging events they would raise.

use arrow::{
    array::{AsArray, RecordBatch},
    datatypes::TimestampMillisecondType,
};
use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::error::DataFusionError;

use super::{
    definition::Rule,
    evaluate::{CompiledRule, render},
    event::{EventAction, Link, PagingEvent, Payload, Window, dedup_key},
    state::{AlertStates, Firing, Transition},
};

/// Replays `points` (one batch, any order) through `rule` and returns its events.
pub async fn replay(
    rule: &CompiledRule,
    points: &RecordBatch,
) -> Result<Vec<PagingEvent>, DataFusionError> {
    let r = &rule.rule;
    let times = points
        .column_by_name("time")
        .map(|c| c.as_primitive::<TimestampMillisecondType>());
    let (Some(min), Some(max)) = (
        times.and_then(|t| t.values().iter().min().copied()),
        times.and_then(|t| t.values().iter().max().copied()),
    ) else {
        return Ok(Vec::new());
    };
    let every = r.every().as_millis() as i64;
    let window = r.window.as_millis() as i64;
    // Run on until every timer a rule has could have expired.
    let settle = [
        r.pending_for,
        r.keep_firing_for,
        r.no_data.as_ref().map(|n| n.after),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.as_millis() as i64)
    .sum::<i64>();
    let first = (min.div_euclid(every) + 1) * every;
    let last = max + window + settle + every;
    let mut states = AlertStates::default();
    let mut events = Vec::new();
    let mut end = first;
    while end <= last {
        let start = end - window;
        let observed = rule
            .evaluate_window(std::slice::from_ref(points), start, end)
            .await?;
        for t in states.advance(r, end, &observed) {
            events.push(to_event(r, &t, start, end));
        }
        end += every;
    }
    Ok(events)
}

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
    }
}
