//! Maintenance windows, booked in the on-call file: while one is in force,
//! the alerts it matches page nobody, as under a silence (their incidents
//! say `suppressed by maintenance window ID`), and an alert still firing
//! when it ends pages then.
//!
//! ```toml
//! [[maintenance]]
//! id = "db-patching"
//! match = ["service=db"]
//! time_zone = "Europe/Berlin"
//! days = ["sat"]                  # weekdays; every day when empty
//! days_of_month = [1, 2, 3, 4, 5, 6, 7]   # with days: the first Saturday
//! from = "02:00"                  # local; a `to` at or before `from` runs past midnight
//! to = "04:00"
//! start = "2026-12-01T00:00:00"   # optional: booked from (local)
//! end = "2027-03-01T00:00:00"     # optional: until (local)
//! comment = "monthly patching"
//! ```
//!
//! Without `from` and `to`, a window is one stretch from `start` to `end`.
//! Local times are read on the wall clock of `time_zone`: an hour that
//! occurs twice in autumn is muted in both passes, and a window starting
//! in the hour skipped in spring starts when the clock jumps past it.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use serde::Deserialize;

use super::{
    oncall::Day,
    silence::{Matcher, matches_every_alert},
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub id: String,
    /// Alertmanager matchers, as silences take them; all must match.
    #[serde(rename = "match")]
    pub matchers: Vec<Matcher>,
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default)]
    pub days: Vec<Day>,
    #[serde(default)]
    pub days_of_month: Vec<u32>,
    pub from: Option<NaiveTime>,
    pub to: Option<NaiveTime>,
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    #[serde(default)]
    pub comment: String,
}

fn utc() -> String {
    "UTC".to_owned()
}

impl Maintenance {
    /// What is wrong with it, for `klaxon oncall check`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let what = format!("maintenance window {:?}", self.id);
        if self.matchers.is_empty() {
            out.push(format!("{what} has no matchers"));
        } else if matches_every_alert(&self.matchers) {
            out.push(format!(
                "{what}: its matchers match every alert (a label every alert has, or one it lacks, which reads as empty), so it would mute everything"
            ));
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            out.push(format!(
                "{what}: unknown time zone {:?} (use an IANA name such as \"Europe/Berlin\")",
                self.time_zone
            ));
        }
        match (self.from, self.to) {
            (Some(from), Some(to)) if from == to => {
                out.push(format!("{what}: from and to are the same time"));
            }
            (Some(_), Some(_)) => {}
            (None, None) if self.start.is_some() && self.end.is_some() => {
                if !self.days.is_empty() || !self.days_of_month.is_empty() {
                    out.push(format!(
                        "{what}: days and days_of_month need from and to (the hours of those days)"
                    ));
                }
            }
            (None, None) => out.push(format!(
                "{what}: give from and to (hours, every day or on days), or start and end (one stretch)"
            )),
            _ => out.push(format!("{what}: from and to go together")),
        }
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end <= start
        {
            out.push(format!("{what}: end is not after start"));
        }
        if let Some(day) = self.days_of_month.iter().find(|d| !(1..=31).contains(*d)) {
            out.push(format!("{what}: day of month {day} is not 1 to 31"));
        }
        out
    }

    /// Whether it mutes at `now`. A window whose zone is unknown never does
    /// (`oncall check` refuses it, so a loaded file has none).
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        let Ok(zone) = self.time_zone.parse::<chrono_tz::Tz>() else {
            return false;
        };
        let local = now.with_timezone(&zone).naive_local();
        if self.start.is_some_and(|start| local < start) || self.end.is_some_and(|end| local >= end)
        {
            return false;
        }
        let (Some(from), Some(to)) = (self.from, self.to) else {
            // One stretch: it needs both ends.
            return self.start.is_some() && self.end.is_some();
        };
        let (date, time) = (local.date(), local.time());
        if from < to {
            self.on(date) && time >= from && time < to
        } else {
            (self.on(date) && time >= from)
                || (time < to && date.pred_opt().is_some_and(|d| self.on(d)))
        }
    }

    /// Whether the window's hours start on `date`.
    fn on(&self, date: NaiveDate) -> bool {
        let weekday = date.weekday();
        let weekly = self.days.is_empty() || self.days.iter().any(|d| Weekday::from(*d) == weekday);
        let monthly = self.days_of_month.is_empty() || self.days_of_month.contains(&date.day());
        weekly && monthly
    }

    /// The timeline's words for it.
    pub fn describe(&self) -> String {
        let hours = match (self.from, self.to) {
            (Some(from), Some(to)) => format!(
                " {}-{} {}",
                from.format("%H:%M"),
                to.format("%H:%M"),
                self.time_zone
            ),
            _ => String::new(),
        };
        if self.comment.is_empty() {
            format!("maintenance window {}{hours}", self.id)
        } else {
            format!("maintenance window {}{hours}: {}", self.id, self.comment)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(toml_text: &str) -> Maintenance {
        toml::from_str(&format!(
            "id = \"w\"\nmatch = [\"service=db\"]\n{toml_text}"
        ))
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn weekly_hours_in_a_zone_across_midnight() {
        // Saturdays 23:00 to 01:00 in Berlin (UTC+1 in winter).
        let w = window(
            "time_zone = \"Europe/Berlin\"\ndays = [\"sat\"]\nfrom = \"23:00\"\nto = \"01:00\"",
        );
        assert!(w.problems().is_empty(), "{:?}", w.problems());
        // 2026-12-05 is a Saturday.
        assert!(!w.in_force(at("2026-12-05T21:59:59Z")));
        assert!(w.in_force(at("2026-12-05T22:00:00Z")));
        assert!(
            w.in_force(at("2026-12-05T23:59:59Z")),
            "past midnight, Sunday"
        );
        assert!(
            !w.in_force(at("2026-12-06T00:00:00Z")),
            "the end is exclusive"
        );
        assert!(
            !w.in_force(at("2026-12-06T22:30:00Z")),
            "Sunday night is not Saturday's"
        );
    }

    #[test]
    fn days_of_month_with_days_and_a_booked_stretch() {
        // The first Saturday of the month, 02:00-04:00 UTC, from December.
        let w = window(
            "days = [\"sat\"]\ndays_of_month = [1, 2, 3, 4, 5, 6, 7]\nfrom = \"02:00\"\nto = \"04:00\"\nstart = \"2026-12-01T00:00:00\"",
        );
        assert!(w.in_force(at("2026-12-05T03:00:00Z")));
        assert!(
            !w.in_force(at("2026-12-12T03:00:00Z")),
            "the second Saturday"
        );
        assert!(
            !w.in_force(at("2026-11-07T03:00:00Z")),
            "before it is booked from"
        );
        let once = window("start = \"2026-12-05T22:00:00\"\nend = \"2026-12-06T02:00:00\"");
        assert!(once.problems().is_empty());
        assert!(once.in_force(at("2026-12-06T01:59:00Z")));
        assert!(!once.in_force(at("2026-12-06T02:00:00Z")));
    }

    #[test]
    fn the_autumn_hour_twice_and_the_skipped_spring_hour() {
        let w = window("time_zone = \"Europe/Berlin\"\nfrom = \"02:00\"\nto = \"03:00\"");
        // 25 October 2026: 02:00-03:00 local happens at 00:00Z and again at 01:00Z.
        assert!(w.in_force(at("2026-10-25T00:30:00Z")));
        assert!(w.in_force(at("2026-10-25T01:30:00Z")));
        assert!(!w.in_force(at("2026-10-25T02:00:00Z")));
        // 29 March 2026: the clock jumps from 02:00 to 03:00; no instant is in it.
        let spring = window("time_zone = \"Europe/Berlin\"\nfrom = \"02:30\"\nto = \"04:00\"");
        assert!(
            spring.in_force(at("2026-03-29T01:00:00Z")),
            "03:00 local, past the jump"
        );
        assert!(!spring.in_force(at("2026-03-29T00:59:59Z")));
    }

    #[test]
    fn problems_say_what_is_wrong() {
        for (text, expect) in [
            ("from = \"02:00\"", "go together"),
            ("from = \"02:00\"\nto = \"02:00\"", "the same time"),
            ("", "give from and to"),
            (
                "start = \"2026-12-05T22:00:00\"\nend = \"2026-12-05T21:00:00\"",
                "not after start",
            ),
            (
                "from = \"02:00\"\nto = \"03:00\"\ndays_of_month = [32]",
                "not 1 to 31",
            ),
            (
                "from = \"02:00\"\nto = \"03:00\"\ntime_zone = \"Mars/Olympus\"",
                "unknown time zone",
            ),
            (
                "days = [\"sat\"]\nstart = \"2026-12-05T22:00:00\"\nend = \"2026-12-06T22:00:00\"",
                "need from and to",
            ),
        ] {
            let problems = window(text).problems();
            assert!(
                problems.iter().any(|p| p.contains(expect)),
                "{text}: {problems:?}"
            );
        }
        let everything: Maintenance =
            toml::from_str("id = \"w\"\nmatch = [\"team!=x\"]\nfrom = \"02:00\"\nto = \"03:00\"")
                .unwrap();
        assert!(everything.problems()[0].contains("mute everything"));
    }
}
