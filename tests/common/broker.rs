//! The broker: `klaxon broker` (tansu) in a process of its own, which tests
//! may kill and restart.

use std::{path::Path, time::Duration};

use super::{Listener, Proc, free_port, listener};

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
        // `free_port` only says the port was free a moment ago: another
        // process may bind it first, and then this broker exits; try another.
        for _ in 0..5 {
            if let Some(broker) = Self::try_start(dir, free_port(), "sqlite://broker.db").await {
                return broker;
            }
        }
        panic!("no broker came up on five free ports");
    }

    /// A broker on `port`, which must come up there (a restart keeps its
    /// address, as clients expect).
    pub async fn start_with(dir: &Path, port: u16, storage: String) -> Self {
        Self::try_start(dir, port, &storage)
            .await
            .unwrap_or_else(|| panic!("the broker did not come up on port {port}"))
    }

    /// Starts a broker and waits until it answers metadata requests; `None`
    /// if it exited instead (its port was taken).
    async fn try_start(dir: &Path, port: u16, storage: &str) -> Option<Self> {
        // One log per start, so a restart keeps the log of the run before.
        let starts = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("broker-"))
            })
            .count();
        let log = dir.join(format!("broker-{starts}.log"));
        let listen = format!("127.0.0.1:{port}");
        // tansu resolves sqlite:// paths under the working directory.
        let mut proc = Proc::spawn_in(
            dir,
            &["broker", "--listen", &listen, "--storage", storage],
            log,
        );
        let ready = klaxon::harness::poll_until(
            Duration::from_secs(60),
            Duration::from_millis(100),
            async || {
                if proc.child.try_wait().unwrap().is_some() {
                    return Err(());
                }
                Ok(
                    klaxon::broker::wait_ready(&listen, Duration::from_millis(500))
                        .await
                        .is_ok(),
                )
            },
        )
        .await;
        match ready {
            // The broker that answered is this one only if this process
            // holds the listening socket: tansu binds after klaxon's own
            // check, and only logs a failure to.
            Ok(true) if listener(proc.child.id(), port) == Listener::Ours => Some(Self {
                proc,
                port,
                storage: storage.to_owned(),
            }),
            Ok(true) | Err(()) => {
                eprintln!(
                    "port {port} belongs to another process:\n{}",
                    proc.log_text()
                );
                None
            }
            Ok(false) => panic!("the broker did not come up:\n{}", proc.log_text()),
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
