//! Inhibition: "while `cluster-down` fires for a cluster, page nobody for
//! that cluster's alerts below critical". An `[[inhibit]]` of the on-call
//! file names source matchers, target matchers and `equal` labels:
//!
//! ```toml
//! [[inhibit]]
//! id = "cluster-down"
//! source = ["rule=cluster-down"]
//! target = ["severity!=critical"]
//! equal = ["cluster"]
//! wait = "30s"   # hold a target's first page, so a source just behind it still inhibits it
//! ```
//!
//! An open alert matching `target` is muted (as a silence mutes it, said on
//! its timeline) while another open, unresolved alert matching `source`
//! has the same value of every `equal` label. As in Alertmanager since
//! #507 and #1727, an `equal` label missing (or empty) on either side never
//! matches, and an alert never inhibits itself (#666). Alerts of every
//! paging partition count, whichever member owns them: each notifier
//! follows the whole `incidents` changelog ([`follow`]), as a Kafka
//! Streams global table does.
//!
//! Order (#2783): a target that arrives before its source would page at
//! once; with `wait`, its first page is held that long, so a source that
//! arrives within it inhibits it and the outcome is the same in either
//! order.

pub mod follow;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{
    group::{GROUPED_PREFIX, Group, Groups},
    incident::{Incident, Status},
    oncall::OnCall,
    silence::{Matcher, alert_labels, matches_every_alert},
};

/// The longest `wait`, and the most `equal` labels.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
pub const MAX_EQUAL: usize = 16;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inhibit {
    pub id: String,
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub wait: Option<Duration>,
}

impl Inhibit {
    /// What is wrong with it, for `klaxon oncall check`.
    pub fn problems(&self) -> Vec<String> {
        let what = format!("inhibit {:?}", self.id);
        let mut out = Vec::new();
        if self.id.is_empty() || self.id.contains('/') {
            out.push(format!("{what}: an id is not empty and has no '/'"));
        }
        if self.source.is_empty() || self.target.is_empty() {
            out.push(format!("{what}: source and target each need a matcher"));
        } else if matches_every_alert(&self.target) {
            out.push(format!(
                "{what}: its target matchers match every alert; name the alerts it mutes (e.g. severity!=critical, cluster=~.+)"
            ));
        }
        if self.equal.len() > MAX_EQUAL {
            out.push(format!("{what}: at most {MAX_EQUAL} equal labels"));
        }
        if self.equal.iter().any(|l| l.is_empty()) {
            out.push(format!("{what}: an equal label is empty"));
        }
        if self.wait.is_some_and(|w| w > MAX_WAIT) {
            out.push(format!("{what}: wait is at most 1h"));
        }
        out
    }

    /// Whether some source could inhibit an alert with these labels: it
    /// matches `target` and has every `equal` label (else nothing ever
    /// inhibits it, and its first page need not wait).
    pub fn could_mute(&self, labels: &BTreeMap<String, String>) -> bool {
        self.target.iter().all(|m| m.matches(labels))
            && self
                .equal
                .iter()
                .all(|l| labels.get(l).is_some_and(|v| !v.is_empty()))
    }

    /// Whether `source` (another alert's labels) inhibits `target`. Two
    /// alerts that each match both sides do not inhibit each other (as in
    /// Alertmanager): else both would be muted and nobody paged.
    fn inhibits(
        &self,
        source: &BTreeMap<String, String>,
        target: &BTreeMap<String, String>,
    ) -> bool {
        let both_sides = |l: &BTreeMap<String, String>| {
            self.source.iter().all(|m| m.matches(l)) && self.target.iter().all(|m| m.matches(l))
        };
        if both_sides(source) && both_sides(target) {
            return false;
        }
        let equal = self.equal.iter().all(|l| {
            matches!((source.get(l), target.get(l)), (Some(a), Some(b)) if !a.is_empty() && a == b)
        });
        equal
            && self.target.iter().all(|m| m.matches(target))
            && self.source.iter().all(|m| m.matches(source))
    }
}

/// The alert of an open incident of any paging partition.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    pub dedup_key: String,
    /// Its labels as silences see them (`severity`, `dedup_key`, `rule`).
    pub labels: BTreeMap<String, String>,
    pub opened_at: DateTime<Utc>,
    /// Whether it fires: not while it flaps resolved, nor when its
    /// incident stays open only for its group. Only firing alerts inhibit.
    pub fires: bool,
    /// Whether a silence, a maintenance window or an inhibition mutes it
    /// (being grouped into another incident is not).
    pub muted: bool,
    pub flapping: bool,
    /// The route it took and the policy it pages, which make its group.
    pub route: Option<String>,
    pub policy: Option<String>,
    /// It is its group's incident already (it paged for the group).
    pub leads: bool,
    pub acknowledged: bool,
    /// It sent every update an incident sends: its group moves on.
    pub spent: bool,
}

impl FiringAlert {
    /// The alert of an open incident; none for a closed one or a manual
    /// page (someone asking for help, never grouped nor inhibiting).
    pub fn of(incident: &Incident) -> Option<Self> {
        if !incident.is_open() || incident.target.is_some() {
            return None;
        }
        let held = incident.group.as_ref().is_some_and(|g| g.alert_resolved);
        let muted = incident
            .silenced_by
            .as_deref()
            .is_some_and(|m| !m.starts_with(GROUPED_PREFIX));
        Some(Self {
            dedup_key: incident.dedup_key.clone(),
            labels: alert_labels(incident),
            opened_at: incident.opened_at,
            fires: !held && incident.flapping.is_none_or(|f| f.firing),
            muted,
            flapping: incident.flapping.is_some(),
            route: incident.route.clone(),
            policy: incident.policy.clone(),
            leads: incident.group.as_ref().is_some_and(|g| g.paged),
            acknowledged: incident.status == Status::Acknowledged,
            spent: incident.group.as_ref().is_some_and(Group::spent),
        })
    }
}

/// Every open alert of every partition, by incident id, as the `incidents`
/// changelog says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Firing {
    pub alerts: HashMap<String, FiringAlert>,
    /// Whether the changelog was read to its end once: before, an alert
    /// that inhibits may not be known yet.
    pub loaded: bool,
    /// The alerts in the groups of the on-call file's routes: filled in by
    /// [`Self::grouped`], as the routes may change with the file.
    pub groups: Groups,
    /// Not loaded long after the notifier started: alerts grouped before
    /// are released (each pages) rather than kept muted on a view that may
    /// never come.
    pub overdue: bool,
}

/// How an incident's `silenced_by` names an inhibition:
/// `inhibited/RULE/INCIDENT`.
pub const INHIBITED_PREFIX: &str = "inhibited/";

/// What inhibits an alert: the rule, and the source alert's incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Inhibitor<'a> {
    pub rule: &'a Inhibit,
    pub incident: &'a str,
    pub alert: &'a FiringAlert,
}

impl Inhibitor<'_> {
    /// The mute's id on the incident.
    pub fn id(&self) -> String {
        format!("{INHIBITED_PREFIX}{}/{}", self.rule.id, self.incident)
    }

    /// The timeline's words.
    pub fn describe(&self) -> String {
        format!(
            "alert {} firing (incident {}; inhibit {})",
            self.alert.dedup_key, self.incident, self.rule.id
        )
    }
}

impl Firing {
    /// The same alerts, sorted into the groups of `oncall`'s routes.
    pub fn grouped(&self, oncall: &OnCall) -> Self {
        Self {
            groups: Groups::new(oncall, self),
            ..self.clone()
        }
    }

    /// The first rule and firing alert that inhibit an alert with these
    /// labels (its own `dedup_key` excluded: an alert never inhibits
    /// itself), in the order of the rules, then of incident ids.
    pub fn inhibitor<'a>(
        &'a self,
        rules: impl IntoIterator<Item = &'a Inhibit>,
        labels: &BTreeMap<String, String>,
    ) -> Option<Inhibitor<'a>> {
        // Until the changelog was read to its end, a partial view would
        // mute on alerts long resolved.
        if !self.loaded {
            return None;
        }
        let rules: Vec<&Inhibit> = rules.into_iter().collect();
        let own = labels.get("dedup_key");
        // A source this alert itself inhibits (by any rule) does not
        // inhibit it back: two rules pointing at each other would leave
        // both alerts muted and nobody paged.
        let inhibited_by_me =
            |source: &FiringAlert| rules.iter().any(|r| r.inhibits(labels, &source.labels));
        rules.iter().copied().find_map(|rule| {
            self.alerts
                .iter()
                .filter(|(_, a)| {
                    a.fires
                        && Some(&a.dedup_key) != own
                        && rule.inhibits(&a.labels, labels)
                        && !inhibited_by_me(a)
                })
                .min_by(|a, b| a.0.cmp(b.0))
                .map(|(incident, alert)| Inhibitor {
                    rule,
                    incident,
                    alert,
                })
        })
    }

    /// Whether the inhibition `id` (`inhibited/RULE/INCIDENT`) still holds
    /// for these labels; `None` if it is not an inhibition's id.
    pub fn holds<'a>(
        &self,
        rules: impl IntoIterator<Item = &'a Inhibit>,
        id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<bool> {
        let (rule, incident) = id.strip_prefix(INHIBITED_PREFIX)?.split_once('/')?;
        let rule = rules.into_iter().find(|r| r.id == rule);
        let alert = self.alerts.get(incident);
        Some(match (rule, alert) {
            (Some(rule), Some(alert)) => alert.fires && rule.inhibits(&alert.labels, labels),
            // Not read yet: the source may well still fire.
            (Some(_), None) if !self.loaded => true,
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::silence::matcher::tests::labels;

    fn rule(equal: &[&str]) -> Inhibit {
        Inhibit {
            id: "cluster-down".into(),
            source: vec!["rule=cluster-down".parse().unwrap()],
            target: vec!["severity!=critical".parse().unwrap()],
            equal: equal.iter().map(|s| s.to_string()).collect(),
            wait: None,
        }
    }

    fn firing(alerts: &[(&str, &[(&str, &str)])]) -> Firing {
        Firing {
            alerts: alerts
                .iter()
                .map(|(id, l)| {
                    let labels = labels(l);
                    let alert = FiringAlert {
                        dedup_key: labels["dedup_key"].clone(),
                        labels,
                        opened_at: DateTime::UNIX_EPOCH,
                        fires: true,
                        muted: false,
                        flapping: false,
                        route: None,
                        policy: None,
                        leads: false,
                        acknowledged: false,
                        spent: false,
                    };
                    (id.to_string(), alert)
                })
                .collect(),
            loaded: true,
            ..Firing::default()
        }
    }

    #[test]
    fn equal_labels_must_be_present_on_both_sides_and_alike() {
        let rules = [rule(&["cluster"])];
        let down = firing(&[(
            "i1",
            &[
                ("dedup_key", "down-eu"),
                ("rule", "cluster-down"),
                ("cluster", "eu"),
                ("severity", "critical"),
            ],
        )]);
        let eu = labels(&[
            ("dedup_key", "api"),
            ("cluster", "eu"),
            ("severity", "warning"),
        ]);
        let us = labels(&[
            ("dedup_key", "api-us"),
            ("cluster", "us"),
            ("severity", "warning"),
        ]);
        let none = labels(&[("dedup_key", "api-x"), ("severity", "warning")]);
        let empty = labels(&[
            ("dedup_key", "api-y"),
            ("cluster", ""),
            ("severity", "warning"),
        ]);
        let critical = labels(&[
            ("dedup_key", "db"),
            ("cluster", "eu"),
            ("severity", "critical"),
        ]);
        let found = down.inhibitor(&rules, &eu).unwrap();
        assert_eq!(found.id(), "inhibited/cluster-down/i1");
        assert_eq!(down.holds(&rules, &found.id(), &eu), Some(true));
        assert!(down.inhibitor(&rules, &us).is_none(), "another cluster");
        assert!(
            down.inhibitor(&rules, &none).is_none(),
            "#507: missing on the target"
        );
        assert!(down.inhibitor(&rules, &empty).is_none(), "empty is missing");
        assert!(down.inhibitor(&rules, &critical).is_none(), "not a target");
        // A source without the label inhibits nothing (#1727).
        let bare = firing(&[(
            "i2",
            &[
                ("dedup_key", "down"),
                ("rule", "cluster-down"),
                ("severity", "critical"),
            ],
        )]);
        assert!(bare.inhibitor(&rules, &eu).is_none());
    }

    #[test]
    fn an_alert_never_inhibits_itself_and_a_gone_source_releases() {
        // A rule whose source and target both match the same alert.
        let rules = [Inhibit {
            target: vec!["rule=cluster-down".parse().unwrap()],
            ..rule(&["cluster"])
        }];
        let labels_of = [
            ("dedup_key", "down-eu"),
            ("rule", "cluster-down"),
            ("cluster", "eu"),
            ("severity", "critical"),
        ];
        let me = firing(&[("i1", &labels_of)]);
        assert!(me.inhibitor(&rules, &labels(&labels_of)).is_none(), "#666");
        // Nor do two alerts that each match both sides mute each other.
        let twin = [
            ("dedup_key", "down-eu-2"),
            ("rule", "cluster-down"),
            ("cluster", "eu"),
            ("severity", "critical"),
        ];
        assert!(me.inhibitor(&rules, &labels(&twin)).is_none(), "mutual");
        let rules = [rule(&["cluster"])];
        let eu = labels(&[
            ("dedup_key", "api"),
            ("cluster", "eu"),
            ("severity", "warning"),
        ]);
        let gone = Firing {
            loaded: true,
            ..Firing::default()
        };
        assert_eq!(
            gone.holds(&rules, "inhibited/cluster-down/i1", &eu),
            Some(false)
        );
        let unread = Firing::default();
        assert_eq!(
            unread.holds(&rules, "inhibited/cluster-down/i1", &eu),
            Some(true)
        );
        assert_eq!(gone.holds(&rules, "s1", &eu), None, "a silence's id");
    }

    #[test]
    fn missing_on_both_sides_is_no_match_and_rules_do_not_mute_each_other() {
        // Both without the equal label: still no match (#507).
        let any = Inhibit {
            target: vec!["severity=warning".parse().unwrap()],
            ..rule(&["cluster"])
        };
        let rules = [any.clone()];
        let source = firing(&[(
            "i1",
            &[
                ("dedup_key", "down"),
                ("rule", "cluster-down"),
                ("severity", "critical"),
            ],
        )]);
        let target = labels(&[("dedup_key", "api"), ("severity", "warning")]);
        assert!(source.inhibitor(&rules, &target).is_none());
        assert!(!any.could_mute(&target), "nothing can mute it: no wait");
        // Two rules pointing at each other: region-down (a warning) would
        // mute cluster-down by one rule and cluster-down it by the other.
        let region = Inhibit {
            id: "region-down".into(),
            source: vec!["rule=region-down".parse().unwrap()],
            target: vec!["rule=cluster-down".parse().unwrap()],
            equal: vec!["region".into()],
            wait: None,
        };
        let rules = [rule(&["cluster"]), region];
        let both = firing(&[
            (
                "r",
                &[
                    ("dedup_key", "region"),
                    ("rule", "region-down"),
                    ("cluster", "eu"),
                    ("region", "r1"),
                    ("severity", "warning"),
                ],
            ),
            (
                "c",
                &[
                    ("dedup_key", "cluster"),
                    ("rule", "cluster-down"),
                    ("cluster", "eu"),
                    ("region", "r1"),
                    ("severity", "critical"),
                ],
            ),
        ]);
        let region_labels = both.alerts["r"].labels.clone();
        let cluster_labels = both.alerts["c"].labels.clone();
        assert!(both.inhibitor(&rules, &region_labels).is_none());
        assert!(both.inhibitor(&rules, &cluster_labels).is_none());
        // A view not read to its end mutes nothing.
        let partial = Firing {
            loaded: false,
            ..both.clone()
        };
        assert!(
            partial
                .inhibitor(
                    &rules[..1],
                    &labels(&[
                        ("dedup_key", "x"),
                        ("cluster", "eu"),
                        ("severity", "warning")
                    ])
                )
                .is_none()
        );
    }

    #[test]
    fn bad_rules_say_why() {
        let mut bad = rule(&[""]);
        bad.id = "a/b".into();
        bad.target = vec!["team!=db".parse().unwrap()];
        bad.wait = Some(Duration::from_secs(7200));
        let problems = bad.problems().join("\n");
        for expect in [
            "match every alert",
            "equal label is empty",
            "wait is at most 1h",
        ] {
            assert!(problems.contains(expect), "{problems}");
        }
        assert!(rule(&["cluster"]).problems().is_empty());
    }
}
