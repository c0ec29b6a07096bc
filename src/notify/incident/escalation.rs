//! Escalation: whom an incident pages and when. A level's targets are
//! resolved to whoever is on call now (a gap is logged and the level skipped
//! at once), each user's personal notification rules are planned, and
//! timers move the incident to the next level, round the policy again, or to
//! exhausted. A manual page pages its one target and never escalates.

use chrono::{DateTime, Utc};

use super::{EntryKind, Escalation, Facts, Incident, Purpose, Status, std_duration};
use crate::notify::{
    oncall::{OnCall, Policy, Target},
    schedule::ScheduleClock,
};

impl Incident {
    /// Plans a user's personal notification rules from `now`.
    pub(super) fn page_user(&mut self, user_id: &str, now: DateTime<Utc>, oncall: &OnCall) {
        let Some(user) = oncall.user(user_id) else {
            self.log(
                now,
                EntryKind::Unreachable,
                format!("{user_id} is not in the on-call file"),
            );
            return;
        };
        let rules: Vec<(std::time::Duration, String)> = if user.notify.is_empty() {
            user.contact
                .first()
                .map(|c| (std::time::Duration::ZERO, c.name().to_owned()))
                .into_iter()
                .collect()
        } else {
            user.notify
                .iter()
                .map(|r| (r.get_ref().after, r.get_ref().contact.clone()))
                .collect()
        };
        if rules.is_empty() {
            self.log(
                now,
                EntryKind::Unreachable,
                format!("{user_id} has no contact method"),
            );
        }
        for (after, name) in rules {
            if let Some(c) = user.contact.iter().find(|c| c.name() == name) {
                let (kind, address) = (c.kind, c.address.clone());
                self.plan(
                    user_id,
                    &name,
                    kind,
                    &address,
                    Purpose::Page,
                    now + std_duration(after),
                );
            }
        }
    }

    /// Who a target has on call now; a gap is logged.
    fn resolve_target(
        &mut self,
        target: &Target,
        now: DateTime<Utc>,
        oncall: &OnCall,
    ) -> Option<String> {
        match target {
            Target::User(u) => Some(u.clone()),
            Target::Schedule(s) => {
                match oncall.schedule(s).and_then(|s| ScheduleClock::new(s).ok()) {
                    Some(clock) => {
                        let user = clock.on_call(now).map(str::to_owned);
                        if user.is_none() {
                            self.log(
                                now,
                                EntryKind::NobodyOnCall,
                                format!("schedule {s} has nobody on call"),
                            );
                        }
                        user
                    }
                    None => {
                        self.log(
                            now,
                            EntryKind::NobodyOnCall,
                            format!("schedule {s} is not usable"),
                        );
                        None
                    }
                }
            }
        }
    }

    /// Pages the current level, skipping levels that have nobody to page.
    /// A manual page pages its target once and does not escalate.
    pub(super) fn page_level(&mut self, now: DateTime<Utc>, oncall: &OnCall) {
        // While its alert flaps, nobody is paged (whatever asks: a silence
        // that ended, an acknowledgement that ran out); settling pages.
        if self.flapping.is_some() {
            return;
        }
        if let Some(target) = self.target.clone() {
            if let Some(user) = self.resolve_target(&target, now, oncall) {
                let facts = Facts {
                    user: Some(user.clone()),
                    ..Facts::default()
                };
                self.log_facts(
                    now,
                    EntryKind::Escalated,
                    format!("manual page: paging {user}"),
                    facts,
                );
                self.page_user(&user, now, oncall);
            }
            self.escalation.next_at = None;
            return;
        }
        let Some(policy) = oncall.policy(self.policy.as_deref()).cloned() else {
            let name = self.policy.clone().unwrap_or_else(|| "(none)".to_owned());
            self.log(
                now,
                EntryKind::NobodyOnCall,
                format!("no escalation policy {name}: nobody paged"),
            );
            self.escalation.next_at = None;
            return;
        };
        let steps = policy.level.len() * (policy.repeat as usize + 1);
        for _ in 0..steps {
            let number = self.escalation.level + 1;
            let level = policy.level[self.escalation.level].get_ref().clone();
            let mut users: Vec<String> = Vec::new();
            for target in &level.targets {
                match target {
                    Target::User(u) => users.push(u.clone()),
                    Target::Schedule(s) => {
                        match oncall.schedule(s).and_then(|s| ScheduleClock::new(s).ok()) {
                            Some(clock) => match clock.on_call(now) {
                                Some(u) => users.push(u.to_owned()),
                                None => self.log(
                                    now,
                                    EntryKind::NobodyOnCall,
                                    format!("schedule {s} has nobody on call"),
                                ),
                            },
                            None => self.log(
                                now,
                                EntryKind::NobodyOnCall,
                                format!("schedule {s} is not usable"),
                            ),
                        }
                    }
                }
            }
            users.dedup();
            if users.is_empty() {
                self.log(
                    now,
                    EntryKind::NobodyOnCall,
                    format!("level {number}: nobody to page; escalating at once"),
                );
                if !self.step(&policy) {
                    self.exhausted(now, &policy);
                    return;
                }
                continue;
            }
            let cycle = if self.escalation.cycle > 0 {
                format!(" (repeat {})", self.escalation.cycle)
            } else {
                String::new()
            };
            let facts = Facts {
                level: Some(number as u32),
                ..Facts::default()
            };
            self.log_facts(
                now,
                EntryKind::Escalated,
                format!("level {number}{cycle}: paging {}", users.join(", ")),
                facts,
            );
            for u in &users {
                self.page_user(u, now, oncall);
            }
            self.escalation.next_at = Some(now + std_duration(level.delay));
            self.escalation.paged = users;
            self.start_reminders(now, oncall);
            return;
        }
        self.exhausted(now, &policy);
    }

    /// Moves to the next level, starting the policy over while repeats
    /// remain. False when the policy is used up.
    fn step(&mut self, policy: &Policy) -> bool {
        self.escalation.level += 1;
        if self.escalation.level >= policy.level.len() {
            self.escalation.cycle += 1;
            self.escalation.level = 0;
            if self.escalation.cycle > policy.repeat {
                return false;
            }
        }
        true
    }

    fn exhausted(&mut self, now: DateTime<Utc>, policy: &Policy) {
        self.escalation.next_at = None;
        self.log(
            now,
            EntryKind::PolicyExhausted,
            format!(
                "policy {} ran {} times without an acknowledgement",
                policy.id,
                policy.repeat + 1
            ),
        );
    }

    /// Applies every timer due at `now`: the next escalation level, or the
    /// end of an acknowledgement.
    pub fn advance(&mut self, now: DateTime<Utc>, oncall: &OnCall) {
        if self.status == Status::Acknowledged
            && self.escalation.ack_expires_at.is_some_and(|t| t <= now)
        {
            self.status = Status::Triggered;
            self.escalation = Escalation::default();
            if let Some(silence) = &self.silenced_by {
                let detail = format!("still open; silence {silence} keeps it from paging");
                self.log(now, EntryKind::AckExpired, detail);
                return;
            }
            self.log(
                now,
                EntryKind::AckExpired,
                "still open: paging again".to_owned(),
            );
            self.page_level(now, oncall);
        }
        if self.status == Status::Triggered && self.escalation.next_at.is_some_and(|t| t <= now) {
            match oncall.policy(self.policy.as_deref()).cloned() {
                Some(policy) if self.step(&policy) => self.page_level(now, oncall),
                Some(policy) => self.exhausted(now, &policy),
                None => self.escalation.next_at = None,
            }
        }
        self.advance_route(now, oncall);
        self.advance_flapping(now, oncall);
        self.advance_group(now);
    }
}
