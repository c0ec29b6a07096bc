//! Test harness: a real broker and real klaxon processes, killed on drop.
//!
//! The broker is `klaxon broker` (tansu, in its own process) on a free port,
//! so tests can kill and restart it. Waits poll a condition with a generous
//! deadline; they never assert on how fast something happened.
//!
//! - [`proc`]: klaxon and helper programs as child processes, their logs and
//!   `/metrics`, waiting for a condition.
//! - [`broker`]: the broker process and its topics.
//! - [`kafka`]: producing points and reading topics, dead letters included.
//! - [`lake`]: SQL over the lake and the exactly-once assertion.
//! - [`notifier`]: the notifier with an on-call file and config pointed at
//!   a recorder, and the events and API requests tests send it.
//! - [`recorder`]: an HTTP server recording what webhooks, Slack and Twilio
//!   would receive.
//! - [`files`]: the files klaxon reads (config, rules, on-call) and the test
//!   data of this repository.
//! - [`events`]: matching alert events against expected JSON lines.

#![allow(dead_code, unreachable_pub)]

pub mod broker;
pub mod events;
pub mod files;
pub mod kafka;
pub mod lake;
pub mod notifier;
pub mod proc;
pub mod recorder;

// Each test binary uses some of these: the rest would be unused imports.
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use events::*;
#[allow(unused_imports)]
pub use files::*;
#[allow(unused_imports)]
pub use kafka::*;
#[allow(unused_imports)]
pub use lake::*;
#[allow(unused_imports)]
pub use notifier::*;
#[allow(unused_imports)]
pub use proc::*;
#[allow(unused_imports)]
pub use recorder::*;
