//! Typed configuration, read from a TOML file and overridden by flags and
//! `KLAXON_*` environment variables (see `commands`).
//!
//! Every struct refuses unknown keys, so a typo is an error with the file, line
//! and key rather than a silently ignored setting. Durations are written as
//! `"30s"`, sizes as `"64MiB"`.

mod notify;
mod overrides;
mod secret;
mod sections;

use std::{path::Path, time::Duration};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use self::{
    notify::{
        MIN_INTEGRATION_KEY_CHARS, NotifyConfig, RetryConfig, SmtpConfig, SmtpTls, TwilioConfig,
        check_integration_key,
    },
    overrides::{EnvSecrets, Overrides},
    secret::{MIN_SECRET_BYTES, Secret, is_secret_key, short_secret},
    sections::{
        CompactionConfig, HttpConfig, IngestConfig, KafkaConfig, LakeConfig, RulesConfig, S3Config,
        SourceConfig, TableConfig, TopicsConfig,
    },
};
use crate::decode::Format;

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
    /// A `KLAXON_*` variable refused; the message names it.
    #[error("{0}")]
    Environment(String),
}

/// Everything klaxon reads from its config file. `Serialize` writes a file
/// [`Config::parse`] reads back the same, credentials included (see
/// [`Secret`]): the bench writes its child processes' configs this way.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// Which of the keys that must agree were given (in the file or by a
    /// flag) rather than left to their defaults.
    #[serde(skip)]
    given: Given,
}

/// Keys whose defaults agree, so [`Config::validate`] compares them only
/// when both were chosen.
#[derive(Debug, Clone, Copy, Default)]
struct Given {
    rules_paging_topic: bool,
    notify_paging_topic: bool,
}

impl Given {
    /// Which of the keys a config file's text names.
    fn from_text(text: &str) -> Self {
        let Ok(table) = toml::from_str::<toml::Table>(text) else {
            return Self::default();
        };
        let names = |section: &str, key: &str| {
            table
                .get(section)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(key))
        };
        Self {
            rules_paging_topic: names("rules", "paging_topic"),
            notify_paging_topic: names("notify", "paging_topic"),
        }
    }
}

/// Sizes are written as exact byte counts, which read back unchanged (the
/// human form `256.0 MiB` rounds).
pub(crate) fn exact_bytes<S: serde::Serializer>(
    size: &bytesize::ByteSize,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(size.as_u64())
}

impl Config {
    /// Reads and validates a config file. Errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::read(path)?;
        config.validate(Some(&path.display().to_string()))?;
        Ok(config)
    }

    /// Parses and validates config text; `path` only labels error messages.
    pub fn parse(text: &str, path: Option<&str>) -> Result<Self, ConfigError> {
        let config = Self::parse_unchecked(text, path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads a config file without validating it (overrides come first).
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        Self::parse_unchecked(&text, Some(&display))
    }

    fn parse_unchecked(text: &str, path: Option<&str>) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.unwrap_or("<inline>").to_owned(),
            message: secret::redact_secrets(e.to_string().trim_end(), text),
        })?;
        config.given = Given::from_text(text);
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
        problems.extend(lake_problems(&self.lake));
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
        // Both default to `paging`; a key set on one side only is left alone,
        // so `rules run --paging-topic` works for a runner whose events some
        // other consumer reads.
        if self.given.rules_paging_topic
            && self.given.notify_paging_topic
            && self.rules.paging_topic != self.notify.paging_topic
        {
            problems.push(format!(
                "rules.paging_topic {:?} and notify.paging_topic {:?} differ: the notifier would \
                 never see the rules' alerts; name one topic in both",
                self.rules.paging_topic, self.notify.paging_topic
            ));
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

/// What is wrong with `[lake]`: retentions so short they would delete the
/// hour being written, tables klaxon does not have, compaction knobs at zero.
fn lake_problems(lake: &LakeConfig) -> Vec<String> {
    const MIN_RETENTION: Duration = Duration::from_secs(3600);
    let mut problems = Vec::new();
    let mut retentions = vec![("lake.retention".to_owned(), lake.retention)];
    for (name, table) in &lake.tables {
        if !crate::lake::TABLES.contains(&name.as_str()) {
            problems.push(format!(
                "lake.tables.{name}: no such table (tables: {})",
                crate::lake::TABLES.join(", ")
            ));
        }
        retentions.push((format!("lake.tables.{name}.retention"), table.retention));
    }
    for (key, retention) in retentions {
        if retention.is_some_and(|r| r < MIN_RETENTION) {
            problems.push(format!("{key} must be at least 1h"));
        }
    }
    let c = &lake.compaction;
    if c.target_file_size.as_u64() < 1024 * 1024 {
        problems.push("lake.compaction.target_file_size must be at least 1MiB".to_owned());
    }
    if c.interval.is_zero() {
        problems.push("lake.compaction.interval must be longer than 0s".to_owned());
    }
    // Inputs must outlive the check each pass makes right after writing
    // (see `lake::compact`), and queries need a moment to read them.
    if c.grace < Duration::from_secs(1) {
        problems.push("lake.compaction.grace must be at least 1s".to_owned());
    }
    if c.row_group_rows == 0 {
        problems.push("lake.compaction.row_group_rows must be at least 1".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn lake_retention_and_tables_are_checked() {
        let c = Config::parse(
            "[lake]\nretention = \"30d\"\n[lake.tables.metrics]\nretention = \"90d\"\n",
            None,
        )
        .unwrap();
        assert_eq!(
            c.lake.retention_of("metrics"),
            Some(Duration::from_secs(90 * 86_400))
        );
        let err = Config::parse(
            "[lake]\nretention = \"10m\"\n[lake.tables.metrix]\nretention = \"1d\"\n",
            Some("klaxon.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lake.retention must be at least 1h"), "{err}");
        assert!(err.contains("lake.tables.metrix: no such table"), "{err}");
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
    fn serializing_writes_a_file_that_reads_back_the_same() {
        let text = r#"
[kafka]
brokers = "k1:9092,k2:9092"
[kafka.properties]
"sasl.password" = "hunter2-sasl"
[[sources]]
topic = "graphite"
format = "graphite"
[ingest]
memory_budget = "300MB"
flush_interval = "1s 500ms"
[rules]
dir = "/etc/klaxon/rules"
paging_topic = "alerts"
[notify]
paging_topic = "alerts"
api_token = "hunter2-api-token"
integration_keys = { grafana = "0123456789abcdef" }
[notify.smtp]
tls = "none"
password = "hunter2-smtp"
"#;
        let config = Config::parse(text, None).unwrap();
        let written = toml::to_string(&config).unwrap();
        let again = Config::parse(&written, None).unwrap();
        assert_eq!(toml::to_string(&again).unwrap(), written);
        // Exact, where the human form of a size would round.
        assert_eq!(again.ingest.memory_budget.as_u64(), 300_000_000);
        assert_eq!(again.ingest.flush_interval, Duration::from_millis(1500));
        assert_eq!(again.sources, config.sources);
        assert_eq!(again.notify.api_token.as_deref(), Some("hunter2-api-token"));
        assert_eq!(again.notify.smtp.tls, SmtpTls::None);
        assert_eq!(again.kafka.properties["sasl.password"], "hunter2-sasl");
        // Serializing is for a child's config file, never for logs.
        assert!(!format!("{again:?}").contains("hunter2"));
    }

    #[test]
    fn paging_topics_set_on_both_sides_must_agree() {
        let err = Config::parse(
            "[rules]\npaging_topic = \"alerts\"\n[notify]\npaging_topic = \"paging\"\n",
            Some("klaxon.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("klaxon.toml"), "{err}");
        assert!(
            err.contains("rules.paging_topic \"alerts\" and notify.paging_topic \"paging\" differ"),
            "{err}"
        );
        // One side set, the other left to the shared default: a runner whose
        // events another consumer reads.
        for text in [
            "[rules]\npaging_topic = \"alerts\"\n",
            "[notify]\npaging_topic = \"alerts\"\n",
            "[rules]\npaging_topic = \"alerts\"\n[notify]\npaging_topic = \"alerts\"\n",
        ] {
            Config::parse(text, None).unwrap();
        }
        // A flag counts as set.
        let mut config = Config::parse("[notify]\npaging_topic = \"paging\"\n", None).unwrap();
        config.apply(Overrides {
            rules_paging_topic: Some("alerts".into()),
            ..Overrides::default()
        });
        assert!(config.validate(None).is_err());
    }

    #[test]
    fn overrides_are_validated_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("klaxon.toml");
        std::fs::write(&path, "[rules]\nreload_interval = \"1s\"\n").unwrap();
        let err = Config::load_with(
            Some(&path),
            Overrides {
                rules_reload_interval: Some(Duration::ZERO),
                ..Overrides::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("klaxon.toml"), "{err}");
        assert!(err.contains("rules.reload_interval"), "{err}");
        // A file refused on its own is accepted once a flag corrects it.
        std::fs::write(&path, "[rules]\nreload_interval = \"0s\"\n").unwrap();
        let config = Config::load_with(
            Some(&path),
            Overrides {
                rules_reload_interval: Some(Duration::from_secs(2)),
                brokers: Some("k:9092".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.rules.reload_interval, Duration::from_secs(2));
        assert_eq!(config.kafka.brokers, "k:9092");
    }
}
