//! The operator's routes: list and show incidents, acknowledge or resolve
//! one, and who is on call. All take the API token.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiState, Shared, auth::refused, client_error, error};
use crate::{
    notify::{
        client,
        oncall_file::LoadedOnCall,
        queries::{self, ClientError, NoAnswer},
        schedule::check_instant,
    },
    paging::EventAction,
};

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
}

pub(super) async fn list(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    match queries::list_incidents(&s.config, q.status.as_deref()).await {
        Ok(rows) => Json(json!({ "incidents": rows })).into_response(),
        Err(e) => client_error(e),
    }
}

pub(super) async fn show(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    match queries::find_incident(&s.config, &id).await {
        Ok((_, incident)) => Json(incident).into_response(),
        Err(e) => client_error(e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionBody {
    by: Option<String>,
    /// An acknowledgement that lasts until the incident resolves.
    #[serde(default)]
    until_resolved: bool,
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
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let by = body.by.unwrap_or_else(|| "http api".to_owned());
    let action = client::Action {
        kind: action,
        until_resolved: body.until_resolved,
    };
    let publisher = match s.paging.get() {
        Ok(publisher) => publisher,
        Err(e) => return client_error(e.into()),
    };
    let acted = client::act(&s.config, &publisher, id, action, &by, "klaxon-api").await;
    if let Err(ClientError::Kafka(e)) = &acted {
        s.paging.failed(e);
    }
    match acted {
        Ok(incident) => (
            StatusCode::ACCEPTED,
            Json(json!({ "id": incident.id, "dedup_key": incident.dedup_key, "accepted": true })),
        )
            .into_response(),
        Err(e) => client_error(e),
    }
}

pub(super) async fn ack(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Response {
    act(&s, &headers, &id, body, EventAction::Acknowledge).await
}

pub(super) async fn resolve(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ActionBody>>,
) -> Response {
    act(&s, &headers, &id, body, EventAction::Resolve).await
}

#[derive(Debug, Deserialize)]
pub(super) struct OncallQuery {
    schedule: Option<String>,
    at: Option<DateTime<Utc>>,
}

pub(super) async fn oncall(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<OncallQuery>,
) -> Response {
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
