//! klaxon: an incident-management pipeline on a message bus.
//!
//! ```text
//! services ──produce──▶ topic `metrics` ──▶ ingest (group `klaxon-ingest`) ──▶ Parquet lake
//!                         │   decode lines into Arrow, flush on size or age,       ▲
//!                         │   commit offsets only after the files are durable      │
//!                         └─▶ bad lines ──▶ topic `metrics.dlq` (reason in headers) │
//!                                                       query: DataFusion SQL ──────┘
//! ```
//!
//! - [`decode`] turns JSON, Graphite and Influx lines into Arrow rows ([`points`]).
//! - [`ingest`] is one member of the consumer group; [`lake`] writes Parquet
//!   exactly once (deterministic file names, an in-flight marker, commit after fsync).
//! - [`query`] runs SQL over the lake; [`produce`] generates load.
//! - [`broker`] embeds tansu so `klaxon up` needs no broker install.
//!
//! Every arrow between components is a Kafka topic, so each component scales
//! out as a consumer group and restarts from its committed offsets.

pub mod app;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decode;
pub mod error;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod lake;
pub mod notify;
pub mod points;
pub mod produce;
pub mod query;
pub mod rules;
pub mod shutdown;
pub mod telemetry;
pub mod topics;

pub use error::{Error, ErrorKind, Result};
