//! A silence on an incident: it pages nobody while the silence lasts, and
//! pages from the first level when it ends on an incident still triggered.

use chrono::{DateTime, Utc};

use super::{EntryKind, Escalation, Facts, Incident, Status};
use crate::notify::oncall::OnCall;

impl Incident {
    /// Whether silences apply to it. A manual page is someone asking for
    /// help now, and is never silenced.
    pub fn can_be_silenced(&self) -> bool {
        self.is_open() && self.target.is_none()
    }

    /// Puts it under silence `id` (`why` says whose and why): pages not yet
    /// sent are cancelled and escalation stops.
    pub fn silence(&mut self, now: DateTime<Utc>, id: &str, why: String, by: &str) {
        let replaced = self.silenced_by.replace(id.to_owned());
        self.escalation.next_at = None;
        self.escalation.paused_until = None;
        self.escalation.renotify_at = None;
        self.cancel_pages();
        let detail = match replaced {
            Some(old) => format!("suppressed by {why} (after {old} ended)"),
            None => format!("suppressed by {why}"),
        };
        let facts = Facts {
            actor: Some(by.to_owned()),
            ..Facts::default()
        };
        self.log_facts(now, EntryKind::Silenced, detail, facts);
    }

    /// When it was last put under a silence, if its timeline still shows.
    pub fn silenced_at(&self) -> Option<DateTime<Utc>> {
        self.timeline
            .iter()
            .rev()
            .find(|e| e.kind == EntryKind::Silenced)
            .map(|e| e.at)
    }

    /// Its silence ended (`why` says how). Still triggered, it pages from
    /// its policy's first level; acknowledged, it waits as it was.
    pub fn unsilence(&mut self, now: DateTime<Utc>, why: String, oncall: &OnCall) {
        if self.silenced_by.take().is_none() {
            return;
        }
        if self.flapping.is_some() {
            // Settling pages, if it still fires then.
            self.log(
                now,
                EntryKind::Unsilenced,
                format!("{why}; its alert flaps: paging when it settles"),
            );
        } else if self.status == Status::Triggered {
            self.log(now, EntryKind::Unsilenced, format!("{why}: paging"));
            self.escalation = Escalation::default();
            self.page_level(now, oncall);
        } else {
            self.log(now, EntryKind::Unsilenced, why);
        }
    }
}
