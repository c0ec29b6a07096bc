//! Named crash points, for tests that prove a recovery path.
//!
//! `crash::point("compact.after_output")` aborts the process (as kill -9
//! would: no unwinding, no flush, no destructor) when the environment
//! variable `KLAXON_CRASH_AT` names that point, and does nothing otherwise.
//! The variable is read once. Tests set it on the klaxon process they start,
//! then restart it without and check what recovery did.

use std::sync::OnceLock;

/// Aborts here if `KLAXON_CRASH_AT` is `name`.
pub fn point(name: &'static str) {
    static CRASH_AT: OnceLock<Option<String>> = OnceLock::new();
    let at = CRASH_AT.get_or_init(|| std::env::var("KLAXON_CRASH_AT").ok());
    if at.as_deref() == Some(name) {
        eprintln!("klaxon: crash point {name} reached: aborting");
        std::process::abort();
    }
}
