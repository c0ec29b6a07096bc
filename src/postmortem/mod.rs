//! `klaxon postmortem`: a blameless reason-for-outage draft of one incident,
//! from klaxon's own data only.
//!
//! - [`facts`]: the incident from the lake's `incidents` table (who was
//!   paged on which channel, who acknowledged and resolved, the timeline).
//! - [`breach`]: the alerting rule's SQL run again over the lake's `metrics`
//!   around the incident, for its value per window and the first breach.
//! - `chart`: that value as SVG, thresholds and moments marked.
//! - `render`: Markdown, or one self-contained HTML page.
//!
//! Nothing is invented: every figure comes from the data, the sections the
//! team writes carry prompts only, and missing data (points aged out of the
//! lake, an incident still open, a rule since deleted) is said in the draft.

pub mod breach;
mod chart;
pub mod facts;
mod render;

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use datafusion::error::DataFusionError;
use thiserror::Error;

pub use self::render::{html, markdown};
use self::{
    breach::{RuleView, rule_view},
    facts::IncidentFacts,
};
use crate::{
    error::ErrorKind,
    lake::Lake,
    query::{QueryEngine, QueryError},
    rules::RuleSet,
};

/// The rule is run again from this many hops (or six windows, if longer)
/// before the trigger...
const HOPS_BEFORE: i32 = 20;
/// ...to this many hops (or three windows) past the resolve or last entry.
const HOPS_AFTER: i32 = 10;
/// The longest incident span the rule is run over.
const LONGEST: Duration = Duration::hours(24);

#[derive(Debug, Error)]
pub enum PostmortemError {
    #[error("no incident {0} in the lake's incidents table")]
    NotFound(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("running the rule again: {0}")]
    DataFusion(#[from] DataFusionError),
    #[error("reading the rules in {path}: {source}")]
    Rules {
        path: String,
        source: std::io::Error,
    },
}

impl PostmortemError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PostmortemError::NotFound(_) => ErrorKind::User,
            PostmortemError::Query(e) => e.kind(),
            PostmortemError::DataFusion(_) | PostmortemError::Rules { .. } => ErrorKind::External,
        }
    }
}

/// Everything a draft says.
#[derive(Debug, Clone)]
pub struct Draft {
    pub facts: IncidentFacts,
    /// The rule's view, when the rule and its points were found.
    pub rule_view: Option<RuleView>,
    /// Why there is no rule view, when there is none.
    pub no_rule_view: Option<String>,
    pub chart: Option<String>,
    /// What the data lacks, said in the draft.
    pub notes: Vec<String>,
}

impl Draft {
    pub fn first_breach(&self) -> Option<DateTime<Utc>> {
        self.rule_view.as_ref()?.first_breach
    }

    fn no_breach_reason(&self) -> String {
        match (&self.rule_view, &self.no_rule_view) {
            (_, Some(reason)) => reason.clone(),
            (Some(view), None) if view.values.iter().all(|(_, v)| v.is_none()) => {
                "the rule returned no value for this alert in the lake's points".to_owned()
            }
            _ => "no window of the rule breached before the trigger".to_owned(),
        }
    }

    fn no_chart_reason(&self) -> String {
        match &self.no_rule_view {
            Some(reason) => reason.clone(),
            None => "the rule returned no value for this alert in the lake's points".to_owned(),
        }
    }
}

/// Drafts the postmortem of incident `id` (or of the latest incident of the
/// dedup_key `id`), with the rules of `rules` when given.
pub async fn draft(lake: &Lake, rules: Option<&Path>, id: &str) -> Result<Draft, PostmortemError> {
    let engine = QueryEngine::open(lake).await?;
    let facts = IncidentFacts::read(&engine, id)
        .await?
        .ok_or_else(|| PostmortemError::NotFound(id.to_owned()))?;
    let mut notes = Vec::new();
    let last_entry = facts.timeline.last().map_or(facts.opened_at, |r| r.at);
    if facts.resolved.is_none() {
        notes.push(format!(
            "The incident is still open: the impact window, time to resolve and timeline stop at the lake's last entry ({}).",
            last_entry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    let (rule_view, no_rule_view) = match find_rule(&facts, rules).await? {
        Err(reason) => (None, Some(reason)),
        Ok(rule) => {
            let window = Duration::from_std(rule.rule.window).unwrap_or(LONGEST);
            let every = Duration::from_std(rule.rule.every()).unwrap_or(LONGEST);
            // A rule with `for` breaches that long before it fires.
            let pending = rule
                .rule
                .pending_for
                .and_then(|d| Duration::from_std(d).ok())
                .unwrap_or_default();
            let from = facts.opened_at - (every * HOPS_BEFORE).max(window * 6) - pending;
            let end = facts.resolved.as_ref().map_or(last_entry, |r| r.at);
            let to = end.min(facts.opened_at + LONGEST) + (every * HOPS_AFTER).max(window * 3);
            let view = rule_view(&engine, &rule, &facts.labels, facts.opened_at, from, to).await?;
            notes.extend(view.notes.iter().cloned());
            notes.push(format!(
                "Rule {} was run again as its rule file says today: had it changed since the incident, these are the values of the rule as it is now.",
                view.rule
            ));
            if view.breach_before_view {
                notes.push(
                    "The rule already breached in the first window run again: the breach began at or before the first breach shown, so time to detect and the impact window are at least what they say."
                        .to_owned(),
                );
            }
            if view.values.iter().all(|(_, v)| v.is_none()) {
                notes.push(format!(
                    "The lake holds no points that give rule {} a value for this alert between {} and {}: aged out of the lake, or never ingested.",
                    view.rule,
                    from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ));
            }
            (Some(view), None)
        }
    };
    if let Some(reason) = &no_rule_view {
        notes.push(format!(
            "Time to detect and the chart are missing: {reason}."
        ));
    }
    let chart = match &rule_view {
        Some(view) => {
            let mut markers = Vec::new();
            if let Some(b) = view.first_breach {
                markers.push((b, "first breach"));
            }
            markers.push((facts.opened_at, "triggered"));
            if let Some(a) = &facts.acknowledged {
                markers.push((a.at, "acknowledged"));
            }
            if let Some(r) = &facts.resolved {
                markers.push((r.at, "resolved"));
            }
            match chart::draw(view, &markers) {
                Ok(svg) => svg,
                Err(e) => {
                    notes.push(format!("The chart could not be drawn: {e}."));
                    None
                }
            }
        }
        None => None,
    };
    Ok(Draft {
        facts,
        rule_view,
        no_rule_view,
        chart,
        notes,
    })
}

/// The rule that opened the incident, compiled, or why there is none.
async fn find_rule(
    facts: &IncidentFacts,
    rules: Option<&Path>,
) -> Result<Result<crate::rules::CompiledRule, String>, PostmortemError> {
    let Some(name) = &facts.rule else {
        return Ok(Err("the incident was not opened by a rule".to_owned()));
    };
    let Some(dir) = rules else {
        return Ok(Err(format!(
            "no rules directory was given to find rule {name} in (--rules, or rules.dir)"
        )));
    };
    let loaded = RuleSet::load(dir)
        .await
        .map_err(|source| PostmortemError::Rules {
            path: dir.display().to_string(),
            source,
        })?;
    let set = match loaded {
        Ok(set) => set,
        Err(problems) => {
            return Ok(Err(format!(
                "the rules in {} have {} problems (see klaxon rules check)",
                dir.display(),
                problems.len()
            )));
        }
    };
    Ok(set
        .rules()
        .into_iter()
        .find(|r| &r.rule.name == name)
        .ok_or_else(|| {
            format!(
                "rule {name} is not in {} (deleted or renamed since the incident)",
                dir.display()
            )
        }))
}
