//! What the CLI and the HTTP API send: acknowledgements, resolves and pages
//! as events on the paging topic, so every incident has one ordered log.
//! What they read is in [`super::queries`].

use rdkafka::error::KafkaError;

use super::{
    incident::Incident,
    queries::{ClientError, find_incident},
};
use crate::{
    config::Config,
    paging::{EventAction, PagingEvent, Publisher},
};

/// Publishes `events` to the notifier's paging topic, with a producer of
/// their own (for a command that sends once); to `partition` when given
/// (see [`Publisher::publish`]). What sends again and again (the HTTP API,
/// the demo) keeps one [`Publisher`].
pub async fn send_events(
    config: &Config,
    events: &[PagingEvent],
    partition: Option<i32>,
) -> Result<(), KafkaError> {
    Publisher::new(&config.kafka, &config.notify.paging_topic)?
        .publish(events, partition)
        .await
}

/// What a person does to an incident: acknowledge (perhaps until it
/// resolves) or resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub kind: EventAction,
    /// An acknowledgement that no `ack_timeout` ends.
    pub until_resolved: bool,
}

impl From<EventAction> for Action {
    fn from(kind: EventAction) -> Self {
        Self {
            kind,
            until_resolved: false,
        }
    }
}

/// Acknowledges or resolves the incident `id` names, through `publisher`
/// (to the notifier's paging topic); returns it as it was.
pub async fn act(
    config: &Config,
    publisher: &Publisher,
    id: &str,
    action: impl Into<Action>,
    by: &str,
    client: &str,
) -> Result<Incident, ClientError> {
    let (partition, incident) = find_incident(config, id).await?;
    send_action(publisher, partition, &incident, action, by, client).await?;
    Ok(incident)
}

/// Sends an acknowledgement or resolve for exactly this incident: the
/// notifier applies it to no other incident of the same dedup_key.
pub async fn send_action(
    publisher: &Publisher,
    partition: i32,
    incident: &Incident,
    action: impl Into<Action>,
    by: &str,
    client: &str,
) -> Result<(), KafkaError> {
    let action = action.into();
    let mut event = PagingEvent::by_person(action.kind, &incident.dedup_key, by, client)
        .for_incident(&incident.id);
    event.until_resolved = action.until_resolved && action.kind == EventAction::Acknowledge;
    publisher.publish(&[event], Some(partition)).await
}
