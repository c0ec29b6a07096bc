//! The tables of the config file every stage reads: Kafka, topics, point
//! sources, ingest, the lake, HTTP and the rules runner. The notifier's are
//! in `notify.rs`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::is_secret_key;
use crate::decode::Format;

#[derive(Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    #[serde(serialize_with = "super::exact_bytes")]
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

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub topic: String,
    #[serde(default)]
    pub format: Format,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub group_id: String,
    /// Flush a partition's buffer once it holds this many points...
    pub flush_rows: usize,
    /// ...or this many bytes of input...
    #[serde(serialize_with = "super::exact_bytes")]
    pub flush_bytes: ByteSize,
    /// ...or once its oldest point has waited this long, so a quiet topic
    /// still reaches the lake.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Upper bound on memory for data: a quarter for prefetched records, half
    /// for buffered points, a quarter for the flush being encoded (so a flush
    /// is never larger). When it is reached ingest flushes and stops fetching
    /// rather than growing. The process itself needs about 35 MiB more.
    #[serde(serialize_with = "super::exact_bytes")]
    pub memory_budget: ByteSize,
    /// A line longer than this is rejected to the dead-letter topic.
    #[serde(serialize_with = "super::exact_bytes")]
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

impl IngestConfig {
    /// The decoder's limits around wall-clock `now_ms`: the same for ingest
    /// and for the rules runner, so both accept exactly the same points.
    pub fn limits(&self, now_ms: i64) -> crate::decode::Limits {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        crate::decode::Limits {
            max_line_bytes: usize::try_from(self.max_line_bytes.as_u64()).unwrap_or(usize::MAX),
            min_time_ms: now_ms.saturating_sub(ms(self.max_past)),
            max_time_ms: now_ms.saturating_add(ms(self.max_future)),
            max_tags_per_point: self.max_tags_per_point,
            max_tag_keys: self.max_tag_keys,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local directory, `file:///abs/path`, `s3://bucket/prefix` or `memory://`.
    pub url: String,
    pub s3: S3Config,
    /// Hours that ended longer ago than this are deleted, whole; unset keeps
    /// everything. `lake.tables.<name>.retention` overrides it per table.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Duration>,
    /// Per-table settings, by table name (`metrics`).
    pub tables: BTreeMap<String, TableConfig>,
    pub compaction: CompactionConfig,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            url: "./lake".into(),
            s3: S3Config::default(),
            retention: None,
            tables: BTreeMap::new(),
            compaction: CompactionConfig::default(),
        }
    }
}

impl LakeConfig {
    /// The retention of `table`: its own, else the lake's.
    pub fn retention_of(&self, table: &str) -> Option<Duration> {
        self.tables
            .get(table)
            .and_then(|t| t.retention)
            .or(self.retention)
    }
}

/// `[lake.tables.<name>]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableConfig {
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Duration>,
}

/// `[lake.compaction]`: merging ingest's small files (see `lake::compact`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Whether `klaxon ingest` compacts the partitions it owns and applies
    /// retention; `klaxon compact` runs regardless.
    pub enabled: bool,
    /// Inputs of one merged file add up to at most this. Merging holds the
    /// inputs' bytes and the merged file's (smaller: it compresses harder),
    /// plus the readers' pages and a bounded slice of rows (`lake::merge`):
    /// about 3x this at the peak, outside `ingest.memory_budget`.
    pub target_file_size: ByteSize,
    /// An hour is compacted once it ended this long ago.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// How often an ingest member compacts.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Rows per row group of merged files.
    pub row_group_rows: usize,
    /// A merged file's inputs are deleted this long after it was written, so
    /// a query that listed them before still reads them.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            target_file_size: ByteSize::mib(128),
            settle: Duration::from_secs(600),
            interval: Duration::from_secs(300),
            row_group_rows: 131_072,
            grace: Duration::from_secs(60),
        }
    }
}

/// Settings for `s3://` lakes. Credentials come from the usual `AWS_*`
/// environment variables so they never sit in a config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// For MinIO and other S3-compatible stores, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (MinIO in development).
    pub allow_http: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    #[serde(serialize_with = "super::exact_bytes")]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    #[serde(serialize_with = "super::exact_bytes")]
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
