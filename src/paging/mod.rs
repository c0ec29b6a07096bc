//! The paging contract: PagerDuty Events API v2, plus klaxon's fields, as
//! every stage speaks it. `schemas/paging-event.schema.json` describes it for
//! other producers.
//!
//! The rules write it ([`crate::rules`] maps alert transitions to events),
//! people write it (acknowledge, resolve and manual pages from the CLI, the
//! HTTP API and signed links: the builders here), anything that speaks Events
//! v2 may write it, and the notifier reads it ([`parse_event`], within the
//! [`limits`]). Every writer publishes through [`Publisher`], keyed by
//! `dedup_key` with the murmur2 partitioner Java clients use, so every event
//! of one key lands on one partition whoever sent it.

mod parse;
mod publish;

pub mod limits;

use std::{collections::BTreeMap, fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use parse::{EVENT_REJECT_REASONS, Refusal, parse_event, parse_event_value};
pub use publish::Publisher;

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
    /// klaxon's: an `acknowledge` that lasts until the incident resolves,
    /// whatever the on-call file's `ack_timeout`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub until_resolved: bool,
}

/// How bad it is, as Events v2 says it: ordered, so thresholds can
/// compare levels. Lowercase on the wire, in rule files and in the
/// incidents changelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

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

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity that is not one of Events v2's four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("severity {0:?}: use critical, error, warning or info")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// The wire's names, exactly (as serde reads them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

impl EventAction {
    /// The wire's name, also the `action` label of the notifier's metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Trigger => "trigger",
            EventAction::Acknowledge => "acknowledge",
            EventAction::Resolve => "resolve",
        }
    }
}

/// The custom-details keys that name a manual page's target.
pub const PAGE_USER: &str = "page_user";
pub const PAGE_SCHEDULE: &str = "page_schedule";

/// Whom a manual page is for, instead of an escalation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageTarget {
    User(String),
    Schedule(String),
}

impl PageTarget {
    /// The user or schedule id.
    pub fn name(&self) -> &str {
        match self {
            PageTarget::User(n) | PageTarget::Schedule(n) => n,
        }
    }

    /// The target a manual page names in its `page_user` or
    /// `page_schedule` custom details (a user first).
    pub fn of(event: &PagingEvent) -> Option<Self> {
        let details = &event.payload.as_ref()?.custom_details;
        if let Some(u) = details.get(PAGE_USER).and_then(|v| v.as_str()) {
            return Some(PageTarget::User(u.to_owned()));
        }
        details
            .get(PAGE_SCHEDULE)
            .and_then(|v| v.as_str())
            .map(|s| PageTarget::Schedule(s.to_owned()))
    }
}

/// A manual page: a trigger for a user or schedule, outside any rule.
#[derive(Debug, Clone)]
pub struct ManualPage<'a> {
    pub target: &'a PageTarget,
    pub summary: &'a str,
    pub severity: Severity,
    /// Who asked; also named in the payload's source.
    pub by: &'a str,
    /// The sending program, e.g. `klaxon-cli`.
    pub client: &'a str,
    pub at: DateTime<Utc>,
}

impl PagingEvent {
    /// An event with only its action, key and sender.
    fn bare(action: EventAction, dedup_key: &str, client: &str) -> Self {
        PagingEvent {
            event_action: action,
            dedup_key: dedup_key.to_owned(),
            payload: None,
            links: Vec::new(),
            client: Some(client.to_owned()),
            rule: None,
            labels: BTreeMap::new(),
            value: None,
            window: None,
            escalation_policy: None,
            by: None,
            incident: None,
            until_resolved: false,
        }
    }

    /// A trigger from `client` with this payload.
    pub fn trigger(dedup_key: &str, payload: Payload, client: &str) -> Self {
        PagingEvent {
            payload: Some(payload),
            ..Self::bare(EventAction::Trigger, dedup_key, client)
        }
    }

    /// An acknowledgement by someone (`by`), sent by `client`.
    pub fn acknowledge(dedup_key: &str, by: &str, client: &str) -> Self {
        Self::by_person(EventAction::Acknowledge, dedup_key, by, client)
    }

    /// A resolve by someone (`by`), sent by `client`.
    /// A resolve sent by the alert's own source (a monitoring system saying
    /// it stopped firing), not by a person: it may be a flap.
    pub fn source_resolve(dedup_key: &str, client: &str) -> Self {
        Self::bare(EventAction::Resolve, dedup_key, client)
    }

    pub fn resolve(dedup_key: &str, by: &str, client: &str) -> Self {
        Self::by_person(EventAction::Resolve, dedup_key, by, client)
    }

    /// An acknowledge or resolve by someone: no payload.
    pub fn by_person(action: EventAction, dedup_key: &str, by: &str, client: &str) -> Self {
        PagingEvent {
            by: Some(by.to_owned()),
            ..Self::bare(action, dedup_key, client)
        }
    }

    /// For this incident only: an acknowledge or resolve that names its
    /// incident never acts on a later one of the same dedup_key.
    pub fn for_incident(mut self, id: &str) -> Self {
        self.incident = Some(id.to_owned());
        self
    }

    /// The trigger of a manual page, keyed `page/{target}/{epoch ms}` so
    /// every page is an incident of its own.
    pub fn manual_page(page: &ManualPage<'_>) -> Self {
        let target = page.target.name();
        let dedup_key = format!("page/{target}/{}", page.at.timestamp_millis());
        let key = match page.target {
            PageTarget::User(_) => PAGE_USER,
            PageTarget::Schedule(_) => PAGE_SCHEDULE,
        };
        let mut custom = serde_json::Map::new();
        custom.insert(key.to_owned(), target.into());
        custom.insert("requested_by".to_owned(), page.by.into());
        let payload = Payload {
            summary: page.summary.to_owned(),
            source: format!("klaxon page by {}", page.by),
            severity: page.severity,
            timestamp: page.at.to_rfc3339(),
            component: None,
            group: None,
            class: Some("manual page".to_owned()),
            custom_details: custom,
        };
        PagingEvent {
            by: Some(page.by.to_owned()),
            ..Self::trigger(&dedup_key, payload, page.client)
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

    #[test]
    fn severities_parse_as_serde_reads_them() {
        for s in Severity::ALL {
            let text = s.as_str();
            assert_eq!(text.parse::<Severity>(), Ok(s));
            let json: Severity = serde_json::from_value(text.into()).unwrap();
            assert_eq!(json, s);
            assert_eq!(serde_json::to_value(s).unwrap(), text);
        }
        assert!("Critical".parse::<Severity>().is_err());
        assert!("page".parse::<Severity>().is_err());
    }

    #[test]
    fn a_manual_page_names_its_target_for_the_notifier() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .to_utc();
        let target = PageTarget::Schedule("payments".into());
        let event = PagingEvent::manual_page(&ManualPage {
            target: &target,
            summary: "db down",
            severity: Severity::Error,
            by: "ann",
            client: "klaxon-cli",
            at,
        });
        assert_eq!(event.dedup_key, "page/payments/1795600800000");
        assert_eq!(event.event_action, EventAction::Trigger);
        assert_eq!(event.by.as_deref(), Some("ann"));
        assert_eq!(PageTarget::of(&event), Some(target));
        let payload = event.payload.as_ref().unwrap();
        assert_eq!(payload.source, "klaxon page by ann");
        assert_eq!(payload.custom_details["requested_by"], "ann");
    }
}
