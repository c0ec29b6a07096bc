//! What the CLI and the HTTP API do with incidents: read them from the
//! changelog, and send acknowledgements, resolves and pages as events on
//! the paging topic, so every incident has one ordered log.

use rdkafka::error::KafkaError;
use thiserror::Error;

use super::{changelog::read_changelog, incident::Incident};
use crate::{
    config::Config,
    paging::{EventAction, PagingEvent, Publisher, bound_dedup_key},
};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no incident {0:?}")]
    NotFound(String),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Every incident in the changelog with its partition, oldest first.
pub async fn all_incidents(config: &Config) -> Result<Vec<(i32, Incident)>, ClientError> {
    let (kafka, brokers, topic) = (
        config.kafka.clone(),
        config.kafka.brokers.clone(),
        config.notify.incidents_topic.clone(),
    );
    let logs = tokio::task::spawn_blocking(move || read_changelog(&kafka, &brokers, &topic, None))
        .await
        .expect("the changelog reader does not panic")?;
    let mut incidents: Vec<(i32, Incident)> = logs
        .into_iter()
        .flat_map(|(p, l)| l.incidents.into_iter().map(move |i| (p, i)))
        .collect();
    incidents.sort_by_key(|(_, i)| i.opened_at);
    Ok(incidents)
}

/// The incident with this id, with its partition.
pub async fn find_by_id(config: &Config, id: &str) -> Result<(i32, Incident), ClientError> {
    all_incidents(config)
        .await?
        .into_iter()
        .find(|(_, i)| i.id == id)
        .ok_or_else(|| ClientError::NotFound(id.to_owned()))
}

/// The incident an id or dedup_key names (the open one, for a dedup_key),
/// with its partition.
pub async fn find_incident(config: &Config, id: &str) -> Result<(i32, Incident), ClientError> {
    let incidents = all_incidents(config).await?;
    // Stored as the notifier's intake shortened it.
    let key = bound_dedup_key(id.to_owned());
    incidents
        .iter()
        .find(|(_, i)| i.id == id)
        .or_else(|| {
            incidents
                .iter()
                .rev()
                .find(|(_, i)| i.dedup_key == key && i.is_open())
        })
        .or_else(|| incidents.iter().rev().find(|(_, i)| i.dedup_key == key))
        .cloned()
        .ok_or_else(|| ClientError::NotFound(id.to_owned()))
}

/// Publishes `events` to the notifier's paging topic, with a producer of
/// their own (the CLI and the API send rarely); to `partition` when given
/// (see [`Publisher::publish`]).
pub async fn send_events(
    config: &Config,
    events: &[PagingEvent],
    partition: Option<i32>,
) -> Result<(), KafkaError> {
    Publisher::new(&config.kafka, &config.notify.paging_topic)?
        .publish(events, partition)
        .await
}

/// Acknowledges or resolves the incident `id` names; returns it as it was.
pub async fn act(
    config: &Config,
    id: &str,
    action: EventAction,
    by: &str,
    client: &str,
) -> Result<Incident, ClientError> {
    let (partition, incident) = find_incident(config, id).await?;
    send_action(config, partition, &incident, action, by, client).await?;
    Ok(incident)
}

/// Sends an acknowledgement or resolve for exactly this incident: the
/// notifier applies it to no other incident of the same dedup_key.
pub async fn send_action(
    config: &Config,
    partition: i32,
    incident: &Incident,
    action: EventAction,
    by: &str,
    client: &str,
) -> Result<(), KafkaError> {
    let event =
        PagingEvent::by_person(action, &incident.dedup_key, by, client).for_incident(&incident.id);
    send_events(config, &[event], Some(partition)).await
}
