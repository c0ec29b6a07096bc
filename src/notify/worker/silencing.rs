//! Silences, maintenance windows and inhibitions on the member's open
//! incidents: applied when the silences, the firing alerts or the on-call
//! file change, when a silence
//! starts or ends or a minute turns (windows are booked in minutes), and
//! when partitions are restored; and each silence that suppressed
//! something marked used, once.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{NotifierStage, VIEW_GRACE};
use crate::notify::{
    group::GROUPED_PREFIX,
    incident::Incident,
    inhibit::INHIBITED_PREFIX,
    silence::{MAINTENANCE_PREFIX, Mutes, SilenceState, alert_labels, store::mark_used},
};

impl NotifierStage {
    /// Applies the silences to every open incident if they changed or one
    /// started or ended since the last time; returns the incidents changed.
    pub(super) fn apply_silences(&mut self, now: DateTime<Utc>) -> Vec<(i32, String)> {
        // The firing alerts matter only with inhibitions or groups.
        let oncall = &self.oncall.oncall;
        let following =
            !oncall.inhibit.is_empty() || oncall.route.iter().any(|r| r.get_ref().groups());
        self.refresh_view();
        let view_changed = std::mem::take(&mut self.view_unapplied);
        let changed = self.silences.has_changed().unwrap_or(false) || (following && view_changed);
        let due = self.silences_due.is_some_and(|t| t <= now);
        if !(changed || due || self.silences_stale) {
            return Vec::new();
        }
        let silences = self.silences.borrow_and_update().clone();
        let firing = Arc::clone(&self.view);
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

    /// Sorts the follower's latest view into groups, if it changed or the
    /// on-call file was reloaded.
    pub(super) fn refresh_view(&mut self) {
        let changed = self.firing.has_changed().unwrap_or(false);
        let overdue = !self.view.loaded && self.view_since.elapsed() > VIEW_GRACE;
        if !(changed || self.view_stale || overdue != self.view.overdue) {
            return;
        }
        let mut view = self.firing.borrow_and_update().grouped(&self.oncall.oncall);
        view.overdue = !view.loaded && overdue;
        if view.overdue && !self.view.overdue {
            tracing::error!(
                "the incidents changelog is still unread {}s after the start: grouped alerts are released",
                VIEW_GRACE.as_secs()
            );
        }
        self.view = Arc::new(view);
        self.view_stale = false;
        self.view_unapplied = true;
    }

    /// Marks used the silences that suppressed an incident, unless already
    /// marked, in the background: a slow or failing broker never holds the
    /// loop (and its pages) back. A failed mark is logged and made again at
    /// the next tick.
    pub(super) fn mark_silences_used(&mut self) {
        let mut marks = Vec::new();
        for (silence, incident) in std::mem::take(&mut self.silence_uses) {
            if self.silences.borrow().used.contains_key(&silence)
                || !self.silences_marked.insert(silence.clone())
            {
                continue;
            }
            marks.push((silence, incident));
        }
        if marks.is_empty() {
            return;
        }
        let (producer, topic) = (
            self.producer.clone(),
            self.config.notify.silences_topic.clone(),
        );
        let failed = Arc::clone(&self.silence_marks_failed);
        tokio::spawn(async move {
            for (silence, incident) in marks {
                if let Err(e) = mark_used(&producer, &topic, &silence, &incident).await {
                    tracing::warn!(%silence, error = %e, "silence not marked used");
                    failed
                        .lock()
                        .expect("not poisoned")
                        .push((silence, incident));
                }
            }
        });
    }

    /// Queues the marks that failed again, for the next tick (one at a
    /// time per silence: it stays in `silences_marked` while in flight).
    pub(super) fn retry_failed_marks(&mut self) {
        let failed = std::mem::take(&mut *self.silence_marks_failed.lock().expect("not poisoned"));
        for (silence, incident) in failed {
            self.silences_marked.remove(&silence);
            self.silence_uses.push((silence, incident));
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
    let under_silence = incident.silenced_by.as_deref().is_some_and(|m| {
        ![MAINTENANCE_PREFIX, INHIBITED_PREFIX, GROUPED_PREFIX]
            .iter()
            .any(|prefix| m.starts_with(prefix))
    });
    if !under_silence {
        return Vec::new();
    }
    let labels = alert_labels(incident);
    silences
        .all_matching(&labels, now)
        .map(|s| (s.id.clone(), incident.id.clone()))
        .collect()
}
