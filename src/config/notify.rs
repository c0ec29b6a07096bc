//! The notifier's tables: topics and credentials, delivery retries, SMTP
//! and Twilio.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::Secret;

/// The notifier (`klaxon notify`) and the on-call commands.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The on-call file: users, schedules, escalation policies.
    pub oncall: Option<PathBuf>,
    pub group_id: String,
    /// Events v2 in: from rules, other producers, acks and resolves.
    pub paging_topic: String,
    /// Compacted changelog of incidents, partitioned like the paging topic.
    pub incidents_topic: String,
    /// Compacted, one partition: every silence, read by every notifier
    /// member, the CLI and the API.
    pub silences_topic: String,
    /// The group that writes the changelog's timeline entries to the
    /// lake's `incidents` table, beside the notifier.
    pub history_group_id: String,
    /// How long timeline entries wait before they are written to the lake
    /// (with their changelog offsets committed).
    #[serde(with = "humantime_serde")]
    pub history_flush_interval: Duration,
    /// Where events that cannot be handled go, with the reason.
    pub dead_letter: String,
    /// How often the on-call file is read again; a broken one is refused
    /// and the previous version stays active.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Base URL of klaxon's HTTP API as people reach it, for acknowledge
    /// links in messages. No links without it.
    pub public_url: Option<String>,
    /// Key that signs acknowledge links (`KLAXON_SIGNING_KEY`), at least
    /// [`MIN_SECRET_BYTES`](super::MIN_SECRET_BYTES) long.
    pub signing_key: Option<Secret>,
    /// Bearer token of the HTTP API (`KLAXON_API_TOKEN`), at least
    /// [`MIN_SECRET_BYTES`](super::MIN_SECRET_BYTES) long; the API is off without one.
    pub api_token: Option<Secret>,
    /// Intake-only credentials, one per sending integration (name → key;
    /// `KLAXON_INTEGRATION_KEY_<NAME>` adds or replaces one): accepted to
    /// send events, refused for reading or acting on incidents, so a sender
    /// holds no more than it needs.
    pub integration_keys: BTreeMap<String, Secret>,
    /// How long an acknowledge link works.
    #[serde(with = "humantime_serde")]
    pub ack_link_ttl: Duration,
    pub retry: RetryConfig,
    pub twilio: TwilioConfig,
    pub smtp: SmtpConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            oncall: None,
            group_id: "klaxon-notify".into(),
            paging_topic: "paging".into(),
            incidents_topic: "incidents".into(),
            silences_topic: "silences".into(),
            history_group_id: "klaxon-history".into(),
            history_flush_interval: Duration::from_secs(5),
            dead_letter: "paging.dlq".into(),
            reload_interval: Duration::from_secs(5),
            public_url: None,
            signing_key: None,
            api_token: None,
            integration_keys: BTreeMap::new(),
            ack_link_ttl: Duration::from_secs(24 * 3600),
            retry: RetryConfig::default(),
            twilio: TwilioConfig::default(),
            smtp: SmtpConfig::default(),
        }
    }
}

/// How a failed delivery is retried before it falls through to the user's
/// next contact method.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub attempts: u32,
    /// The first wait; it doubles up to 30s.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// E-mail pages over SMTP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: Option<String>,
    /// Default: 587 for STARTTLS, 465 for TLS, 25 for none.
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Better in `KLAXON_SMTP_PASSWORD` than in the file.
    pub password: Option<Secret>,
    pub from: String,
    /// A CA certificate (PEM) to trust besides the system's, for relays
    /// with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            from: "klaxon@localhost".into(),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: local relays and tests only.
    None,
}

/// SMS and phone calls through Twilio's REST API, or anything that speaks
/// its request shape.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    pub base_url: String,
    pub account_sid: Option<String>,
    /// Better in `KLAXON_TWILIO_AUTH_TOKEN` than in the file.
    pub auth_token: Option<Secret>,
    /// The number messages and calls come from.
    pub from: Option<String>,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.twilio.com".into(),
            account_sid: None,
            auth_token: None,
            from: None,
        }
    }
}

/// The shortest integration key accepted: a key guards paging, so it must
/// not be guessable.
pub const MIN_INTEGRATION_KEY_CHARS: usize = 16;

/// Checks one integration key, wherever it came from; `Err` says why it is
/// refused, without the key.
pub fn check_integration_key(name: &str, key: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("notify.integration_keys: a key needs a name".to_owned());
    }
    if key.chars().count() < MIN_INTEGRATION_KEY_CHARS {
        return Err(format!(
            "notify.integration_keys.{name} must be at least {MIN_INTEGRATION_KEY_CHARS} characters"
        ));
    }
    Ok(())
}
