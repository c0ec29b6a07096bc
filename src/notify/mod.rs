//! The notifier: on-call schedules, escalation policies, incidents.
//!
//! - [`oncall`]: the on-call file (users and contact methods, schedules of
//!   rotation layers with restrictions and overrides, escalation policies),
//!   checked by [`check_oncall`].
//! - [`schedule`]: who is on call at an instant, across time zones and
//!   daylight-saving changes, as pure code.
//! - [`incident`]: one incident's escalation, notifications and timeline, as
//!   pure code.
//! - [`Notifier`] ([`worker`]): consumes `paging`, keeps incidents in the
//!   compacted `incidents` changelog ([`changelog`]), delivers through
//!   [`channels`]; acknowledge links are signed ([`links`]).
//! - [`limits`]: the size of everything a sender controls, so no event or
//!   incident outgrows a Kafka record.

pub mod api;
pub mod changelog;
pub mod channels;
pub mod check;
pub mod client;
pub mod incident;
pub mod limits;
pub mod links;
pub mod oncall;
pub mod schedule;
pub mod worker;

pub use check::{Finding, Level, check_oncall};
pub use incident::{Incident, Opening, Status};
pub use oncall::OnCall;
pub use schedule::{ScheduleClock, Shift};
pub use worker::{LoadedOnCall, Notifier, NotifyError, parse_event};

use crate::{config::Config, topics::TopicSpec};

/// The paging topic, its dead-letter topic, and the incidents changelog:
/// compacted, with as many partitions as paging so partition `p` of one
/// holds the incidents of partition `p` of the other.
pub fn topics(config: &Config) -> Vec<TopicSpec> {
    let (n, t) = (&config.notify, &config.topics);
    vec![
        TopicSpec::plain(&n.paging_topic, t),
        TopicSpec::plain(&n.dead_letter, t),
        TopicSpec::compacted(&n.incidents_topic, t.partitions, t),
    ]
}
