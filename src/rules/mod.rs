//! Alert rules: SQL over continuous event-time windows.
//!
//! This module holds the rule definitions and their validation
//! (`klaxon rules check`). A rule is a TOML table; its SQL sees exactly the
//! points of one window as the table `metrics`, and every row it returns is
//! one alert instance keyed by its non-value columns.

mod check;
mod definition;
mod evaluate;
mod event;
mod replay;
mod runner;
mod state;
mod watermark;

pub use check::{CheckReport, Problem, check_dir, check_file, check_files, rule_files, tag_type};
pub use definition::{Direction, NoData, Rule, RuleFile, Severity, Thresholds};
pub use evaluate::{CompiledRule, render};
pub use event::{EventAction, Link, PagingEvent, Payload, Window, dedup_key};
pub use replay::{replay, to_event};
pub use runner::{RunnerOptions, run_rules};
pub use state::{AlertStates, Observation, Transition, severity_of};
pub use watermark::{Arrival, PartitionKey, Watermarks};
