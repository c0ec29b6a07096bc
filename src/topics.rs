//! Creates the topics klaxon uses when they are missing. Brokers such as tansu
//! do not auto-create topics, and an auto-created topic would get the broker's
//! default partition count rather than the configured one.

use std::{collections::HashSet, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    types::RDKafkaErrorCode,
};
use thiserror::Error;

use crate::{
    config::{KafkaConfig, TopicsConfig},
    error::ErrorKind,
    kafka::{Role, client_config},
};

#[derive(Debug, Error)]
pub enum TopicError {
    #[error(
        "not allowed to create topic {topic:?} ({code}); create it yourself or grant CreateTopics to klaxon's principal"
    )]
    NotAllowed {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("creating topic {topic:?} failed: {code}")]
    Refused {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("talking to the brokers: {0}")]
    Kafka(#[from] KafkaError),
}

impl TopicError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TopicError::NotAllowed { .. } | TopicError::Refused { .. } => ErrorKind::User,
            TopicError::Kafka(_) => ErrorKind::External,
        }
    }
}

/// A topic klaxon needs.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Extra topic configs, e.g. `cleanup.policy=compact` for changelogs.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic with the partitions and replication `[topics]` gives.
    pub fn plain(name: &str, topics: &TopicsConfig) -> Self {
        Self {
            name: name.to_owned(),
            partitions: topics.partitions,
            replication_factor: topics.replication_factor,
            configs: Vec::new(),
        }
    }

    /// A compacted (changelog) topic: the last record per key is kept.
    pub fn compacted(name: &str, partitions: i32, topics: &TopicsConfig) -> Self {
        Self {
            partitions,
            configs: vec![("cleanup.policy".to_owned(), "compact".to_owned())],
            ..Self::plain(name, topics)
        }
    }
}

/// The metric topics every source reads (ingest and the rules runner both
/// consume them).
pub fn source_topics(config: &crate::config::Config) -> Vec<TopicSpec> {
    config
        .sources()
        .iter()
        .map(|s| TopicSpec::plain(&s.topic, &config.topics))
        .collect()
}

/// Creates each topic that does not exist yet; existing topics are left as they are.
///
/// Asks the brokers which topics exist first and creates only the others:
/// a broker asked to create a topic it has may log that as an error (tansu
/// logs `ERROR … TopicAlreadyExists` for each), which on every restart
/// reads as a failure. Two components creating the same new topic at once
/// can still meet that answer; it is taken as success.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    brokers: &str,
    topics: &[TopicSpec],
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(kafka, brokers, Role::Admin).create()?;
    let existing = existing_topics(kafka, brokers).await?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .filter(|t| !existing.contains(&t.name))
        .map(|t| {
            let mut topic = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            );
            for (k, v) in &t.configs {
                topic = topic.set(k, v);
            }
            topic
        })
        .collect();
    if new_topics.is_empty() {
        return Ok(());
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(new_topics.iter(), &options).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((
                topic,
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::PolicyViolation),
            )) => return Err(TopicError::NotAllowed { topic, code }),
            Err((topic, code)) => return Err(TopicError::Refused { topic, code }),
        }
    }
    Ok(())
}

/// The names of the topics the cluster has. Metadata for all topics, not
/// for the ones wanted: asking for a missing topic by name makes brokers
/// with `auto.create.topics.enable` create it with their defaults.
async fn existing_topics(
    kafka: &KafkaConfig,
    brokers: &str,
) -> Result<HashSet<String>, KafkaError> {
    let config = client_config(kafka, brokers, Role::Admin);
    // rdkafka's metadata call blocks; a plain consumer (no group) makes it.
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config.create()?;
        let metadata = client.fetch_metadata(None, Duration::from_secs(30))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_owned())
            .collect())
    })
    .await
    .expect("reading topic metadata does not panic")
}
