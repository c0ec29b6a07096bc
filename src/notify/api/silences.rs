//! Silences over HTTP, as the CLI makes them (token required):
//! `GET /api/v1/silences[?all=true|unused=true]`, `POST /api/v1/silences`
//! with `{"matchers": ["service=checkout"], "for": "2h", "starts_at":
//! RFC3339?, "comment": "...", "by": "..."}`, and `DELETE
//! /api/v1/silences/{id}[?by=NAME]`, which expires it.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{Shared, auth::refused, error};
use crate::notify::silence::store::{self, NewSilence, SilenceError};

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    unused: bool,
}

pub(super) async fn list(
    State(s): Shared,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    // The credential first: a caller without one learns nothing, not
    // even which query klaxon takes.
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let state = match store::list(&s.config).await {
        Ok(state) => state,
        Err(e) => return silence_error(SilenceError::Kafka(e)),
    };
    let now = Utc::now();
    let rows: Vec<serde_json::Value> = store::listed(&state, q.all, q.unused, now)
        .into_iter()
        .map(|x| store::row(&state, x, now))
        .collect();
    Json(json!({ "silences": rows })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddBody {
    matchers: Vec<String>,
    #[serde(rename = "for", with = "humantime_serde")]
    length: std::time::Duration,
    starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    comment: String,
    by: Option<String>,
}

/// The body is read as bytes, so a caller without the token learns nothing
/// of its shape: credentials are checked first.
pub(super) async fn add(State(s): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let body: AddBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a silence: {e}")),
    };
    let request = NewSilence {
        matchers: body.matchers,
        starts_at: body.starts_at,
        length: body.length,
        created_by: body.by.unwrap_or_else(|| "http api".to_owned()),
        comment: body.comment,
    };
    match store::add(&s.config, request).await {
        Ok(silence) => (StatusCode::CREATED, Json(silence)).into_response(),
        Err(e) => silence_error(e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ExpireQuery {
    by: Option<String>,
}

pub(super) async fn expire(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<ExpireQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let by = q.by.unwrap_or_else(|| "http api".to_owned());
    match store::expire(&s.config, &id, &by).await {
        Ok(silence) => Json(silence).into_response(),
        Err(e) => silence_error(e),
    }
}

fn silence_error(e: SilenceError) -> Response {
    let status = match e {
        SilenceError::Kafka(_) => StatusCode::SERVICE_UNAVAILABLE,
        SilenceError::NotFound(_) => StatusCode::NOT_FOUND,
        SilenceError::Ended(_) => StatusCode::CONFLICT,
        SilenceError::TooMany => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}
