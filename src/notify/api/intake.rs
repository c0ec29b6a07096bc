//! The intake routes: an Alertmanager webhook (each alert becomes one
//! Events v2 event), one Events v2 event with a bearer credential, and
//! PagerDuty's `/v2/enqueue` shape with the `routing_key` as credential.
//! Bodies are limited (413 beyond); fields over their limits are cut.

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    ApiState, MAX_WEBHOOK_BYTES, Shared,
    auth::{bearer, intake_refused},
    error,
};
use crate::paging::{
    Link, PagingEvent, Payload, Severity,
    limits::{MAX_EVENT_BYTES, cap_event},
    parse_event_value,
};

/// The body, or the answer to one that could not be read (413 past the
/// route's `limit`).
fn read_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Box<Response>> {
    body.map_err(|e| Box::new(body_refused(e.status(), e.body_text(), limit)))
}

fn body_refused(status: StatusCode, text: String, limit: usize) -> Response {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error(
            status,
            format!(
                "the request body is over {} KiB, klaxon's limit for this route",
                limit / 1024
            ),
        )
    } else {
        error(status, text)
    }
}

/// Alertmanager's webhook payload, version 4 (the fields klaxon uses).
#[derive(Debug, Deserialize)]
struct AlertmanagerMessage {
    version: String,
    #[serde(default)]
    alerts: Vec<Alert>,
    #[serde(default, rename = "externalURL")]
    external_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    status: String,
    #[serde(default)]
    labels: serde_json::Map<String, Value>,
    #[serde(default)]
    annotations: serde_json::Map<String, Value>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AlertmanagerQuery {
    policy: Option<String>,
}

/// One Events v2 event per alert: firing → trigger, resolved → resolve,
/// keyed by the alert's fingerprint.
fn from_alertmanager(message: AlertmanagerMessage, policy: Option<String>) -> Vec<PagingEvent> {
    let text = |m: &serde_json::Map<String, Value>, k: &str| {
        m.get(k).and_then(Value::as_str).map(str::to_owned)
    };
    message
        .alerts
        .into_iter()
        .map(|a| {
            let fingerprint = a.fingerprint.clone().unwrap_or_else(|| {
                let digest = Sha256::digest(Value::Object(a.labels.clone()).to_string());
                digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
            });
            let dedup_key = format!("alertmanager/{fingerprint}");
            let by = "alertmanager";
            if a.status != "firing" {
                // Alertmanager saying the alert stopped firing, not a
                // person: counted as a flap where the route detects them.
                return PagingEvent::source_resolve(&dedup_key, by);
            }
            let alertname = text(&a.labels, "alertname").unwrap_or_else(|| "alert".to_owned());
            let severity = match text(&a.labels, "severity").as_deref() {
                Some("critical" | "page") => Severity::Critical,
                Some("error") => Severity::Error,
                Some("warning") => Severity::Warning,
                Some("info" | "none") => Severity::Info,
                _ => Severity::Error,
            };
            let mut details = serde_json::Map::new();
            details.insert("labels".into(), Value::Object(a.labels.clone()));
            details.insert("annotations".into(), Value::Object(a.annotations.clone()));
            if let Some(url) = &message.external_url {
                details.insert("alertmanager".into(), url.clone().into());
            }
            let payload = Payload {
                summary: text(&a.annotations, "summary").unwrap_or_else(|| alertname.clone()),
                source: text(&a.labels, "instance")
                    .or_else(|| text(&a.labels, "job"))
                    .unwrap_or_else(|| "alertmanager".to_owned()),
                severity,
                // Only a real time: the event's schema says date-time.
                timestamp: a
                    .starts_at
                    .clone()
                    .filter(|t| DateTime::parse_from_rfc3339(t).is_ok())
                    .unwrap_or_default(),
                component: text(&a.labels, "service"),
                group: text(&a.labels, "team"),
                class: Some(alertname),
                custom_details: details,
            };
            let mut event = PagingEvent::trigger(&dedup_key, payload, by);
            // The alert's labels, for silences, routes and the lake
            // (Alertmanager's labels are strings; cap_event bounds them).
            event.labels = a
                .labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            event.links = a
                .generator_url
                .iter()
                .map(|href| Link {
                    href: href.clone(),
                    text: "source".to_owned(),
                })
                .collect();
            event.escalation_policy = policy
                .clone()
                .or_else(|| text(&a.labels, "escalation_policy"));
            cap_event(&mut event);
            event
        })
        .collect()
}

pub(super) async fn alertmanager(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<AlertmanagerQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The credential first: a caller without one learns nothing about
    // what klaxon would make of the body.
    if let Some(r) = intake_refused(&s, bearer(&headers)) {
        return r;
    }
    let body = match read_body(body, MAX_WEBHOOK_BYTES) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    // Read whatever the content type says, as Events v2 bodies are read.
    let message: AlertmanagerMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not an Alertmanager webhook (version 4): {e}"),
            );
        }
    };
    if message.version != "4" {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "Alertmanager webhook version {:?}; klaxon takes version 4",
                message.version
            ),
        );
    }
    let events = from_alertmanager(message, q.policy);
    match s.paging.publish(&events).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({ "events": events.len() })),
        )
            .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The answer to an Events v2 body that is not JSON: the sender's error.
fn not_json(e: serde_json::Error) -> Response {
    error(StatusCode::BAD_REQUEST, format!("invalid_json: {e}"))
}

/// Gives a trigger without `dedup_key` one, as PagerDuty does; the reply
/// returns it so the sender can acknowledge or resolve later. A UUIDv7 in
/// PagerDuty's 32-hex form: unique, so two such triggers are two incidents
/// as at PagerDuty (a hash of the body would merge repeats PagerDuty keeps
/// apart), and time-ordered, so the keys sort by arrival in listings.
/// Acknowledge and resolve still need the key: they have nothing to act on
/// without one.
fn fill_dedup_key(event: &mut Value) {
    let is_trigger = event.get("event_action").and_then(Value::as_str) == Some("trigger");
    let missing = event
        .get("dedup_key")
        .is_none_or(|k| k.is_null() || k.as_str() == Some(""));
    if let (true, true, Some(fields)) = (is_trigger, missing, event.as_object_mut()) {
        let key = uuid::Uuid::now_v7().simple().to_string();
        fields.insert("dedup_key".into(), key.into());
    }
}

/// Validates one Events v2 event as the notifier would, cutting fields over
/// their limits, then enqueues it. The reply lists the fields cut.
async fn enqueue_event(s: &ApiState, mut event: Value) -> Response {
    fill_dedup_key(&mut event);
    let (event, cut) = match parse_event_value(event) {
        Ok(parsed) => parsed,
        Err((reason, detail)) => {
            return error(StatusCode::BAD_REQUEST, format!("{reason}: {detail}"));
        }
    };
    match s.paging.publish(std::slice::from_ref(&event)).await {
        Ok(()) => {
            let mut reply = json!({ "status": "success", "message": "Event processed", "dedup_key": event.dedup_key });
            if !cut.is_empty() {
                reply["message"] = "Event processed; fields over klaxon's limits were cut".into();
                reply["truncated"] = json!(cut);
            }
            (StatusCode::ACCEPTED, Json(reply)).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub(super) async fn events(
    State(s): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(r) = intake_refused(&s, bearer(&headers)) {
        return r;
    }
    let body = match read_body(body, MAX_EVENT_BYTES) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    match serde_json::from_slice(&body) {
        Ok(event) => enqueue_event(&s, event).await,
        Err(e) => not_json(e),
    }
}

/// PagerDuty's Events v2 endpoint shape: the routing key is the credential.
pub(super) async fn enqueue(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match read_body(body, MAX_EVENT_BYTES) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    // The credential is inside the body, so a body that is not JSON has
    // none to check: that is the sender's malformed request (400, as
    // PagerDuty answers), not a wrong key.
    let event: Value = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => return not_json(e),
    };
    if let Some(r) = intake_refused(&s, event.get("routing_key").and_then(Value::as_str)) {
        return r;
    }
    enqueue_event(&s, event).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trigger_without_dedup_key_gets_one() {
        let mut a = json!({ "event_action": "trigger", "payload": {} });
        let mut b = json!({ "event_action": "trigger", "dedup_key": "" });
        fill_dedup_key(&mut a);
        fill_dedup_key(&mut b);
        let (a, b) = (
            a["dedup_key"].as_str().unwrap(),
            b["dedup_key"].as_str().unwrap(),
        );
        assert_eq!(a.len(), 32, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b, "two triggers, two incidents");
        let mut kept = json!({ "event_action": "trigger", "dedup_key": "mine" });
        fill_dedup_key(&mut kept);
        assert_eq!(kept["dedup_key"], "mine");
        for action in ["acknowledge", "resolve"] {
            let mut event = json!({ "event_action": action });
            fill_dedup_key(&mut event);
            assert_eq!(
                event.get("dedup_key"),
                None,
                "{action} names what it acts on"
            );
        }
    }

    #[test]
    fn alertmanager_alerts_become_events_v2() {
        let message: AlertmanagerMessage = serde_json::from_value(json!({
            "version": "4", "status": "firing", "receiver": "klaxon", "groupKey": "{}:{}",
            "externalURL": "http://am:9093",
            "alerts": [
                { "status": "firing", "fingerprint": "abc",
                  "labels": { "alertname": "HighLatency", "severity": "warning", "instance": "web-1", "service": "checkout" },
                  "annotations": { "summary": "p99 over 2s" },
                  "startsAt": "2026-11-25T10:00:00Z", "generatorURL": "http://prom/graph" },
                { "status": "resolved", "fingerprint": "def", "labels": { "alertname": "Down" } }
            ]
        }))
        .unwrap();
        let events = from_alertmanager(message, Some("payments".into()));
        assert_eq!(events.len(), 2);
        let fire = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(fire["event_action"], "trigger");
        assert_eq!(fire["dedup_key"], "alertmanager/abc");
        assert_eq!(fire["payload"]["summary"], "p99 over 2s");
        assert_eq!(fire["payload"]["severity"], "warning");
        assert_eq!(fire["payload"]["source"], "web-1");
        assert_eq!(fire["payload"]["component"], "checkout");
        assert_eq!(fire["escalation_policy"], "payments");
        assert_eq!(fire["links"][0]["href"], "http://prom/graph");
        // Its labels travel with it, so a silence on service=checkout or a
        // route on alertname matches it.
        assert_eq!(fire["labels"]["service"], "checkout");
        assert_eq!(fire["labels"]["alertname"], "HighLatency");
        assert_eq!(events[0].labels.len(), 4);
        let schema: Value =
            serde_json::from_str(include_str!("../../../schemas/paging-event.schema.json"))
                .unwrap();
        assert!(jsonschema::is_valid(&schema, &fire), "{fire}");
        let resolve = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], "alertmanager/def");
        assert_eq!(resolve["client"], "alertmanager");
        assert!(events[1].by.is_none(), "not a person's resolve");
    }
}
