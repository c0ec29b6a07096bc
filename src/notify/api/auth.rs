//! Who is calling: the API token (an operator, every route) or an
//! integration key (the intake routes only), read from a bearer header or an
//! Events v2 `routing_key`, and the refusals for each kind of route.

use axum::{
    http::{HeaderMap, StatusCode},
    response::Response,
};
use sha2::{Digest, Sha256};

use super::{ApiState, error};

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
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Checks the bearer token of a route that reads or changes incidents;
/// `Some` is the refusal to send.
pub(super) fn refused(state: &ApiState, headers: &HeaderMap) -> Option<Response> {
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
pub(super) fn intake_refused(state: &ApiState, given: Option<&str>) -> Option<Response> {
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare digests so neither length nor content leaks through timing.
    Sha256::digest(a) == Sha256::digest(b)
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
}
