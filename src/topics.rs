//! Creates the topics klaxon uses when they are missing. Brokers such as tansu
//! do not auto-create topics, and an auto-created topic would get the broker's
//! default partition count rather than the configured one.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::KafkaError,
    types::RDKafkaErrorCode,
};
use thiserror::Error;

use crate::{config::KafkaConfig, error::ErrorKind, kafka::client_config};

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

/// Creates each topic that does not exist yet; existing topics are left as they are.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    brokers: &str,
    topics: &[TopicSpec],
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka, brokers).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
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
