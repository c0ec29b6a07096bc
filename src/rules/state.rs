//! Alert state per instance: pending → firing → resolved, as pure code.
//!
//! Time only moves when [`AlertStates::advance`] is called with the end of the
//! window just evaluated, so every transition is deterministic and testable
//! without a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::definition::{Direction, Rule, Thresholds};
use crate::paging::Severity;

/// An alert instance's identity: its label columns.
pub type Labels = BTreeMap<String, String>;

/// One result row of a window: its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Numeric result columns other than the value, for the event's details.
    pub details: BTreeMap<String, f64>,
}

/// A change worth publishing.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Started firing, or fires at another severity.
    Fire {
        labels: BTreeMap<String, String>,
        severity: Severity,
        value: f64,
        details: BTreeMap<String, f64>,
        no_data: bool,
    },
    Resolve {
        labels: BTreeMap<String, String>,
        value: Option<f64>,
        no_data: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Matching since `since`, not yet for long enough.
    Pending { since: i64 },
    /// `cleared_since`: the first evaluation at which the condition no longer
    /// held, as Prometheus's `KeepFiringSince`; `None` while it holds.
    Firing {
        severity: Severity,
        cleared_since: Option<i64>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instance {
    #[serde(flatten)]
    phase: Phase,
}

impl Instance {
    /// The level hysteresis holds: the severity of an alert that is firing
    /// and matched at its last evaluation. A pending alert has not reached a
    /// level yet, and one kept firing by `keep_firing_for` has already
    /// crossed its recovery line, so neither is held: only a value at the
    /// threshold matches them again. (Checkpoints written before this kept a
    /// separate `level` field; serde ignores it.)
    fn hysteresis_level(&self) -> Option<Severity> {
        match self.phase {
            Phase::Firing {
                severity,
                cleared_since: None,
            } => Some(severity),
            _ => None,
        }
    }
}

/// Every instance of one rule. Serialises (for the runner's checkpoint) as
/// lists, since JSON object keys cannot be label sets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "StatesSnapshot", from = "StatesSnapshot")]
pub struct AlertStates {
    instances: BTreeMap<Labels, Instance>,
    /// When each label set last appeared in a result, for no-data alerts.
    last_seen: BTreeMap<Labels, i64>,
    /// Label sets currently firing for lack of data.
    silent: BTreeMap<Labels, ()>,
}

#[derive(Serialize, Deserialize)]
struct StatesSnapshot {
    instances: Vec<(Labels, Instance)>,
    last_seen: Vec<(Labels, i64)>,
    silent: Vec<Labels>,
}

impl From<AlertStates> for StatesSnapshot {
    fn from(s: AlertStates) -> Self {
        Self {
            instances: s.instances.into_iter().collect(),
            last_seen: s.last_seen.into_iter().collect(),
            silent: s.silent.into_keys().collect(),
        }
    }
}

impl From<StatesSnapshot> for AlertStates {
    fn from(s: StatesSnapshot) -> Self {
        Self {
            instances: s.instances.into_iter().collect(),
            last_seen: s.last_seen.into_iter().collect(),
            silent: s.silent.into_iter().map(|l| (l, ())).collect(),
        }
    }
}

/// An instance that is firing: what a resolve must name.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub labels: Labels,
    /// Firing for lack of data (its dedup key is the rule's `:no_data` one).
    pub no_data: bool,
}

impl AlertStates {
    /// Every firing instance, for resolving them when their rule goes away.
    pub fn firing(&self) -> Vec<Firing> {
        let by_value = self
            .instances
            .iter()
            .filter(|(_, i)| matches!(i.phase, Phase::Firing { .. }))
            .map(|(labels, _)| Firing {
                labels: labels.clone(),
                no_data: false,
            });
        let by_silence = self.silent.keys().map(|labels| Firing {
            labels: labels.clone(),
            no_data: true,
        });
        by_value.chain(by_silence).collect()
    }

    /// Applies one window's results, ending at `now_ms`, and returns what changed.
    pub fn advance(
        &mut self,
        rule: &Rule,
        now_ms: i64,
        observed: &[Observation],
    ) -> Vec<Transition> {
        let pending_ms = rule.pending_for.map_or(0, |d| d.as_millis() as i64);
        let keep_ms = rule.keep_firing_for.map_or(0, |d| d.as_millis() as i64);
        let mut out = Vec::new();
        let mut matched = BTreeMap::new();
        for o in observed {
            self.last_seen.insert(o.labels.clone(), now_ms);
            if self.silent.remove(&o.labels).is_some() {
                out.push(Transition::Resolve {
                    labels: o.labels.clone(),
                    value: Some(o.value),
                    no_data: true,
                });
            }
            let previous = self
                .instances
                .get(&o.labels)
                .and_then(Instance::hysteresis_level);
            if let Some(severity) = severity_of(rule, o.value, previous) {
                matched.insert(o.labels.clone(), (severity, o));
            }
        }

        // Instances that match in this window.
        for (labels, (severity, o)) in &matched {
            let instance = self.instances.entry(labels.clone()).or_insert(Instance {
                phase: Phase::Pending { since: now_ms },
            });
            let fire = match instance.phase {
                Phase::Pending { since } => now_ms - since >= pending_ms,
                Phase::Firing {
                    severity: current, ..
                } => current != *severity,
            };
            if let Phase::Firing { cleared_since, .. } = &mut instance.phase {
                *cleared_since = None;
            }
            if fire {
                instance.phase = Phase::Firing {
                    severity: *severity,
                    cleared_since: None,
                };
                out.push(Transition::Fire {
                    labels: labels.clone(),
                    severity: *severity,
                    value: o.value,
                    details: o.details.clone(),
                    no_data: false,
                });
            }
        }

        // Instances that no longer match: pending ones are forgotten, firing
        // ones resolve once `keep_firing_for` has passed.
        let values: BTreeMap<_, _> = observed.iter().map(|o| (&o.labels, o.value)).collect();
        let mut gone = Vec::new();
        for (labels, instance) in &mut self.instances {
            if matched.contains_key(labels) {
                continue;
            }
            match &mut instance.phase {
                Phase::Pending { .. } => gone.push(labels.clone()),
                Phase::Firing { cleared_since, .. } => {
                    let since = *cleared_since.get_or_insert(now_ms);
                    if now_ms - since >= keep_ms {
                        out.push(Transition::Resolve {
                            labels: labels.clone(),
                            value: values.get(labels).copied(),
                            no_data: false,
                        });
                        gone.push(labels.clone());
                    }
                }
            }
        }
        for labels in gone {
            self.instances.remove(&labels);
        }

        // Label sets seen before that have been silent too long.
        if let Some(no_data) = &rule.no_data {
            let after = no_data.after.as_millis() as i64;
            let severity = no_data
                .severity
                .or(rule.severity)
                .unwrap_or(Severity::Warning);
            for (labels, seen) in &self.last_seen {
                if now_ms - seen >= after && !self.silent.contains_key(labels) {
                    self.silent.insert(labels.clone(), ());
                    out.push(Transition::Fire {
                        labels: labels.clone(),
                        severity,
                        value: f64::NAN,
                        details: BTreeMap::new(),
                        no_data: true,
                    });
                }
            }
        }
        out
    }
}

/// The severity a value earns, if any. `previous` is the level the instance
/// holds (see `Instance::hysteresis_level`): a level is kept until the
/// value crosses its recovery line.
pub fn severity_of(rule: &Rule, value: f64, previous: Option<Severity>) -> Option<Severity> {
    let Some(t) = rule.thresholds.as_ref().map(|t| t.get_ref()) else {
        return rule.severity;
    };
    let reached = |level: f64| match t.direction {
        Direction::Above => value >= level,
        Direction::Below => value <= level,
    };
    let not_recovered = |recovery: f64| match t.direction {
        Direction::Above => value > recovery,
        Direction::Below => value < recovery,
    };
    let holds = |level: Option<f64>, recovery: Option<f64>, severity: Severity| match level {
        Some(level) if reached(level) => true,
        Some(level) => {
            previous.is_some_and(|p| p >= severity) && not_recovered(recovery.unwrap_or(level))
        }
        None => false,
    };
    let Thresholds {
        warning,
        critical,
        warning_recovery,
        critical_recovery,
        ..
    } = *t;
    if holds(critical, critical_recovery, Severity::Critical) {
        Some(Severity::Critical)
    } else if holds(warning, warning_recovery, Severity::Warning) {
        Some(Severity::Warning)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(extra: &str) -> Rule {
        let text =
            format!("[[rule]]\nname = \"r\"\nsql = \"SELECT 1 AS v\"\nwindow = \"1m\"\n{extra}");
        let file: super::super::RuleFile = toml::from_str(&text).unwrap();
        file.rule.into_iter().next().unwrap().into_inner()
    }

    fn obs(value: f64) -> Vec<Observation> {
        vec![Observation {
            labels: [("service".to_owned(), "a".to_owned())].into(),
            value,
            details: BTreeMap::new(),
        }]
    }

    fn kinds(t: &[Transition]) -> Vec<String> {
        t.iter()
            .map(|t| match t {
                Transition::Fire { severity, .. } => format!("fire {}", severity.as_str()),
                Transition::Resolve { .. } => "resolve".to_owned(),
            })
            .collect()
    }

    const M: i64 = 60_000;

    #[test]
    fn hysteresis_keeps_a_level_until_its_recovery_line() {
        let r = rule(
            "[rule.thresholds]\ncolumn = \"v\"\nwarning = 10\nwarning_recovery = 8\ncritical = 50\ncritical_recovery = 40\n",
        );
        assert_eq!(severity_of(&r, 9.0, None), None);
        assert_eq!(severity_of(&r, 10.0, None), Some(Severity::Warning));
        assert_eq!(
            severity_of(&r, 9.0, Some(Severity::Warning)),
            Some(Severity::Warning)
        );
        assert_eq!(severity_of(&r, 8.0, Some(Severity::Warning)), None);
        assert_eq!(
            severity_of(&r, 45.0, Some(Severity::Critical)),
            Some(Severity::Critical)
        );
        assert_eq!(
            severity_of(&r, 45.0, Some(Severity::Warning)),
            Some(Severity::Warning)
        );
        assert_eq!(
            severity_of(&r, 39.0, Some(Severity::Critical)),
            Some(Severity::Warning)
        );
    }

    #[test]
    fn below_thresholds_mirror_above() {
        let r = rule(
            "[rule.thresholds]\ncolumn = \"v\"\ndirection = \"below\"\nwarning = 0.2\nwarning_recovery = 0.25\n",
        );
        assert_eq!(severity_of(&r, 0.21, None), None);
        assert_eq!(severity_of(&r, 0.2, None), Some(Severity::Warning));
        assert_eq!(
            severity_of(&r, 0.24, Some(Severity::Warning)),
            Some(Severity::Warning)
        );
        assert_eq!(severity_of(&r, 0.25, Some(Severity::Warning)), None);
    }

    #[test]
    fn pending_for_then_keep_firing_for() {
        let r = rule("severity = \"critical\"\nfor = \"2m\"\nkeep_firing_for = \"2m\"\n");
        let mut s = AlertStates::default();
        assert!(s.advance(&r, M, &obs(1.0)).is_empty(), "pending");
        assert!(s.advance(&r, 2 * M, &obs(1.0)).is_empty(), "still pending");
        assert_eq!(kinds(&s.advance(&r, 3 * M, &obs(1.0))), ["fire critical"]);
        assert!(
            s.advance(&r, 4 * M, &obs(1.0)).is_empty(),
            "firing is not re-published"
        );
        assert!(s.advance(&r, 5 * M, &[]).is_empty(), "cleared, kept firing");
        assert!(
            s.advance(&r, 6 * M, &[]).is_empty(),
            "cleared 1m ago, kept firing"
        );
        assert_eq!(
            kinds(&s.advance(&r, 7 * M, &[])),
            ["resolve"],
            "cleared 2m ago"
        );
        assert!(s.advance(&r, 8 * M, &[]).is_empty());
    }

    #[test]
    fn matching_again_while_kept_firing_restarts_the_clock() {
        let r = rule("severity = \"critical\"\nkeep_firing_for = \"2m\"\n");
        let mut s = AlertStates::default();
        assert_eq!(kinds(&s.advance(&r, M, &obs(1.0))), ["fire critical"]);
        assert!(s.advance(&r, 2 * M, &[]).is_empty());
        assert!(
            s.advance(&r, 3 * M, &obs(1.0)).is_empty(),
            "matches again: no new trigger"
        );
        assert!(s.advance(&r, 4 * M, &[]).is_empty());
        assert!(s.advance(&r, 5 * M, &[]).is_empty());
        assert_eq!(kinds(&s.advance(&r, 6 * M, &[])), ["resolve"]);
    }

    #[test]
    fn a_pending_instance_that_stops_matching_never_fires() {
        let r = rule("severity = \"warning\"\nfor = \"2m\"\n");
        let mut s = AlertStates::default();
        assert!(s.advance(&r, M, &obs(1.0)).is_empty());
        assert!(s.advance(&r, 2 * M, &[]).is_empty());
        assert!(
            s.advance(&r, 3 * M, &obs(1.0)).is_empty(),
            "the pending clock restarts"
        );
        assert!(s.advance(&r, 4 * M, &obs(1.0)).is_empty());
        assert_eq!(kinds(&s.advance(&r, 5 * M, &obs(1.0))), ["fire warning"]);
    }

    #[test]
    fn severity_changes_are_published() {
        let r = rule("[rule.thresholds]\ncolumn = \"v\"\nwarning = 10\ncritical = 50\n");
        let mut s = AlertStates::default();
        assert_eq!(kinds(&s.advance(&r, M, &obs(20.0))), ["fire warning"]);
        assert_eq!(kinds(&s.advance(&r, 2 * M, &obs(60.0))), ["fire critical"]);
        assert_eq!(kinds(&s.advance(&r, 3 * M, &obs(20.0))), ["fire warning"]);
        assert_eq!(kinds(&s.advance(&r, 4 * M, &obs(5.0))), ["resolve"]);
    }

    #[test]
    fn silence_fires_no_data_and_data_resolves_it() {
        let r = rule(
            "severity = \"info\"\nno_data = { after = \"3m\", severity = \"critical\" }\n[rule.thresholds]\ncolumn = \"v\"\nwarning = 100\n",
        );
        let r = Rule {
            severity: None,
            ..r
        };
        let mut s = AlertStates::default();
        assert!(
            s.advance(&r, M, &obs(1.0)).is_empty(),
            "seen, below threshold"
        );
        assert!(s.advance(&r, 3 * M, &[]).is_empty());
        assert_eq!(kinds(&s.advance(&r, 4 * M, &[])), ["fire critical"]);
        assert!(s.advance(&r, 5 * M, &[]).is_empty(), "fired once");
        assert_eq!(kinds(&s.advance(&r, 6 * M, &obs(1.0))), ["resolve"]);
    }

    #[test]
    fn states_survive_a_round_trip_through_json() {
        let r = rule(
            "no_data = { after = \"3m\" }\nfor = \"1m\"\n[rule.thresholds]\ncolumn = \"v\"\nwarning = 10\ncritical = 50\n",
        );
        let mut s = AlertStates::default();
        s.advance(&r, M, &obs(60.0));
        assert_eq!(kinds(&s.advance(&r, 2 * M, &obs(60.0))), ["fire critical"]);
        let text = serde_json::to_string(&s).unwrap();
        let mut back: AlertStates = serde_json::from_str(&text).unwrap();
        assert_eq!(back.firing(), s.firing());
        // The restored instance keeps its level (hysteresis) and phase: a
        // value still critical publishes nothing new, silence resolves it.
        assert!(back.advance(&r, 3 * M, &obs(55.0)).is_empty());
        assert_eq!(
            kinds(&back.advance(&r, 4 * M, &obs(20.0))),
            ["fire warning"]
        );
        assert_eq!(
            kinds(&back.advance(&r, 7 * M, &[])),
            ["resolve", "fire warning"],
            "cleared, then silent past no_data.after"
        );
        assert_eq!(back.firing().len(), 1);
        assert!(back.firing()[0].no_data);
    }

    #[test]
    fn a_kept_firing_alert_is_not_held_by_hysteresis() {
        let r = rule(
            "keep_firing_for = \"2m\"\n[rule.thresholds]\ncolumn = \"v\"\nwarning = 10\nwarning_recovery = 8\n",
        );
        let mut s = AlertStates::default();
        assert_eq!(kinds(&s.advance(&r, M, &obs(12.0))), ["fire warning"]);
        assert!(
            s.advance(&r, 2 * M, &obs(7.0)).is_empty(),
            "recovered, kept"
        );
        assert!(
            s.advance(&r, 3 * M, &obs(9.0)).is_empty(),
            "below the threshold: still kept, not matched again"
        );
        assert_eq!(kinds(&s.advance(&r, 4 * M, &obs(9.0))), ["resolve"]);
    }

    #[test]
    fn checkpoints_with_the_old_level_field_still_load() {
        let r = rule("[rule.thresholds]\ncolumn = \"v\"\nwarning = 10\nwarning_recovery = 8\n");
        let mut s = AlertStates::default();
        s.advance(&r, M, &obs(12.0));
        let mut json = serde_json::to_value(&s).unwrap();
        json["instances"][0][1]["level"] = "warning".into();
        let mut back: AlertStates = serde_json::from_value(json).unwrap();
        assert!(back.advance(&r, 2 * M, &obs(9.0)).is_empty(), "held");
        assert_eq!(kinds(&back.advance(&r, 3 * M, &obs(8.0))), ["resolve"]);
    }
}
