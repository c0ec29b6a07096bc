//! The Parquet lake: where points rest, readable by DataFusion, DuckDB, Spark
//! and Trino as they are.
//!
//! Layout under the lake's root:
//!
//! ```text
//! metrics/date=2026-11-24/hour=10/{topic}-{partition:05}-{first:020}-{last:020}.parquet
//! _klaxon/inflight/{topic}/{partition}.json
//! _klaxon/columns/{table}/tag={key}      (see columns)
//! ```
//!
//! File names come from the Kafka offsets they hold, so a replay of the same
//! records rewrites the same file. The in-flight marker lists the files of the
//! flush under way; see [`layout::InflightMarker`] for how it keeps the lake
//! exactly-once when a replay flushes at different boundaries.

pub mod columns;
pub mod compact;
mod dictionary_chunk;
pub mod files;
pub mod layout;
pub mod merge;
mod readable;
pub mod retention;
pub mod stats;
mod store;
pub mod upkeep;
pub mod writer;

pub use store::{Lake, LakeError};

/// The lake's tables, each a directory under the root.
pub const TABLES: &[&str] = &[layout::TABLE_DIR, layout::INCIDENTS_DIR];
