//! The alerting rule's own view of the incident: its SQL run again over the
//! lake's points, window by window, around the incident, for the value of the
//! incident's alert instance and the first window that breached.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use chrono::{DateTime, Duration, Utc};

use super::PostmortemError;
use crate::{
    query::QueryEngine,
    rules::{CompiledRule, Thresholds, severity_of},
};

/// Windows evaluated at most: a day of 1-minute hops with room to spare.
pub const MAX_WINDOWS: usize = 2_000;
/// Points read from the lake at most; past it the draft says so.
pub const MAX_POINTS: usize = 5_000_000;

/// What the rule saw, hop by hop, for the incident's instance.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleView {
    pub rule: String,
    pub window: std::time::Duration,
    pub thresholds: Option<Thresholds>,
    /// Each evaluated window's end and the instance's value in it (`None`
    /// when the instance returned no row).
    pub values: Vec<(DateTime<Utc>, Option<f64>)>,
    /// The end of the first window of the breach that led to the trigger.
    pub first_breach: Option<DateTime<Utc>>,
    /// What limited the view (points capped, windows capped).
    pub notes: Vec<String>,
}

/// Runs `rule` over the lake's points from `from` to `to`, stepping as the
/// runner does, and follows the instance whose labels the incident carries.
pub async fn rule_view(
    engine: &QueryEngine,
    rule: &CompiledRule,
    labels: &BTreeMap<String, String>,
    opened_at: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<RuleView, PostmortemError> {
    let r = &rule.rule;
    let every = r.every().as_millis().max(1) as i64;
    let window = r.window.as_millis() as i64;
    let mut notes = Vec::new();
    let points = read_points(
        engine,
        from.timestamp_millis() - window,
        to.timestamp_millis(),
    )
    .await?;
    let read: usize = points.iter().map(RecordBatch::num_rows).sum();
    if read > MAX_POINTS {
        notes.push(format!(
            "the lake holds more than {MAX_POINTS} points in this span; the rule was not run again"
        ));
        return Ok(view(rule, Vec::new(), None, notes));
    }
    let mut end = (from.timestamp_millis().div_euclid(every) + 1) * every;
    let mut values = Vec::new();
    while end <= to.timestamp_millis() {
        if values.len() == MAX_WINDOWS {
            notes.push(format!("only the first {MAX_WINDOWS} windows are shown"));
            break;
        }
        let observed = rule.evaluate_window(&points, end - window, end).await?;
        let value = observed
            .iter()
            .find(|o| o.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|o| o.value);
        values.push((
            DateTime::from_timestamp_millis(end).unwrap_or_default(),
            value,
        ));
        end += every;
    }
    let first_breach = first_breach(rule, &values, opened_at);
    Ok(view(rule, values, first_breach, notes))
}

fn view(
    rule: &CompiledRule,
    values: Vec<(DateTime<Utc>, Option<f64>)>,
    first_breach: Option<DateTime<Utc>>,
    notes: Vec<String>,
) -> RuleView {
    RuleView {
        rule: rule.rule.name.clone(),
        window: rule.rule.window,
        thresholds: rule.rule.thresholds.as_ref().map(|t| t.get_ref().clone()),
        values,
        first_breach,
        notes,
    }
}

/// The start of the run of breaching windows that holds the last breach
/// before the incident opened (a window that ends a hop after the opening
/// counts: event time runs a little behind).
fn first_breach(
    rule: &CompiledRule,
    values: &[(DateTime<Utc>, Option<f64>)],
    opened_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let slack = Duration::from_std(rule.rule.every()).unwrap_or_default();
    let breached =
        |value: Option<f64>| value.is_some_and(|v| severity_of(&rule.rule, v, None).is_some());
    let last = values
        .iter()
        .rposition(|(end, value)| *end <= opened_at + slack && breached(*value))?;
    let start = values[..=last]
        .iter()
        .rposition(|(_, value)| !breached(*value))
        .map_or(0, |i| i + 1);
    Some(values[start].0)
}

/// The lake's points in `[from, to)` (epoch ms), in the columns a rule sees.
async fn read_points(
    engine: &QueryEngine,
    from: i64,
    to: i64,
) -> Result<Vec<RecordBatch>, PostmortemError> {
    let columns: Vec<String> = engine
        .rule_schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name().replace('"', "\"\"")))
        .collect();
    let sql = format!(
        "SELECT {} FROM metrics \
         WHERE time >= to_timestamp_millis({from}) AND time < to_timestamp_millis({to}) \
         LIMIT {}",
        columns.join(", "),
        MAX_POINTS + 1
    );
    Ok(engine.sql(&sql).await?)
}
