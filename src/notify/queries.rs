//! The questions the CLI and the HTTP API both answer, as typed results
//! each front end renders: incidents (all, by status, one by id or
//! dedup_key) from the changelog, and who each schedule has on call and
//! until when.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    changelog::read_changelog,
    incident::{Incident, Status},
    oncall::OnCall,
    schedule::{OutOfRange, SHIFT_HORIZON, ScheduleClock},
};
use crate::{config::Config, paging::bound_dedup_key};

/// Why a query or an action of the CLI or the API found nothing to work on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no incident {0:?}")]
    NotFound(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Every incident in the changelog with its partition, oldest first.
pub async fn all_incidents(config: &Config) -> Result<Vec<(i32, Incident)>, ClientError> {
    let (kafka, brokers, topic) = (
        config.kafka.clone(),
        config.kafka.brokers.clone(),
        config.notify.incidents_topic.clone(),
    );
    let logs = tokio::task::spawn_blocking(move || read_changelog(&kafka, &brokers, &topic, None))
        .await
        .expect("the changelog reader does not panic")?;
    let mut incidents: Vec<(i32, Incident)> = logs
        .into_iter()
        .flat_map(|(p, l)| l.incidents.into_iter().map(move |i| (p, i)))
        .collect();
    incidents.sort_by_key(|(_, i)| i.opened_at);
    Ok(incidents)
}

/// The incident with this id, with its partition.
pub async fn find_by_id(config: &Config, id: &str) -> Result<(i32, Incident), ClientError> {
    all_incidents(config)
        .await?
        .into_iter()
        .find(|(_, i)| i.id == id)
        .ok_or_else(|| ClientError::NotFound(id.to_owned()))
}

/// The incident an id or dedup_key names (the open one, for a dedup_key),
/// with its partition.
pub async fn find_incident(config: &Config, id: &str) -> Result<(i32, Incident), ClientError> {
    let incidents = all_incidents(config).await?;
    // Stored as the notifier's intake shortened it.
    let key = bound_dedup_key(id.to_owned());
    incidents
        .iter()
        .find(|(_, i)| i.id == id)
        .or_else(|| {
            incidents
                .iter()
                .rev()
                .find(|(_, i)| i.dedup_key == key && i.is_open())
        })
        .or_else(|| incidents.iter().rev().find(|(_, i)| i.dedup_key == key))
        .cloned()
        .ok_or_else(|| ClientError::NotFound(id.to_owned()))
}

/// Which incidents a listing shows: `open` (triggered or acknowledged), a
/// status's name, or all without one. Any other name matches none.
pub fn status_matches(incident: &Incident, status: Option<&str>) -> bool {
    match status {
        None => true,
        Some("open") => incident.is_open(),
        Some(s) => incident.status.as_str() == s,
    }
}

/// One line of an incident listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRow {
    pub id: String,
    pub status: Status,
    pub summary: String,
    pub severity: crate::paging::Severity,
    pub dedup_key: String,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub resolved_by: Option<String>,
    pub policy: Option<String>,
}

impl From<Incident> for IncidentRow {
    fn from(i: Incident) -> Self {
        Self {
            id: i.id,
            status: i.status,
            summary: i.summary,
            severity: i.severity,
            dedup_key: i.dedup_key,
            opened_at: i.opened_at,
            acknowledged_by: i.acknowledged_by,
            resolved_by: i.resolved_by,
            policy: i.policy,
        }
    }
}

/// The incidents whose status matches (see [`status_matches`]), oldest first.
pub async fn list_incidents(
    config: &Config,
    status: Option<&str>,
) -> Result<Vec<IncidentRow>, ClientError> {
    Ok(all_incidents(config)
        .await?
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| status_matches(i, status))
        .map(IncidentRow::from)
        .collect())
}

/// Who a schedule has on call at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallNow {
    pub schedule: String,
    pub shift: Result<CurrentShift, NoAnswer>,
}

/// The shift under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentShift {
    /// Nobody (a gap) when `None`.
    pub user: Option<String>,
    pub until: DateTime<Utc>,
    /// The shift lasts at least the look-ahead ([`SHIFT_HORIZON`]): `until`
    /// is where klaxon stopped looking, not a handoff.
    pub open_ended: bool,
}

/// Why a schedule has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoAnswer {
    #[error("unknown time zone {0}")]
    UnknownZone(String),
    #[error("{0}")]
    OutOfRange(String),
}

impl From<OutOfRange> for NoAnswer {
    fn from(e: OutOfRange) -> Self {
        NoAnswer::OutOfRange(e.to_string())
    }
}

/// Who each schedule (or only `schedule`) has on call at `at`, and until
/// when, in file order. Empty when no schedule has that id.
pub fn on_call_at(oncall: &OnCall, schedule: Option<&str>, at: DateTime<Utc>) -> Vec<OnCallNow> {
    oncall
        .schedule
        .iter()
        .map(toml::Spanned::get_ref)
        .filter(|s| schedule.is_none_or(|wanted| wanted == s.id))
        .map(|s| {
            let shift = ScheduleClock::new(s)
                .map_err(NoAnswer::UnknownZone)
                .and_then(|clock| Ok(clock.current_shift(at)?))
                .map(|shift| CurrentShift {
                    open_ended: shift.end >= at + SHIFT_HORIZON,
                    user: shift.user,
                    until: shift.end,
                });
            OnCallNow {
                schedule: s.id.clone(),
                shift,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_status_filter_knows_open_and_each_status() {
        let oncall = OnCall::default();
        let opening = super::super::Opening {
            dedup_key: "k".into(),
            summary: "s".into(),
            severity: crate::paging::Severity::Info,
            source: None,
            policy: None,
            target: None,
            rule: None,
            labels: Default::default(),
        };
        let mut i = Incident::open(opening, at("2026-03-02T10:00:00Z"), &oncall);
        let shown = |i: &Incident| {
            [
                None,
                Some("open"),
                Some("triggered"),
                Some("resolved"),
                Some("nonsense"),
            ]
            .map(|s| status_matches(i, s))
        };
        assert_eq!(shown(&i), [true, true, true, false, false]);
        i.resolve("someone", at("2026-03-02T10:01:00Z"));
        assert_eq!(shown(&i), [true, false, false, true, false]);
    }

    #[test]
    fn on_call_answers_per_schedule_until_the_handoff() {
        let oncall: OnCall = toml::from_str(
            r#"
[[user]]
id = "a"
contact = [{ type = "console", address = "log" }]
[[user]]
id = "b"
contact = [{ type = "console", address = "log" }]
[[schedule]]
id = "days"
time_zone = "UTC"
[[schedule.layer]]
users = ["a", "b"]
rotation = "1d"
start = "2026-01-01T00:00:00"
[[schedule]]
id = "nowhere"
time_zone = "Mars/Olympus"
[[schedule.layer]]
users = ["a"]
rotation = "1d"
start = "2026-01-01T00:00:00"
"#,
        )
        .unwrap();
        let now = at("2026-01-01T10:00:00Z");
        let all = on_call_at(&oncall, None, now);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].schedule, "days");
        assert_eq!(
            all[0].shift,
            Ok(CurrentShift {
                user: Some("a".into()),
                until: at("2026-01-02T00:00:00Z"),
                open_ended: false,
            })
        );
        assert_eq!(
            all[1].shift,
            Err(NoAnswer::UnknownZone("Mars/Olympus".into()))
        );
        assert_eq!(on_call_at(&oncall, Some("days"), now).len(), 1);
        assert!(on_call_at(&oncall, Some("nights"), now).is_empty());
    }
}
