//! What a replay's paging events would have meant: the incidents the
//! notifier would have opened (one open incident per dedup_key, as it keeps
//! them), how long each lasted, and whom each would have paged first and at
//! what hour of their day.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::replay::Replayed;
use crate::{
    notify::{Incident, OnCall, Opening, incident::Purpose},
    paging::{EventAction, PagingEvent, Severity},
    report::{Hours, hours_of, nearest_rank},
};

/// One incident the rules would have opened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opened {
    pub rule: String,
    pub dedup_key: String,
    pub labels: BTreeMap<String, String>,
    /// The highest severity it reached.
    pub severity: Severity,
    /// The end of the window that triggered it.
    pub opened_at: DateTime<Utc>,
    /// The end of the window that resolved it; `None` when it was still
    /// firing where the points end.
    pub resolved_at: Option<DateTime<Utc>>,
    pub triggers: u32,
    /// Whom it would have paged when it opened (with the on-call file),
    /// when, in which hours of their day.
    pub paged: Vec<Paged>,
}

impl Opened {
    pub fn duration_secs(&self) -> Option<f64> {
        self.resolved_at
            .map(|r| (r - self.opened_at).num_milliseconds() as f64 / 1000.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paged {
    pub user: String,
    pub at: DateTime<Utc>,
    pub hours: Hours,
}

/// One rule's figures over the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleOutcome {
    pub incidents: usize,
    /// Incidents still firing where the points end.
    pub open_at_end: usize,
    /// Trigger events, repeats (a severity change) included.
    pub triggers: u64,
    /// Over resolved incidents, by nearest rank.
    pub duration_p50_secs: Option<f64>,
    pub duration_p95_secs: Option<f64>,
    pub longest_secs: Option<f64>,
    /// Pages when incidents opened, and those in sleep hours (22–08 in the
    /// person's zone), per person.
    pub pages: usize,
    pub night_pages: BTreeMap<String, usize>,
    /// Windows whose evaluation failed, with the first error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_windows: Option<(u64, String)>,
}

/// The incidents `events` open, in the order they opened. The time of an
/// event is its window's end; an incident pages whom the notifier's own
/// escalation pages when it opens (`oncall` as it reads today), each person
/// once, unless it resolved before their first page was due (the notifier
/// cancels pages still planned at a resolve).
pub fn incidents(events: &[PagingEvent], oncall: Option<&OnCall>) -> Vec<Opened> {
    let mut opened: Vec<Opened> = Vec::new();
    // Each incident's planned pages: (user, due), the first per user.
    let mut planned: Vec<BTreeMap<String, DateTime<Utc>>> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for event in events {
        let Some(at) = window_end(event) else {
            continue;
        };
        match (event.event_action, open.get(event.dedup_key.as_str())) {
            // As the notifier: a trigger without a payload changes nothing.
            (EventAction::Trigger, Some(&i)) => {
                if let Some(payload) = &event.payload {
                    let incident = &mut opened[i];
                    incident.triggers += 1;
                    incident.severity = incident.severity.max(payload.severity);
                }
            }
            (EventAction::Trigger, None) => {
                let Some(opening) = Opening::of(event) else {
                    continue;
                };
                open.insert(&event.dedup_key, opened.len());
                let severity = opening.severity;
                planned.push(
                    oncall
                        .map(|o| first_pages(opening, at, o))
                        .unwrap_or_default(),
                );
                opened.push(Opened {
                    rule: event.rule.clone().unwrap_or_default(),
                    dedup_key: event.dedup_key.clone(),
                    labels: event.labels.clone(),
                    severity,
                    opened_at: at,
                    resolved_at: None,
                    triggers: 1,
                    paged: Vec::new(),
                });
            }
            (EventAction::Resolve, Some(&i)) => {
                opened[i].resolved_at = Some(at);
                open.remove(event.dedup_key.as_str());
            }
            _ => {}
        }
    }
    for (incident, pages) in opened.iter_mut().zip(planned) {
        incident.paged = pages
            .into_iter()
            .filter(|(_, due)| incident.resolved_at.is_none_or(|r| *due < r))
            .map(|(user, at)| {
                let zone = oncall.and_then(|o| o.user_zone(&user)).unwrap_or("UTC");
                Paged {
                    hours: hours_of(at, zone),
                    user,
                    at,
                }
            })
            .collect();
    }
    // Each rule's events come in its own time order; merge the rules'.
    opened.sort_by(|a, b| (a.opened_at, &a.dedup_key).cmp(&(b.opened_at, &b.dedup_key)));
    opened
}

/// Whom the incident pages when it opens, each at their first notification
/// (a personal rule may wait before the first one). A level with nobody on
/// call is skipped at once, as the notifier does; later levels are not
/// counted, since nobody acknowledges in a replay.
fn first_pages(
    opening: Opening,
    at: DateTime<Utc>,
    oncall: &OnCall,
) -> BTreeMap<String, DateTime<Utc>> {
    let incident = Incident::open(opening, at, oncall);
    let mut first: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for n in incident
        .notifications
        .iter()
        .filter(|n| n.purpose == Purpose::Page)
    {
        let due = first.entry(n.user.clone()).or_insert(n.due_at);
        *due = (*due).min(n.due_at);
    }
    first
}

fn window_end(event: &PagingEvent) -> Option<DateTime<Utc>> {
    let end = &event.window.as_ref()?.end;
    DateTime::parse_from_rfc3339(end).ok().map(|t| t.to_utc())
}

/// The figures of `rule` from its incidents and its engine's counts.
pub fn rule_outcome(rule: &str, incidents: &[Opened], replayed: &Replayed) -> RuleOutcome {
    let mine: Vec<&Opened> = incidents.iter().filter(|i| i.rule == rule).collect();
    let mut durations: Vec<f64> = mine.iter().filter_map(|i| i.duration_secs()).collect();
    durations.sort_by(f64::total_cmp);
    let mut night_pages = BTreeMap::new();
    let mut pages = 0;
    for page in mine.iter().flat_map(|i| &i.paged) {
        pages += 1;
        if page.hours == Hours::Sleep {
            *night_pages.entry(page.user.clone()).or_insert(0) += 1;
        }
    }
    RuleOutcome {
        incidents: mine.len(),
        open_at_end: mine.iter().filter(|i| i.resolved_at.is_none()).count(),
        triggers: mine.iter().map(|i| u64::from(i.triggers)).sum(),
        duration_p50_secs: nearest_rank(&durations, 0.5),
        duration_p95_secs: nearest_rank(&durations, 0.95),
        longest_secs: durations.last().copied(),
        pages,
        night_pages,
        failed_windows: replayed.failures.get(rule).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::parse_event;

    fn event(action: &str, key: &str, severity: &str, end: &str) -> PagingEvent {
        let payload = if action == "trigger" {
            format!(r#","payload":{{"summary":"s","source":"klaxon","severity":"{severity}"}}"#)
        } else {
            String::new()
        };
        let text = format!(
            r#"{{"event_action":"{action}","dedup_key":"{key}","rule":"errors",
                "window":{{"start":"{end}","end":"{end}"}}{payload}}}"#
        );
        parse_event(text.as_bytes()).unwrap().0
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn events_fold_into_incidents_as_the_notifier_keeps_them() {
        // A user in Tokyo (15:30 UTC is 00:30 there), texted two minutes
        // into an incident.
        let oncall: OnCall = toml::from_str(
            r#"
            default_policy = "p"
            [[user]]
            id = "kenji"
            time_zone = "Asia/Tokyo"
            contact = [{ type = "console" }, { type = "sms", address = "+815012345678" }]
            notify = [{ contact = "sms", after = "2m" }]
            [[policy]]
            id = "p"
            [[policy.level]]
            targets = [{ user = "kenji" }]
            delay = "5m"
            "#,
        )
        .unwrap();
        let events = [
            event("trigger", "a", "warning", "2026-03-02T15:30:00Z"),
            event("trigger", "a", "critical", "2026-03-02T15:31:00Z"),
            // A resolve with nothing open is nobody's.
            event("resolve", "b", "", "2026-03-02T15:32:00Z"),
            event("resolve", "a", "", "2026-03-02T15:40:00Z"),
            // Over before the text was due: the notifier cancels it.
            event("trigger", "c", "critical", "2026-03-02T16:00:00Z"),
            event("resolve", "c", "", "2026-03-02T16:01:00Z"),
            event("trigger", "a", "warning", "2026-03-02T03:00:00Z"),
        ];
        let opened = incidents(&events, Some(&oncall));
        let keys: Vec<&str> = opened.iter().map(|i| i.dedup_key.as_str()).collect();
        assert_eq!(keys, ["a", "a", "c"], "in the order they opened");
        let first = &opened[1];
        assert_eq!(first.triggers, 2);
        assert_eq!(first.severity, Severity::Critical, "the highest it reached");
        assert_eq!(first.duration_secs(), Some(600.0));
        assert_eq!(
            first.paged,
            [Paged {
                user: "kenji".into(),
                at: at("2026-03-02T15:32:00Z"),
                hours: Hours::Sleep
            }]
        );
        assert!(opened[2].paged.is_empty(), "resolved before the page");
        assert_eq!(opened[0].resolved_at, None, "still firing at the end");
        // 03:02 UTC is noon on a Monday in Tokyo.
        assert_eq!(opened[0].paged[0].hours, Hours::Business);

        let outcome = rule_outcome("errors", &opened, &Replayed::default());
        assert_eq!(outcome.incidents, 3);
        assert_eq!(outcome.open_at_end, 1);
        assert_eq!(outcome.triggers, 4);
        assert_eq!(outcome.duration_p50_secs, Some(60.0));
        assert_eq!(outcome.duration_p95_secs, Some(600.0));
        assert_eq!(outcome.longest_secs, Some(600.0));
        assert_eq!(outcome.pages, 2);
        assert_eq!(outcome.night_pages, BTreeMap::from([("kenji".into(), 1)]));
        assert!(incidents(&events, None).iter().all(|i| i.paged.is_empty()));
    }
}
