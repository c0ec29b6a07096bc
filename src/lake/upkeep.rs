//! One pass of lake upkeep: compaction, then retention of every table.
//!
//! `klaxon compact` runs it once over the whole lake; each ingest member runs
//! it every `lake.compaction.interval` over the partitions it owns
//! (`ingest::upkeep`), so the consumer group is the only coordination.

use std::collections::{HashMap, HashSet};

use super::{
    Lake, LakeError, TABLES,
    compact::{CompactionReport, CompactionSettings, compact},
    retention::{RetentionReport, expire},
};
use crate::config::LakeConfig;

/// Which topic partitions a pass may touch.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// All of them (`klaxon compact`).
    Everything,
    /// Those an ingest member owns.
    Partitions(&'a HashSet<(String, i32)>),
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct UpkeepReport {
    pub compaction: CompactionReport,
    /// Per table with a retention.
    pub retention: Vec<(String, RetentionReport)>,
}

/// Compacts what `committed` (each partition's committed offset, read before
/// the pass) shows is final, then deletes hours past each table's retention.
pub async fn run_once(
    lake: &Lake,
    config: &LakeConfig,
    committed: &HashMap<(String, i32), i64>,
    scope: Scope<'_>,
    now_ms: i64,
) -> Result<UpkeepReport, LakeError> {
    let settings = CompactionSettings::from(&config.compaction);
    let compaction = compact(lake, committed, now_ms, &settings).await?;
    let mut retention = Vec::new();
    for table in TABLES {
        let Some(keep) = config.retention_of(table) else {
            continue;
        };
        let only = match scope {
            Scope::Everything => None,
            Scope::Partitions(owned) => Some(owned),
        };
        let report = expire(lake, table, keep, now_ms, only).await?;
        retention.push(((*table).to_owned(), report));
    }
    Ok(UpkeepReport {
        compaction,
        retention,
    })
}
