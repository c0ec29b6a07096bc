//! The broker: `klaxon broker` (tansu) in a process of its own, which tests
//! may kill and restart.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use super::{Proc, free_port};

/// A tansu broker in its own process.
#[derive(Debug)]
pub struct Broker {
    pub proc: Proc,
    pub port: u16,
    pub storage: String,
}

impl Broker {
    /// tansu's sqlite engine. Its memory engine (0.6.0) serves a fetch from
    /// the first batch at or after the offset asked for, skipping the records
    /// before it in the batch that holds it (tests/broker_contract.rs), which
    /// breaks any consumer that resumes from a committed offset.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, free_port(), "sqlite://broker.db".into()).await
    }

    pub async fn start_with(dir: &Path, port: u16, storage: String) -> Self {
        let log = dir.join(format!(
            "broker-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let listen = format!("127.0.0.1:{port}");
        // tansu resolves sqlite:// paths under the working directory.
        let proc = Proc::spawn_in(
            dir,
            &["broker", "--listen", &listen, "--storage", &storage],
            log,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        klaxon::broker::wait_ready(&listen, Duration::from_secs(60))
            .await
            .expect("broker did not come up");
        Self {
            proc,
            port,
            storage,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions before anything else
    /// would create it with the configured count.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        klaxon::topics::ensure_topics(
            &Default::default(),
            &self.bootstrap(),
            &[klaxon::topics::TopicSpec {
                name: topic.into(),
                partitions,
                replication_factor: 1,
                configs: Vec::new(),
            }],
        )
        .await
        .unwrap();
    }
}
