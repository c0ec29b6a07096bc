//! What the CLI and the HTTP API do with incidents: read them from the
//! changelog, and send acknowledgements, resolves and pages as events on
//! the paging topic, so every incident has one ordered log.

use std::time::Duration;

use rdkafka::{error::KafkaError, producer::FutureRecord};
use thiserror::Error;

use super::{changelog::read_changelog, incident::Incident};
use crate::{
    config::Config,
    kafka::keyed_producer,
    rules::{EventAction, PagingEvent, bound_dedup_key},
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

/// An event without payload: an acknowledgement or a resolve by someone.
pub fn action_event(action: EventAction, dedup_key: &str, by: &str, client: &str) -> PagingEvent {
    PagingEvent {
        event_action: action,
        dedup_key: dedup_key.to_owned(),
        payload: None,
        links: Vec::new(),
        client: Some(client.to_owned()),
        rule: None,
        labels: Default::default(),
        value: None,
        window: None,
        escalation_policy: None,
        by: Some(by.to_owned()),
        incident: None,
    }
}

/// Produces `events` to the paging topic keyed by dedup_key; to `partition`
/// when given (an existing incident's, so it reaches the member that holds
/// it whatever partitioner the trigger's producer used).
pub async fn send_events(
    config: &Config,
    events: &[PagingEvent],
    partition: Option<i32>,
) -> Result<(), KafkaError> {
    let producer = keyed_producer(&config.kafka, &config.kafka.brokers)?;
    for event in events {
        let body = serde_json::to_vec(event).expect("events serialise");
        let mut record = FutureRecord::to(&config.notify.paging_topic)
            .key(&event.dedup_key)
            .payload(&body);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
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
    let mut event = action_event(action, &incident.dedup_key, by, client);
    event.incident = Some(incident.id.clone());
    send_events(config, &[event], Some(partition)).await
}
