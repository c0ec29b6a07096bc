//! Typed configuration, read from a TOML file and overridden by flags and
//! `KLAXON_*` environment variables (see `cli`).
//!
//! Every struct refuses unknown keys, so a typo is an error with the file, line
//! and key rather than a silently ignored setting. Durations are written as
//! `"30s"`, sizes as `"64MiB"`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use bytesize::ByteSize;
use serde::Deserialize;
use thiserror::Error;

use crate::decode::Format;

/// The shortest `api_token` or `signing_key` accepted: an empty token let
/// `routing_key: ""` page anonymously, an empty key let forged links act.
pub const MIN_SECRET_BYTES: usize = 16;

/// A credential from the config file or the environment. `Debug` prints
/// `<redacted>` and there is no `Display`, so neither a `{:?}` of a config
/// nor a log line shows it; code that needs the value derefs to `str`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether a key names a credential, by the words credentials are named
/// with (`api_token`, `signing_key`, `sasl.password`, `auth_token`).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "key", "secret", "password", "passwd", "auth"]
        .iter()
        .any(|word| key.contains(word))
}

/// Refuses a credential shorter than [`MIN_SECRET_BYTES`]; `name` is the
/// key or variable it came from.
pub fn short_secret(name: &str, value: &str) -> Option<String> {
    (value.len() < MIN_SECRET_BYTES).then(|| {
        format!(
            "{name} must be at least {MIN_SECRET_BYTES} bytes long (it has {}): use a random value, e.g. `openssl rand -hex 32`",
            value.len()
        )
    })
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `toml`'s message already carries the line, column, key and reason.
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config{}: {}", .path.as_deref().map(|p| format!(" file {p}")).unwrap_or_default(), .problems.join("; "))]
    Invalid {
        path: Option<String>,
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    /// Which topics carry metric points, and in which format.
    pub sources: Vec<SourceConfig>,
    pub ingest: IngestConfig,
    pub lake: LakeConfig,
    pub http: HttpConfig,
    pub rules: RulesConfig,
    pub notify: NotifyConfig,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`. Empty means "start the embedded
    /// broker" for `klaxon up`, and is an error for the other commands.
    pub brokers: String,
    pub client_id: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, ...),
    /// passed through unchanged to every client klaxon creates.
    pub properties: BTreeMap<String, String>,
    /// Static group membership (`group.instance.id`) for the members that
    /// page: the rules runner and the notifier. Unique per member (a host
    /// name, say); a restarted member then gets its partitions back at once
    /// instead of after its old session expires.
    pub group_instance_id: Option<String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `sasl.password`, `ssl.key.password` and the like stay out of logs.
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_key(k) { "<redacted>" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("properties", &properties)
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            client_id: "klaxon".into(),
            properties: BTreeMap::new(),
            group_instance_id: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Create missing topics at start-up. Brokers such as tansu do not
    /// auto-create topics, so this defaults to on.
    pub create: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Where rejected records go, with the reason in their headers.
    pub dead_letter: String,
    /// The largest value klaxon writes to a dead-letter topic. A longer
    /// rejected line is cut to this, and its headers say so and carry its full
    /// length and SHA-256, so a dead letter always fits the broker's limit
    /// (Kafka's default `max.message.bytes` is about 1MB).
    pub dead_letter_max_bytes: ByteSize,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            create: true,
            partitions: 4,
            replication_factor: 1,
            dead_letter: "metrics.dlq".into(),
            dead_letter_max_bytes: ByteSize::kib(256),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub topic: String,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub group_id: String,
    /// Flush a partition's buffer once it holds this many points...
    pub flush_rows: usize,
    /// ...or this many bytes of input...
    pub flush_bytes: ByteSize,
    /// ...or once its oldest point has waited this long, so a quiet topic
    /// still reaches the lake.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Upper bound on memory for data: a quarter for prefetched records, half
    /// for buffered points, a quarter for the flush being encoded (so a flush
    /// is never larger). When it is reached ingest flushes and stops fetching
    /// rather than growing. The process itself needs about 35 MiB more.
    pub memory_budget: ByteSize,
    /// A line longer than this is rejected to the dead-letter topic.
    pub max_line_bytes: ByteSize,
    /// Points older than now minus this are rejected as out of range.
    #[serde(with = "humantime_serde")]
    pub max_past: Duration,
    /// Points later than now plus this are rejected as out of range.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// Rows per Parquet row group; smaller groups prune better, larger compress better.
    pub row_group_rows: usize,
    /// A point with more tags than this is rejected (`too_many_tags`).
    pub max_tags_per_point: usize,
    /// Distinct tag keys a partition's buffer may hold; a point bringing more
    /// is rejected (`too_many_tags`). Every key is a column padded to every
    /// row of the buffer, so this bounds what tag keys can multiply.
    pub max_tag_keys: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            group_id: "klaxon-ingest".into(),
            flush_rows: 1_000_000,
            flush_bytes: ByteSize::mib(64),
            flush_interval: Duration::from_secs(10),
            memory_budget: ByteSize::mib(512),
            max_line_bytes: ByteSize::kib(64),
            max_past: Duration::from_secs(365 * 24 * 3600),
            max_future: Duration::from_secs(3600),
            row_group_rows: 128 * 1024,
            max_tags_per_point: 64,
            max_tag_keys: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local directory, `file:///abs/path`, `s3://bucket/prefix` or `memory://`.
    pub url: String,
    pub s3: S3Config,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            url: "./lake".into(),
            s3: S3Config::default(),
        }
    }
}

/// Settings for `s3://` lakes. Credentials come from the usual `AWS_*`
/// environment variables so they never sit in a config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// For MinIO and other S3-compatible stores, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (MinIO in development).
    pub allow_http: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where `/metrics` (Prometheus text format) and `/healthz` are served.
    pub listen: String,
    /// A client must send a request's headers within this; it also closes an
    /// idle keep-alive connection. Without it, a client that sends half a
    /// request holds a connection for ever (slowloris).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The longest a request may take, body upload included; beyond it the
    /// answer is 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A request body larger than this is refused with 413.
    pub max_body_bytes: ByteSize,
    /// Connections served at once; more wait in the listen backlog until one
    /// closes, so slow clients cannot exhaust file descriptors or memory.
    pub max_connections: usize,
    /// PEM certificate chain (leaf first). With `tls_key`, `listen` serves
    /// HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: ByteSize::mib(1),
            max_connections: 256,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The rules runner (`klaxon rules run`, and `klaxon up` when `dir` is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Directory of `*.toml` rule files; `klaxon up` evaluates them when set.
    pub dir: Option<PathBuf>,
    pub group_id: String,
    /// Where alert events go, keyed by `dedup_key`.
    pub paging_topic: String,
    /// Compacted topic holding each rule's alert state and last closed
    /// window, so a restart neither loses nor re-triggers a firing alert.
    pub state_topic: String,
    /// A partition silent this long stops holding event time back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Points may arrive this late and still count for their window.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// How often rule files are read again for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Memory one evaluation of a rule may hold (DataFusion's pool; nothing
    /// spills to disk). A rule that needs more fails that window alone.
    pub eval_memory: ByteSize,
    /// Time one evaluation of a rule may take; a rule that runs longer
    /// fails that window alone.
    #[serde(with = "humantime_serde")]
    pub eval_timeout: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            dir: None,
            group_id: "klaxon-rules".into(),
            paging_topic: "paging".into(),
            state_topic: "klaxon-rules-state".into(),
            idle_timeout: Duration::from_secs(30),
            allowed_lateness: Duration::from_secs(5),
            reload_interval: Duration::from_secs(5),
            eval_memory: ByteSize::mib(256),
            eval_timeout: Duration::from_secs(10),
        }
    }
}

/// The notifier (`klaxon notify`) and the on-call commands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// The on-call file: users, schedules, escalation policies.
    pub oncall: Option<PathBuf>,
    pub group_id: String,
    /// Events v2 in: from rules, other producers, acks and resolves.
    pub paging_topic: String,
    /// Compacted changelog of incidents, partitioned like the paging topic.
    pub incidents_topic: String,
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
    /// [`MIN_SECRET_BYTES`] long.
    pub signing_key: Option<Secret>,
    /// Bearer token of the HTTP API (`KLAXON_API_TOKEN`), at least
    /// [`MIN_SECRET_BYTES`] long; the API is off without one.
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
#[derive(Debug, Clone, Copy, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

impl Config {
    /// Reads and validates a config file. Errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        Self::parse(&text, Some(&display))
    }

    /// Parses config text; `path` only labels error messages.
    pub fn parse(text: &str, path: Option<&str>) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.unwrap_or("<inline>").to_owned(),
            message: redact_secrets(e.to_string().trim_end(), text),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what serde cannot, collecting every problem before failing.
    pub fn validate(&self, path: Option<&str>) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let i = &self.ingest;
        if i.flush_rows == 0 {
            problems.push("ingest.flush_rows must be at least 1".to_owned());
        }
        if i.flush_interval.is_zero() {
            problems.push("ingest.flush_interval must be longer than 0s".to_owned());
        }
        if i.row_group_rows == 0 {
            problems.push("ingest.row_group_rows must be at least 1".to_owned());
        }
        if i.memory_budget.as_u64() < 4 * 1024 * 1024 {
            problems.push("ingest.memory_budget must be at least 4MiB".to_owned());
        }
        if i.max_tags_per_point == 0 || i.max_tag_keys < i.max_tags_per_point {
            problems.push(
                "ingest.max_tags_per_point must be at least 1 and at most ingest.max_tag_keys"
                    .to_owned(),
            );
        }
        // Headers and key ride on top of the value: stay well under Kafka's
        // default 1 MB record limit.
        if !(1024..=768 * 1024).contains(&self.topics.dead_letter_max_bytes.as_u64()) {
            problems
                .push("topics.dead_letter_max_bytes must be between 1KiB and 768KiB".to_owned());
        }
        if self.topics.partitions < 1 {
            problems.push("topics.partitions must be at least 1".to_owned());
        }
        if self.topics.replication_factor < 1 {
            problems.push("topics.replication_factor must be at least 1".to_owned());
        }
        if self.rules.reload_interval.is_zero() {
            problems.push("rules.reload_interval must be longer than 0s".to_owned());
        }
        let h = &self.http;
        if h.header_read_timeout.is_zero() {
            problems.push("http.header_read_timeout must be longer than 0s".to_owned());
        }
        if h.request_timeout.is_zero() {
            problems.push("http.request_timeout must be longer than 0s".to_owned());
        }
        if h.max_connections == 0 {
            problems.push("http.max_connections must be at least 1".to_owned());
        }
        if h.tls_cert.is_some() != h.tls_key.is_some() {
            problems.push("http.tls_cert and http.tls_key must be set together".to_owned());
        }
        let n = &self.notify;
        for (key, value) in [
            ("notify.api_token", &n.api_token),
            ("notify.signing_key", &n.signing_key),
        ] {
            if let Some(problem) = value.as_ref().and_then(|v| short_secret(key, v)) {
                problems.push(problem);
            }
        }
        if self.notify.retry.attempts == 0 {
            problems.push("notify.retry.attempts must be at least 1".to_owned());
        }
        if self.notify.reload_interval.is_zero() {
            problems.push("notify.reload_interval must be longer than 0s".to_owned());
        }
        for (name, key) in &self.notify.integration_keys {
            if let Err(problem) = check_integration_key(name, key) {
                problems.push(problem);
            }
            if self.notify.api_token.as_ref() == Some(key) {
                problems.push(format!(
                    "notify.integration_keys.{name} is the API token: give the integration its own key"
                ));
            }
        }
        if self.rules.paging_topic == self.rules.state_topic {
            problems.push("rules.paging_topic and rules.state_topic must differ".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.sources {
            if s.topic.is_empty() {
                problems.push("sources: topic must not be empty".to_owned());
            }
            if !seen.insert(&s.topic) {
                problems.push(format!("sources: topic {:?} is listed twice", s.topic));
            }
            if s.topic == self.topics.dead_letter {
                problems.push(format!(
                    "sources: topic {:?} is also the dead-letter topic",
                    s.topic
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: path.map(str::to_owned),
                problems,
            })
        }
    }

    /// The topics to read points from; `metrics` in JSON when none are configured.
    pub fn sources(&self) -> Vec<SourceConfig> {
        if self.sources.is_empty() {
            vec![SourceConfig {
                topic: "metrics".into(),
                format: Format::Json,
            }]
        } else {
            self.sources.clone()
        }
    }
}

/// toml's parse errors quote the offending source line, and serde's
/// messages can quote a value in backticks: take every value given to a
/// secret-named key out of `message` (`text` is the parsed source).
fn redact_secrets(message: &str, text: &str) -> String {
    let source: Vec<&str> = text.lines().collect();
    let secret_lines = secret_lines(&source);
    let values: Vec<String> = secret_lines
        .iter()
        .filter_map(|(n, from)| source.get(*n).map(|l| l[*from..].trim()))
        .flat_map(|v| [v.to_owned(), v.trim_matches(['"', '\'']).to_owned()])
        .filter(|v| !v.is_empty())
        .collect();
    message
        .lines()
        .map(|line| {
            // An echoed source line: `12 | text`.
            let echoed = line
                .split_once(" | ")
                .and_then(|(n, rest)| Some((n.trim().parse::<usize>().ok()?, rest)));
            match echoed {
                Some((number, rest)) => match secret_lines.get(&number.wrapping_sub(1)) {
                    Some(from) => {
                        let keep = rest.len().min(*from);
                        let head = &line[..line.len() - rest.len()];
                        let space = if keep == 0 { "" } else { " " };
                        format!("{head}{}{space}<redacted>", rest.get(..keep).unwrap_or(""))
                    }
                    None => line.to_owned(),
                },
                None => values.iter().fold(line.to_owned(), |line, v| {
                    line.replace(&format!("`{v}`"), "`<redacted>`")
                        .replace(&format!("\"{v}\""), "\"<redacted>\"")
                }),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The source lines (0-based) that hold a secret's value, each with the byte
/// offset where the value starts: `key = value` lines whose key names a
/// secret, and the lines of a multi-line string such a key opens.
fn secret_lines(source: &[&str]) -> BTreeMap<usize, usize> {
    let mut found = BTreeMap::new();
    let mut n = 0;
    while n < source.len() {
        let line = source[n];
        let Some(from) = secret_value_start(line) else {
            n += 1;
            continue;
        };
        found.insert(n, from);
        let value = line[from..].trim_start();
        let delimiter = ["\"\"\"", "\'\'\'"]
            .into_iter()
            .find(|d| value.starts_with(d));
        n += 1;
        let Some(d) = delimiter.filter(|d| !value[3..].contains(d)) else {
            continue;
        };
        while n < source.len() {
            found.insert(n, 0);
            n += 1;
            if source[n - 1].contains(d) {
                break;
            }
        }
    }
    found
}

/// Where the value of the first secret-named key on `line` starts.
fn secret_value_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut key_start = 0;
    for (i, c) in line.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '#' => return None,
            '{' | ',' | '[' => key_start = i + 1,
            '=' if is_secret_key(line[key_start..i].trim()) => return Some(i + 1),
            '=' => key_start = i + 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_working_defaults() {
        let c = Config::parse("", None).unwrap();
        assert_eq!(c.ingest.group_id, "klaxon-ingest");
        assert_eq!(c.sources()[0].topic, "metrics");
        assert_eq!(c.ingest.flush_interval, Duration::from_secs(10));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[ingest]\nflush_rows = 10\nflush_rowz = 11\n";
        let err = Config::parse(text, Some("klaxon.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("klaxon.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("flush_rowz"), "{err}");
    }

    #[test]
    fn durations_and_sizes_are_human_readable() {
        let c = Config::parse(
            "[ingest]\nflush_interval = \"250ms\"\nflush_bytes = \"8MiB\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.ingest.flush_interval, Duration::from_millis(250));
        assert_eq!(c.ingest.flush_bytes.as_u64(), 8 * 1024 * 1024);
    }

    #[test]
    fn bad_format_is_refused_with_its_line() {
        let err = Config::parse("[[sources]]\ntopic = \"m\"\nformat = \"xml\"\n", Some("f"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("xml"), "{err}");
    }

    #[test]
    fn integration_keys_must_be_long_and_not_the_api_token() {
        let ok = Config::parse(
            "[notify]\napi_token = \"an-operator-token-xyz\"\nintegration_keys = { alertmanager = \"0123456789abcdef\" }\n",
            None,
        )
        .unwrap();
        assert_eq!(
            &*ok.notify.integration_keys["alertmanager"],
            "0123456789abcdef"
        );
        let err = Config::parse(
            "[notify]\napi_token = \"an-operator-token-xyz\"\nintegration_keys = { grafana = \"short\", am = \"an-operator-token-xyz\" }\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("integration_keys.grafana must be at least 16 characters"),
            "{err}"
        );
        assert!(
            err.contains("integration_keys.am is the API token"),
            "{err}"
        );
        assert!(!err.contains("short\""), "no key in the message: {err}");
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let err = Config::parse(
            "[ingest]\nflush_rows = 0\n[topics]\npartitions = 0\n",
            Some("f"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("flush_rows"), "{err}");
        assert!(err.contains("partitions"), "{err}");
    }

    #[test]
    fn empty_or_short_credentials_are_refused_with_file_and_key() {
        let err = Config::parse(
            "[notify]\napi_token = \"\"\nsigning_key = \"test-key\"\n",
            Some("klaxon.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("klaxon.toml"), "{err}");
        assert!(
            err.contains("notify.api_token must be at least 16 bytes"),
            "{err}"
        );
        assert!(
            err.contains("notify.signing_key must be at least 16 bytes"),
            "{err}"
        );
        assert!(!err.contains("test-key"), "{err}");
        let c = Config::parse(
            "[notify]\napi_token = \"0123456789abcdef\"\nsigning_key = \"0123456789abcdef\"\n",
            None,
        )
        .unwrap();
        assert_eq!(c.notify.api_token.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn parse_errors_do_not_echo_credentials() {
        let cases = [
            // An unterminated string: toml quotes the line.
            "[notify]\napi_token = \"hunter2-hunter2-hunter2\n",
            // A wrong type: serde quotes the value too.
            "[notify.smtp]\npassword = 73577357\n",
            // An inline table with a later error on the same line.
            "[notify]\ntwilio = { auth_token = \"hunter2-twilio\", from = 5 }\n",
            // A librdkafka property, quoted key.
            "[kafka.properties]\n\"sasl.password\" = \"hunter2-sasl\" x\n",
            // A multi-line string never closed.
            "[notify]\nsigning_key = \"\"\"\nhunter2-multi\nmore\n",
        ];
        for text in cases {
            let err = Config::parse(text, Some("klaxon.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("klaxon.toml"), "{err}");
            assert!(err.contains("<redacted>"), "{text}\n{err}");
            for secret in ["hunter2", "73577357"] {
                assert!(!err.contains(secret), "{text}\n{err}");
            }
        }
        // Lines without credentials are still quoted in full.
        let err = Config::parse("[ingest]\nflush_rows = \"many\"\n", Some("f"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("flush_rows = \"many\""), "{err}");
    }

    #[test]
    fn debug_output_shows_no_credentials() {
        let c = Config::parse(
            r#"
[kafka.properties]
"sasl.password" = "hunter2-sasl"
"sasl.username" = "klaxon-user"
[notify]
api_token = "hunter2-api-token"
signing_key = "hunter2-signing-key"
[notify.twilio]
auth_token = "hunter2-twilio"
[notify.smtp]
password = "hunter2-smtp"
"#,
            None,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("klaxon-user"), "{shown}");
    }
}
