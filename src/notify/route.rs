//! Routes, in the on-call file: which alerts go which way, and how their
//! first page and reminders are timed. The first route whose matchers all
//! match an alert (its labels, and `severity`, `dedup_key`, `rule`, as
//! silences see them) is its route; an alert no route matches takes the
//! event's policy or `default_policy`, paged at once, no reminders.
//!
//! ```toml
//! [[route]]
//! id = "checkout"
//! match = ["service=checkout"]
//! policy = "payments"      # unless the event names one
//! pause = "2m"             # page only if still firing 2 minutes on
//! renotify = { every = "30m", times = 3, backoff = 2.0 }   # 30m, 60m, 120m
//! flap = { changes = 4, within = "10m", settle = "5m" }
//! group_by = ["service"]   # one page for the alerts of a service
//! group_wait = "30s"       # before the group's first page
//! group_interval = "5m"    # between updates naming what changed
//! repeat_interval = "4h"   # reminders while unacknowledged
//! ```
//!
//! A pause is PagerDuty's transient-alert pause: an alert that resolves
//! within it pages nobody, and its timeline says "paused, resolved before
//! paging". A reminder pages again whoever the last escalation level paged,
//! while the incident is triggered (neither acknowledged nor resolved), at
//! most `times` times, each wait `backoff` times the one before. Flapping
//! (see [`Flap`]) is Alertmanager's #204 and #3048, refused there.
//! Grouping is Alertmanager's, with one incident per group (see
//! [`super::group`]); `repeat_interval` is `renotify` with the most
//! ([`MAX_RENOTIFY_TIMES`] reminders) and no backoff.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::silence::Matcher;

/// The longest pause: a page held longer is not a page.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// Reminders: at most this many, at least this far apart.
pub const MAX_RENOTIFY_TIMES: u32 = 100;
pub const MIN_RENOTIFY_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: String,
    /// Alertmanager matchers; none matches every alert.
    #[serde(rename = "match", default)]
    pub matchers: Vec<Matcher>,
    pub policy: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub pause: Option<Duration>,
    pub renotify: Option<Renotify>,
    pub flap: Option<Flap>,
    /// Labels whose values make a group; none, no grouping.
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub group_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub group_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
}

/// Alertmanager's defaults: a group's first page waits 30s, updates come
/// at most every 5 minutes.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// At least a second: the alerts of other partitions reach a notifier
/// about half a second after they open, and a group's first page must not
/// go before they are seen.
pub const MIN_GROUP_WAIT: Duration = Duration::from_secs(1);
pub const MAX_GROUP_BY: usize = 16;

/// When an alert is flapping: more than `changes` state changes (fired,
/// resolved) within `within`. It then keeps one incident open and pages
/// nobody until it settles: `settle` without a change. Settled firing, it
/// pages again; settled resolved, it resolves.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flap {
    pub changes: u32,
    #[serde(with = "humantime_serde")]
    pub within: Duration,
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
}

/// Flap detection's bounds: a day of history, at most 100 changes.
pub const MAX_FLAP_WINDOW: Duration = Duration::from_secs(86_400);
pub const MAX_FLAP_CHANGES: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renotify {
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    pub times: u32,
    #[serde(default = "no_backoff")]
    pub backoff: f64,
}

fn no_backoff() -> f64 {
    1.0
}

impl Renotify {
    /// The wait before reminder `n` (0-based): `every × backoff^n`, capped
    /// at a day.
    pub fn wait(&self, n: u32) -> Duration {
        let factor = self.backoff.powi(n.min(64) as i32);
        Duration::from_secs_f64((self.every.as_secs_f64() * factor).min(86_400.0))
    }
}

impl Route {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Whether it groups alerts.
    pub fn groups(&self) -> bool {
        !self.group_by.is_empty()
    }

    pub fn group_wait(&self) -> Duration {
        self.group_wait.unwrap_or(DEFAULT_GROUP_WAIT)
    }

    pub fn group_interval(&self) -> Duration {
        self.group_interval.unwrap_or(DEFAULT_GROUP_INTERVAL)
    }

    /// Its reminders: `renotify`, or `repeat_interval` (the most times, no
    /// backoff).
    pub fn reminders(&self) -> Option<Renotify> {
        self.renotify.or(self.repeat_interval.map(|every| Renotify {
            every,
            times: MAX_RENOTIFY_TIMES,
            backoff: 1.0,
        }))
    }

    /// What is wrong with it, for `klaxon oncall check` (`policy_exists`
    /// says whether a policy id is in the file).
    pub fn problems(&self, policy_exists: impl Fn(&str) -> bool) -> Vec<String> {
        let what = format!("route {:?}", self.id);
        let mut out = Vec::new();
        if let Some(policy) = &self.policy
            && !policy_exists(policy)
        {
            out.push(format!("{what}: unknown policy {policy:?}"));
        }
        if self.pause.is_some_and(|p| p.is_zero() || p > MAX_PAUSE) {
            out.push(format!("{what}: pause is more than 0s and at most 1h"));
        }
        if let Some(r) = &self.renotify {
            if r.every < MIN_RENOTIFY_EVERY {
                out.push(format!("{what}: renotify every is at least 1m"));
            }
            if r.times == 0 || r.times > MAX_RENOTIFY_TIMES {
                out.push(format!(
                    "{what}: renotify times is 1 to {MAX_RENOTIFY_TIMES}"
                ));
            }
            if !(1.0..=10.0).contains(&r.backoff) {
                out.push(format!("{what}: renotify backoff is 1 to 10"));
            }
        }
        if self.renotify.is_some() && self.repeat_interval.is_some() {
            out.push(format!(
                "{what}: renotify and repeat_interval both set reminders; keep one"
            ));
        }
        if self.repeat_interval.is_some_and(|r| r < MIN_RENOTIFY_EVERY) {
            out.push(format!("{what}: repeat_interval is at least 1m"));
        }
        if self.group_by.len() > MAX_GROUP_BY
            || self.group_by.iter().any(|l| l.is_empty() || l.len() > 128)
        {
            out.push(format!(
                "{what}: group_by has at most {MAX_GROUP_BY} labels, each 1 to 128 bytes"
            ));
        }
        if !self.groups() && (self.group_wait.is_some() || self.group_interval.is_some()) {
            out.push(format!(
                "{what}: group_wait and group_interval need group_by"
            ));
        }
        if !(MIN_GROUP_WAIT..=MAX_PAUSE).contains(&self.group_wait()) {
            out.push(format!("{what}: group_wait is 1s to 1h"));
        }
        if !(MIN_GROUP_WAIT..=MAX_FLAP_WINDOW).contains(&self.group_interval()) {
            out.push(format!("{what}: group_interval is 1s to 1d"));
        }
        if let Some(f) = &self.flap {
            if !(2..=MAX_FLAP_CHANGES).contains(&f.changes) {
                out.push(format!("{what}: flap changes is 2 to {MAX_FLAP_CHANGES}"));
            }
            let minute = Duration::from_secs(60);
            if !(minute..=MAX_FLAP_WINDOW).contains(&f.within)
                || !(minute..=MAX_FLAP_WINDOW).contains(&f.settle)
            {
                out.push(format!("{what}: flap within and settle are 1m to 1d"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_back_off_and_bad_routes_say_why() {
        let r = Renotify {
            every: Duration::from_secs(1800),
            times: 3,
            backoff: 2.0,
        };
        let waits: Vec<u64> = (0..3).map(|n| r.wait(n).as_secs()).collect();
        assert_eq!(waits, [1800, 3600, 7200]);
        assert_eq!(r.wait(60).as_secs(), 86_400, "capped at a day");

        let route: Route = toml::from_str(
            r#"
id = "r"
policy = "nope"
pause = "2h"
renotify = { every = "10s", times = 0, backoff = 0.5 }
flap = { changes = 1, within = "10s", settle = "5m" }
repeat_interval = "10s"
group_wait = "0s"
"#,
        )
        .unwrap();
        let problems = route.problems(|p| p == "p");
        for expect in [
            "unknown policy",
            "pause is",
            "at least 1m",
            "times is",
            "backoff is",
            "keep one",
            "repeat_interval is at least",
            "need group_by",
            "group_wait is",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(expect)),
                "{expect}: {problems:?}"
            );
        }
    }
}
