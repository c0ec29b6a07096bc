//! klaxon: an incident-management pipeline on a message bus.
//!
//! ```text
//! services ──produce──▶ topic `metrics` (keyed by series)
//!                          │
//!          ┌───────────────┴────────────────────┐
//!          ▼                                    ▼
//!  ingest (group `klaxon-ingest`):        rules run (group `klaxon-rules`):
//!  decode lines into Arrow, flush on      event-time windows per partition,
//!  size or age, commit offsets only       DataFusion SQL per window; state on
//!  after the files are durable;           the compacted `klaxon-rules-state`
//!  bad lines ──▶ `metrics.dlq`                  │
//!          │                                    ▼
//!          ▼                              topic `paging` (keyed by dedup_key) ◀── ack / resolve /
//!  Parquet lake (dir or object store),          │                             manual page: CLI,
//!  hive-partitioned by date and hour            ▼                             HTTP API, ack links,
//!          ▲                              notify (group `klaxon-notify`):     any Events v2 sender
//!  query: DataFusion SQL, CLI             incidents, on-call schedules, escalation
//!                                         ──▶ channels (webhook, Slack, SMS, phone,
//!                                         e-mail, console); its state on the compacted
//!                                         `incidents` changelog; bad events ──▶ `paging.dlq`
//! ```
//!
//! Every arrow between components is a Kafka topic, so each component scales
//! out as a consumer group and restarts from its committed offsets. Every
//! long-running component serves `/metrics` and `/healthz` ([`http`]); the
//! notifier adds its API there.
//!
//! The modules, in the order of the flow:
//!
//! - [`produce`]: `klaxon produce`, a load generator writing synthetic points.
//! - [`points`]: metric points as Arrow, the SQL surface (`time`, `name`, `value`, tags).
//! - [`decode`]: JSON, Graphite and Influx lines into [`points`], rejecting bad lines with a reason.
//! - [`ingest`]: one member of `klaxon-ingest`, buffering per partition and flushing to the lake.
//! - [`lake`]: the Parquet lake, written exactly once (deterministic names, commit after fsync),
//!   compacted and expired as it ages.
//! - [`query`]: batch SQL over the lake with DataFusion, pruned by time.
//! - [`rules`]: alert rules as SQL over event-time windows, their engine, state and runner.
//! - [`paging`]: the Events v2 contract every sender speaks: types, severity, parse, one publisher.
//! - [`notify`]: the notifier: on-call file and schedules, incidents, escalation,
//!   channels, the `incidents` changelog and the HTTP API.
//! - [`history`]: every incident's timeline entries from the changelog into the lake's
//!   `incidents` table, exactly once.
//! - [`postmortem`]: `klaxon postmortem`, a blameless draft of one incident from the lake.
//! - [`report`]: `klaxon report`, on-call health from the lake's `incidents` table.
//! - [`backtest`]: `klaxon rules backtest`, the rules replayed over the lake through the
//!   streaming engine: the incidents they would have opened and whom they would have woken.
//! - [`kafka`]: client settings by role, the one consumer-group member loop, compacted
//!   topics, dead letters, committed offsets.
//! - [`topics`]: creates the topics each stage needs when they are missing.
//! - [`broker`]: the embedded tansu broker, so `klaxon up` needs no broker install.
//! - [`http`]: the bounded HTTP server (`/metrics`, `/healthz`, the notifier's API).
//! - [`telemetry`]: logs and the one list of metrics klaxon emits.
//! - [`shutdown`]: the one shutdown coordinator (SIGTERM: stop fetching, flush, commit).
//! - [`clock`]: the wall clock in epoch milliseconds, in one place.
//! - [`config`]: typed TOML configuration, overridden by flags and `KLAXON_*` variables.
//! - [`commands`]: the command line, one file per verb, each with its flags and `run`.
//! - [`bench`](mod@bench): `klaxon bench`, the end-to-end benchmark.
//! - [`demo`]: `klaxon up --demo`, the whole story on the embedded default.
//! - [`harness`]: free ports and polling, shared by `klaxon bench` and the integration tests.
//! - [`crash`]: named crash points that tests use to prove recovery paths.
//! - [`error`]: [`ErrorKind`], whose fault an error is; each module has its own
//!   error enum, and commands join them with `anyhow` at the edge.

pub mod backtest;
pub mod bench;
pub mod broker;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crash;
pub mod decode;
pub mod demo;
pub mod error;
pub mod harness;
pub mod history;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod lake;
pub mod notify;
pub mod paging;
pub mod points;
pub mod postmortem;
pub mod produce;
pub mod query;
pub mod report;
pub mod rules;
pub mod shutdown;
pub mod telemetry;
pub mod topics;

pub use error::ErrorKind;
