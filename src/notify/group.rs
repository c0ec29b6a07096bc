//! Grouping: the alerts of one route with the same values of its
//! `group_by` labels page as one incident, Alertmanager's groups with
//! PagerDuty's incident around them.
//!
//! - Each alert keeps its own incident (its own timeline, acknowledge,
//!   resolve). The oldest open incident of a group that is not muted
//!   otherwise (silence, maintenance, inhibition) nor flapping is the
//!   group's incident; every other one is muted, its timeline saying
//!   "grouped into incident I".
//! - The group's incident holds its first page for `group_wait`, so alerts
//!   arriving together page once; the page names the group's alerts.
//! - While it is open, it tells whoever it reached what changed (alerts
//!   that joined, alerts that resolved), at most every `group_interval`,
//!   never the whole group again (Alertmanager #3059). Acknowledged, the
//!   changes are on its timeline and page nobody.
//! - When its own alert resolves while others of its group still fire, it
//!   stays open (the group is not over) and resolves with the last of them.
//!   Resolved by a person, it closes, and the oldest alert still firing
//!   becomes the group's incident and pages.
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

/// How an incident's `silenced_by` names the incident it is grouped into:
/// `grouped/INCIDENT`.
pub const GROUPED_PREFIX: &str = "grouped/";
/// Alerts a group's incident keeps by name (those firing, those it told
/// of): beyond, in the order of their names, they are counted only, so the
/// record stays bounded.
pub const MAX_NAMED: usize = 100;
/// Alerts a page or an update names; the rest are counted.
pub const LISTED: usize = 20;
/// What a page or an update says of its group, at most (cut at a
/// character with "…"): notifications are kept on the incident's record.
pub const MAX_NOTE_BYTES: usize = 1024;
/// Updates an incident sends; later changes are on its timeline only, so
/// a group that churns for days neither pages without end nor grows its
/// record without bound.
pub const MAX_UPDATES: u32 = 50;

/// `text` cut to [`MAX_NOTE_BYTES`] at a character boundary.
pub fn bounded(text: String) -> String {
    if text.len() <= MAX_NOTE_BYTES {
        return text;
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Which group an alert of `route` is in: the route's id and its
/// `group_by` labels' values (a missing label is empty, as in
/// Alertmanager). `None` when the route does not group.
pub fn group_key(route: &Route, labels: &BTreeMap<String, String>) -> Option<String> {
    if !route.groups() {
        return None;
    }
    let values: Vec<String> = route
        .group_by
        .iter()
        .map(|l| format!("{l}={:?}", labels.get(l).map_or("", String::as_str)))
        .collect();
    let key = format!("{}{{{}}}", route.id, values.join(","));
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
            let Some(key) = oncall
                .route_for(&alert.labels)
                .and_then(|r| group_key(r, &alert.labels))
            else {
                continue;
            };
            by_key.entry(key).or_default().push(Member {
                opened_at: alert.opened_at,
                incident: incident.clone(),
                dedup_key: alert.dedup_key.clone(),
                named: alert.fires && !alert.muted,
                can_lead: !alert.muted && !alert.flapping,
            });
        }
        for members in by_key.values_mut() {
            members.sort_by(|a, b| (a.opened_at, &a.incident).cmp(&(b.opened_at, &b.incident)));
        }
        Self { by_key }
    }

    /// The incident that incident `id` (opened at `opened_at`) of group
    /// `key` is grouped into: the oldest of the group that may lead, when
    /// that is not `id` itself.
    pub fn leader(&self, key: &str, id: &str, opened_at: DateTime<Utc>) -> Option<&str> {
        let first = self
            .by_key
            .get(key)?
            .iter()
            .find(|m| m.can_lead && m.incident != id)?;
        ((first.opened_at, first.incident.as_str()) < (opened_at, id))
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
    /// Its other alerts firing, as last seen.
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
}

impl Group {
    pub fn new(key: String, firing: Alerts) -> Self {
        Self {
            key,
            firing,
            told: None,
            told_at: None,
            due_at: None,
            alert_resolved: false,
            updates: 0,
        }
    }

    /// A page's words: "group K: 3 alerts firing: a, b, c".
    pub fn listing(&self, own: &str) -> String {
        let own = (!self.alert_resolved).then_some(own);
        let count = self.firing.count + usize::from(own.is_some());
        let mut names: Vec<&str> = self.firing.named.iter().map(String::as_str).collect();
        names.extend(own);
        names.sort_unstable();
        let s = if count == 1 { "" } else { "s" };
        bounded(format!(
            "group {}: {count} alert{s} firing: {}",
            self.key,
            list(names.into_iter(), count)
        ))
    }

    /// An update's words, if something changed since it last told:
    /// "group K: 2 joined (a, b); 1 resolved (c); 5 firing".
    pub fn changes(&self) -> Option<String> {
        let told = self.told.as_ref()?;
        if *told == self.firing {
            return None;
        }
        let now = &self.firing;
        let joined: Vec<&str> = now
            .named
            .iter()
            .filter(|n| !told.named.contains(*n) && !told.beyond(n))
            .map(String::as_str)
            .collect();
        let resolved: Vec<&str> = told
            .named
            .iter()
            .filter(|n| !now.named.contains(*n) && !now.beyond(n))
            .map(String::as_str)
            .collect();
        let mut parts = Vec::new();
        if !joined.is_empty() {
            parts.push(format!(
                "{} joined ({})",
                joined.len(),
                list(joined.iter().copied(), joined.len())
            ));
        }
        if !resolved.is_empty() {
            parts.push(format!(
                "{} resolved ({})",
                resolved.len(),
                list(resolved.iter().copied(), resolved.len())
            ));
        }
        let own = usize::from(!self.alert_resolved);
        parts.push(format!(
            "{} firing (was {})",
            now.count + own,
            told.count + own
        ));
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
        let mut group = Group::new("r{service=\"checkout\"}".into(), alerts(&["b", "c"]));
        assert_eq!(
            group.listing("a"),
            "group r{service=\"checkout\"}: 3 alerts firing: a, b, c"
        );
        assert_eq!(group.changes(), None, "nothing told yet");
        group.told = Some(group.firing.clone());
        assert_eq!(group.changes(), None, "nothing changed");
        group.firing = alerts(&["c", "d", "e"]);
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
        let mut more = many.clone();
        more.push("k9999".into());
        let mut group = Group::new("g".into(), Alerts::new(more.iter().map(String::as_str)));
        group.told = Some(told);
        assert_eq!(
            group.changes().unwrap(),
            format!(
                "group g: {} firing (was {})",
                MAX_NAMED + 52,
                MAX_NAMED + 51
            )
        );
        // A named one resolves: it is named.
        let fewer: Vec<&str> = more.iter().skip(1).map(String::as_str).collect();
        group.firing = Alerts::new(fewer);
        assert!(group.changes().unwrap().contains("1 resolved (k0000)"));
    }

    #[test]
    fn long_group_keys_are_cut_and_kept_apart() {
        let route: Route = toml::from_str("id = \"r\"\ngroup_by = [\"service\"]").unwrap();
        let key = |value: &str| {
            let labels = BTreeMap::from([("service".to_owned(), value.to_owned())]);
            group_key(&route, &labels).unwrap()
        };
        assert_eq!(key("a"), "r{service=\"a\"}");
        assert_eq!(
            key(""),
            group_key(&route, &BTreeMap::new()).unwrap(),
            "missing reads as empty"
        );
        let (a, b) = (
            key(&"é".repeat(40_000)),
            key(&format!("{}x", "é".repeat(40_000))),
        );
        assert!(a.len() <= MAX_KEY_BYTES && b.len() <= MAX_KEY_BYTES);
        assert_ne!(a, b);
    }

    #[test]
    fn notes_are_bounded_at_a_character() {
        let long: Vec<String> = (0..40)
            .map(|i| format!("{i:02}{}", "é".repeat(120)))
            .collect();
        let group = Group::new("g".into(), Alerts::new(long.iter().map(String::as_str)));
        let listing = group.listing("a");
        assert!(listing.len() <= MAX_NOTE_BYTES, "{}", listing.len());
        assert!(listing.ends_with('…'));
    }

    #[test]
    fn a_long_group_lists_twenty_and_counts_the_rest() {
        let names: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
        let group = Group::new("g".into(), Alerts::new(names.iter().map(String::as_str)));
        let listing = group.listing("a");
        assert!(listing.starts_with("group g: 31 alerts firing: a, k00,"));
        assert!(listing.ends_with("k18 and 11 more"), "{listing}");
    }
}
