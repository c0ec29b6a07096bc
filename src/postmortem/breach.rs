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
/// Points read from the lake at most (all of them in memory, every tag
/// column); past it the rule is not run again and the draft says so.
pub const MAX_POINTS: usize = 1_000_000;

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
    /// The first window evaluated already breached: the breach began at or
    /// before `first_breach`, which is then where the view starts.
    pub breach_before_view: bool,
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
    let first = first_breach(rule, &values, opened_at);
    Ok(view(rule, values, first, notes))
}

fn view(
    rule: &CompiledRule,
    values: Vec<(DateTime<Utc>, Option<f64>)>,
    first: Option<usize>,
    notes: Vec<String>,
) -> RuleView {
    RuleView {
        rule: rule.rule.name.clone(),
        window: rule.rule.window,
        thresholds: rule.rule.thresholds.as_ref().map(|t| t.get_ref().clone()),
        first_breach: first.map(|i| values[i].0),
        breach_before_view: first == Some(0),
        values,
        notes,
    }
}

/// The index of the first window of the run of breaching windows that holds
/// the last breach before the incident opened (a window that ends a hop
/// after the opening counts: event time runs a little behind). Only a
/// window whose value is within the thresholds ends a run: one without a
/// value (a gap in the data) says nothing either way.
fn first_breach(
    rule: &CompiledRule,
    values: &[(DateTime<Utc>, Option<f64>)],
    opened_at: DateTime<Utc>,
) -> Option<usize> {
    let slack = Duration::from_std(rule.rule.every()).unwrap_or_default();
    let breached = |v: f64| severity_of(&rule.rule, v, None).is_some();
    let last = values
        .iter()
        .rposition(|(end, value)| *end <= opened_at + slack && value.is_some_and(breached))?;
    let recovered = values[..=last]
        .iter()
        .rposition(|(_, value)| value.is_some_and(|v| !breached(v)));
    // The first window with a value after the last recovery.
    let from = recovered.map_or(0, |i| i + 1);
    (from..=last).find(|&i| values[i].1.is_some())
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
