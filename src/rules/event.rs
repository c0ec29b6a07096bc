//! Paging events: the shape of PagerDuty Events API v2, plus klaxon's fields.
//! `schemas/paging-event.schema.json` describes it for other producers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::definition::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    /// Optional in Events v2 (PagerDuty shows the href): empty when absent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub summary: String,
    pub source: String,
    pub severity: Severity,
    /// RFC 3339: when the condition was observed (the window's end). Optional
    /// in Events v2, so other producers may leave it out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub custom_details: serde_json::Map<String, serde_json::Value>,
}

/// The event window, in RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: String,
    pub end: String,
}

/// One event on the paging topic, keyed there by `dedup_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PagingEvent {
    pub event_action: EventAction,
    pub dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    // klaxon's fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation_policy: Option<String>,
    /// Who acknowledged or resolved, for `acknowledge` and `resolve` events
    /// sent by people (CLI, HTTP API, links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The incident an `acknowledge` or `resolve` is for (signed links, the
    /// CLI, the API): it acts on that incident only, never on a later one
    /// opened under the same dedup_key. Without it, the open incident of
    /// the dedup_key, as in Events v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

impl Severity {
    /// Events v2 knows critical, error, warning and info.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// Events v2 allows 255 characters.
const MAX_DEDUP_KEY: usize = 255;

/// A stable, readable key for one alert instance: `rule{k=v,...}` with labels
/// in key order. Keys too long for Events v2 keep a readable prefix and end in
/// a SHA-256 of the whole, so they stay unique and stable.
pub fn dedup_key(rule: &str, labels: &BTreeMap<String, String>) -> String {
    let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    bound_dedup_key(format!("{rule}{{{}}}", body.join(",")))
}

/// `key` if it fits Events v2's 255 characters, else a readable prefix and a
/// SHA-256 of the whole, so a long key stays unique and stable wherever it
/// is shortened (here for rules, at the notifier's intake for any producer).
pub fn bound_dedup_key(key: String) -> String {
    if key.len() <= MAX_DEDUP_KEY {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX_DEDUP_KEY - hash.len() - 1;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash}", &key[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_are_readable_ordered_and_bounded() {
        let labels: BTreeMap<String, String> = [
            ("service".into(), "checkout".into()),
            ("az".into(), "b".into()),
        ]
        .into();
        assert_eq!(
            dedup_key("errors", &labels),
            "errors{az=b,service=checkout}"
        );
        let long: BTreeMap<String, String> = [("k".into(), "é".repeat(300))].into();
        let a = dedup_key("r", &long);
        assert!(a.len() <= MAX_DEDUP_KEY, "{}", a.len());
        let mut other = long.clone();
        other.insert("k".into(), format!("{}x", "é".repeat(299)));
        assert_ne!(a, dedup_key("r", &other), "the hash keeps long keys unique");
        assert_eq!(a, dedup_key("r", &long), "and stable");
    }
}
