//! Lake upkeep inside an ingest member: every `lake.compaction.interval` it
//! compacts the partitions it owns and applies retention to the lake.
//!
//! The member knows a partition's committed offset from its own commits, so
//! it compacts a partition once it has flushed it since it was assigned. The
//! pass runs as a task of its own, never on the path to a commit; a stop
//! aborts it, which compaction survives as it survives kill -9 (see
//! `lake::compact`). A pass also deletes covered files of any partition,
//! so a member restarted after a compaction was killed finishes it.

use std::collections::HashMap;

use tokio::task::JoinHandle;

use crate::{
    clock::now_ms,
    config::LakeConfig,
    lake::{Lake, upkeep::run_once},
};

pub(super) struct Upkeep {
    lake: Lake,
    config: LakeConfig,
    /// Committed offset of each partition this member owns and has flushed.
    committed: HashMap<(String, i32), i64>,
    running: Option<JoinHandle<()>>,
}

impl Upkeep {
    pub(super) fn new(lake: Lake, config: LakeConfig) -> Self {
        Self {
            lake,
            config,
            committed: HashMap::new(),
            running: None,
        }
    }

    /// Whether ingest runs upkeep at all, and how often.
    pub(super) fn interval(&self) -> Option<std::time::Duration> {
        self.config
            .compaction
            .enabled
            .then_some(self.config.compaction.interval)
    }

    pub(super) fn committed(&mut self, topic: &str, partition: i32, next: i64) {
        self.committed.insert((topic.to_owned(), partition), next);
    }

    /// The partition is another member's now: it compacts it.
    pub(super) fn lost(&mut self, topic: &str, partition: i32) {
        self.committed.remove(&(topic.to_owned(), partition));
    }

    /// Starts a pass unless one is still running.
    pub(super) fn start(&mut self) {
        if self.running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let (lake, config, committed) = (
            self.lake.clone(),
            self.config.clone(),
            self.committed.clone(),
        );
        self.running = Some(tokio::spawn(async move {
            match run_once(&lake, &config, &committed, now_ms()).await {
                Ok(report) => {
                    let c = &report.compaction;
                    if c.merged + c.covered_deleted > 0
                        || report.retention.iter().any(|(_, r)| r.files > 0)
                    {
                        tracing::info!(
                            merged = c.merged,
                            written = c.written,
                            covered_deleted = c.covered_deleted,
                            expired = report.retention.iter().map(|(_, r)| r.files).sum::<usize>(),
                            "lake upkeep"
                        );
                    }
                }
                Err(e) => {
                    metrics::counter!("klaxon_lake_compaction_failures_total").increment(1);
                    tracing::warn!(error = %e, "lake upkeep failed; the next pass tries again");
                }
            }
        }));
    }

    /// Aborts a pass under way.
    pub(super) fn stop(&mut self) {
        if let Some(task) = self.running.take() {
            task.abort();
        }
    }
}
