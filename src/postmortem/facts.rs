//! One incident's facts as the lake's `incidents` table holds them: who was
//! paged on which channel, who acknowledged and resolved when, the timeline.

use std::collections::BTreeMap;

use arrow::{array::RecordBatch, error::ArrowError};
use chrono::{DateTime, Utc};

use super::PostmortemError;
use crate::query::{
    QueryEngine, QueryError,
    values::{ints, texts},
};

/// One timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub at: DateTime<Utc>,
    pub seq: i64,
    pub event: String,
    pub actor: Option<String>,
    pub user: Option<String>,
    pub channel: Option<String>,
    pub result: Option<String>,
    pub purpose: Option<String>,
    pub detail: String,
}

/// A notification: to whom, how, and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub at: DateTime<Utc>,
    pub user: String,
    pub channel: String,
    pub result: String,
}

/// Who did something when.
#[derive(Debug, Clone, PartialEq)]
pub struct Act {
    pub at: DateTime<Utc>,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentFacts {
    pub id: String,
    pub dedup_key: String,
    pub rule: Option<String>,
    pub severity: String,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    /// The first `triggered` entry (the incident's opening).
    pub opened_at: DateTime<Utc>,
    pub acknowledged: Option<Act>,
    pub resolved: Option<Act>,
    /// Pages sent before the resolve, delivered or not.
    pub paged: Vec<Notice>,
    pub timeline: Vec<Row>,
}

impl IncidentFacts {
    /// The incident `id` (or the latest one under the dedup_key `id`) from
    /// the lake; `None` when the table has no row of it.
    pub async fn read(engine: &QueryEngine, id: &str) -> Result<Option<Self>, PostmortemError> {
        let quoted = id.replace('\'', "''");
        let latest = engine
            .sql(&format!(
                "SELECT incident_id FROM incidents \
                 WHERE incident_id = '{quoted}' OR dedup_key = '{quoted}' \
                 ORDER BY time DESC LIMIT 1"
            ))
            .await?;
        let ids = texts(&latest, "incident_id").map_err(QueryError::from)?;
        let Some(incident) = ids.into_iter().flatten().next() else {
            return Ok(None);
        };
        let batches = engine
            .sql(&format!(
                "SELECT CAST(time AS BIGINT) AS t, seq, event, dedup_key, rule, severity, summary, \
                 actor, \"user\", channel, result, purpose, detail, labels FROM incidents \
                 WHERE incident_id = '{}' ORDER BY seq",
                incident.replace('\'', "''")
            ))
            .await?;
        Ok(Self::from_rows(incident, &batches).map_err(QueryError::from)?)
    }

    fn from_rows(id: String, batches: &[RecordBatch]) -> Result<Option<Self>, ArrowError> {
        let (times, seqs) = (ints(batches, "t")?, ints(batches, "seq")?);
        let (events, details) = (texts(batches, "event")?, texts(batches, "detail")?);
        let (actors, users, channels, results, purposes) = (
            texts(batches, "actor")?,
            texts(batches, "user")?,
            texts(batches, "channel")?,
            texts(batches, "result")?,
            texts(batches, "purpose")?,
        );
        let timeline: Vec<Row> = (0..times.len())
            .map(|i| Row {
                at: DateTime::from_timestamp_millis(times[i].unwrap_or_default())
                    .unwrap_or_default(),
                seq: seqs[i].unwrap_or_default(),
                event: events[i].clone().unwrap_or_default(),
                actor: actors[i].clone(),
                user: users[i].clone(),
                channel: channels[i].clone(),
                result: results[i].clone(),
                purpose: purposes[i].clone(),
                detail: details[i].clone().unwrap_or_default(),
            })
            .collect();
        let Some(last) = timeline.len().checked_sub(1) else {
            return Ok(None);
        };
        // The incident as its latest entry's row has it.
        let latest = |name: &str| -> Result<Option<String>, ArrowError> {
            Ok(texts(batches, name)?.swap_remove(last))
        };
        let opened_at = timeline
            .iter()
            .find(|r| r.event == "triggered")
            .unwrap_or(&timeline[0])
            .at;
        let act = |event: &str, first: bool| {
            let mut matching = timeline.iter().filter(|r| r.event == event);
            let row = if first {
                matching.next()
            } else {
                matching.next_back()
            }?;
            Some(Act {
                at: row.at,
                by: row.actor.clone().unwrap_or_default(),
            })
        };
        let resolved = act("resolved", false);
        let resolve_seq = timeline
            .iter()
            .find(|r| r.event == "resolved")
            .map_or(i64::MAX, |r| r.seq);
        // Pages, not resolve notices: by `purpose`, or for entries written
        // before it was kept, by coming before the resolve.
        let paged = timeline
            .iter()
            .filter(|r| matches!(r.event.as_str(), "notified" | "notify_failed"))
            .filter(|r| match r.purpose.as_deref() {
                Some(purpose) => purpose == "page",
                None => r.seq < resolve_seq,
            })
            .map(|r| Notice {
                at: r.at,
                user: r.user.clone().unwrap_or_default(),
                channel: r.channel.clone().unwrap_or_default(),
                result: r.result.clone().unwrap_or_default(),
            })
            .collect();
        Ok(Some(Self {
            id,
            dedup_key: latest("dedup_key")?.unwrap_or_default(),
            rule: latest("rule")?,
            severity: latest("severity")?.unwrap_or_default(),
            summary: latest("summary")?.unwrap_or_default(),
            labels: serde_json::from_str(&latest("labels")?.unwrap_or_default())
                .unwrap_or_default(),
            opened_at,
            acknowledged: act("acknowledged", true),
            resolved,
            paged,
            timeline,
        }))
    }
}
