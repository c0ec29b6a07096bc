//! `klaxon rules backtest`: the rules replayed over the lake's history in
//! event time, through the streaming engine itself ([`RuleEngine`]), so a
//! team sees what a threshold would have done before it wakes anyone.
//!
//! - [`replay`]: the lake's points, hour by hour, into one engine per rule
//!   set (the rules tested, and with `--against` the version they replace),
//!   both fed from the same read.
//! - [`outcome`]: the paging events folded into incidents as the notifier
//!   keeps them (one open incident per dedup_key), their durations, and whom
//!   each would have paged first, in which hours of their day, by the
//!   notifier's own escalation over the on-call file.
//!
//! What a backtest cannot know, and says: the engine sees every point of
//! the lake on time, where the live runner may have counted some late; event
//! time stops at the last point, so an incident firing there is "open at
//! end"; pages are the first level's (nobody acknowledges in a replay, so
//! later levels would only say how long nobody did); the on-call file is
//! today's, its rotations projected back.

mod outcome;
mod replay;

use std::collections::BTreeSet;

use arrow::error::ArrowError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

pub use outcome::{Opened, Paged, RuleOutcome, incidents, rule_outcome};
pub use replay::{Progress, Read, Replayed};

use crate::{
    error::ErrorKind,
    lake::{
        Lake, LakeError,
        files::{DataFile, list_data_files},
        layout::TABLE_DIR,
    },
    notify::OnCall,
    points::MS_PER_HOUR,
    query::{QueryEngine, QueryError},
    rules::{CompiledRule, EngineOptions, RuleEngine},
};

#[derive(Debug, Error)]
pub enum BacktestError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("reading the lake: {0}")]
    Read(#[from] datafusion::error::DataFusionError),
    #[error("the lake's points: {0}")]
    Points(#[from] ArrowError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

impl BacktestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BacktestError::Query(e) => e.kind(),
            BacktestError::Read(_) => ErrorKind::External,
            BacktestError::Points(_) => ErrorKind::Internal,
            BacktestError::Lake(e) => e.kind(),
        }
    }
}

/// One rule, as tested and as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub rule: String,
    /// `None` when the rule is only in the `--against` set.
    pub tested: Option<RuleOutcome>,
    /// `None` without `--against`, or when the rule is new.
    pub against: Option<RuleOutcome>,
}

/// A backtest's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: u64,
    /// The first point's time.
    pub event_time_from: Option<DateTime<Utc>>,
    /// Where event time stopped: the last point's time.
    pub event_time_until: Option<DateTime<Utc>>,
    pub evaluations: u64,
    pub rules: Vec<Comparison>,
    /// The incidents the tested rules would have opened.
    pub incidents: Vec<Opened>,
    /// And those of the `--against` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against_incidents: Option<Vec<Opened>>,
}

/// The hours (epoch ms of their starts, ascending) in `[from_ms, to_ms)`
/// that have files in the lake: a replay over two idle weeks reads nothing.
async fn hours_with_points(
    lake: &Lake,
    (from_ms, to_ms): (i64, i64),
) -> Result<Vec<i64>, BacktestError> {
    let hours: BTreeSet<i64> = list_data_files(lake, TABLE_DIR)
        .await?
        .iter()
        .filter_map(DataFile::hour)
        .map(|h| h * MS_PER_HOUR)
        .filter(|&start| start + MS_PER_HOUR > from_ms && start < to_ms)
        .collect();
    Ok(hours.into_iter().collect())
}

/// What to replay, over which stretch of the lake.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The rules tried.
    pub tested: Vec<CompiledRule>,
    /// The rules they would replace, replayed over the same points.
    pub against: Option<Vec<CompiledRule>>,
    /// The engine's options, as `klaxon rules run` has them.
    pub options: EngineOptions,
    /// Whom incidents page, when given.
    pub oncall: Option<&'a OnCall>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Replays `plan` over the lake's points.
pub async fn backtest(
    lake: &Lake,
    query: &QueryEngine,
    plan: Plan<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Backtest, BacktestError> {
    let Plan {
        tested,
        against,
        options,
        oncall,
        from,
        to,
    } = plan;
    let names = |rules: &[CompiledRule]| -> BTreeSet<String> {
        rules.iter().map(|r| r.rule.name.clone()).collect()
    };
    let tested_names = names(&tested);
    let against_names = against.as_deref().map(names);
    let mut engines = vec![RuleEngine::new(tested, options)];
    engines.extend(against.map(|rules| RuleEngine::new(rules, options)));
    let range = (from.timestamp_millis(), to.timestamp_millis());
    let hours = hours_with_points(lake, range).await?;
    let (read, replayed) = replay::replay(query, &mut engines, &hours, range, progress).await?;
    let mut replayed = replayed.into_iter();
    let tested_replayed = replayed.next().unwrap_or_default();
    let against_replayed = replayed.next();
    let tested_incidents = incidents(&tested_replayed.events, oncall);
    let against_incidents = against_replayed
        .as_ref()
        .map(|r| incidents(&r.events, oncall));
    let all_names: BTreeSet<&String> = tested_names
        .iter()
        .chain(against_names.iter().flatten())
        .collect();
    let rules = all_names
        .into_iter()
        .map(|name| Comparison {
            rule: name.clone(),
            tested: tested_names
                .contains(name)
                .then(|| rule_outcome(name, &tested_incidents, &tested_replayed)),
            against: against_names
                .as_ref()
                .filter(|names| names.contains(name))
                .and(against_replayed.as_ref().zip(against_incidents.as_ref()))
                .map(|(r, incidents)| rule_outcome(name, incidents, r)),
        })
        .collect();
    Ok(Backtest {
        from,
        to,
        points: read.points,
        event_time_from: read
            .first_point_ms
            .and_then(DateTime::from_timestamp_millis),
        event_time_until: read.last_point_ms.and_then(DateTime::from_timestamp_millis),
        evaluations: tested_replayed.evaluations
            + against_replayed.as_ref().map_or(0, |r| r.evaluations),
        rules,
        incidents: tested_incidents,
        against_incidents,
    })
}
