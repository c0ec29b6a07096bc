//! Alert rules: SQL over continuous event-time windows.
//!
//! A rule is a TOML table ([`definition`]); `klaxon rules check` validates it
//! ([`check`]). Its SQL sees exactly the points of one window as the table
//! `metrics`, and every row it returns is one alert instance keyed by its
//! non-value columns ([`evaluate`], by panes where it can). Instances move
//! through pending, firing and resolved ([`state`]); each change becomes a
//! paging event ([`to_event`], in the contract of [`crate::paging`]).
//!
//! The streaming side: [`RuleEngine`] keeps event time per partition
//! ([`watermark`]), the points open windows need ([`store`]), and a
//! checkpoint; [`run_rules`] drives it from Kafka, with its state on a
//! compacted topic ([`checkpoint`]) and rule files reloaded as they change
//! ([`RuleSet`]). `klaxon rules test` replays a file of points ([`replay`], a dry run).

mod check;
mod checkpoint;
mod definition;
mod dry_run;
mod engine;
mod evaluate;
mod event;
mod ruleset;
mod runner;
mod state;
mod store;
mod watermark;

pub use check::{CheckReport, Problem, check_dir, check_file, check_files, rule_files, tag_type};
pub use checkpoint::{
    CheckpointError, CheckpointWriter, MAX_STATE_RECORD_BYTES, StoredCheckpoint, read_checkpoint,
};
pub use definition::{Direction, NoData, Rule, RuleFile, Thresholds};
pub use dry_run::replay;
pub use engine::{CheckpointDelta, EngineOptions, Recorded, RuleCheckpoint, RuleEngine, Tick};
pub use evaluate::{CompiledRule, EvalLimits, render};
pub use event::{resolve_orphan, to_event};
pub use ruleset::{Reload, RuleSet};
pub use runner::{RunnerError, run_rules};
pub use state::{AlertStates, Firing, Labels, Observation, Transition, severity_of};
pub use watermark::{Arrival, MAX_WINDOWS_PER_CALL, PartitionKey, Watermarks};

use crate::{config::Config, topics::TopicSpec};

/// The topics the rules runner reads and writes. Its state topic is
/// compacted, with one partition so one read rebuilds it in order.
pub fn topics(config: &Config) -> Vec<TopicSpec> {
    let mut topics = crate::topics::source_topics(config);
    topics.push(TopicSpec::plain(&config.rules.paging_topic, &config.topics));
    topics.push(TopicSpec::compacted(
        &config.rules.state_topic,
        1,
        &config.topics,
    ));
    topics
}
