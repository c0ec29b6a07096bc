//! Incident history in the lake: every timeline entry of every incident
//! (trigger, repeated trigger, escalation, schedule gap, notification with
//! its channel and result, acknowledgement, resolve, manual page) as a row of
//! the table `incidents`, exactly once, in the hive layout of `metrics`.
//!
//! **Why the changelog, not `paging`.** `paging` holds what people and rules
//! asked for; most of a timeline is what the notifier decided on its own
//! timers (escalations, notifications and how they went, gaps, expired
//! acknowledgements). Only the `incidents` changelog holds those. Each
//! version of an incident there carries its whole bounded timeline, every
//! entry with a stable number in the incident's history
//! ([`Incident::numbered_timeline`](crate::notify::Incident::numbered_timeline)),
//! so the writer keeps, per incident, the highest number in the lake and
//! writes only the entries past it.
//!
//! **Exactly once.** As ingest does for points: a flush's files are named by
//! the changelog offsets they cover, listed first in an in-flight marker, and
//! the offsets are committed only once the files are durable. A partition
//! (re)started discards an interrupted flush, then reads the highest numbers
//! back from its own files ([`written`]), so they always match the committed
//! offset: a replay writes what the lake lacks and nothing it has.
//!
//! **What can be missed.** An entry is written if some version of its
//! incident that the writer reads still holds it. A timeline keeps its first
//! 20 and last 50 entries, so an incident that gains more than 50 entries
//! between two versions the writer reads loses the middle ones (the
//! notifier writes a version per change, so this takes a compacted-away
//! backlog or a burst within one change). Kafka compacts only closed
//! segments: set `min.compaction.lag.ms` on the changelog above the longest
//! outage the writer may have. Rows past the lake's retention for
//! `incidents` are gone, and an incident that changes after its rows aged
//! out writes its kept entries again.

mod rows;
mod stage;
mod written;

pub use rows::{
    EVENT, INCIDENT_ID, IncidentRows, MAX_LABEL_COLUMNS, RESERVED_LABEL_PREFIX, SEQ, fixed_fields,
    label_column_name,
};
pub use stage::{History, write_rows};

use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    error::ErrorKind,
    kafka::member::Backoff,
    lake::{Lake, LakeError},
};

/// Runs the history writer until `stop`, starting it again after a pause
/// whenever it fails: the lake's incident history must never take paging
/// down with it, so it runs beside the notifier rather than with it.
pub async fn run_until_stopped(config: Config, lake: Lake, stop: CancellationToken) {
    let mut backoff = Backoff::up_to(Duration::from_secs(60));
    loop {
        let ran = match History::new(&config, lake.clone()) {
            Ok(history) => history.run(stop.clone()).await,
            Err(e) => Err(e),
        };
        match ran {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "the incident history writer failed; starting it again");
                metrics::counter!("klaxon_history_restarts_total").increment(1);
            }
        }
        tokio::select! {
            () = backoff.wait() => {}
            () = stop.cancelled() => return,
        }
    }
}

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

impl HistoryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            HistoryError::Kafka(_) => ErrorKind::External,
            HistoryError::Lake(e) => e.kind(),
        }
    }
}

impl From<arrow::error::ArrowError> for HistoryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        HistoryError::Lake(e.into())
    }
}
