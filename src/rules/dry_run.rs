//! `klaxon rules test`: replays points from a file through rules, stepping
//! event time window by window, and returns the paging events they would raise.

use arrow::{
    array::{AsArray, RecordBatch},
    datatypes::TimestampMillisecondType,
};
use datafusion::error::DataFusionError;

use super::{evaluate::CompiledRule, event::to_event, state::AlertStates};
use crate::paging::PagingEvent;

/// Replays `points` (one batch, any order) through `rule` and returns its events.
pub async fn replay(
    rule: &CompiledRule,
    points: &RecordBatch,
) -> Result<Vec<PagingEvent>, DataFusionError> {
    let r = &rule.rule;
    let times = points
        .column_by_name("time")
        .map(|c| c.as_primitive::<TimestampMillisecondType>());
    let (Some(min), Some(max)) = (
        times.and_then(|t| t.values().iter().min().copied()),
        times.and_then(|t| t.values().iter().max().copied()),
    ) else {
        return Ok(Vec::new());
    };
    let every = r.every().as_millis() as i64;
    let window = r.window.as_millis() as i64;
    // Run on until every timer a rule has could have expired.
    let settle = [
        r.pending_for,
        r.keep_firing_for,
        r.no_data.as_ref().map(|n| n.after),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.as_millis() as i64)
    .sum::<i64>();
    let first = (min.div_euclid(every) + 1) * every;
    let last = max + window + settle + every;
    let mut states = AlertStates::default();
    let mut events = Vec::new();
    let mut end = first;
    while end <= last {
        let start = end - window;
        let observed = rule
            .evaluate_window(std::slice::from_ref(points), start, end)
            .await?;
        for t in states.advance(r, end, &observed) {
            events.push(to_event(r, &t, start, end));
        }
        end += every;
    }
    Ok(events)
}
