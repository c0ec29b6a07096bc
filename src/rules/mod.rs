//! Alert rules: SQL over continuous event-time windows.
//!
//! This module holds the rule definitions and their validation
//! (`klaxon rules check`). A rule is a TOML table; its SQL sees exactly the
//! points of one window as the table `metrics`, and every row it returns is
//! one alert instance keyed by its non-value columns.

mod check;
mod definition;

pub use check::{CheckReport, Problem, check_dir, check_file, tag_type};
pub use definition::{Direction, NoData, Rule, RuleFile, Severity, Thresholds};
