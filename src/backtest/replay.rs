//! The lake's points fed, hour by hour, to the streaming rule engine, with
//! event time as the only clock.
//!
//! Each hour is one query (the lake prunes it to that hour's files), sorted
//! by time, whose batches go into every engine as they stream in, each
//! followed by a tick. In time order no point is late and every window
//! closes once all its points are in, so the engines see what the live
//! runner saw when nothing came late, which is the most a replay can know.
//! The lake's files are sorted by series, so DataFusion sorts each hour
//! (one hour of points in memory); the engines hold only what their open
//! windows need.
//!
//! Event time ends where the points end: windows after the last point are
//! not closed (the live runner closes them as its partitions go idle, by the
//! wall clock, which a replay does not have), so an incident still firing
//! at the last point is reported open.

use std::collections::BTreeMap;

use arrow::array::TimestampMillisecondArray;
use futures::TryStreamExt;

use super::BacktestError;
use crate::{
    paging::PagingEvent,
    points::MS_PER_HOUR,
    query::QueryEngine,
    rules::{PartitionKey, RuleEngine},
};

/// What one rule set's engine did over the replay.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every paging event, in each rule's event-time order.
    pub events: Vec<PagingEvent>,
    pub evaluations: u64,
    /// Windows whose evaluation failed, by rule, with the first error.
    pub failures: BTreeMap<String, (u64, String)>,
}

/// How far a replay has come, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The event time reached (epoch ms).
    pub at_ms: i64,
    /// Hours (of those with points) replayed whole.
    pub hours_done: u64,
    pub hours: u64,
    pub points: u64,
}

/// What the replay read.
#[derive(Debug, Default)]
pub struct Read {
    pub points: u64,
    /// The earliest point's event time.
    pub first_point_ms: Option<i64>,
    /// The latest point's event time: where event time stopped.
    pub last_point_ms: Option<i64>,
}

/// Replays the lake's points in `[from_ms, to_ms)` through every engine,
/// reading the `hours` (epoch ms of their starts, ascending) that hold any.
pub(super) async fn replay(
    lake: &QueryEngine,
    engines: &mut [RuleEngine],
    hours: &[i64],
    (from_ms, to_ms): (i64, i64),
    progress: &mut dyn FnMut(Progress),
) -> Result<(Read, Vec<Replayed>), BacktestError> {
    // One source partition: the lake has no offsets; batches are numbered.
    let source: PartitionKey = ("lake".to_owned(), 0);
    for engine in engines.iter_mut() {
        engine.assign(source.clone(), from_ms);
    }
    let columns: Vec<String> = lake
        .rule_schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name().replace('"', "\"\"")))
        .collect();
    let columns = columns.join(", ");
    let mut read = Read::default();
    let mut replayed: Vec<Replayed> = engines.iter().map(|_| Replayed::default()).collect();
    let mut batch_number = 0;
    for (done, &hour) in hours.iter().enumerate() {
        let (start, end) = (hour.max(from_ms), (hour + MS_PER_HOUR).min(to_ms));
        let sql = format!(
            "SELECT {columns} FROM metrics \
             WHERE time >= to_timestamp_millis({start}) AND time < to_timestamp_millis({end}) \
             ORDER BY time"
        );
        let mut stream = lake.sql_stream(&sql).await?;
        while let Some(batch) = stream.try_next().await? {
            let times = batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .map(|t| t.values());
            let (Some(&first), Some(&last)) =
                (times.and_then(|t| t.first()), times.and_then(|t| t.last()))
            else {
                continue;
            };
            read.points += batch.num_rows() as u64;
            read.first_point_ms.get_or_insert(first);
            read.last_point_ms = Some(last);
            for (engine, out) in engines.iter_mut().zip(&mut replayed) {
                // The wall clock is the hour's end: no partition goes idle,
                // and event time runs on the points alone.
                engine.points(&source, batch_number, batch.clone(), end)?;
                tick_until_caught_up(engine, end, out).await;
            }
            batch_number += 1;
            progress(Progress {
                at_ms: last,
                hours_done: done as u64,
                hours: hours.len() as u64,
                points: read.points,
            });
        }
        progress(Progress {
            at_ms: read.last_point_ms.unwrap_or(end),
            hours_done: done as u64 + 1,
            hours: hours.len() as u64,
            points: read.points,
        });
    }
    Ok((read, replayed))
}

/// Ticks until every window event time allows has closed: one tick closes
/// at most [`crate::rules::MAX_WINDOWS_PER_CALL`] windows per rule, and a
/// quiet day between two hours of points holds more.
async fn tick_until_caught_up(engine: &mut RuleEngine, wall_ms: i64, out: &mut Replayed) {
    loop {
        let tick = engine.tick(wall_ms).await;
        let closed = tick.evaluations + tick.failures.len() as u64;
        out.evaluations += tick.evaluations;
        out.events.extend(tick.events);
        for (rule, error) in tick.failures {
            let failed = out.failures.entry(rule).or_insert((0, error.to_string()));
            failed.0 += 1;
        }
        if closed == 0 {
            return;
        }
    }
}
