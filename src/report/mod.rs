//! `klaxon report`: on-call health from the lake's `incidents` table.
//!
//! Every figure is SQL over `incidents` that DataFusion and DuckDB both run
//! as written (no engine-specific functions: times as `extract(epoch FROM
//! time)`, percentiles by nearest rank with window functions), so
//! `--show-sql` prints what anyone can run again on the files. Only the
//! split of interruptions into business, off and sleep hours is done here,
//! in each person's time zone from the on-call file.
//!
//! - Incidents by service (the alert's `service` label, when alerts carry
//!   one), rule and severity (the severity they opened with).
//! - Time to acknowledge and to resolve, p50 and p95 by nearest rank (the
//!   smallest value with at least that share of incidents at or below it),
//!   over incidents that paged someone before they were resolved: one
//!   resolved before anyone was paged never interrupted anybody.
//! - Interruptions per person: delivered pages, split by the person's local
//!   time into business hours (08–18 on weekdays), sleep hours (22–08 every
//!   day) and off hours (the rest).
//! - The noisiest rules: most triggers, and most incidents the rule resolved
//!   itself within 5 minutes of opening (flapping candidates), and those
//!   whose alert flapped (a route's flap detection).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc, Weekday};
use serde::Serialize;

use crate::{
    notify::OnCall,
    query::{
        QueryEngine, QueryError,
        values::{floats, ints, texts},
    },
};

/// The actor the rules runner resolves with.
pub const RULES_ACTOR: &str = "klaxon";
/// An incident its rule resolved this soon after opening is a flapping
/// candidate.
pub const FLAP_SECS: i64 = 300;
/// Rules listed as the noisiest.
pub const NOISIEST: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ByRule {
    /// The alert's `service` label, when it has one.
    pub service: Option<String>,
    pub rule: String,
    pub severity: String,
    pub incidents: i64,
}

/// Seconds; `None` when no incident qualifies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    /// Incidents that paged someone before they were resolved.
    pub paged_incidents: i64,
    pub tta_p50_s: Option<f64>,
    pub tta_p95_s: Option<f64>,
    pub ttr_p50_s: Option<f64>,
    pub ttr_p95_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interruptions {
    pub user: String,
    /// The zone the hours are counted in.
    pub time_zone: String,
    pub business: u64,
    pub off_hours: u64,
    pub sleep: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Noisy {
    pub rule: String,
    pub triggers: i64,
    pub incidents: i64,
    /// Incidents the rule resolved itself within [`FLAP_SECS`].
    pub self_resolved_within_5m: i64,
    /// Incidents whose alert flapped (their route's flap detection).
    pub flapping: i64,
}

/// One figure's title and the SQL behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Query {
    pub title: &'static str,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub by_rule: Vec<ByRule>,
    pub response: Response,
    pub interruptions: Vec<Interruptions>,
    pub noisiest: Vec<Noisy>,
    #[serde(skip)]
    pub queries: Vec<Query>,
}

/// One row per incident: its service (the label's column, when the table
/// has one), when it opened, was first paged, acknowledged and resolved
/// (epoch seconds), by whom it was resolved, its triggers.
fn per_incident(service_column: bool) -> String {
    let service = if service_column {
        "max(CAST(service AS VARCHAR))"
    } else {
        "CAST(NULL AS VARCHAR)"
    };
    format!(
        "per_incident AS (
  SELECT incident_id,
         {service} AS service,
         max(CAST(rule AS VARCHAR)) AS rule,
         max(CASE WHEN event = 'triggered' THEN CAST(severity AS VARCHAR) END) AS severity,
         min(CASE WHEN event = 'triggered' THEN extract(epoch FROM time) END) AS opened,
         min(CASE WHEN event = 'notified' AND purpose = 'page' AND result = 'delivered'
                  THEN extract(epoch FROM time) END) AS first_page,
         min(CASE WHEN event = 'acknowledged' THEN extract(epoch FROM time) END) AS acked,
         min(CASE WHEN event = 'resolved' THEN extract(epoch FROM time) END) AS resolved,
         max(CASE WHEN event = 'resolved' THEN CAST(actor AS VARCHAR) END) AS resolved_by,
         sum(CASE WHEN event IN ('triggered', 'repeated') THEN 1 ELSE 0 END) AS triggers,
         max(CASE WHEN event = 'flapping' THEN 1 ELSE 0 END) AS flapped
  FROM incidents
  GROUP BY incident_id
)"
    )
}

/// The SQL of each figure, for incidents opened at or after `since`;
/// `service_column` when the table has a `service` label column.
pub fn queries(since: DateTime<Utc>, service_column: bool) -> Vec<Query> {
    let since = since.timestamp();
    let with = per_incident(service_column);
    vec![
        Query {
            title: "Incidents by service, rule and severity",
            sql: format!(
                "WITH {with}
SELECT service, coalesce(rule, '(no rule)') AS rule,
       coalesce(severity, '(unknown)') AS severity, count(*) AS incidents
FROM per_incident WHERE opened >= {since}
GROUP BY service, coalesce(rule, '(no rule)'), coalesce(severity, '(unknown)')
ORDER BY incidents DESC, service NULLS LAST, rule, severity"
            ),
        },
        Query {
            title: "Time to acknowledge and to resolve (seconds, nearest rank)",
            sql: format!(
                "WITH {with},
paged AS (
  SELECT * FROM per_incident
  WHERE opened >= {since} AND first_page IS NOT NULL
    AND (resolved IS NULL OR first_page <= resolved)
),
tta AS (
  SELECT acked - opened AS s, row_number() OVER (ORDER BY acked - opened) AS r,
         count(*) OVER () AS n
  FROM paged WHERE acked IS NOT NULL
),
ttr AS (
  SELECT resolved - opened AS s, row_number() OVER (ORDER BY resolved - opened) AS r,
         count(*) OVER () AS n
  FROM paged WHERE resolved IS NOT NULL
)
SELECT (SELECT count(*) FROM paged) AS paged_incidents,
       (SELECT min(s) FROM tta WHERE r >= ceil(0.5 * n)) AS tta_p50_s,
       (SELECT min(s) FROM tta WHERE r >= ceil(0.95 * n)) AS tta_p95_s,
       (SELECT min(s) FROM ttr WHERE r >= ceil(0.5 * n)) AS ttr_p50_s,
       (SELECT min(s) FROM ttr WHERE r >= ceil(0.95 * n)) AS ttr_p95_s"
            ),
        },
        Query {
            title: "Pages delivered, per person (split into hours by klaxon)",
            sql: format!(
                "SELECT CAST(\"user\" AS VARCHAR) AS \"user\", extract(epoch FROM time) AS paged_at
FROM incidents
WHERE event = 'notified' AND purpose = 'page' AND result = 'delivered'
  AND extract(epoch FROM time) >= {since}
ORDER BY \"user\", paged_at"
            ),
        },
        Query {
            title: "Noisiest rules",
            sql: format!(
                "WITH {with}
SELECT coalesce(rule, '(no rule)') AS rule, sum(triggers) AS triggers, count(*) AS incidents,
       sum(CASE WHEN resolved_by = '{RULES_ACTOR}' AND resolved - opened <= {FLAP_SECS}
                THEN 1 ELSE 0 END) AS self_resolved_within_5m,
       sum(flapped) AS flapping
FROM per_incident WHERE opened >= {since}
GROUP BY coalesce(rule, '(no rule)')
ORDER BY triggers DESC, self_resolved_within_5m DESC, rule
LIMIT {NOISIEST}"
            ),
        },
    ]
}

/// The report of incidents opened since `since`, hours counted in each
/// person's zone from `oncall` (UTC without it).
pub async fn report(
    engine: &QueryEngine,
    since: DateTime<Utc>,
    oncall: Option<&OnCall>,
) -> Result<Report, QueryError> {
    let table = engine.context().table_provider("incidents").await?;
    let service_column = table.schema().field_with_name("service").is_ok();
    let queries = queries(since, service_column);
    let mut results = Vec::new();
    for q in &queries {
        results.push(engine.sql(&q.sql).await?);
    }
    let by_rule = {
        let b = &results[0];
        let (services, rules, severities, counts) = (
            texts(b, "service")?,
            texts(b, "rule")?,
            texts(b, "severity")?,
            ints(b, "incidents")?,
        );
        (0..counts.len())
            .map(|i| ByRule {
                service: services[i].clone(),
                rule: rules[i].clone().unwrap_or_default(),
                severity: severities[i].clone().unwrap_or_default(),
                incidents: counts[i].unwrap_or(0),
            })
            .collect()
    };
    let response = {
        let b = &results[1];
        let figure = |name: &str| -> Result<Option<f64>, QueryError> {
            Ok(floats(b, name)?.first().copied().flatten())
        };
        Response {
            paged_incidents: ints(b, "paged_incidents")?
                .first()
                .copied()
                .flatten()
                .unwrap_or(0),
            tta_p50_s: figure("tta_p50_s")?,
            tta_p95_s: figure("tta_p95_s")?,
            ttr_p50_s: figure("ttr_p50_s")?,
            ttr_p95_s: figure("ttr_p95_s")?,
        }
    };
    let interruptions = {
        let b = &results[2];
        let (users, ats) = (texts(b, "user")?, floats(b, "paged_at")?);
        let mut per: BTreeMap<String, Interruptions> = BTreeMap::new();
        for (user, at) in users.into_iter().zip(ats) {
            let (Some(user), Some(at)) = (user, at) else {
                continue;
            };
            let zone = oncall
                .and_then(|o| o.user_zone(&user))
                .unwrap_or("UTC")
                .to_owned();
            let entry = per.entry(user.clone()).or_insert_with(|| Interruptions {
                user,
                time_zone: zone.clone(),
                ..Interruptions::default()
            });
            let when = DateTime::from_timestamp(at as i64, 0).unwrap_or_default();
            match hours_of(when, &zone) {
                Hours::Business => entry.business += 1,
                Hours::Off => entry.off_hours += 1,
                Hours::Sleep => entry.sleep += 1,
            }
        }
        per.into_values().collect()
    };
    let noisiest = {
        let b = &results[3];
        let (rules, triggers, incidents, self_resolved, flapping) = (
            texts(b, "rule")?,
            ints(b, "triggers")?,
            ints(b, "incidents")?,
            ints(b, "self_resolved_within_5m")?,
            ints(b, "flapping")?,
        );
        (0..rules.len())
            .map(|i| Noisy {
                rule: rules[i].clone().unwrap_or_default(),
                triggers: triggers[i].unwrap_or(0),
                incidents: incidents[i].unwrap_or(0),
                self_resolved_within_5m: self_resolved[i].unwrap_or(0),
                flapping: flapping[i].unwrap_or(0),
            })
            .collect()
    };
    Ok(Report {
        since,
        by_rule,
        response,
        interruptions,
        noisiest,
        queries,
    })
}

/// The `p` percentile (0 < p ≤ 1) of `sorted` by nearest rank: a value that
/// occurred, as the report's SQL computes it; `None` when there is none.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(i - 1).copied()
}

/// When a page reached someone, in their own day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hours {
    /// 08:00–18:00, Monday to Friday.
    Business,
    /// 22:00–08:00, any day.
    Sleep,
    /// The rest: weekday evenings, weekend days.
    Off,
}

/// Which hours `at` falls in, on the wall clock of `zone` (UTC when the
/// zone is unknown; the on-call check refuses unknown zones).
pub fn hours_of(at: DateTime<Utc>, zone: &str) -> Hours {
    let local = match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => tz.from_utc_datetime(&at.naive_utc()).naive_local(),
        Err(_) => at.naive_utc(),
    };
    let hour = local.hour();
    let weekday = !matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
    if !(8..22).contains(&hour) {
        Hours::Sleep
    } else if weekday && hour < 18 {
        Hours::Business
    } else {
        Hours::Off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn hours_are_counted_on_the_persons_wall_clock() {
        // Monday 2026-03-02.
        assert_eq!(hours_of(at("2026-03-02T09:00:00Z"), "UTC"), Hours::Business);
        assert_eq!(hours_of(at("2026-03-02T17:59:59Z"), "UTC"), Hours::Business);
        assert_eq!(hours_of(at("2026-03-02T18:00:00Z"), "UTC"), Hours::Off);
        assert_eq!(hours_of(at("2026-03-02T22:00:00Z"), "UTC"), Hours::Sleep);
        assert_eq!(hours_of(at("2026-03-02T07:59:59Z"), "UTC"), Hours::Sleep);
        // 09:00 UTC is 18:00 in Tokyo: off hours there.
        assert_eq!(
            hours_of(at("2026-03-02T09:00:00Z"), "Asia/Tokyo"),
            Hours::Off
        );
        // 03:00 UTC Monday is 22:00 Sunday in New York: sleep.
        assert_eq!(
            hours_of(at("2026-03-02T03:00:00Z"), "America/New_York"),
            Hours::Sleep
        );
        // Saturday noon.
        assert_eq!(hours_of(at("2026-03-07T12:00:00Z"), "UTC"), Hours::Off);
    }
}
