//! The embedded Kafka-compatible broker: tansu, in-process.
//!
//! `klaxon up` uses it so a fresh clone runs with no broker to install, and
//! the integration tests start it as `klaxon broker` in a process of its own
//! that they can kill and restart. Production deployments point klaxon at
//! their own Kafka or Redpanda instead; klaxon speaks only the standard
//! protocol to either.

use std::net::SocketAddr;

use thiserror::Error;
use url::Url;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(
        "this klaxon was built without the embedded broker (feature `embedded-broker`); pass --brokers"
    )]
    NotBuiltIn,
    #[error("embedded broker storage {0:?} is not a URL (try memory://tansu/ or sqlite://path.db)")]
    BadStorage(String),
    #[error(
        "broker storage {0:?}: tansu resolves sqlite:// paths against the working directory; use a path under it, e.g. sqlite://klaxon-data/broker.db"
    )]
    SqliteOutsideWorkingDir(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker: {0}")]
    Tansu(String),
}

/// Where the embedded broker listens and keeps its data.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub listen: SocketAddr,
    /// `memory://tansu/` (lost on exit) or `sqlite://file.db` (survives restarts).
    pub storage: String,
}

impl BrokerOptions {
    /// The address clients bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.listen.to_string()
    }
}

/// Runs the broker until the task is dropped or aborted.
#[cfg(feature = "embedded-broker")]
pub async fn run(options: BrokerOptions) -> Result<(), BrokerError> {
    use tansu_broker::{broker::Broker, coordinator::group::administrator::Controller};
    use tansu_storage::StorageContainer;

    let storage = tansu_storage_url(&options.storage)?;
    // Fail early and clearly if the port is taken; tansu would only log it.
    drop(
        std::net::TcpListener::bind(options.listen).map_err(|source| BrokerError::Listen {
            addr: options.listen,
            source,
        })?,
    );
    let listener = Url::parse(&format!("tcp://{}", options.listen)).expect("socket addr url");
    let broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(111)
        .cluster_id("klaxon")
        .incarnation_id(uuid::Uuid::now_v7())
        .advertised_listener(listener.clone())
        .storage(storage)
        .listener(listener)
        .silent(true)
        .build()
        .await
        .map_err(|e| BrokerError::Tansu(format!("{e:?}")))?;
    let mut broker = broker;
    broker
        .serve(tokio::time::Instant::now())
        .await
        .map_err(|e| BrokerError::Tansu(format!("{e:?}")))
}

#[cfg(not(feature = "embedded-broker"))]
pub async fn run(options: BrokerOptions) -> Result<(), BrokerError> {
    tansu_storage_url(&options.storage)?;
    Err(BrokerError::NotBuiltIn)
}

/// tansu resolves `sqlite://HOST/PATH` as `HOST/PATH` under the working
/// directory, so the usual `sqlite:///abs/file.db` would land in the wrong
/// place. An absolute path under the working directory is rewritten relative
/// to it; one elsewhere is refused with that explanation.
fn tansu_storage_url(storage: &str) -> Result<Url, BrokerError> {
    let bad = || BrokerError::BadStorage(storage.to_owned());
    let url = Url::parse(storage).map_err(|_| bad())?;
    if url.scheme() != "sqlite" || url.host_str().is_some_and(|h| !h.is_empty()) {
        return Ok(url);
    }
    let cwd = std::env::current_dir().map_err(|_| bad())?;
    let relative = std::path::Path::new(url.path())
        .strip_prefix(&cwd)
        .map_err(|_| BrokerError::SqliteOutsideWorkingDir(storage.to_owned()))?;
    Url::parse(&format!("sqlite://{}", relative.display())).map_err(|_| bad())
}

/// Waits until a broker answers a metadata request, or the timeout passes.
pub async fn wait_ready(
    brokers: &str,
    timeout: std::time::Duration,
) -> Result<(), rdkafka::error::KafkaError> {
    use rdkafka::{
        ClientConfig,
        producer::{BaseProducer, Producer},
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let attempt = tokio::task::block_in_place(|| {
            producer
                .client()
                .fetch_metadata(None, std::time::Duration::from_millis(500))
        });
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_resolved_the_way_tansu_reads_them() {
        let cwd = std::env::current_dir().unwrap();
        let inside = format!("sqlite://{}/data/broker.db", cwd.display());
        let url = tansu_storage_url(&inside).unwrap();
        assert_eq!(url.as_str(), "sqlite://data/broker.db");
        assert!(matches!(
            tansu_storage_url("sqlite:///elsewhere/broker.db"),
            Err(BrokerError::SqliteOutsideWorkingDir(_))
        ));
        assert_eq!(
            tansu_storage_url("sqlite://data/broker.db")
                .unwrap()
                .as_str(),
            "sqlite://data/broker.db"
        );
        assert_eq!(
            tansu_storage_url("memory://tansu/").unwrap().as_str(),
            "memory://tansu/"
        );
    }
}
