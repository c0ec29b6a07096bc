//! The notifier's HTTP API, served by `klaxon notify` beside `/metrics`.
//!
//! With a bearer token (`notify.api_token`, `KLAXON_API_TOKEN`):
//! - `GET /api/v1/incidents[?status=open|triggered|acknowledged|resolved]`
//! - `GET /api/v1/incidents/{id}` (id or dedup_key), with its timeline
//! - `POST /api/v1/incidents/{id}/ack`, `POST /api/v1/incidents/{id}/resolve`
//!   (`{"by": "name"}` optional)
//! - `GET /api/v1/oncall[?schedule=S&at=RFC3339]`
//! - `POST /api/v1/alertmanager[?policy=P]`: an Alertmanager webhook (v4)
//! - `POST /api/v1/events`: one Events v2 event
//!
//! `POST /v2/enqueue` takes Events v2 as PagerDuty does, authorised by
//! `routing_key`, so Events v2 senders need only a new URL.
//!
//! Senders get integration keys (`notify.integration_keys`, one per
//! integration, as PagerDuty has): one is accepted where the token is on the
//! three intake routes (`/v2/enqueue` as `routing_key`, `/api/v1/events` and
//! `/api/v1/alertmanager` as bearer token) and refused (403) everywhere
//! else, so a sender cannot list, acknowledge or resolve incidents, nor read
//! who is on call. Intake bodies are limited (see [`crate::paging::limits`]): 413
//! beyond, and fields over their limits are cut, which the reply lists.
//!
//! `GET /ack/{id}?expires=..&sig=..` is the signed link in messages: it
//! shows a page whose button POSTs the same URL, which acknowledges that
//! incident, never a later one with the same dedup_key; the page says when
//! it is already acknowledged or resolved. A GET alone never acknowledges,
//! since link unfurlers and mail scanners fetch links.
//!
//! Acknowledgements and resolves go to the paging topic like every other
//! event; reads come from the incidents changelog.

use std::{path::PathBuf, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    client::{self, ClientError},
    incident::Status,
    links::AckLinks,
    oncall_file::LoadedOnCall,
    queries::{self, NoAnswer},
    schedule::check_instant,
};
use crate::{
    config::{Config, Secret},
    paging::{
        EventAction, Link, PagingEvent, Payload, Severity,
        limits::{MAX_EVENT_BYTES, cap_event},
        parse_event_value,
    },
};

/// An Alertmanager webhook request: it carries a group of alerts, each of
/// which becomes one event.
pub const MAX_WEBHOOK_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug)]
struct ApiState {
    config: Config,
    token: Option<Secret>,
    /// Intake-only credentials, by integration name.
    integration_keys: Vec<(String, Secret)>,
    links: Option<AckLinks>,
    oncall: Option<PathBuf>,
}

type Shared = State<Arc<ApiState>>;

/// The API's routes; merge them into the HTTP server.
pub fn router(config: &Config) -> Router {
    let n = &config.notify;
    let links = match (&n.public_url, &n.signing_key) {
        (Some(url), Some(key)) => Some(AckLinks::new(url, key.as_bytes(), n.ack_link_ttl)),
        _ => None,
    };
    let state = Arc::new(ApiState {
        token: n.api_token.clone(),
        integration_keys: n
            .integration_keys
            .iter()
            .map(|(name, key)| (name.clone(), key.clone()))
            .collect(),
        links,
        oncall: n.oncall.clone(),
        config: config.clone(),
    });
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/{id}", get(show))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/incidents/{id}/resolve", post(resolve))
        .route("/api/v1/oncall", get(oncall))
        .route(
            "/api/v1/alertmanager",
            post(alertmanager).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .route(
            "/api/v1/events",
            post(events).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
        )
        .route(
            "/v2/enqueue",
            post(enqueue).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
        )
        .route("/ack/{id}", get(ack_page).post(ack_link))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn client_error(e: ClientError) -> Response {
    match e {
        ClientError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        ClientError::Kafka(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Whom a credential names.
#[derive(Debug, PartialEq)]
enum Caller {
    /// The API token: every route.
    Operator,
    /// An integration key, by name: the intake routes only.
    Integration(String),
}

/// The caller `given` names, if any; compared with every credential.
fn caller(state: &ApiState, given: &str) -> Option<Caller> {
    let mut found = state
        .token
        .as_ref()
        .is_some_and(|t| constant_time_eq(given.as_bytes(), t.as_bytes()))
        .then_some(Caller::Operator);
    for (name, key) in &state.integration_keys {
        if constant_time_eq(given.as_bytes(), key.as_bytes()) && found.is_none() {
            found = Some(Caller::Integration(name.clone()));
        }
    }
    found
}

/// The token of an `Authorization: Bearer …` header. The scheme is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` count too.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Checks the bearer token of a route that reads or changes incidents;
/// `Some` is the refusal to send.
fn refused(state: &ApiState, headers: &HeaderMap) -> Option<Response> {
    if state.token.is_none() {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the API is off: set notify.api_token (or KLAXON_API_TOKEN)",
        ));
    }
    match bearer(headers).and_then(|g| caller(state, g)) {
        Some(Caller::Operator) => None,
        Some(Caller::Integration(name)) => Some(error(
            StatusCode::FORBIDDEN,
            format!(
                "integration key {name:?} only sends events (/v2/enqueue, /api/v1/events, \
                 /api/v1/alertmanager); this route takes the API token"
            ),
        )),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

/// Checks the credential of an intake route: the API token or an
/// integration key. `Some` is the refusal to send.
fn intake_refused(state: &ApiState, given: Option<&str>) -> Option<Response> {
    if state.token.is_none() && state.integration_keys.is_empty() {
        return Some(error(
            StatusCode::FORBIDDEN,
            "intake is off: set notify.integration_keys or notify.api_token",
        ));
    }
    match given.and_then(|g| caller(state, g)) {
        Some(_) => None,
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong integration key or API token",
        )),
    }
}

/// The answer to a body that could not be read: 413 past the route's limit.
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare digests so neither length nor content leaks through timing.
    Sha256::digest(a) == Sha256::digest(b)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(State(s): Shared, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    match queries::list_incidents(&s.config, q.status.as_deref()).await {
        Ok(rows) => Json(json!({ "incidents": rows })).into_response(),
        Err(e) => client_error(e),
    }
}

async fn show(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    match queries::find_incident(&s.config, &id).await {
        Ok((_, incident)) => Json(incident).into_response(),
        Err(e) => client_error(e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ActionBody {
    by: Option<String>,
}

async fn act(
    s: &ApiState,
    headers: &HeaderMap,
    id: &str,
    body: Option<Json<ActionBody>>,
    action: EventAction,
) -> Response {
    if let Some(r) = refused(s, headers) {
        return r;
    }
    let by = body
        .and_then(|Json(b)| b.by)
        .unwrap_or_else(|| "http api".to_owned());
    match client::act(&s.config, id, action, &by, "klaxon-api").await {
        Ok(incident) => (
            StatusCode::ACCEPTED,
            Json(json!({ "id": incident.id, "dedup_key": incident.dedup_key, "accepted": true })),
        )
            .into_response(),
        Err(e) => client_error(e),
    }
}

async fn ack(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Response {
    act(&s, &headers, &id, body, EventAction::Acknowledge).await
}

async fn resolve(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Response {
    act(&s, &headers, &id, body, EventAction::Resolve).await
}

#[derive(Debug, Deserialize)]
struct OncallQuery {
    schedule: Option<String>,
    at: Option<DateTime<Utc>>,
}

async fn oncall(State(s): Shared, headers: HeaderMap, Query(q): Query<OncallQuery>) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let Some(path) = &s.oncall else {
        return error(StatusCode::NOT_FOUND, "no on-call file configured");
    };
    let loaded = match LoadedOnCall::load(path.clone()) {
        Ok(l) => l,
        Err(problems) => return error(StatusCode::INTERNAL_SERVER_ERROR, problems.join("; ")),
    };
    let at = match check_instant(q.at.unwrap_or_else(Utc::now)) {
        Ok(at) => at,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let out: Vec<Value> = queries::on_call_at(&loaded.oncall, q.schedule.as_deref(), at)
        .into_iter()
        .filter_map(|answer| {
            let shift = match answer.shift {
                Ok(shift) => Some(shift),
                // Not an answer the caller can use; the file check reports it.
                Err(NoAnswer::UnknownZone(_)) => return None,
                Err(NoAnswer::OutOfRange(_)) => None,
            };
            Some(json!({
                "schedule": answer.schedule,
                "user": shift.as_ref().and_then(|s| s.user.clone()),
                "until": shift.map(|s| s.until),
            }))
        })
        .collect();
    Json(json!({ "at": at, "oncall": out })).into_response()
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
struct AlertmanagerQuery {
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
                return PagingEvent::resolve(&dedup_key, by, by);
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

async fn alertmanager(
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
    let body = match body {
        Ok(body) => body,
        Err(e) => return body_refused(e.status(), e.body_text(), MAX_WEBHOOK_BYTES),
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
    match client::send_events(&s.config, &events, None).await {
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
    match client::send_events(&s.config, std::slice::from_ref(&event), None).await {
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

async fn events(
    State(s): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(r) = intake_refused(&s, bearer(&headers)) {
        return r;
    }
    let body = match body {
        Ok(body) => body,
        Err(e) => return body_refused(e.status(), e.body_text(), MAX_EVENT_BYTES),
    };
    match serde_json::from_slice(&body) {
        Ok(event) => enqueue_event(&s, event).await,
        Err(e) => not_json(e),
    }
}

/// PagerDuty's Events v2 endpoint shape: the routing key is the credential.
async fn enqueue(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return body_refused(e.status(), e.body_text(), MAX_EVENT_BYTES),
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

#[derive(Debug, Deserialize)]
struct LinkQuery {
    expires: i64,
    sig: String,
}

/// `Some` is the refusal for a link that is off, forged or expired.
fn link_refused(s: &ApiState, id: &str, q: &LinkQuery) -> Option<Response> {
    let Some(links) = &s.links else {
        return Some(error(StatusCode::NOT_FOUND, "acknowledge links are off"));
    };
    (!links.verify(id, q.expires, &q.sig, Utc::now())).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "this link is not valid, or has expired",
        )
    })
}

/// Why a link can no longer acknowledge its incident, if it cannot.
fn closed_note(incident: &super::Incident) -> Option<String> {
    let by = |who: &Option<String>| {
        who.as_deref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default()
    };
    match incident.status {
        Status::Triggered => None,
        Status::Acknowledged => Some(format!(
            "Incident {} is already acknowledged{}.",
            incident.id,
            by(&incident.acknowledged_by)
        )),
        Status::Resolved => Some(format!(
            "Incident {} is already resolved{}: this link acknowledges nothing.",
            incident.id,
            by(&incident.resolved_by)
        )),
    }
}

/// The page a link opens: one button that POSTs the same signed URL, or
/// what became of the incident.
async fn ack_page(
    State(s): Shared,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if let Some(r) = link_refused(&s, &id, &q) {
        return r;
    }
    let incident = match queries::find_by_id(&s.config, &id).await {
        Ok((_, incident)) => incident,
        Err(e) => return client_error(e),
    };
    let title = format!(
        "<!doctype html><title>klaxon: acknowledge {}</title>\n",
        html_escape(&id)
    );
    if let Some(note) = closed_note(&incident) {
        return axum::response::Html(format!("{title}<p>{}</p>\n", html_escape(&note)))
            .into_response();
    }
    // No action: the form posts back to this same signed URL, behind any
    // reverse proxy.
    axum::response::Html(format!(
        "{title}<form method=\"post\"><p>Incident {}: {}</p>\
         <button type=\"submit\">Acknowledge</button></form>\n",
        html_escape(&id),
        html_escape(&incident.summary)
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn ack_link(
    State(s): Shared,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if let Some(r) = link_refused(&s, &id, &q) {
        return r;
    }
    let (partition, incident) = match queries::find_by_id(&s.config, &id).await {
        Ok(found) => found,
        Err(e) => return client_error(e),
    };
    if let Some(note) = closed_note(&incident) {
        let status = if incident.status == Status::Resolved {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        };
        return (status, format!("{note}\n")).into_response();
    }
    match client::send_action(
        &s.config,
        partition,
        &incident,
        EventAction::Acknowledge,
        "acknowledge link",
        "klaxon-link",
    )
    .await
    {
        Ok(()) => format!(
            "Acknowledged incident {}: {}\n",
            incident.id, incident.summary
        )
        .into_response(),
        Err(e) => client_error(ClientError::Kafka(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            bearer(&headers).map(str::to_owned)
        };
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k"] {
            assert_eq!(with(value).as_deref(), Some("t0k"), "{value}");
        }
        assert_eq!(with("Basic dTpw"), None);
        assert_eq!(with("Bearert0k"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

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
        let schema: Value =
            serde_json::from_str(include_str!("../../schemas/paging-event.schema.json")).unwrap();
        assert!(jsonschema::is_valid(&schema, &fire), "{fire}");
        let resolve = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], "alertmanager/def");
    }
}
