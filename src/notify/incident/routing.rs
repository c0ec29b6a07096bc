//! What an incident's route adds to its escalation: a pause before the
//! first page, and reminders while nobody acknowledges (see
//! [`crate::notify::route`]).

use chrono::{DateTime, Utc};

use super::{EntryKind, Incident, Status, std_duration};
use crate::notify::oncall::OnCall;

impl Incident {
    /// Holds the first page for `pause`: it pages when the pause ends if
    /// the incident is still triggered.
    /// `by` names what asks for it: `route R` or `inhibit I`.
    pub fn pause(&mut self, now: DateTime<Utc>, by: &str, pause: std::time::Duration) {
        let until = now + std_duration(pause);
        self.escalation.paused_until = Some(until);
        self.log(
            now,
            EntryKind::Paused,
            format!(
                "paused {} by {by}: pages at {} if still firing",
                humantime::format_duration(pause),
                until.to_rfc3339()
            ),
        );
    }

    /// Sets the next reminder after a level paged, unless one is set or
    /// its route has none (left).
    pub(super) fn start_reminders(&mut self, now: DateTime<Utc>, oncall: &OnCall) {
        if self.escalation.renotify_at.is_some() {
            return;
        }
        let renotify = self
            .route
            .as_deref()
            .and_then(|r| oncall.route(r))
            .and_then(|r| r.reminders());
        self.escalation.renotify_at = renotify
            .filter(|r| self.escalation.renotified < r.times)
            .map(|r| now + std_duration(r.wait(self.escalation.renotified)));
    }

    /// The end of a pause and reminders due at `now`, while triggered.
    pub(super) fn advance_route(&mut self, now: DateTime<Utc>, oncall: &OnCall) {
        if self.status != Status::Triggered {
            return;
        }
        if self.escalation.paused_until.is_some_and(|t| t <= now) {
            self.escalation.paused_until = None;
            self.log(
                now,
                EntryKind::Paused,
                "pause over, still firing: paging".to_owned(),
            );
            self.page_level(now, oncall);
            return;
        }
        if self.escalation.renotify_at.is_none_or(|t| t > now) {
            return;
        }
        self.escalation.renotify_at = None;
        let Some(renotify) = self
            .route
            .as_deref()
            .and_then(|r| oncall.route(r))
            .and_then(|r| r.reminders())
        else {
            return;
        };
        self.escalation.renotified += 1;
        let users = self.escalation.paged.clone();
        self.log(
            now,
            EntryKind::Renotified,
            format!(
                "reminder {} of {}: paging {}",
                self.escalation.renotified,
                renotify.times,
                users.join(", ")
            ),
        );
        for user in &users {
            self.page_user(user, now, oncall);
        }
        self.start_reminders(now, oncall);
    }
}
