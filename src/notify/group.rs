//! Grouping: the alerts of one route with the same values of its
//! `group_by` labels, paging the same escalation policy, page as one
//! incident: Alertmanager's groups with PagerDuty's incident around them.
//!
//! - Each alert keeps its own incident (its own timeline, acknowledge,
//!   resolve). One of them is the group's incident: the one that already
//!   is (it paged for the group), else one not muted otherwise (silence,
//!   maintenance, inhibition) nor flapping, unacknowledged first, oldest
//!   first (see [`Rank`]). Every other one is muted, its timeline saying
//!   "grouped into incident I".
//! - The group's incident holds its first page for `group_wait`, so alerts
//!   arriving together page once; each page names the group's alerts.
//! - While it is open, it tells whoever it reached what changed (alerts
//!   that joined, alerts that resolved), on the group's beat, every
//!   `group_interval` from its last page, never the whole group again
//!   (Alertmanager #3059). Acknowledged, the changes are on its timeline
//!   and page nobody.
//! - When its own alert resolves while others of its group still fire, it
//!   stays open (the group is not over) and resolves with the last of them.
//!   Resolved by a person, muted, flapping, or out of updates
//!   ([`MAX_UPDATES`]), it is no longer the group's incident: the next one
//!   takes the group over and pages.
//!
//! Alerts of every paging partition count, as for inhibitions: each
//! notifier sees them through its follower of the `incidents` changelog
//! ([`super::inhibit::follow`]), about half a second late, which is why a
//! `group_wait` is at least a second.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{inhibit::Firing, oncall::OnCall, route::Route};
use crate::paging::limits::cut_json;

/// How an incident's `silenced_by` names the incident it is grouped into:
/// `grouped/INCIDENT`.
pub const GROUPED_PREFIX: &str = "grouped/";
/// Alerts a group's incident keeps by name (those firing, those it told
/// of): beyond, in the order of their names, they are counted only, so the
/// record stays bounded.
pub const MAX_NAMED: usize = 50;
/// Alerts a page or an update names; the rest are counted.
pub const LISTED: usize = 20;
/// What an update says of its group, at most, as JSON (cut with "…"):
/// updates are kept on the incident's record.
pub const MAX_NOTE_BYTES: usize = 1024;
/// Updates an incident sends; then its group moves to another of its
/// incidents (which pages), so a group that churns for days never grows
/// one record without bound.
pub const MAX_UPDATES: u32 = 100;

/// `text` cut to [`MAX_NOTE_BYTES`] as JSON (escapes counted).
pub fn bounded(mut text: String) -> String {
    cut_json(&mut text, MAX_NOTE_BYTES);
    text
}

/// Which group an alert of `route` is in: the route's id, its `group_by`
/// labels' values (a missing label is empty, as in Alertmanager) and the
/// escalation policy its incident pages (alerts for two teams never share a
/// group). `None` when the route does not group.
pub fn group_key(
    route: &Route,
    labels: &BTreeMap<String, String>,
    policy: Option<&str>,
) -> Option<String> {
    if !route.groups() {
        return None;
    }
    let values: Vec<String> = route
        .group_by
        .iter()
        .map(|l| format!("{l}={:?}", labels.get(l).map_or("", String::as_str)))
        .collect();
    let policy = policy.map(|p| format!("/{p}")).unwrap_or_default();
    let key = format!("{}{{{}}}{policy}", route.id, values.join(","));
    Some(bounded_key(key))
}

/// A group key's longest spelling: label values may be long (an event's
/// labels are up to 64 KiB), the key is on records and timelines.
pub const MAX_KEY_BYTES: usize = 256;

/// A key over [`MAX_KEY_BYTES`]: its start and a hash of the whole, so two
/// long keys stay apart.
fn bounded_key(key: String) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut end = MAX_KEY_BYTES - hash.len() - '…'.len_utf8() - 1;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… {hash}", &key[..end])
}

/// One open alert of a group, as the firing view shows it.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    opened_at: DateTime<Utc>,
    incident: String,
    dedup_key: String,
    /// It is one of the group's alerts a page names: it fires (a group's
    /// incident held open for the others has resolved its own), and no
    /// silence, maintenance window or inhibition mutes it.
    named: bool,
    /// It may be its group's incident: nothing mutes it but grouping, and
    /// it does not flap.
    can_lead: bool,
    /// It is its group's incident already (it paged for the group).
    leads: bool,
    acknowledged: bool,
}

/// Who leads a group first: an incident that already leads (a group keeps
/// its incident, however old the alerts that come back), then one nobody
/// has acknowledged (an acknowledged alert taking a group over would keep
/// every new alert of it from paging), then the oldest.
pub type Rank<'a> = (bool, bool, DateTime<Utc>, &'a str);

impl Member {
    fn rank(&self) -> Rank<'_> {
        (
            !self.leads,
            self.acknowledged,
            self.opened_at,
            &self.incident,
        )
    }
}

/// The open alerts of every group, from the firing view, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Groups {
    by_key: HashMap<String, Vec<Member>>,
}

impl Groups {
    /// Sorts the view's alerts into the groups of the on-call file's routes.
    pub fn new(oncall: &OnCall, firing: &Firing) -> Self {
        let mut by_key: HashMap<String, Vec<Member>> = HashMap::new();
        if !oncall.route.iter().any(|r| r.get_ref().groups()) {
            return Self { by_key };
        }
        for (incident, alert) in &firing.alerts {
            // The route it took when it opened, as its incident keys it.
            let Some(key) = alert
                .route
                .as_deref()
                .and_then(|r| oncall.route(r))
                .and_then(|r| group_key(r, &alert.labels, alert.policy.as_deref()))
            else {
                continue;
            };
            by_key.entry(key).or_default().push(Member {
                opened_at: alert.opened_at,
                incident: incident.clone(),
                dedup_key: alert.dedup_key.clone(),
                named: alert.fires && !alert.muted,
                can_lead: !alert.muted && !alert.flapping && !alert.spent,
                leads: alert.leads,
                acknowledged: alert.acknowledged,
            });
        }
        for members in by_key.values_mut() {
            members.sort_by(|a, b| a.rank().cmp(&b.rank()));
        }
        Self { by_key }
    }

    /// The incident that incident `id` of group `key` is grouped into: the
    /// first of the group that may lead, unless `id` comes before it (its
    /// `rank`; none if it may not lead: it flaps, or sent every update an
    /// incident sends).
    pub fn leader(&self, key: &str, id: &str, rank: Option<Rank<'_>>) -> Option<&str> {
        let first = self
            .by_key
            .get(key)?
            .iter()
            .find(|m| m.can_lead && m.incident != id)?;
        rank.is_none_or(|me| first.rank() < me)
            .then_some(first.incident.as_str())
    }

    /// The alerts of group `key` firing now and not muted, but `dedup_key`.
    pub fn firing(&self, key: &str, dedup_key: &str) -> Alerts {
        let names = self
            .by_key
            .get(key)
            .into_iter()
            .flatten()
            .filter(|m| m.named && m.dedup_key != dedup_key)
            .map(|m| m.dedup_key.as_str());
        Alerts::new(names)
    }
}

/// Some alerts of a group: the first [`MAX_NAMED`] by name, and how many
/// there are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alerts {
    pub named: BTreeSet<String>,
    pub count: usize,
}

impl Alerts {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all: BTreeSet<&str> = BTreeSet::new();
        let mut count = 0;
        for name in names {
            if all.insert(name) {
                count += 1;
                if all.len() > MAX_NAMED {
                    all.pop_last();
                }
            }
        }
        Self {
            named: all.into_iter().map(str::to_owned).collect(),
            count,
        }
    }

    /// Adds one alert not among them.
    pub fn insert(&mut self, name: &str) {
        self.count += 1;
        if self.named.len() < MAX_NAMED
            || self.named.last().is_some_and(|last| name < last.as_str())
        {
            self.named.insert(name.to_owned());
            if self.named.len() > MAX_NAMED {
                self.named.pop_last();
            }
        }
    }

    /// Takes out one alert that is among them.
    pub fn remove(&mut self, name: &str) {
        self.named.remove(name);
        self.count = self.count.saturating_sub(1);
    }

    /// Whether every alert is named.
    fn complete(&self) -> bool {
        self.named.len() == self.count
    }

    /// Whether `name` is beyond what is named (so whether it fires is not
    /// known from the names).
    fn beyond(&self, name: &str) -> bool {
        !self.complete() && self.named.last().is_none_or(|last| name > last.as_str())
    }
}

/// "a, b, c" or "a, b, … and 7 more".
fn list<'a>(names: impl Iterator<Item = &'a str>, count: usize) -> String {
    let shown: Vec<&str> = names.take(LISTED).collect();
    let more = count.saturating_sub(shown.len());
    match more {
        0 => shown.join(", "),
        _ => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The group an incident leads, on its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    /// Its alerts firing, as last seen (its own among them while it
    /// fires).
    pub firing: Alerts,
    /// What its last page or update said of them; none before its first
    /// page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told: Option<Alerts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told_at: Option<DateTime<Utc>>,
    /// When to look again: an update due, or (its own alert resolved)
    /// the group's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// Its own alert resolved while others of the group fire: it stays
    /// open until they resolve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alert_resolved: bool,
    /// Updates sent so far (see [`MAX_UPDATES`]).
    #[serde(default)]
    pub updates: u32,
    /// It paged for the group: it keeps the group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paged: bool,
}

impl Group {
    /// The group `key` of the incident of alert `own`, whose other alerts
    /// firing are `others`.
    pub fn new(key: String, mut others: Alerts, own: &str) -> Self {
        others.insert(own);
        Self {
            key,
            firing: others,
            told: None,
            told_at: None,
            due_at: None,
            alert_resolved: false,
            updates: 0,
            paged: false,
        }
    }

    /// A page's words: "group K: 3 alerts firing: a, b, c".
    pub fn listing(&self) -> String {
        let count = self.firing.count;
        let s = if count == 1 { "" } else { "s" };
        let names = self.firing.named.iter().map(String::as_str);
        format!(
            "group {}: {count} alert{s} firing: {}",
            self.key,
            list(names, count)
        )
    }

    /// Whether it sent every update an incident sends: then the group
    /// moves to another of its incidents, which pages, rather than keep
    /// its changes from reaching anyone.
    pub fn spent(&self) -> bool {
        self.updates >= MAX_UPDATES
    }

    /// How many of its alerts but its own fire.
    pub fn others(&self) -> usize {
        self.firing
            .count
            .saturating_sub(usize::from(!self.alert_resolved))
    }

    /// An update's words, if something changed since it last told:
    /// "group K: 2 joined (a, b); 1 resolved (c); 5 firing".
    pub fn changes<'a>(&'a self) -> Option<String> {
        let told = self.told.as_ref()?;
        if *told == self.firing {
            return None;
        }
        let now = &self.firing;
        // Named on one side and not the other (nor beyond its names).
        let gone = |from: &'a Alerts, to: &'a Alerts| -> Vec<&'a str> {
            from.named
                .iter()
                .filter(|n| !to.named.contains(*n) && !to.beyond(n))
                .map(String::as_str)
                .collect()
        };
        let mut parts = Vec::new();
        for (what, names) in [("joined", gone(now, told)), ("resolved", gone(told, now))] {
            if !names.is_empty() {
                let shown = list(names.iter().copied(), names.len());
                parts.push(format!("{} {what} ({shown})", names.len()));
            }
        }
        parts.push(format!("{} firing (was {})", now.count, told.count));
        Some(bounded(format!("group {}: {}", self.key, parts.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(names: &[&str]) -> Alerts {
        Alerts::new(names.iter().copied())
    }

    #[test]
    fn an_update_names_only_what_changed() {
        let mut group = Group::new("r{service=\"checkout\"}".into(), alerts(&["b", "c"]), "a");
        assert_eq!(
            group.listing(),
            "group r{service=\"checkout\"}: 3 alerts firing: a, b, c"
        );
        assert_eq!(group.others(), 2);
        assert_eq!(group.changes(), None, "nothing told yet");
        group.told = Some(group.firing.clone());
        assert_eq!(group.changes(), None, "nothing changed");
        group.firing = alerts(&["a", "c", "d", "e"]);
        assert_eq!(
            group.changes().unwrap(),
            "group r{service=\"checkout\"}: 2 joined (d, e); 1 resolved (b); 4 firing (was 3)"
        );
    }

    #[test]
    fn beyond_the_named_alerts_only_counts_change() {
        let many: Vec<String> = (0..MAX_NAMED + 50).map(|i| format!("k{i:04}")).collect();
        let told = Alerts::new(many.iter().map(String::as_str));
        assert_eq!((told.named.len(), told.count), (MAX_NAMED, MAX_NAMED + 50));
        // One more, past the names kept: counted, not named, and no name
        // kept is taken for resolved.
        let mut group = Group::new("g".into(), told.clone(), "k9999");
        group.told = Some(told);
        assert_eq!(
            group.changes().unwrap(),
            format!(
                "group g: {} firing (was {})",
                MAX_NAMED + 51,
                MAX_NAMED + 50
            )
        );
        // A named one resolves: it is named.
        group.firing.remove("k0000");
        assert!(group.changes().unwrap().contains("1 resolved (k0000)"));
        // One that sorts first joins: named, and the last name kept drops.
        group.firing.insert("a");
        assert_eq!(group.firing.named.len(), MAX_NAMED);
        assert!(group.changes().unwrap().contains("1 joined (a)"));
    }

    #[test]
    fn group_keys_name_the_policy_and_long_ones_are_cut_and_kept_apart() {
        let route: Route = toml::from_str("id = \"r\"\ngroup_by = [\"service\"]").unwrap();
        let key = |value: &str| {
            let labels = BTreeMap::from([("service".to_owned(), value.to_owned())]);
            group_key(&route, &labels, Some("p")).unwrap()
        };
        assert_eq!(key("a"), "r{service=\"a\"}/p");
        assert_eq!(
            key(""),
            group_key(&route, &BTreeMap::new(), Some("p")).unwrap(),
            "missing reads as empty"
        );
        let labels = BTreeMap::from([("service".to_owned(), "a".to_owned())]);
        assert_ne!(
            group_key(&route, &labels, Some("q")).unwrap(),
            key("a"),
            "another team"
        );
        let (a, b) = (
            key(&"é".repeat(40_000)),
            key(&format!("{}x", "é".repeat(40_000))),
        );
        assert!(a.len() <= MAX_KEY_BYTES && b.len() <= MAX_KEY_BYTES);
        assert_ne!(a, b);
    }

    #[test]
    fn updates_are_bounded_as_json() {
        let long: Vec<String> = (0..40)
            .map(|i| format!("{i:02}{}", "\u{1}".repeat(120)))
            .collect();
        let mut group = Group::new("g".into(), Alerts::default(), "a");
        group.told = Some(group.firing.clone());
        group.firing = Alerts::new(long.iter().map(String::as_str));
        let update = bounded(group.changes().unwrap());
        let json = serde_json::to_string(&update).unwrap();
        assert!(json.len() <= MAX_NOTE_BYTES + 2, "{}", json.len());
        assert!(update.ends_with('…'));
    }

    #[test]
    fn a_long_group_lists_twenty_and_counts_the_rest() {
        let names: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
        let group = Group::new(
            "g".into(),
            Alerts::new(names.iter().map(String::as_str)),
            "a",
        );
        let listing = group.listing();
        assert!(listing.starts_with("group g: 31 alerts firing: a, k00,"));
        assert!(listing.ends_with("k18 and 11 more"), "{listing}");
    }

    #[test]
    fn an_incident_that_leads_keeps_its_group() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let member = |id: &str, opened: &str, leads: bool, acknowledged: bool| Member {
            opened_at: at(opened),
            incident: id.to_owned(),
            dedup_key: id.to_owned(),
            named: true,
            can_lead: true,
            leads,
            acknowledged,
        };
        let groups = |mut members: Vec<Member>| {
            members.sort_by(|a, b| a.rank().cmp(&b.rank()));
            Groups {
                by_key: HashMap::from([("g".to_owned(), members)]),
            }
        };
        let ten = at("2026-03-02T10:00:00Z");
        let five_past = at("2026-03-02T10:05:00Z");
        let led = groups(vec![
            member("young", "2026-03-02T10:05:00Z", true, false),
            member("old", "2026-03-02T10:00:00Z", false, false),
        ]);
        // The old alert, back from a silence, joins the group it leads.
        assert_eq!(
            led.leader("g", "old", Some((true, false, ten, "old"))),
            Some("young")
        );
        assert_eq!(
            led.leader("g", "young", Some((false, false, five_past, "young"))),
            None
        );
        // One that may not lead (it flaps) joins whoever may.
        assert_eq!(led.leader("g", "young", None), Some("old"));
        // An acknowledged alert does not take a group over from a new one.
        let acked = groups(vec![member("old", "2026-03-02T10:00:00Z", false, true)]);
        assert_eq!(
            acked.leader("g", "new", Some((true, false, five_past, "new"))),
            None
        );
        assert_eq!(
            acked.leader("g", "other", Some((true, true, five_past, "other"))),
            Some("old")
        );
    }
}
