//! The crate's error type: one enum per module, joined here with `#[from]`.
//!
//! Every variant says whose fault it is (see [`ErrorKind`]) so callers can decide
//! between refusing input, retrying, and reporting a bug.

use thiserror::Error;

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

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Rules(#[from] crate::rules::RunnerError),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::User,
            Error::Lake(e) => e.kind(),
            Error::Ingest(e) => e.kind(),
            Error::Query(e) => e.kind(),
            Error::Topics(e) => e.kind(),
            Error::Broker(_) => ErrorKind::External,
            Error::Rules(e) => e.kind(),
            Error::Notify(e) => e.kind(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
