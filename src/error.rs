//! Whose fault an error is.
//!
//! Each module has its own error enum (`LakeError`, `IngestError`,
//! `QueryError`, `TopicError`, `RunnerError`, `NotifyError`, `BenchError`,
//! …) whose `kind()` answers with an [`ErrorKind`], so a caller can decide
//! between refusing input, retrying, and reporting a bug: ingest, for one,
//! retries a lake write that failed for an [`ErrorKind::External`] reason.
//! Commands join the modules' errors with `anyhow` at the edge (`main`), so
//! there is no crate-wide error enum.
//!
//! This module imports nothing from the crate, so every module can use it
//! without an import cycle.

/// Whose fault an error is, and so whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from the user: a config, a query, a rule. Retrying will not help.
    User,
    /// Something outside klaxon failed: the broker, the object store, the disk.
    /// Retrying may help.
    External,
    /// A bug in klaxon.
    Internal,
}
