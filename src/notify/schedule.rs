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
//!   nobody. A window's start and end are turned into instants by the same
//!   rule as handoffs, and membership is judged on those instants, so "who is
//!   on call" and "until when" agree: a window 02:30–03:30 on the autumn
//!   change day runs from the first 02:30 to 03:30 and covers the whole
//!   second pass of the repeated hour; one 01:30–01:45 in New York covers
//!   only the first pass.
//! - The final schedule: the latest override covering the instant, else the
//!   highest layer (last in the file) with someone on call, else nobody. A gap
//!   is an explicit answer (`None`), never a silent skip: escalation records
//!   it and moves on.
//! - The turn under way is computed, not walked to, so an instant far from
//!   the layer's start costs the same as one near it. Questions about an
//!   instant (`klaxon oncall --at`, the API) must fall in
//!   [`EARLIEST`]..=[`LATEST`]; others are refused with [`OutOfRange`].

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc,
};
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
        if !layer.restrictions.is_empty() && !layer.restrictions.iter().any(|r| self.within(r, t)) {
            return None;
        }
        let n = layer.users.len() as i64;
        Some(layer.users[k.rem_euclid(n) as usize].as_str())
    }

    /// Whether `t` falls in one of the restriction's windows, judged on
    /// instants (see the module docs), as [`Self::boundaries`] lists them.
    fn within(&self, r: &Restriction, t: DateTime<Utc>) -> bool {
        let today = t.with_timezone(&self.tz).date_naive();
        // A window covering `t` opened on its local day or, running past
        // midnight, the day before; a day more each way absorbs a change
        // that moves the local date.
        let first = today.checked_sub_days(Days::new(2)).unwrap_or(today);
        first
            .iter_days()
            .take(4)
            .filter_map(|day| self.window(r, day))
            .any(|(start, end)| start <= t && t < end)
    }

    /// The window `r` opens on local `day`, as instants; `None` on a day it
    /// does not open.
    fn window(&self, r: &Restriction, day: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let opens = r.days.is_empty() || r.days.iter().any(|d| day.weekday() == (*d).into());
        if !opens {
            return None;
        }
        // An end at or before the start is on the next day.
        let end_day = if r.from < r.to { day } else { day.succ_opt()? };
        Some((
            local_to_utc(self.tz, day.and_time(r.from)),
            local_to_utc(self.tz, end_day.and_time(r.to)),
        ))
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
                // The same windows, on the same instants, as `within` judges.
                for day in first.iter_days().take_while(|d| *d <= local_to) {
                    if let Some((start, end)) = self.window(r, day) {
                        out.extend([start, end]);
                    }
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

    /// A layer restricted to `restriction` (an inline table) over a daily
    /// layer of `daily` users handing off at `handoff`, in `zone`.
    fn restricted_over_daily(zone: &str, restriction: &str, daily: &str, handoff: &str) -> OnCall {
        oncall(&format!(
            r#"
[[schedule]]
id = "s"
time_zone = "{zone}"
[[schedule.layer]]
users = [{daily}]
rotation = "1d"
start = "2026-01-01T{handoff}:00"
[[schedule.layer]]
users = ["erin"]
rotation = "1w"
start = "2026-01-01T00:00:00"
restrictions = [{restriction}]
"#
        ))
    }

    fn answer(clock: &ScheduleClock, t: &str) -> (Option<String>, DateTime<Utc>) {
        let shift = clock.current_shift(at(t)).unwrap();
        (shift.user, shift.end)
    }

    #[test]
    fn a_restriction_in_the_repeated_hour_is_judged_on_first_occurrences() {
        // Berlin, 25 October 2026: 03:00 CEST (01:00Z) falls back to 02:00
        // CET. 02:30–03:30 runs from the first 02:30 (00:30Z) to 03:30 CET
        // (02:30Z), the whole second pass included.
        let sunday =
            |from: &str, to: &str| format!(r#"{{ days = ["sun"], from = "{from}", to = "{to}" }}"#);
        let file = restricted_over_daily(
            "Europe/Berlin",
            &sunday("02:30", "03:30"),
            r#""dana""#,
            "09:00",
        );
        let clock = ScheduleClock::new(file.schedule[0].get_ref()).unwrap();
        let erin = |until: &str| (Some("erin".to_owned()), at(until));
        for t in [
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:29:00Z",
            "2026-10-25T01:30:00Z",
        ] {
            assert_eq!(answer(&clock, t), erin("2026-10-25T02:30:00Z"), "at {t}");
        }
        assert_eq!(clock.on_call(at("2026-10-25T02:30:00Z")), Some("dana"));

        // New York, 1 November 2026: 02:00 EDT (06:00Z) falls back to 01:00
        // EST. 01:30–01:45 is 05:30Z–05:45Z; the second pass is not in it.
        let file = restricted_over_daily(
            "America/New_York",
            &sunday("01:30", "01:45"),
            r#""dana""#,
            "09:00",
        );
        let clock = ScheduleClock::new(file.schedule[0].get_ref()).unwrap();
        assert_eq!(
            answer(&clock, "2026-11-01T05:30:00Z"),
            erin("2026-11-01T05:45:00Z")
        );
        for t in ["2026-11-01T06:30:00Z", "2026-11-01T06:44:00Z"] {
            assert_eq!(
                answer(&clock, t),
                (Some("dana".to_owned()), at("2026-11-08T06:30:00Z")),
                "at {t}, 01:3x EST"
            );
        }
    }

    #[test]
    fn every_until_agrees_with_the_answers_that_follow_it() {
        // The instants of 2026's changes; 3 hours either side are swept.
        let changes = [
            ("Europe/Berlin", "2026-03-29T01:00:00Z"),
            ("Europe/Berlin", "2026-10-25T01:00:00Z"),
            ("America/New_York", "2026-03-08T07:00:00Z"),
            ("America/New_York", "2026-11-01T06:00:00Z"),
            ("Australia/Sydney", "2026-04-04T16:00:00Z"),
            ("Australia/Sydney", "2026-10-03T16:00:00Z"),
        ];
        // Windows that start or end in the hours the changes skip or repeat
        // (01:00–02:00 in New York's autumn, 02:00–03:00 otherwise), one of
        // them past midnight, over handoffs in those hours too.
        let restrictions = [
            r#"{ days = ["sun"], from = "02:30", to = "03:30" }"#,
            r#"{ days = ["sun"], from = "01:30", to = "01:45" }"#,
            r#"{ days = ["sat"], from = "23:00", to = "02:10" }"#,
            r#"{ days = ["sun"], from = "01:15", to = "00:30" }"#,
        ];
        for ((zone, change), restriction) in changes
            .into_iter()
            .flat_map(|c| restrictions.map(|r| (c, r)))
        {
            let file = restricted_over_daily(zone, restriction, r#""dana", "dave""#, "02:15");
            let clock = ScheduleClock::new(file.schedule[0].get_ref()).unwrap();
            let change = at(change);
            let mut t = change - Duration::hours(3);
            // The last answer whose "until" is still ahead.
            let mut held: Option<Shift> = None;
            while t <= change + Duration::hours(3) {
                let shift = clock.current_shift(t).unwrap();
                let case = format!("{zone} {restriction} at {t}: {shift:?}");
                assert!(shift.end > t, "{case}");
                assert_eq!(clock.on_call(t), shift.user.as_deref(), "{case}");
                // Not at "until": someone else, or nobody.
                assert_ne!(clock.on_call(shift.end), shift.user.as_deref(), "{case}");
                match &held {
                    Some(h) if t < h.end => assert_eq!(
                        (&shift.user, shift.end),
                        (&h.user, h.end),
                        "{case}: the answer at {} was {h:?}",
                        h.start
                    ),
                    _ => held = Some(shift),
                }
                t += Duration::minutes(1);
            }
        }
    }
}
