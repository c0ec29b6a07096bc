//! One incident's facts as the lake's `incidents` table holds them: who was
//! paged on which channel, who acknowledged and resolved when, the timeline.

use std::collections::BTreeMap;

use arrow::{
    array::{Array, AsArray, RecordBatch},
    datatypes::{DataType, Int64Type},
};
use chrono::{DateTime, Utc};

use super::PostmortemError;
use crate::query::QueryEngine;

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
        let Some(incident) = texts(&latest, "incident_id").into_iter().flatten().next() else {
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
        Ok(Self::from_rows(incident, &batches))
    }

    fn from_rows(id: String, batches: &[RecordBatch]) -> Option<Self> {
        let times: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        let seqs: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        let column = |name: &str| texts(batches, name);
        let (events, details) = (column("event"), column("detail"));
        let (actors, users, channels, results, purposes) = (
            column("actor"),
            column("user"),
            column("channel"),
            column("result"),
            column("purpose"),
        );
        let timeline: Vec<Row> = (0..times.len())
            .map(|i| Row {
                at: DateTime::from_timestamp_millis(times[i]).unwrap_or_default(),
                seq: seqs[i],
                event: events[i].clone().unwrap_or_default(),
                actor: actors[i].clone(),
                user: users[i].clone(),
                channel: channels[i].clone(),
                result: results[i].clone(),
                purpose: purposes[i].clone(),
                detail: details[i].clone().unwrap_or_default(),
            })
            .collect();
        let last = timeline.len().checked_sub(1)?;
        let latest = |name: &str| column(name)[last].clone().unwrap_or_default();
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
        Some(Self {
            id,
            dedup_key: latest("dedup_key"),
            rule: column("rule")[last].clone(),
            severity: latest("severity"),
            summary: latest("summary"),
            labels: serde_json::from_str(&latest("labels")).unwrap_or_default(),
            opened_at,
            acknowledged: act("acknowledged", true),
            resolved,
            paged,
            timeline,
        })
    }
}

/// Column `name` of `batches` as text, nulls as `None`.
fn texts(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let Some(column) = b.column_by_name(name) else {
                return vec![None; b.num_rows()];
            };
            let Ok(column) = arrow::compute::cast(column, &DataType::Utf8) else {
                return vec![None; b.num_rows()];
            };
            let column = column.as_string::<i32>();
            (0..column.len())
                .map(|i| column.is_valid(i).then(|| column.value(i).to_owned()))
                .collect()
        })
        .collect()
}
