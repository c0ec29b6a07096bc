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
    #[error("this klaxon was built without the embedded broker (feature `embedded-broker`); pass --brokers")]
    NotBuiltIn,
    #[error("embedded broker storage {0:?} is not a URL (try memory://tansu/ or sqlite://path.db)")]
    BadStorage(String),
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

    let storage =
        Url::parse(&options.storage).map_err(|_| BrokerError::BadStorage(options.storage.clone()))?;
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
pub async fn run(_options: BrokerOptions) -> Result<(), BrokerError> {
    let _ = Url::parse("memory://");
    Err(BrokerError::NotBuiltIn)
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
