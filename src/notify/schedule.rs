//! Who is on call, as pure code over an instant.
//!
//! - A layer's turns are counted on the schedule's local wall clock: turn `k`
//!   begins at `start + k * rotation` local time, so a weekly 09:00 handoff
//!   stays at 09:00 across daylight-saving changes (the turn that spans the
//!   change is an hour shorter or longer).
//! - A local time that does not exist (the hour skipped in spring) means the
//!   first instant after the skip; one that occurs twice (autumn) means the
//!   first occurrence. Turns are settled on those UTC instants, so a handoff
//!   happens exactly once.
//! - Restrictions are local wall-clock windows; outside them the layer has
//!   nobody.
//! - The final schedule: the latest override covering the instant, else the
//!   highest layer (last in the file) with someone on call, else nobody. A gap
//!   is an explicit answer (`None`), never a silent skip: escalation records
//!   it and moves on.
//! - The turn under way is computed, not walked to, so an instant far from
//!   the layer's start costs the same as one near it. Questions about an
//!   instant (`klaxon oncall --at`, the API) must fall in
//!   [`EARLIEST`]..=[`LATEST`]; others are refused with [`OutOfRange`].

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use thiserror::Error;
use toml::Spanned;

use super::oncall::{Layer, Restriction, Schedule};

/// A stretch of time with one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Nobody (a gap) when `None`.
    pub user: Option<String>,
}

/// The first instant klaxon answers "who is on call" for: 1970-01-01T00:00:00Z.
pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;
/// The last: 9999-12-31T23:59:59Z, the end of four-digit years.
pub const LATEST: DateTime<Utc> = DateTime::from_timestamp(253_402_300_799, 0).unwrap();

/// How far past the asked instant the end of the current shift is looked
/// for (`klaxon oncall`, `GET /api/v1/oncall`).
pub const SHIFT_HORIZON: Duration = Duration::weeks(8);

/// An instant outside [`EARLIEST`]..=[`LATEST`]; the user's mistake.
#[derive(Debug, Error)]
#[error(
    "{at} is out of range: klaxon answers for instants from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
)]
pub struct OutOfRange {
    pub at: String,
}

/// `at` if klaxon answers for it.
pub fn check_instant(at: DateTime<Utc>) -> Result<DateTime<Utc>, OutOfRange> {
    if (EARLIEST..=LATEST).contains(&at) {
        Ok(at)
    } else {
        Err(OutOfRange {
            at: at.to_rfc3339(),
        })
    }
}

/// Enough single-turn corrections to settle any daylight-saving or zone
/// change (at most a day, with a one-minute rotation) on instants.
const SETTLE_STEPS: usize = 2 * 24 * 60;

/// The instant a local wall-clock time names; see the module docs.
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            // Skipped by a change: the first minute after it that exists.
            let mut later = local;
            for _ in 0..24 * 60 {
                later += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&later).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// A schedule with its zone parsed.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleClock<'a> {
    pub schedule: &'a Schedule,
    pub tz: Tz,
}

impl<'a> ScheduleClock<'a> {
    /// `Err` is the zone name that did not parse.
    pub fn new(schedule: &'a Schedule) -> Result<Self, String> {
        let tz = schedule
            .time_zone
            .parse::<Tz>()
            .map_err(|_| schedule.time_zone.clone())?;
        Ok(Self { schedule, tz })
    }

    fn rotation(layer: &Layer) -> Duration {
        Duration::from_std(layer.rotation)
            .unwrap_or(Duration::MAX)
            .max(Duration::minutes(1))
    }

    /// When turn `k` of `layer` begins; `None` past the dates chrono can
    /// represent (a later start than any instant).
    fn turn_start(&self, layer: &Layer, k: i64) -> Option<DateTime<Utc>> {
        let ms = Self::rotation(layer).num_milliseconds().checked_mul(k)?;
        let local = layer
            .start
            .checked_add_signed(Duration::try_milliseconds(ms)?)?;
        Some(local_to_utc(self.tz, local))
    }

    /// Whether turn `k` begins after `t`.
    fn starts_after(&self, layer: &Layer, k: i64, t: DateTime<Utc>) -> bool {
        self.turn_start(layer, k).is_none_or(|s| s > t)
    }

    /// The turn under way at `t`, if the layer has begun: computed from
    /// the local time, then settled on instants in a bounded number of
    /// steps.
    fn turn_at(&self, layer: &Layer, t: DateTime<Utc>) -> Option<i64> {
        let local = t.with_timezone(&self.tz).naive_local();
        let rotation = Self::rotation(layer).num_seconds();
        let mut k = (local - layer.start).num_seconds().div_euclid(rotation);
        // Local time repeats or skips around a change: settle on instants.
        for _ in 0..SETTLE_STEPS {
            if k < 0 || !self.starts_after(layer, k, t) {
                break;
            }
            k -= 1;
        }
        for _ in 0..SETTLE_STEPS {
            if self.starts_after(layer, k + 1, t) {
                break;
            }
            k += 1;
        }
        (k >= 0).then_some(k)
    }

    /// Who `layer` has on call at `t`.
    pub fn layer_on_call(&self, layer: &'a Layer, t: DateTime<Utc>) -> Option<&'a str> {
        if layer.users.is_empty() {
            return None;
        }
        if let Some(end) = layer.end
            && t >= local_to_utc(self.tz, end)
        {
            return None;
        }
        let k = self.turn_at(layer, t)?;
        let local = t.with_timezone(&self.tz).naive_local();
        if !layer.restrictions.is_empty() && !layer.restrictions.iter().any(|r| within(r, local)) {
            return None;
        }
        let n = layer.users.len() as i64;
        Some(layer.users[k.rem_euclid(n) as usize].as_str())
    }

    /// Who the schedule has on call at `t`: overrides, then layers from the
    /// top down.
    pub fn on_call(&self, t: DateTime<Utc>) -> Option<&'a str> {
        let overridden = self
            .schedule
            .overrides
            .iter()
            .rev()
            .map(Spanned::get_ref)
            .find(|o| o.start <= t && t < o.end);
        if let Some(o) = overridden {
            return Some(o.user.as_str());
        }
        self.schedule
            .layer
            .iter()
            .rev()
            .find_map(|l| self.layer_on_call(l.get_ref(), t))
    }

    /// Every instant in `[from, to)` at which the answer may change.
    fn boundaries(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let local_from = from.with_timezone(&self.tz).date_naive();
        let local_to = to.with_timezone(&self.tz).date_naive();
        for layer in self.schedule.layer.iter().map(Spanned::get_ref) {
            out.push(local_to_utc(self.tz, layer.start));
            if let Some(end) = layer.end {
                out.push(local_to_utc(self.tz, end));
            }
            // Bounded: a shift listing never walks more than 10,000 turns.
            let first = self.turn_at(layer, from).unwrap_or(0);
            for k in first..first.saturating_add(10_000) {
                match self.turn_start(layer, k) {
                    Some(start) if start < to => out.push(start),
                    _ => break,
                }
            }
            for r in &layer.restrictions {
                let first = local_from.pred_opt().unwrap_or(local_from);
                for day in first.iter_days().take_while(|d| *d <= local_to) {
                    out.push(local_to_utc(self.tz, day.and_time(r.from)));
                    // The window may end on the next day; that edge is
                    // today's `to` either way.
                    out.push(local_to_utc(self.tz, day.and_time(r.to)));
                }
            }
        }
        for o in self.schedule.overrides.iter().map(Spanned::get_ref) {
            out.push(o.start);
            out.push(o.end);
        }
        out.retain(|b| from < *b && *b < to);
        out.sort();
        out.dedup();
        out
    }

    /// Who is on call at `at` and until when: the first shift of the
    /// [`SHIFT_HORIZON`] after it (one that lasts past the horizon ends
    /// there).
    pub fn current_shift(&self, at: DateTime<Utc>) -> Result<Shift, OutOfRange> {
        let at = check_instant(at)?;
        let shift = self
            .shifts(at, at + SHIFT_HORIZON)
            .into_iter()
            .next()
            .expect("a range has a first shift");
        Ok(shift)
    }

    /// The final schedule over `[from, to)`, gaps included.
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
        let mut shifts: Vec<Shift> = Vec::new();
        let mut points = vec![from];
        points.extend(self.boundaries(from, to));
        for (i, start) in points.iter().enumerate() {
            let end = points.get(i + 1).copied().unwrap_or(to);
            let user = self.on_call(*start).map(str::to_owned);
            match shifts.last_mut() {
                Some(last) if last.user == user => last.end = end,
                _ => shifts.push(Shift {
                    start: *start,
                    end,
                    user,
                }),
            }
        }
        shifts
    }
}

/// Whether local time `t` falls in the restriction window.
fn within(r: &Restriction, t: NaiveDateTime) -> bool {
    let day_ok = |d: chrono::Weekday| r.days.is_empty() || r.days.iter().any(|x| d == (*x).into());
    let time = t.time();
    if r.from < r.to {
        day_ok(t.weekday()) && r.from <= time && time < r.to
    } else {
        // Runs past midnight: the part after `from` today, or the part
        // before `to` of a window that started yesterday.
        (day_ok(t.weekday()) && time >= r.from) || (day_ok(t.weekday().pred()) && time < r.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::oncall::OnCall;

    fn oncall(text: &str) -> OnCall {
        toml::from_str(text).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const WEEKLY_BERLIN: &str = r#"
[[schedule]]
id = "s"
time_zone = "Europe/Berlin"
[[schedule.layer]]
users = ["alice", "bob", "carol"]
rotation = "1w"
start = "2026-10-19T09:00:00"
"#;

    #[test]
    fn weekly_round_robin_hands_off_at_local_time_across_dst() {
        let file = oncall(WEEKLY_BERLIN);
        let clock = ScheduleClock::new(file.schedule[0].get_ref()).unwrap();
        // CEST (UTC+2) until 25 October 2026, CET (UTC+1) after.
        assert_eq!(
            clock.on_call(at("2026-10-19T06:59:59Z")),
            None,
            "before the first turn"
        );
        assert_eq!(clock.on_call(at("2026-10-19T07:00:00Z")), Some("alice"));
        assert_eq!(
            clock.on_call(at("2026-10-26T07:59:59Z")),
            Some("alice"),
            "08:59 CET"
        );
        assert_eq!(
            clock.on_call(at("2026-10-26T08:00:00Z")),
            Some("bob"),
            "09:00 CET"
        );
        assert_eq!(clock.on_call(at("2026-11-02T08:00:00Z")), Some("carol"));
        assert_eq!(
            clock.on_call(at("2026-11-09T08:00:00Z")),
            Some("alice"),
            "round robin"
        );
        let shifts = clock.shifts(at("2026-10-20T00:00:00Z"), at("2026-11-03T00:00:00Z"));
        let summary: Vec<(String, Option<String>)> = shifts
            .iter()
            .map(|s| (s.start.to_rfc3339(), s.user.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "2026-10-20T00:00:00+00:00".to_owned(),
                    Some("alice".to_owned())
                ),
                (
                    "2026-10-26T08:00:00+00:00".to_owned(),
                    Some("bob".to_owned())
                ),
                (
                    "2026-11-02T08:00:00+00:00".to_owned(),
                    Some("carol".to_owned())
                ),
            ]
        );
        assert_eq!(
            shifts[1].end - shifts[1].start,
            Duration::days(7),
            "a week with no change is 168h"
        );
        let layer = file.schedule[0].get_ref().layer[0].get_ref();
        let first = clock.turn_start(layer, 1).unwrap() - clock.turn_start(layer, 0).unwrap();
        assert_eq!(
            first,
            Duration::hours(7 * 24 + 1),
            "the turn across the change is 169h"
        );
    }

    #[test]
    fn far_instants_are_answered_at_once_and_out_of_range_ones_refused() {
        // A one-minute rotation asked about the year 7000: about 2.6e9
        // turns after its start once looped for ever.
        let file = oncall(
            r#"
[[schedule]]
id = "s"
time_zone = "Europe/Berlin"
[[schedule.layer]]
users = ["a", "b", "c"]
rotation = "1m"
start = "2026-01-01T00:00:00"
"#,
        );
        let clock = ScheduleClock::new(file.schedule[0].get_ref()).unwrap();
        let far = at("7000-01-01T00:00:00Z");
        let local = far.with_timezone(&clock.tz).naive_local();
        let start = file.schedule[0].get_ref().layer[0].get_ref().start;
        let turn = (local - start).num_minutes();
        let expected = ["a", "b", "c"][turn.rem_euclid(3) as usize];
        assert_eq!(clock.on_call(far), Some(expected));
        let shift = clock.current_shift(far).unwrap();
        assert_eq!(shift.start, far);
        assert_eq!(shift.end, far + Duration::minutes(1));
        assert_eq!(shift.user.as_deref(), Some(expected));
        let last = clock.current_shift(LATEST).unwrap();
        assert_eq!(last.start, LATEST, "the last instant is answered");

        for refused in [
            at("1969-12-31T23:59:59Z"),
            LATEST + Duration::seconds(1),
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::MIN_UTC,
        ] {
            let e = clock.current_shift(refused).unwrap_err();
            assert!(e.to_string().contains("out of range"), "{e}");
        }
    }

    #[test]
    fn a_handoff_in_the_skipped_or_repeated_hour_happens_once() {
        // New York: 8 March 2026 02:00 EST jumps to 03:00 EDT; 1 November
        // 2026 02:00 EDT falls back to 01:00 EST.
        let file = oncall(
            r#"
[[schedule]]
id = "s"
time_zone = "America/New_York"
[[schedule.layer]]
users = ["a", "b"]
rotation = "1d"
start = "2026-03-01T02:30:00"
[[schedule.layer]]
users = ["x", "y"]
rotation = "1d"
start = "2026-10-25T01:30:00"
"#,
        );
        let schedule = file.schedule[0].get_ref();
        let clock = ScheduleClock::new(schedule).unwrap();
        let low = schedule.layer[0].get_ref();
        // Turn k starts on day k after 1 March: 8 March is turn 7, "b".
        // 02:30 does not exist on 8 March: the handoff is at the jump (07:00Z).
        assert_eq!(
            clock.layer_on_call(low, at("2026-03-08T06:59:00Z")),
            Some("a")
        );
        assert_eq!(
            clock.layer_on_call(low, at("2026-03-08T07:00:00Z")),
            Some("b")
        );
        assert_eq!(
            clock.layer_on_call(low, at("2026-03-09T06:29:00Z")),
            Some("b")
        );
        assert_eq!(
            clock.layer_on_call(low, at("2026-03-09T06:30:00Z")),
            Some("a"),
            "02:30 EDT"
        );
        // 01:30 occurs twice on 1 November (turn 7, "y"): the handoff is at
        // the first one.
        let high = schedule.layer[1].get_ref();
        assert_eq!(
            clock.layer_on_call(high, at("2026-11-01T05:29:00Z")),
            Some("x")
        );
        assert_eq!(
            clock.layer_on_call(high, at("2026-11-01T05:30:00Z")),
            Some("y"),
            "01:30 EDT"
        );
        assert_eq!(
            clock.layer_on_call(high, at("2026-11-01T06:15:00Z")),
            Some("y"),
            "01:15 EST, the second pass, stays with y"
        );
        assert_eq!(
            clock.layer_on_call(high, at("2026-11-02T06:30:00Z")),
            Some("x"),
            "01:30 EST"
        );
    }

    #[test]
    fn restrictions_overrides_and_layers_make_the_final_schedule() {
        let file = oncall(
            r#"
[[schedule]]
id = "s"
time_zone = "Europe/London"
[[schedule.layer]]
name = "follow the sun"
users = ["night"]
rotation = "1w"
start = "2026-01-05T00:00:00"
restrictions = [{ from = "18:00", to = "08:00" }]
[[schedule.layer]]
name = "business hours"
users = ["alice", "bob"]
rotation = "1d"
start = "2026-01-05T08:00:00"
restrictions = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "08:00", to = "18:00" }]
[[schedule.override]]
user = "carol"
start = "2026-01-07T10:00:00Z"
end = "2026-01-07T12:00:00Z"
"#,
        );
        let clock = ScheduleClock::new(file.schedule[0].get_ref()).unwrap();
        assert_eq!(
            clock.on_call(at("2026-01-05T09:00:00Z")),
            Some("alice"),
            "Monday"
        );
        assert_eq!(
            clock.on_call(at("2026-01-06T09:00:00Z")),
            Some("bob"),
            "Tuesday"
        );
        assert_eq!(clock.on_call(at("2026-01-06T19:00:00Z")), Some("night"));
        assert_eq!(
            clock.on_call(at("2026-01-07T07:59:00Z")),
            Some("night"),
            "past midnight"
        );
        assert_eq!(
            clock.on_call(at("2026-01-07T11:00:00Z")),
            Some("carol"),
            "override"
        );
        assert_eq!(
            clock.on_call(at("2026-01-07T12:00:00Z")),
            Some("alice"),
            "override over"
        );
        // Saturday daytime: neither layer covers it. An explicit gap.
        assert_eq!(clock.on_call(at("2026-01-10T12:00:00Z")), None);
        let gaps: Vec<Shift> = clock
            .shifts(at("2026-01-10T00:00:00Z"), at("2026-01-12T00:00:00Z"))
            .into_iter()
            .filter(|s| s.user.is_none())
            .collect();
        assert_eq!(gaps.len(), 2, "Saturday and Sunday daytime: {gaps:?}");
        assert_eq!(gaps[0].start, at("2026-01-10T08:00:00Z"));
        assert_eq!(gaps[0].end, at("2026-01-10T18:00:00Z"));
    }
}
