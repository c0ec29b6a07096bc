//! One pass of lake upkeep: compaction, then retention of every table.
//!
//! `klaxon compact` runs it once; each ingest member runs it every
//! `lake.compaction.interval` (`ingest::upkeep`), compacting the partitions
//! it owns. Retention covers the whole lake in every pass: its deletes are
//! idempotent, and so an idle partition, which no member has flushed since
//! it was assigned, still ages out.

use std::collections::HashMap;

use super::{
    Lake, LakeError, TABLES,
    compact::{CompactionReport, CompactionSettings, compact},
    retention::{RetentionReport, expire},
};
use crate::config::LakeConfig;

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct UpkeepReport {
    pub compaction: CompactionReport,
    /// Per table with a retention.
    pub retention: Vec<(String, RetentionReport)>,
}

/// Compacts what `committed` (each partition's committed offset, read before
/// the pass) shows is final, then deletes hours past each table's retention.
/// Retention runs even when compaction failed; the first error is returned
/// after both.
pub async fn run_once(
    lake: &Lake,
    config: &LakeConfig,
    committed: &HashMap<(String, i32), i64>,
    now_ms: i64,
) -> Result<UpkeepReport, LakeError> {
    let settings = CompactionSettings::from(&config.compaction);
    let compacted = compact(lake, committed, now_ms, &settings).await;
    let mut retention = Vec::new();
    let mut failed = None;
    for table in TABLES {
        let Some(keep) = config.retention_of(table) else {
            continue;
        };
        match expire(lake, table, keep, now_ms).await {
            Ok(report) => retention.push(((*table).to_owned(), report)),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let compaction = compacted?;
    match failed {
        Some(e) => Err(e),
        None => Ok(UpkeepReport {
            compaction,
            retention,
        }),
    }
}
