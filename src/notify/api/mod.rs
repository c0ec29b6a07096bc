//! The notifier's HTTP API, served by `klaxon notify` beside `/metrics`.
//!
//! With a bearer token (`notify.api_token`, `KLAXON_API_TOKEN`):
//! - `GET /api/v1/incidents[?status=open|triggered|acknowledged|resolved]`
//! - `GET /api/v1/incidents/{id}` (id or dedup_key), with its timeline
//! - `POST /api/v1/incidents/{id}/ack`, `POST /api/v1/incidents/{id}/resolve`
//!   (`{"by": "name"}` optional)
//! - `GET /api/v1/oncall[?schedule=S&at=RFC3339]`
//! - `GET /api/v1/silences[?all=true|unused=true]`, `POST /api/v1/silences`,
//!   `DELETE /api/v1/silences/{id}[?by=NAME]` (see `silences`)
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
//!
//! Here: the router, its state and the error replies. The routes live in
//! `incidents` (operator routes), `intake` (Alertmanager, Events v2,
//! `/v2/enqueue`) and `ack_link`; credentials are checked in `auth`.

mod ack_link;
mod auth;
mod incidents;
mod intake;
mod paging;
mod silences;

use std::{path::PathBuf, sync::Arc};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use self::{
    ack_link::{ack_link, ack_page},
    incidents::{ack, list, oncall, resolve, show},
    intake::{alertmanager, enqueue, events},
    paging::SharedPublisher,
};
use super::{links::AckLinks, queries::ClientError};
use crate::{
    config::{Config, Secret},
    paging::limits::MAX_EVENT_BYTES,
};

/// An Alertmanager webhook request: it carries a group of alerts, each of
/// which becomes one event.
pub const MAX_WEBHOOK_BYTES: usize = 4 * 1024 * 1024;
/// A silence: up to 32 matchers of 1 KiB, and its comment.
const SILENCE_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug)]
struct ApiState {
    config: Config,
    token: Option<Secret>,
    /// Intake-only credentials, by integration name.
    integration_keys: Vec<(String, Secret)>,
    links: Option<AckLinks>,
    oncall: Option<PathBuf>,
    paging: SharedPublisher,
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
        paging: SharedPublisher::new(config),
    });
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/{id}", get(show))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/incidents/{id}/resolve", post(resolve))
        .route("/api/v1/oncall", get(oncall))
        .route(
            "/api/v1/silences",
            get(silences::list)
                .post(silences::add)
                .layer(DefaultBodyLimit::max(SILENCE_BODY_BYTES)),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(silences::expire),
        )
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
