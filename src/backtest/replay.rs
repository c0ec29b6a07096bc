//! The lake's points fed, hour by hour, to the streaming rule engine, with
//! event time as the only clock.
//!
//! Each hour is one query (the lake prunes it to that hour's files) whose
//! batches go into every engine as they stream in; then the engines tick.
//! Within an hour order does not matter: windows close only at a tick, and
//! the next hour's points are all later than every window a tick closed. So
//! the engines see what the live runner saw when nothing came late, which is
//! the most a replay can know. An engine holds one hour of points at most.
//!
//! Event time ends where the points end: windows after the last point are
//! not closed (the live runner closes them as its partitions go idle, by the
//! wall clock, which a replay does not have), so an incident still firing
//! at the last point is reported open.

use std::collections::BTreeMap;

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
    /// The hour just replayed (epoch ms of its start).
    pub hour_ms: i64,
    pub hours_done: u64,
    pub hours: u64,
    pub points: u64,
}

/// What the replay read.
#[derive(Debug, Default)]
pub struct Read {
    pub points: u64,
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
             WHERE time >= to_timestamp_millis({start}) AND time < to_timestamp_millis({end})"
        );
        let mut stream = lake.sql_stream(&sql).await?;
        let mut any = false;
        while let Some(batch) = stream.try_next().await? {
            if batch.num_rows() == 0 {
                continue;
            }
            read.points += batch.num_rows() as u64;
            let times = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMillisecondArray>();
            if let Some(times) = times {
                for &&t in [times.values().iter().min(), times.values().iter().max()]
                    .iter()
                    .flatten()
                {
                    read.first_point_ms = Some(read.first_point_ms.map_or(t, |f| f.min(t)));
                    read.last_point_ms = Some(read.last_point_ms.map_or(t, |l| l.max(t)));
                }
            }
            for engine in engines.iter_mut() {
                // The wall clock is the hour's end: no partition goes idle
                // inside an hour, and event time runs on the points alone.
                engine.points(&source, batch_number, batch.clone(), end)?;
            }
            batch_number += 1;
            any = true;
        }
        if any {
            for (engine, out) in engines.iter_mut().zip(&mut replayed) {
                tick_until_caught_up(engine, end, out).await;
            }
        }
        progress(Progress {
            hour_ms: hour,
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
