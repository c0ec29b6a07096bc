//! An incident whose alert flaps (see [`crate::notify::route::Flap`]): its
//! changes are noted, it stays open through resolves, and it pages nobody
//! until the alert settles. Settled firing, it pages from the first level;
//! settled resolved, it resolves.

use chrono::{DateTime, Utc};

use super::{EntryKind, Escalation, Flapping, Incident, Status, std_duration};
use crate::notify::{oncall::OnCall, route::Flap};

/// Who resolves an incident whose alert settled resolved.
const SETTLED_BY: &str = "klaxon (settled)";

impl Incident {
    /// Notes a change of its alert at `now` (kept for `flap.within`, at
    /// most `changes + 1` of them); true when the alert now flaps.
    pub fn note_change(&mut self, now: DateTime<Utc>, flap: &Flap) -> bool {
        let since = now - std_duration(flap.within);
        self.changes.retain(|t| *t > since);
        self.changes.push(now);
        let keep = flap.changes as usize + 1;
        if self.changes.len() > keep {
            self.changes.drain(..self.changes.len() - keep);
        }
        self.changes.len() > flap.changes as usize
    }

    /// Starts flapping: pages not yet sent are cancelled and escalation
    /// waits until the alert settles.
    pub fn start_flapping(&mut self, now: DateTime<Utc>, flap: &Flap, firing: bool) {
        self.hold_pages();
        self.flapping = Some(Flapping {
            firing,
            settle_at: now + std_duration(flap.settle),
        });
        let detail = format!(
            "flapping: {} changes within {}; kept open, nobody paged until it settles ({} without a change)",
            self.changes.len(),
            humantime::format_duration(flap.within),
            humantime::format_duration(flap.settle)
        );
        self.log(now, EntryKind::Flapping, detail);
    }

    /// Another change while flapping: noted, the settle timer starts over,
    /// and anything planned meanwhile (an acknowledgement that ran out, a
    /// silence that ended) stays unsent.
    pub fn flapped(&mut self, now: DateTime<Utc>, flap: &Flap, firing: bool) {
        self.note_change(now, flap);
        self.hold_pages();
        self.flapping = Some(Flapping {
            firing,
            settle_at: now + std_duration(flap.settle),
        });
        let what = if firing { "fired" } else { "resolved" };
        self.log(
            now,
            EntryKind::Flapping,
            format!("{what} again while flapping"),
        );
    }

    /// Stops escalation and cancels pages not yet sent.
    fn hold_pages(&mut self) {
        self.escalation.next_at = None;
        self.escalation.paused_until = None;
        self.escalation.renotify_at = None;
        self.cancel_pages();
    }

    /// Settles a flapping incident whose time has come.
    pub(super) fn advance_flapping(&mut self, now: DateTime<Utc>, oncall: &OnCall) {
        let Some(flapping) = self.flapping.filter(|f| f.settle_at <= now) else {
            return;
        };
        self.flapping = None;
        if !flapping.firing {
            self.log(now, EntryKind::Settled, "settled resolved".to_owned());
            self.resolve(SETTLED_BY, now);
        } else if self.status == Status::Triggered && self.silenced_by.is_none() {
            self.log(now, EntryKind::Settled, "settled firing: paging".to_owned());
            self.escalation = Escalation::default();
            self.page_level(now, oncall);
        } else {
            self.log(now, EntryKind::Settled, "settled firing".to_owned());
        }
    }
}
