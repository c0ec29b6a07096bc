//! Silences and maintenance windows on the member's open incidents:
//! applied when the silences or the on-call file change, when a silence
//! starts or ends or a minute turns (windows are booked in minutes), and
//! when partitions are restored; and each silence that suppressed
//! something marked used, once.

use chrono::{DateTime, Utc};

use super::NotifierStage;
use crate::notify::silence::{MAINTENANCE_PREFIX, Mutes, store::mark_used};

impl NotifierStage {
    /// Applies the silences to every open incident if they changed or one
    /// started or ended since the last time; returns the incidents changed.
    pub(super) fn apply_silences(&mut self, now: DateTime<Utc>) -> Vec<(i32, String)> {
        let changed = self.silences.has_changed().unwrap_or(false);
        let due = self.silences_due.is_some_and(|t| t <= now);
        if !(changed || due || self.silences_stale) {
            return Vec::new();
        }
        let silences = self.silences.borrow_and_update().clone();
        self.silences_due = Mutes {
            silences: &silences,
            maintenance: &self.oncall.oncall.maintenance,
        }
        .next_change(now);
        self.silences_stale = false;
        let mut advanced = Vec::new();
        for (partition, state) in &mut self.partitions {
            for (id, under) in state.apply_silences(now, &self.oncall.oncall, &silences) {
                if let Some(silence) = under.filter(|m| !m.starts_with(MAINTENANCE_PREFIX)) {
                    self.silence_uses.push((silence, id.clone()));
                }
                advanced.push((*partition, id));
            }
        }
        advanced
    }

    /// Marks used the silences that suppressed an incident, unless already
    /// marked. A failed write is logged and tried again at the next use.
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
                Err(e) => tracing::warn!(%silence, error = %e, "silence not marked used"),
            }
        }
    }
}
