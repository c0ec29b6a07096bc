//! Silences, maintenance windows and inhibitions on the member's open
//! incidents: applied when the silences, the firing alerts or the on-call
//! file change, when a silence
//! starts or ends or a minute turns (windows are booked in minutes), and
//! when partitions are restored; and each silence that suppressed
//! something marked used, once.

use chrono::{DateTime, Utc};

use super::NotifierStage;
use crate::notify::{
    incident::Incident,
    inhibit::INHIBITED_PREFIX,
    silence::{
        MAINTENANCE_PREFIX, MAX_SILENCES, Mutes, SilenceState, alert_labels, store::mark_used,
    },
};

impl NotifierStage {
    /// Applies the silences to every open incident if they changed or one
    /// started or ended since the last time; returns the incidents changed.
    pub(super) fn apply_silences(&mut self, now: DateTime<Utc>) -> Vec<(i32, String)> {
        let changed = self.silences.has_changed().unwrap_or(false)
            || self.firing.has_changed().unwrap_or(false);
        let due = self.silences_due.is_some_and(|t| t <= now);
        if !(changed || due || self.silences_stale) {
            return Vec::new();
        }
        let silences = self.silences.borrow_and_update().clone();
        let firing = self.firing.borrow_and_update().clone();
        self.silences_due = Mutes::new(&silences, &self.oncall.oncall, &firing).next_change(now);
        self.silences_stale = false;
        let mut advanced = Vec::new();
        for (partition, state) in &mut self.partitions {
            for (id, _) in state.apply_silences(now, &self.oncall.oncall, &silences, &firing) {
                if let Some(incident) = state.incidents.get(&id) {
                    self.silence_uses
                        .extend(silences_used(incident, &silences, now));
                }
                advanced.push((*partition, id));
            }
        }
        advanced
    }

    /// Marks used the silences that suppressed an incident, unless already
    /// marked. Called after the tick's sends have started, so a slow broker
    /// holds no page back; a failed write is logged and tried again at the
    /// next tick.
    pub(super) async fn mark_silences_used(&mut self) {
        let uses = std::mem::take(&mut self.silence_uses);
        let topic = &self.config.notify.silences_topic;
        for (silence, incident) in uses {
            if self.silences_marked.contains(&silence)
                || self.silences.borrow().used.contains_key(&silence)
            {
                continue;
            }
            match mark_used(&self.producer, topic, &silence, &incident).await {
                Ok(()) => {
                    self.silences_marked.insert(silence);
                }
                Err(e) => {
                    tracing::warn!(%silence, error = %e, "silence not marked used; trying again");
                    if self.silence_uses.len() < MAX_SILENCES {
                        self.silence_uses.push((silence, incident));
                    }
                }
            }
        }
    }
}

/// The silences an incident under a silence counts as a use of: every
/// active silence that matches it, not only the one it is under (the others
/// would have silenced it as well, and are not "unused").
pub(super) fn silences_used(
    incident: &Incident,
    silences: &SilenceState,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let under_silence = incident
        .silenced_by
        .as_deref()
        .is_some_and(|m| !m.starts_with(MAINTENANCE_PREFIX) && !m.starts_with(INHIBITED_PREFIX));
    if !under_silence {
        return Vec::new();
    }
    let labels = alert_labels(incident);
    silences
        .all_matching(&labels, now)
        .map(|s| (s.id.clone(), incident.id.clone()))
        .collect()
}
