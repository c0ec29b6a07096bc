//! Event time for the streaming rule evaluator: per-partition watermarks,
//! idle partitions, allowed lateness, and which windows are ready to close.
//!
//! Pure code: wall-clock time is passed in, so every case is testable without
//! sleeping.
//!
//! - A partition's watermark is the greatest event time it has delivered,
//!   but never more than `max_future` ahead of the wall clock when it was
//!   delivered: a producer's clock far ahead cannot move event time on and
//!   make every real point late.
//! - The stream's watermark is the least over its partitions, so a window
//!   closes only when every partition has moved past it.
//! - A partition that has delivered nothing for `idle_timeout` of wall time
//!   stops holding time back. Its watermark follows processing time (wall
//!   clock minus the idle timeout), so a quiet partition cannot stall alerts.
//! - A window `[start, end)` closes once the watermark reaches
//!   `end + allowed_lateness`. A point is late when every window that holds
//!   it has closed: counted, and skipped for alerting (the lake still has it).
//!
//! - However far event time jumps, one call hands out at most
//!   [`MAX_WINDOWS_PER_CALL`] windows; the rest follow on the next calls.
//!
//! One `Watermarks` serves one rule, since closing depends on its window.

use std::collections::HashMap;

/// A source partition: topic and partition number.
pub type PartitionKey = (String, i32);

/// Windows one [`Watermarks::closable`] call hands out at most, so a jump of
/// event time (a year of backlog, or a point dated far ahead under wide
/// limits) costs bounded memory and a bounded tick, never one allocation per
/// window of the gap (a point at 8.9e15 ms once asked for 7 TB).
pub const MAX_WINDOWS_PER_CALL: i64 = 1_000;

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    max_event_ms: i64,
    last_record_wall_ms: i64,
}

/// How a point relates to the windows already closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    OnTime,
    /// Its window has closed: count it, do not evaluate it.
    Late,
}

#[derive(Debug, Clone)]
pub struct Watermarks {
    partitions: HashMap<PartitionKey, PartitionClock>,
    idle_timeout_ms: i64,
    allowed_lateness_ms: i64,
    /// The rule's window length and hop: a point counts until the last window
    /// that holds it closes.
    window_ms: i64,
    every_ms: i64,
    /// How far ahead of the wall clock a partition's watermark may go.
    max_future_ms: i64,
    /// Everything before this has been handed out as closed; never goes back.
    closed_until_ms: Option<i64>,
    /// The earliest event time seen, where the first window starts.
    first_event_ms: Option<i64>,
}

impl Watermarks {
    pub fn new(
        idle_timeout_ms: i64,
        allowed_lateness_ms: i64,
        window_ms: i64,
        every_ms: i64,
    ) -> Self {
        Self {
            partitions: HashMap::new(),
            idle_timeout_ms,
            allowed_lateness_ms,
            window_ms,
            every_ms,
            max_future_ms: i64::MAX,
            closed_until_ms: None,
            first_event_ms: None,
        }
    }

    /// Bounds each partition's watermark to the wall clock plus
    /// `max_future_ms` (unbounded by default).
    pub fn with_max_future(mut self, max_future_ms: i64) -> Self {
        self.max_future_ms = max_future_ms;
        self
    }

    /// A partition was assigned: it holds time back from `wall_ms` on, even
    /// before its first record, until it goes idle.
    pub fn assign(&mut self, partition: PartitionKey, wall_ms: i64) {
        self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_ms: i64::MIN,
            last_record_wall_ms: wall_ms,
        });
    }

    /// A partition was revoked: it no longer holds time back.
    pub fn revoke(&mut self, partition: &PartitionKey) {
        self.partitions.remove(partition);
    }

    /// Notes a point's event time, and says whether its window already closed.
    pub fn observe(&mut self, partition: &PartitionKey, event_ms: i64, wall_ms: i64) -> Arrival {
        let clock = self
            .partitions
            .entry(partition.clone())
            .or_insert(PartitionClock {
                max_event_ms: i64::MIN,
                last_record_wall_ms: wall_ms,
            });
        let clock_ms = event_ms.min(wall_ms.saturating_add(self.max_future_ms));
        clock.max_event_ms = clock.max_event_ms.max(clock_ms);
        clock.last_record_wall_ms = wall_ms;
        self.first_event_ms = Some(self.first_event_ms.map_or(clock_ms, |f| f.min(clock_ms)));
        // Windows `[end - window, end)` hold the point for every grid end in
        // `(event, event + window]`; the last is the grid point at or below
        // `event + window`.
        let last_end = grid_floor(event_ms.saturating_add(self.window_ms), self.every_ms);
        match self.closed_until_ms {
            Some(closed) if last_end <= closed => Arrival::Late,
            _ => Arrival::OnTime,
        }
    }

    /// The stream's event time: the least partition watermark, idle
    /// partitions following processing time. `None` until there is one.
    pub fn watermark(&self, wall_ms: i64) -> Option<i64> {
        self.partitions
            .values()
            .map(|c| {
                if wall_ms - c.last_record_wall_ms >= self.idle_timeout_ms {
                    c.max_event_ms.max(wall_ms - self.idle_timeout_ms)
                } else {
                    c.max_event_ms
                }
            })
            .min()
            .filter(|w| *w != i64::MIN)
    }

    /// The end of the last window handed out as closed.
    pub fn closed_until(&self) -> Option<i64> {
        self.closed_until_ms
    }

    /// The earliest event time seen, where the first window starts.
    pub fn first_event(&self) -> Option<i64> {
        self.first_event_ms
    }

    /// Picks up where a checkpoint left off: windows up to `closed_until_ms`
    /// were evaluated before. If the rule's hop changed since, the mark moves
    /// back to the new grid, so no window of the new grid is skipped.
    pub fn resume(&mut self, closed_until_ms: Option<i64>, first_event_ms: Option<i64>) {
        self.closed_until_ms = closed_until_ms.map(|c| grid_floor(c, self.every_ms));
        self.first_event_ms = first_event_ms;
    }

    /// The same clock for a rule whose window or hop changed: partitions and
    /// the first event carry over, the closed mark moves onto the new grid.
    pub fn with_grid(&self, window_ms: i64, every_ms: i64) -> Self {
        let mut marks = Self {
            window_ms,
            every_ms,
            ..self.clone()
        };
        marks.resume(self.closed_until_ms, self.first_event_ms);
        marks
    }

    /// Ends of the windows (on the grid of the hop) that can close now, in
    /// order, each handed out once, at most [`MAX_WINDOWS_PER_CALL`] of them.
    /// A window `[end - window, end)` is ready when the watermark has passed
    /// `end + allowed_lateness`.
    pub fn closable(&mut self, wall_ms: i64) -> Vec<i64> {
        let every_ms = self.every_ms;
        let Some(watermark) = self.watermark(wall_ms) else {
            return Vec::new();
        };
        let ready_until = watermark.saturating_sub(self.allowed_lateness_ms);
        // The last grid point at or before `ready_until`.
        let last = grid_floor(ready_until, every_ms);
        let first = match self.closed_until_ms {
            Some(closed) => closed.saturating_add(every_ms),
            // Start with the first window that ends after the earliest point.
            None => {
                let earliest = self.first_event_ms.unwrap_or(last);
                grid_floor(earliest, every_ms).saturating_add(every_ms)
            }
        };
        if first > last {
            return Vec::new();
        }
        // i128: the span between two event times may not fit an i64.
        let windows = (last as i128 - first as i128) / every_ms as i128 + 1;
        let count = windows.min(MAX_WINDOWS_PER_CALL as i128) as i64;
        let last = first + (count - 1) * every_ms;
        self.closed_until_ms = Some(last);
        (0..count).map(|i| first + i * every_ms).collect()
    }
}

/// The grid point of hop `every_ms` at or below `t` (saturating at the ends
/// of the range, where no grid point is exact).
fn grid_floor(t: i64, every_ms: i64) -> i64 {
    t.div_euclid(every_ms).saturating_mul(every_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000;
    const M: i64 = 60 * S;

    fn p(n: i32) -> PartitionKey {
        ("metrics".to_owned(), n)
    }

    #[test]
    fn the_slowest_partition_holds_time_back() {
        let mut w = Watermarks::new(30 * S, 0, M, M);
        w.assign(p(0), 0);
        w.assign(p(1), 0);
        w.observe(&p(0), 5 * M, 0);
        assert_eq!(
            w.watermark(1),
            None,
            "partition 1 has delivered nothing yet"
        );
        w.observe(&p(1), 2 * M, 1);
        assert_eq!(w.watermark(2), Some(2 * M));
        w.observe(&p(1), 3 * M, 2);
        assert_eq!(w.watermark(3), Some(3 * M));
    }

    #[test]
    fn an_idle_partition_follows_processing_time() {
        let mut w = Watermarks::new(30 * S, 0, M, M);
        w.assign(p(0), 0);
        w.assign(p(1), 0);
        w.observe(&p(0), 10 * M, 0);
        w.observe(&p(1), M, 0);
        assert_eq!(w.watermark(29 * S), Some(M), "not idle yet");
        // Partition 1 silent for the idle timeout: it follows the wall clock
        // (here, wall time is event time plus nothing).
        let wall = 5 * M;
        w.observe(&p(0), 10 * M, wall);
        assert_eq!(w.watermark(wall), Some(wall - 30 * S));
        // Once it speaks again it holds time back by its own events.
        w.observe(&p(1), 2 * M, wall);
        assert_eq!(w.watermark(wall), Some(2 * M));
    }

    #[test]
    fn windows_close_once_each_in_order_after_lateness() {
        let mut w = Watermarks::new(i64::MAX / 4, 10 * S, M, M);
        w.assign(p(0), 0);
        w.observe(&p(0), 30 * S, 0);
        assert!(w.closable(0).is_empty());
        w.observe(&p(0), M + 5 * S, 0);
        assert!(
            w.closable(0).is_empty(),
            "the 1m window waits for 10s of lateness"
        );
        w.observe(&p(0), M + 10 * S, 0);
        assert_eq!(w.closable(0), [M]);
        assert!(w.closable(0).is_empty(), "handed out once");
        w.observe(&p(0), 4 * M + 15 * S, 0);
        assert_eq!(w.closable(0), [2 * M, 3 * M, 4 * M]);
    }

    #[test]
    fn points_for_closed_windows_are_late() {
        let mut w = Watermarks::new(i64::MAX / 4, 0, M, M);
        w.assign(p(0), 0);
        w.observe(&p(0), 30 * S, 0);
        w.observe(&p(0), 2 * M, 0);
        assert_eq!(w.closable(0), [M, 2 * M]);
        assert_eq!(w.observe(&p(0), 2 * M - 1, 0), Arrival::Late);
        assert_eq!(w.observe(&p(0), 2 * M, 0), Arrival::OnTime);
    }

    #[test]
    fn with_hopping_windows_a_point_counts_until_its_last_window_closes() {
        // 2m windows every minute: a point at 1m30s is in the windows ending
        // at 2m and at 3m.
        let mut w = Watermarks::new(i64::MAX / 4, 0, 2 * M, M);
        w.assign(p(0), 0);
        w.observe(&p(0), 30 * S, 0);
        w.observe(&p(0), 2 * M, 0);
        assert_eq!(w.closable(0), [M, 2 * M]);
        assert_eq!(
            w.observe(&p(0), M + 30 * S, 0),
            Arrival::OnTime,
            "still in [1m, 3m)"
        );
        w.observe(&p(0), 3 * M, 0);
        assert_eq!(w.closable(0), [3 * M]);
        assert_eq!(w.observe(&p(0), M + 30 * S, 0), Arrival::Late);
    }

    #[test]
    fn no_window_closes_before_the_first_point() {
        let mut w = Watermarks::new(i64::MAX / 4, 0, M, M);
        w.assign(p(0), 0);
        w.observe(&p(0), 2 * M, 0);
        assert!(w.closable(0).is_empty(), "[1m, 2m) holds nothing");
        w.observe(&p(0), 3 * M, 0);
        assert_eq!(w.closable(0), [3 * M]);
    }

    #[test]
    fn resuming_continues_after_the_last_closed_window() {
        let mut w = Watermarks::new(i64::MAX / 4, 0, M, M);
        w.resume(Some(3 * M), Some(30 * S));
        w.assign(p(0), 0);
        assert_eq!(w.observe(&p(0), 2 * M, 0), Arrival::Late, "already closed");
        w.observe(&p(0), 5 * M, 0);
        assert_eq!(w.closable(0), [4 * M, 5 * M]);
        // A new hop of 2m: the mark moves back onto the new grid.
        let mut w = Watermarks::new(i64::MAX / 4, 0, 4 * M, 2 * M);
        w.resume(Some(3 * M), Some(30 * S));
        assert_eq!(w.closed_until(), Some(2 * M));
    }

    #[test]
    fn a_point_far_ahead_moves_event_time_at_most_max_future() {
        let mut w = Watermarks::new(i64::MAX / 4, 0, M, M).with_max_future(M);
        w.assign(p(0), 0);
        let wall = 10 * M;
        w.observe(&p(0), wall + 24 * 60 * M, wall);
        assert_eq!(w.watermark(wall), Some(wall + M), "clamped to wall + 1m");
        // Real points of the next minutes still count.
        assert_eq!(w.observe(&p(0), wall + 30 * S, wall), Arrival::OnTime);
        w.observe(&p(0), 8_900_000_000_000_000, wall + S);
        assert_eq!(w.watermark(wall + S), Some(wall + S + M));
    }

    #[test]
    fn a_huge_gap_of_windows_is_handed_out_in_bounded_steps() {
        // No bound on the future: a point at 8.9e15 ms after one at 0 opens
        // about 1.5e11 one-minute windows.
        let mut w = Watermarks::new(i64::MAX / 4, 0, M, M);
        w.assign(p(0), 0);
        w.observe(&p(0), 0, 0);
        w.observe(&p(0), 8_900_000_000_000_000, 0);
        let first = w.closable(0);
        assert_eq!(first.len() as i64, MAX_WINDOWS_PER_CALL);
        assert_eq!(first[0], M);
        let second = w.closable(0);
        assert_eq!(second[0], first[first.len() - 1] + M, "continues in order");
        // Event times at the ends of the range do not overflow.
        let mut w = Watermarks::new(i64::MAX / 4, 0, M, M);
        w.assign(p(0), 0);
        assert_eq!(w.observe(&p(0), i64::MAX - 1, 0), Arrival::OnTime);
        w.observe(&p(0), i64::MIN + 1, 0);
        assert_eq!(w.closable(0).len() as i64, MAX_WINDOWS_PER_CALL);
    }

    #[test]
    fn a_revoked_partition_stops_holding_time_back() {
        let mut w = Watermarks::new(i64::MAX / 4, 0, M, M);
        w.assign(p(0), 0);
        w.assign(p(1), 0);
        w.observe(&p(0), 5 * M, 0);
        w.observe(&p(1), M, 0);
        assert_eq!(w.watermark(0), Some(M));
        w.revoke(&p(1));
        assert_eq!(w.watermark(0), Some(5 * M));
    }
}
