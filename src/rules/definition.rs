//! What a rule file says, as typed serde structs.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use crate::paging::Severity;

/// A rules file: one or more `[[rule]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rule: Vec<Spanned<Rule>>,
}

/// Equality ignores where the rule sits in its file (`Spanned` compares
/// values only): a reload treats a moved but otherwise equal rule as unchanged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// DataFusion SQL over the table `metrics`, seeing the current window's points.
    pub sql: Spanned<String>,
    /// Window length, e.g. "5m".
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Evaluation step (hop); equal to `window` gives tumbling windows.
    /// Defaults to the window.
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    /// How long an instance must match before it fires (pending before that).
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub pending_for: Option<Duration>,
    /// How long a fired instance stays firing after it stops matching.
    #[serde(default, with = "humantime_serde")]
    pub keep_firing_for: Option<Duration>,
    /// Fixed severity of every instance, when there are no thresholds.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Severity from a value column, with recovery levels against flapping.
    #[serde(default)]
    pub thresholds: Option<Spanned<Thresholds>>,
    /// Extra labels on every instance.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Templates over the instance's columns and `value`: `{{service}}: {{value}}`.
    #[serde(default)]
    pub summary: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<Spanned<String>>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub escalation_policy: Option<String>,
    /// Fire when a group that was seen sends nothing for a while.
    #[serde(default)]
    pub no_data: Option<NoData>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Fire when the value rises to the threshold or above.
    #[default]
    Above,
    /// Fire when the value falls to the threshold or below.
    Below,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// The result column that carries the value.
    pub column: String,
    #[serde(default)]
    pub direction: Direction,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    /// Where a warning clears; defaults to `warning`. Must lie on the safe
    /// side of it, so a value hovering at the line does not flap.
    pub warning_recovery: Option<f64>,
    pub critical_recovery: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoData {
    /// Silence longer than this makes a seen group fire.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    #[serde(default)]
    pub severity: Option<Severity>,
}

impl Rule {
    pub fn every(&self) -> Duration {
        self.every.unwrap_or(self.window)
    }
}
