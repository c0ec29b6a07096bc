//! The notifier: on-call schedules, escalation policies, incidents.
//!
//! - [`oncall`]: the on-call file (users and contact methods, schedules of
//!   rotation layers with restrictions and overrides, escalation policies),
//!   checked by [`check_oncall`], loaded and reloaded as [`LoadedOnCall`]
//!   ([`oncall_file`]).
//! - [`schedule`]: who is on call at an instant, across time zones and
//!   daylight-saving changes, as pure code.
//! - [`incident`]: one incident's escalation, notifications and timeline, as
//!   pure code.
//! - [`Notifier`] ([`worker`]): consumes `paging`, applies each event to the
//!   incidents of its partition (`partition`, pure), keeps them in the
//!   compacted `incidents` changelog ([`changelog`]), delivers through
//!   [`channels`]; acknowledge links are signed ([`links`]).
//! - [`route`]: which policy an alert takes, a pause before its first page,
//!   reminders while nobody acknowledges.
//! - [`maintenance`]: windows booked in the on-call file, muting alerts as
//!   silences do.
//! - [`silence`]: silences, on their own compacted topic, which every
//!   member follows; a silenced incident pages nobody until its silence ends.
//! - The CLI and the HTTP API ([`api`]) answer the same questions from
//!   [`queries`] (incidents by status, one incident, who is on call until
//!   when) and send acknowledgements, resolves and pages through [`client`].
//!
//! The events it reads, and those the CLI and API send, are the paging
//! contract of [`crate::paging`] (its limits keep every event and incident
//! within a Kafka record).

pub mod api;
pub mod changelog;
pub mod channels;
pub mod check;
pub mod client;
pub mod group;
pub mod incident;
pub mod inhibit;
pub mod links;
pub mod maintenance;
pub mod oncall;
pub mod oncall_file;
mod partition;
pub mod queries;
pub mod route;
pub mod schedule;
pub mod silence;
#[cfg(test)]
mod streams;
pub mod worker;

pub use check::{Finding, Level, check_oncall};
pub use incident::{Incident, Opening, Status};
pub use oncall::OnCall;
pub use oncall_file::LoadedOnCall;
pub use schedule::{ScheduleClock, Shift};
pub use worker::{Notifier, NotifyError};

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
        TopicSpec::compacted(&n.silences_topic, 1, t),
    ]
}
