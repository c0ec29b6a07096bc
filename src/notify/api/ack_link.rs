//! The signed acknowledge link in messages, `/ack/{id}?expires=..&sig=..`:
//! a GET shows a page whose button POSTs the same URL, and only the POST
//! acknowledges (link unfurlers and mail scanners fetch links). It acts on
//! that incident only, never a later one with the same dedup_key.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde::Deserialize;

use super::{ApiState, Shared, client_error, error};
use crate::{
    notify::{Incident, client, incident::Status, queries, queries::ClientError},
    paging::EventAction,
};

#[derive(Debug, Deserialize)]
pub(super) struct LinkQuery {
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
fn closed_note(incident: &Incident) -> Option<String> {
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
pub(super) async fn ack_page(
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

pub(super) async fn ack_link(
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
    let publisher = match s.paging.get() {
        Ok(publisher) => publisher,
        Err(e) => return client_error(ClientError::Kafka(e)),
    };
    let sent = client::send_action(
        &publisher,
        partition,
        &incident,
        EventAction::Acknowledge,
        "acknowledge link",
        "klaxon-link",
    )
    .await;
    match sent {
        Ok(()) => format!(
            "Acknowledged incident {}: {}\n",
            incident.id, incident.summary
        )
        .into_response(),
        Err(e) => {
            s.paging.failed(&e);
            client_error(ClientError::Kafka(e))
        }
    }
}
