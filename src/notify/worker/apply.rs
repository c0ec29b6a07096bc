//! Applying paging events, changelog first: the incidents a batch changes
//! are written, then each partition's position, then offsets committed. A
//! failed write is remembered in `unsaved` and holds its partition's
//! position back, so a restart replays rather than loses the change.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use rdkafka::{Message, Offset, TopicPartitionList, message::BorrowedMessage};

use super::{NotifierStage, NotifyError, UNSAVED_RETRY, silencing::silences_used};
use crate::{
    kafka::{Origin, Rejection},
    notify::changelog::{write_incident, write_position},
    paging::{PagingEvent, parse_event},
};

impl NotifierStage {
    /// Writes these incidents, and those whose write failed before when
    /// their retry is due, to the changelog. A failure is counted, logged
    /// and remembered in `unsaved`; it never stops the notifier.
    pub(super) async fn save(&mut self, mut which: Vec<(i32, String)>) {
        if !self.unsaved.is_empty() && tokio::time::Instant::now() >= self.unsaved_retry_at {
            which.extend(self.unsaved.iter().cloned());
        }
        which.sort();
        which.dedup();
        let (producer, topic) = (&self.producer, &self.config.notify.incidents_topic);
        let partitions = &self.partitions;
        let writes = which.iter().map(|(partition, id)| async move {
            let incident = partitions.get(partition)?.incidents.get(id)?;
            let result = write_incident(producer, topic, *partition, incident).await;
            Some(result.map_err(|e| {
                let bytes = serde_json::to_vec(incident).map_or(0, |b| b.len());
                (e, bytes)
            }))
        });
        let results = futures::future::join_all(writes).await;
        for ((partition, id), result) in which.into_iter().zip(results) {
            match result {
                Some(Err((error, bytes))) => {
                    tracing::error!(partition, incident = %id, bytes, %error, "incident not written to the changelog; paging goes on from memory, the write is tried again");
                    metrics::counter!("klaxon_notify_changelog_write_failures_total").increment(1);
                    self.unsaved.insert((partition, id));
                    self.unsaved_retry_at = tokio::time::Instant::now() + UNSAVED_RETRY;
                }
                // Written, or no longer here to write.
                Some(Ok(())) | None => {
                    self.unsaved.remove(&(partition, id));
                }
            }
        }
    }

    /// Whether the changelog lacks a change to an incident of `partition`.
    pub(super) fn has_unsaved(&self, partition: i32) -> bool {
        self.unsaved.iter().any(|(p, _)| *p == partition)
    }

    /// Applies a batch of paging events. The incidents they change are
    /// written to the changelog first, all at once, then each partition's
    /// new position, then the offsets are committed: a crash in between
    /// replays events whose incidents the changelog may already have, and
    /// `apply` is idempotent for those.
    pub(super) async fn apply_batch(
        &mut self,
        batch: &[BorrowedMessage<'_>],
    ) -> Result<(), NotifyError> {
        let mut changed: Vec<(i32, String)> = Vec::new();
        let mut next_offsets: HashMap<(&str, i32), i64> = HashMap::new();
        for message in batch {
            let partition = message.partition();
            let offset = message.offset();
            let state = self.partitions.entry(partition).or_default();
            if offset < state.position {
                // Applied before a restart; the changelog already has it.
                metrics::counter!("klaxon_notify_events_skipped_total").increment(1);
                continue;
            }
            next_offsets.insert((message.topic(), partition), offset + 1);
            let payload = message.payload().unwrap_or_default();
            match parse_event(payload).map(|(event, cut)| {
                if !cut.is_empty() {
                    tracing::warn!(partition, offset, fields = ?cut, "event fields over klaxon's limits were cut");
                    metrics::counter!("klaxon_notify_events_truncated_total").increment(1);
                }
                event
            }) {
                Err((reason, detail)) => {
                    tracing::warn!(partition, offset, reason, %detail, "event refused to the dead-letter topic");
                    let origin = Origin {
                        topic: message.topic(),
                        partition,
                        offset,
                        key: message.key(),
                    };
                    let rejection = Rejection {
                        reason,
                        detail: &detail,
                        bytes: payload,
                        line: None,
                    };
                    self.dead_letters.publish(origin, rejection).await;
                    metrics::counter!("klaxon_notify_events_rejected_total", "reason" => reason)
                        .increment(1);
                }
                Ok(event) => {
                    metrics::counter!("klaxon_notify_events_total", "action" => event.event_action.as_str()).increment(1);
                    if let Some(id) = self.apply(partition, &event)
                        && !changed.contains(&(partition, id.clone()))
                    {
                        changed.push((partition, id));
                    }
                }
            }
        }
        self.save(changed).await;
        for (&(_, partition), &next) in &next_offsets {
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.position = next;
            }
        }
        // A partition with an unsaved incident keeps its old position and
        // offset: a restart replays its events rather than lose the change.
        next_offsets.retain(|&(_, partition), _| !self.has_unsaved(partition));
        let (producer, topic) = (&self.producer, &self.config.notify.incidents_topic);
        let positions = next_offsets
            .iter()
            .map(|(&(_, partition), &next)| async move {
                let result = write_position(producer, topic, partition, next).await;
                (partition, result)
            });
        let mut offsets = TopicPartitionList::new();
        for (partition, result) in futures::future::join_all(positions).await {
            if let Err(error) = result {
                tracing::error!(partition, %error, "position not written to the changelog; its events may be applied again after a restart");
                metrics::counter!("klaxon_notify_changelog_write_failures_total").increment(1);
                continue;
            }
            let (&(source, _), &next) = next_offsets
                .iter()
                .find(|((_, p), _)| *p == partition)
                .expect("a position written was in the map");
            offsets.add_partition_offset(source, partition, Offset::Offset(next))?;
        }
        if offsets.count() > 0 {
            crate::crash::point("notify.after_position");
        }
        if let Err(e) = self.commits.in_background(&offsets) {
            // The changelog's position makes a replay harmless.
            tracing::debug!(error = %e, "commit failed");
        }
        // Page at once rather than at the next tick.
        self.on_tick().await
    }

    /// Applies an event; returns the incident it changed.
    pub(super) fn apply(&mut self, partition: i32, event: &PagingEvent) -> Option<String> {
        self.refresh_view();
        let silences = self.silences.borrow();
        let firing = Arc::clone(&self.view);
        let state = self.partitions.entry(partition).or_default();
        let now = Utc::now();
        let id = state.apply(event, now, &self.oncall.oncall, &silences, &firing)?;
        if let Some(incident) = state.incidents.get(&id) {
            self.silence_uses
                .extend(silences_used(incident, &silences, now));
        }
        Some(id)
    }
}
