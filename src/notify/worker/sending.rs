//! Sending: each tick advances escalation timers and starts the
//! notifications due, marked `Sending` in the changelog first, as bounded
//! tasks; their results come back to the loop and land in the timeline.

use std::{collections::HashSet, sync::Arc};

use chrono::Utc;

use super::{NotifierStage, NotifyError, SendResult};

impl NotifierStage {
    /// Advances timers and starts every notification that is due.
    pub(super) async fn on_tick(&mut self) -> Result<(), NotifyError> {
        let now = Utc::now();
        let mut to_send = Vec::new();
        let mut advanced = self.apply_silences(now);
        // Changed by the mutes (one may have closed): kept until saved.
        let muted: HashSet<(i32, String)> = advanced.iter().cloned().collect();
        let unsaved = &self.unsaved;
        for (partition, state) in &mut self.partitions {
            state.forget_old_changes(now);
            let mut touched = HashSet::new();
            let mut closed = Vec::new();
            for incident in state.incidents.values_mut() {
                if incident.next_wakeup().is_none_or(|t| t > now) {
                    continue;
                }
                incident.advance(now, &self.oncall.oncall);
                let due = incident.due(now);
                for seq in &due {
                    incident.sending(*seq);
                }
                for seq in due {
                    to_send.push((*partition, incident.clone(), seq));
                }
                // Closed by its own timer (a flapping alert settled
                // resolved): its alert's open entry goes, its changes stay.
                if !incident.is_open() {
                    closed.push(incident.dedup_key.clone());
                }
                touched.insert(incident.id.clone());
                advanced.push((*partition, incident.id.clone()));
            }
            for dedup_key in closed {
                state.forget_closed(&dedup_key);
            }
            // Closed incidents with nothing left to send (or being sent)
            // leave memory once the changelog has them: not before this
            // tick's save below.
            state.incidents.retain(|id, i| {
                i.is_open()
                    || i.has_pending()
                    || touched.contains(id)
                    || muted.contains(&(*partition, id.clone()))
                    || unsaved.contains(&(*partition, id.clone()))
            });
        }
        // Durable before sending: after a crash these are "uncertain" and go
        // again, never silently lost. A failed write does not hold the page
        // back: better twice than never.
        self.save(advanced).await;
        for (partition, incident, seq) in to_send {
            let permit = Arc::clone(&self.sends)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let channels = Arc::clone(&self.channels);
            let results = self.results_tx.clone();
            tokio::spawn(async move {
                let notification = incident
                    .notification(seq)
                    .expect("due notifications exist")
                    .clone();
                let result = channels.send(&incident, &notification).await;
                if result.is_ok() {
                    crate::crash::point("notify.after_send");
                }
                let _ = results
                    .send(SendResult {
                        partition,
                        incident: incident.id.clone(),
                        seq,
                        result,
                    })
                    .await;
                // Only now: with every permit back, every result is queued
                // (the stop in `run` relies on it). The channel holds as
                // many results as there are permits, so this never waits
                // for the permit's next holder.
                drop(permit);
            });
        }
        self.retry_failed_marks();
        self.mark_silences_used();
        Ok(())
    }

    pub(super) async fn on_sent(&mut self, done: SendResult) -> Result<(), NotifyError> {
        let Some(incident) = self
            .partitions
            .get_mut(&done.partition)
            .and_then(|s| s.incidents.get_mut(&done.incident))
        else {
            // The partition moved; its new owner resends the uncertain send.
            return Ok(());
        };
        let outcome = if done.result.is_ok() {
            "delivered"
        } else {
            "failed"
        };
        if let Some(n) = incident.notification(done.seq) {
            metrics::counter!("klaxon_notify_notifications_total", "channel" => n.kind.as_str(), "outcome" => outcome).increment(1);
        }
        incident.delivered(done.seq, done.result, Utc::now(), &self.oncall.oncall);
        self.save(vec![(done.partition, done.incident)]).await;
        Ok(())
    }
}
