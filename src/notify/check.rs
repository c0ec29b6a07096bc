//! `klaxon oncall check`: every problem of an on-call file, with its line.
//!
//! Errors make the file unusable (it is refused, and a running notifier
//! keeps its previous config). Warnings are facts worth knowing, such as a
//! schedule that has nobody on call for part of the coming weeks.

use std::{collections::HashSet, path::Path};

use chrono::{DateTime, Duration, Utc};
use toml::Spanned;

use super::{
    oncall::{ContactKind, OnCall, Restriction, Schedule, Target},
    schedule::ScheduleClock,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// One finding, at a line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub line: usize,
    pub message: String,
}

impl Finding {
    /// `FILE:LINE: error: message`.
    pub fn display(&self, file: &Path) -> String {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        format!(
            "{}:{}: {level}: {}",
            file.display(),
            self.line,
            self.message
        )
    }
}

/// Parses and checks on-call text. `Err` when it does not parse at all;
/// otherwise the config and its findings, in line order. `now` starts the
/// gap look-ahead.
pub fn check_oncall(text: &str, now: DateTime<Utc>) -> Result<(OnCall, Vec<Finding>), Finding> {
    let oncall: OnCall = toml::from_str(text).map_err(|e| Finding {
        level: Level::Error,
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        message: e.message().trim().to_owned(),
    })?;
    let mut found = Findings {
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    check_users(&oncall, &mut found);
    check_schedules(&oncall, now, &mut found);
    check_policies(&oncall, &mut found);
    check_maintenance(&oncall, &mut found);
    check_routes(&oncall, &mut found);
    check_inhibits(&oncall, &mut found);
    Ok((oncall, found.into_sorted()))
}

/// Maintenance windows: each is checked by its own rules, ids once each.
fn check_maintenance(oncall: &OnCall, found: &mut Findings<'_>) {
    let mut ids = HashSet::new();
    for m in &oncall.maintenance {
        let window = m.get_ref();
        if !ids.insert(window.id.as_str()) {
            found.error(
                m,
                format!("maintenance window {:?} is defined twice", window.id),
            );
        }
        for problem in window.problems() {
            found.error(m, problem);
        }
    }
}

/// Routes: each by its own rules, ids once each.
fn check_routes(oncall: &OnCall, found: &mut Findings<'_>) {
    let mut ids = HashSet::new();
    for r in &oncall.route {
        let route = r.get_ref();
        if !ids.insert(route.id.as_str()) {
            found.error(r, format!("route {:?} is defined twice", route.id));
        }
        let policy_exists = |id: &str| oncall.policy.iter().any(|p| p.get_ref().id == id);
        for problem in route.problems(policy_exists) {
            found.error(r, problem);
        }
    }
}

/// Inhibitions: each by its own rules, ids once each.
fn check_inhibits(oncall: &OnCall, found: &mut Findings<'_>) {
    let mut ids = HashSet::new();
    for i in &oncall.inhibit {
        let inhibit = i.get_ref();
        if !ids.insert(inhibit.id.as_str()) {
            found.error(i, format!("inhibit {:?} is defined twice", inhibit.id));
        }
        for problem in inhibit.problems() {
            found.error(i, problem);
        }
    }
}

/// The line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// What the checks found so far.
struct Findings<'a> {
    text: &'a str,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

impl Findings<'_> {
    /// The line `at` starts on.
    fn line(&self, at: &dyn SpanOf) -> usize {
        line_of(self.text, at.start())
    }

    fn error(&mut self, at: &dyn SpanOf, message: String) {
        let line = self.line(at);
        self.errors.push(Finding {
            level: Level::Error,
            line,
            message,
        });
    }

    fn warning(&mut self, at: &dyn SpanOf, message: String) {
        let line = self.line(at);
        self.warnings.push(Finding {
            level: Level::Warning,
            line,
            message,
        });
    }

    /// Errors before warnings on the same line, each in the order found.
    fn into_sorted(self) -> Vec<Finding> {
        let mut out = self.errors;
        out.extend(self.warnings);
        out.sort_by_key(|f| f.line);
        out
    }
}

/// Users and how to reach them.
fn check_users(oncall: &OnCall, found: &mut Findings<'_>) {
    let mut users = HashSet::new();
    for u in &oncall.user {
        let user = u.get_ref();
        if !users.insert(user.id.as_str()) {
            found.error(u, format!("user {:?} is defined twice", user.id));
        }
        if let Some(zone) = &user.time_zone
            && zone.parse::<chrono_tz::Tz>().is_err()
        {
            found.error(
                u,
                format!(
                    "user {:?}: unknown time zone {zone:?} (use an IANA name such as \"Europe/Berlin\")",
                    user.id
                ),
            );
        }
        if user.contact.is_empty() {
            found.error(
                u,
                format!(
                    "user {:?} has no contact method: a page to them could never be delivered",
                    user.id
                ),
            );
        }
        let mut names = HashSet::new();
        for c in &user.contact {
            if !names.insert(c.name()) {
                found.error(
                    u,
                    format!(
                        "user {:?}: two contact methods are called {:?}; give them distinct ids",
                        user.id,
                        c.name()
                    ),
                );
            }
            if let Some(reason) = address_problem(c.kind, &c.address) {
                found.error(
                    u,
                    format!(
                        "user {:?}: {} contact {:?}: {reason}",
                        user.id,
                        c.kind.as_str(),
                        c.address
                    ),
                );
            }
        }
        for rule in &user.notify {
            if !user
                .contact
                .iter()
                .any(|c| c.name() == rule.get_ref().contact)
            {
                found.error(
                    rule,
                    format!(
                        "user {:?}: notification rule names contact {:?}, which is not one of theirs ({})",
                        user.id,
                        rule.get_ref().contact,
                        user.contact
                            .iter()
                            .map(|c| c.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
}

/// Schedules: their layers, overrides, time zone, and gaps ahead.
fn check_schedules(oncall: &OnCall, now: DateTime<Utc>, found: &mut Findings<'_>) {
    let mut schedules = HashSet::new();
    for s in &oncall.schedule {
        let schedule = s.get_ref();
        if !schedules.insert(schedule.id.as_str()) {
            found.error(s, format!("schedule {:?} is defined twice", schedule.id));
        }
        if schedule.layer.is_empty() && schedule.overrides.is_empty() {
            found.error(
                s,
                format!(
                    "schedule {:?} has no layers: nobody can be paged by it",
                    schedule.id
                ),
            );
        }
        for i in 0..schedule.layer.len() {
            check_layer(oncall, schedule, i, found);
        }
        check_overrides(oncall, schedule, found);
        check_zone_and_gaps(s, now, found);
    }
}

/// Layer `i` of `schedule`: its users, rotation, end, restrictions, and
/// whether a layer above always hides it.
fn check_layer(oncall: &OnCall, schedule: &Schedule, i: usize, found: &mut Findings<'_>) {
    let l = &schedule.layer[i];
    let layer = l.get_ref();
    let what = format!("schedule {:?} layer {}", schedule.id, i + 1);
    if layer.users.is_empty() {
        found.error(l, format!("{what} has no users"));
    }
    for u in &layer.users {
        if oncall.user(u).is_none() {
            found.error(l, format!("{what}: unknown user {u:?}"));
        }
    }
    if layer.rotation < std::time::Duration::from_secs(60) {
        found.error(l, format!("{what}: rotation must be at least 1m"));
    }
    if layer.end.is_some_and(|e| e <= layer.start) {
        found.error(l, format!("{what}: end is not after start"));
    }
    for (a, ra) in layer.restrictions.iter().enumerate() {
        for rb in &layer.restrictions[a + 1..] {
            let share_day = ra.days.is_empty()
                || rb.days.is_empty()
                || ra.days.iter().any(|d| rb.days.contains(d));
            let wraps = |r: &Restriction| r.to <= r.from;
            let overlap = wraps(ra) || wraps(rb) || (ra.from < rb.to && rb.from < ra.to);
            if share_day && overlap {
                found.error(
                    l,
                    format!(
                        "{what}: restrictions {}-{} and {}-{} overlap",
                        ra.from, ra.to, rb.from, rb.to
                    ),
                );
            }
        }
    }
    // A layer wholly under an unrestricted, endless layer above it that
    // started no later never puts anyone on call.
    let above = schedule.layer[i + 1..]
        .iter()
        .map(Spanned::get_ref)
        .position(|h| {
            !h.users.is_empty()
                && h.restrictions.is_empty()
                && h.end.is_none()
                && h.start <= layer.start
        });
    if let Some(j) = above {
        found.error(
            l,
            format!(
                "{what} is always covered by layer {} above it, so it never puts anyone on call",
                i + j + 2
            ),
        );
    }
}

/// The overrides of `schedule`: known users, ends after starts, and
/// overlaps between different users.
fn check_overrides(oncall: &OnCall, schedule: &Schedule, found: &mut Findings<'_>) {
    for (i, o) in schedule.overrides.iter().enumerate() {
        let ov = o.get_ref();
        if oncall.user(&ov.user).is_none() {
            found.error(
                o,
                format!(
                    "schedule {:?}: override for unknown user {:?}",
                    schedule.id, ov.user
                ),
            );
        }
        if ov.end <= ov.start {
            found.error(
                o,
                format!("schedule {:?}: override ends before it starts", schedule.id),
            );
        }
        for other in &schedule.overrides[i + 1..] {
            let b = other.get_ref();
            if ov.start < b.end && b.start < ov.end && ov.user != b.user {
                found.error(
                    other,
                    format!(
                        "schedule {:?}: overrides for {:?} and {:?} overlap; the later one wins",
                        schedule.id, ov.user, b.user
                    ),
                );
            }
        }
    }
}

/// The schedule's time zone must be known; with it, nobody on call in the
/// next two weeks is a warning.
fn check_zone_and_gaps(s: &Spanned<Schedule>, now: DateTime<Utc>, found: &mut Findings<'_>) {
    let schedule = s.get_ref();
    let clock = match ScheduleClock::new(schedule) {
        Ok(clock) => clock,
        Err(zone) => {
            found.error(
                s,
                format!(
                    "schedule {:?}: unknown time zone {zone:?} (use an IANA name such as \"Europe/Berlin\")",
                    schedule.id
                ),
            );
            return;
        }
    };
    let horizon = now + Duration::weeks(2);
    let gaps: Vec<_> = clock
        .shifts(now, horizon)
        .into_iter()
        .filter(|s| s.user.is_none())
        .collect();
    if let Some(first) = gaps.first() {
        let hours: i64 = gaps
            .iter()
            .map(|g| (g.end - g.start).num_minutes())
            .sum::<i64>()
            / 60;
        found.warning(
            s,
            format!(
                "schedule {:?} has nobody on call for {hours}h of the next 2 weeks, first from {} to {}; a level that pages only this schedule then escalates at once",
                schedule.id,
                first.start.to_rfc3339(),
                first.end.to_rfc3339()
            ),
        );
    }
}

/// Escalation policies: levels with known targets, and the default policy.
fn check_policies(oncall: &OnCall, found: &mut Findings<'_>) {
    let mut policies = HashSet::new();
    for p in &oncall.policy {
        let policy = p.get_ref();
        if !policies.insert(policy.id.as_str()) {
            found.error(p, format!("policy {:?} is defined twice", policy.id));
        }
        if policy.level.is_empty() {
            found.error(
                p,
                format!(
                    "policy {:?} has no levels: nobody can be paged by it",
                    policy.id
                ),
            );
        }
        for (i, l) in policy.level.iter().enumerate() {
            let level = l.get_ref();
            let what = format!("policy {:?} level {}", policy.id, i + 1);
            if level.targets.is_empty() {
                found.error(l, format!("{what} has no targets"));
            }
            for t in &level.targets {
                let missing = match t {
                    Target::User(u) => oncall
                        .user(u)
                        .is_none()
                        .then(|| format!("unknown user {u:?}")),
                    Target::Schedule(s) => oncall
                        .schedule(s)
                        .is_none()
                        .then(|| format!("unknown schedule {s:?}")),
                };
                if let Some(m) = missing {
                    found.error(l, format!("{what}: {m}"));
                }
            }
        }
    }
    if let Some(d) = &oncall.default_policy
        && !policies.contains(d.get_ref().as_str())
    {
        found.error(
            d,
            format!("default_policy {:?} is not a policy", d.get_ref()),
        );
    }
}

/// Why an address cannot work for its kind of contact.
fn address_problem(kind: ContactKind, address: &str) -> Option<&'static str> {
    let url = || {
        url::Url::parse(address)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
    };
    match kind {
        ContactKind::Console => None,
        ContactKind::Slack | ContactKind::Webhook if url().is_none() => {
            Some("needs an http(s) URL")
        }
        ContactKind::Phone | ContactKind::Sms
            if !(address.starts_with('+')
                && address.len() > 4
                && address[1..].chars().all(|c| c.is_ascii_digit())) =>
        {
            Some("needs a phone number in E.164 form, like +15550100")
        }
        ContactKind::Email if !address.contains('@') => Some("needs an e-mail address"),
        _ => None,
    }
}

/// Anything with a byte span in the file.
trait SpanOf {
    fn start(&self) -> usize;
}

impl<T> SpanOf for Spanned<T> {
    fn start(&self) -> usize {
        self.span().start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn errors(text: &str) -> Vec<String> {
        let (_, findings) = check_oncall(text, now()).unwrap();
        findings
            .into_iter()
            .filter(|f| f.level == Level::Error)
            .map(|f| format!("{}: {}", f.line, f.message))
            .collect()
    }

    const GOOD: &str = r#"
default_policy = "payments"

[[user]]
id = "alice"
contact = [{ id = "sms", type = "sms", address = "+15550100" }, { type = "phone", address = "+15550100" }]
notify = [{ after = "0m", contact = "sms" }, { after = "5m", contact = "phone" }]

[[user]]
id = "bob"
contact = [{ type = "email", address = "bob@example.com" }]

[[schedule]]
id = "primary"
time_zone = "Europe/Berlin"
[[schedule.layer]]
users = ["alice", "bob"]
rotation = "1w"
start = "2026-11-02T09:00:00"

[[policy]]
id = "payments"
repeat = 1
[[policy.level]]
targets = [{ schedule = "primary" }]
delay = "10m"
[[policy.level]]
targets = [{ user = "bob" }]
delay = "10m"
"#;

    #[test]
    fn a_good_file_has_no_findings() {
        let (oncall, findings) = check_oncall(GOOD, now()).unwrap();
        assert_eq!(findings, []);
        assert_eq!(
            oncall.policy(Some("nope")).unwrap().id,
            "payments",
            "default policy"
        );
    }

    #[test]
    fn unknown_names_and_unreachable_people_are_errors_with_lines() {
        let text = r#"
[[user]]
id = "alice"

[[schedule]]
id = "primary"
time_zone = "Mars/Olympus"
[[schedule.layer]]
users = ["alice", "zed"]
rotation = "1w"
start = "2026-11-02T09:00:00"

[[policy]]
id = "p"
[[policy.level]]
targets = [{ schedule = "secondary" }]
delay = "5m"
"#;
        assert_eq!(
            errors(text),
            [
                "2: user \"alice\" has no contact method: a page to them could never be delivered",
                "5: schedule \"primary\": unknown time zone \"Mars/Olympus\" (use an IANA name such as \"Europe/Berlin\")",
                "8: schedule \"primary\" layer 1: unknown user \"zed\"",
                "15: policy \"p\" level 1: unknown schedule \"secondary\"",
            ]
        );
    }

    #[test]
    fn shadowed_layers_overlaps_and_bad_addresses_are_errors() {
        let text = r#"
[[user]]
id = "a"
contact = [{ type = "slack", address = "not a url" }, { type = "sms", address = "555" }]
notify = [{ contact = "phone" }]

[[schedule]]
id = "s"
[[schedule.layer]]
users = ["a"]
rotation = "1d"
start = "2026-11-02T09:00:00"
restrictions = [{ from = "09:00", to = "17:00" }, { days = ["mon"], from = "16:00", to = "18:00" }]
[[schedule.layer]]
users = ["a"]
rotation = "1d"
start = "2026-11-01T00:00:00"
"#;
        let found = errors(text);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(
            found[0].contains("slack contact \"not a url\": needs an http(s) URL"),
            "{found:?}"
        );
        assert!(found[1].contains("E.164"), "{found:?}");
        assert!(
            found[2].starts_with("5: user \"a\": notification rule names contact \"phone\""),
            "{found:?}"
        );
        assert!(
            found[3].contains("restrictions 09:00:00-17:00:00 and 16:00:00-18:00:00 overlap"),
            "{found:?}"
        );
        assert!(
            found[4].contains("layer 1 is always covered by layer 2"),
            "{found:?}"
        );
    }

    #[test]
    fn maintenance_windows_and_routes_are_checked_with_their_lines() {
        let text = format!(
            r#"{GOOD}
[[maintenance]]
id = "patching"
match = ["service=db"]
time_zone = "Europe/Berlin"
from = "02:00"
to = "04:00"

[[maintenance]]
id = "patching"
match = ["team!=db"]
time_zone = "Mars/Olympus"
from = "02:00"
"#
        );
        // The second window's header line.
        let second = text.rfind("[[maintenance]]").unwrap();
        let at = line_of(&text, second);
        assert_eq!(
            errors(&text),
            [
                format!("{at}: maintenance window \"patching\" is defined twice"),
                format!(
                    "{at}: maintenance window \"patching\": its matchers match every alert (a label every alert has, or one it lacks, which reads as empty), so it would mute everything"
                ),
                format!(
                    "{at}: maintenance window \"patching\": unknown time zone \"Mars/Olympus\" (use an IANA name such as \"Europe/Berlin\")"
                ),
                format!("{at}: maintenance window \"patching\": from and to go together"),
            ]
        );
        let routes = format!(
            "{GOOD}\n[[route]]\nid = \"r\"\npolicy = \"nope\"\npause = \"0s\"\ngroup_wait = \"10m\"\n"
        );
        let at = line_of(&routes, routes.rfind("[[route]]").unwrap());
        assert_eq!(
            errors(&routes),
            [
                format!("{at}: route \"r\": unknown policy \"nope\""),
                format!("{at}: route \"r\": pause is more than 0s and at most 1h"),
                format!("{at}: route \"r\": group_wait and group_interval need group_by"),
            ]
        );
        let grouped = format!(
            "{GOOD}\n[[route]]\nid = \"g\"\ngroup_by = [\"service\"]\ngroup_wait = \"0s\"\nrepeat_interval = \"4h\"\nrenotify = {{ every = \"1h\", times = 2 }}\n"
        );
        let at = line_of(&grouped, grouped.rfind("[[route]]").unwrap());
        assert_eq!(
            errors(&grouped),
            [
                format!(
                    "{at}: route \"g\": renotify and repeat_interval both set reminders; keep one"
                ),
                format!("{at}: route \"g\": group_wait is 1s to 1h"),
            ]
        );
        let bad_matcher = format!(
            "{GOOD}\n[[maintenance]]\nid = \"m\"\nmatch = [\"service=~(\"]\nfrom = \"02:00\"\nto = \"03:00\"\n"
        );
        let finding = check_oncall(&bad_matcher, now()).unwrap_err();
        let matcher_line = line_of(&bad_matcher, bad_matcher.find("service=~(").unwrap());
        assert_eq!(finding.line, matcher_line, "{}", finding.message);
        assert!(
            finding.message.contains("not a regex"),
            "{}",
            finding.message
        );
    }

    #[test]
    fn gaps_are_warnings_and_parse_errors_name_the_line() {
        let text = r#"
[[user]]
id = "a"
contact = [{ type = "console" }]
[[schedule]]
id = "office"
[[schedule.layer]]
users = ["a"]
rotation = "1w"
start = "2026-11-02T09:00:00"
restrictions = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", to = "17:00" }]
"#;
        let (_, findings) = check_oncall(text, now()).unwrap();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].level, Level::Warning);
        assert!(
            findings[0]
                .message
                .contains("nobody on call for 256h of the next 2 weeks"),
            "{}",
            findings[0].message
        );

        let err = check_oncall("[[user]]\nid = \"a\"\nphone = 1\n", now()).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(
            err.message.contains("unknown field `phone`"),
            "{}",
            err.message
        );
    }
}
