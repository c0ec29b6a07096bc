//! The on-call file: users and how to reach them, schedules, escalation
//! policies. TOML, typed, unknown keys refused; `schemas/oncall.schema.json`
//! describes it.
//!
//! ```toml
//! [[user]]
//! id = "alice"
//! contact = [
//!   { id = "sms", type = "sms", address = "+15550100" },
//!   { id = "phone", type = "phone", address = "+15550100" },
//! ]
//! notify = [{ after = "0m", contact = "sms" }, { after = "5m", contact = "phone" }]
//!
//! [[schedule]]
//! id = "payments"
//! time_zone = "Europe/Berlin"
//! [[schedule.layer]]
//! users = ["alice", "bob"]
//! rotation = "1w"
//! start = "2026-11-02T09:00:00"      # local time: alice's first turn begins
//! restrictions = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", to = "18:00" }]
//! [[schedule.override]]
//! user = "carol"
//! start = "2026-11-25T00:00:00Z"
//! end = "2026-11-26T00:00:00Z"
//!
//! [[policy]]
//! id = "payments"
//! repeat = 1
//! [[policy.level]]
//! targets = [{ schedule = "payments" }]
//! delay = "10m"
//! ```

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc, Weekday};
use serde::Deserialize;
use toml::Spanned;

use super::{inhibit::Inhibit, maintenance::Maintenance, route::Route};

/// The whole on-call file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCall {
    #[serde(default)]
    pub user: Vec<Spanned<User>>,
    #[serde(default)]
    pub schedule: Vec<Spanned<Schedule>>,
    #[serde(default)]
    pub policy: Vec<Spanned<Policy>>,
    /// The policy for events that name none (or one that does not exist).
    #[serde(default)]
    pub default_policy: Option<Spanned<String>>,
    /// An acknowledged incident that is still open this long is triggered
    /// again, and escalation restarts. None: acknowledgements do not expire.
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
    /// Maintenance windows: booked hours in which matching alerts page
    /// nobody (see [`super::maintenance`]).
    #[serde(default)]
    pub maintenance: Vec<Spanned<Maintenance>>,
    /// Routes: the first whose matchers match an alert picks its policy,
    /// pause and reminders (see [`super::route`]).
    #[serde(default)]
    pub route: Vec<Spanned<Route>>,
    /// Inhibitions: alerts that mute others while they fire (see
    /// [`super::inhibit`]).
    #[serde(default)]
    pub inhibit: Vec<Spanned<Inhibit>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Contact methods, in the order a failing one falls through to the next.
    #[serde(default)]
    pub contact: Vec<Contact>,
    /// Personal notification rules: which contact, how long after being
    /// paged, while the incident is unacknowledged. Default: every contact
    /// method at once.
    #[serde(default)]
    pub notify: Vec<Spanned<NotifyRule>>,
    /// IANA zone the user lives in, for `klaxon report`'s business, off and
    /// sleep hours. Default: the zone of the first schedule they are in.
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ContactKind {
    /// A Slack incoming webhook URL (a user's DM hook or a channel's).
    Slack,
    /// A phone number, called through the Twilio-shaped voice API.
    Phone,
    /// A phone number, texted through the Twilio-shaped messaging API.
    Sms,
    Email,
    /// Any URL; receives the incident as JSON.
    Webhook,
    /// klaxon's own log (for `klaxon up`).
    Console,
}

impl ContactKind {
    /// Every kind (a new one goes here and in `as_str`), so the notifier's
    /// counters by channel exist at zero from the start.
    pub const ALL: [ContactKind; 6] = [
        ContactKind::Slack,
        ContactKind::Phone,
        ContactKind::Sms,
        ContactKind::Email,
        ContactKind::Webhook,
        ContactKind::Console,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Slack => "slack",
            ContactKind::Phone => "phone",
            ContactKind::Sms => "sms",
            ContactKind::Email => "email",
            ContactKind::Webhook => "webhook",
            ContactKind::Console => "console",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// How notification rules name it; defaults to its type.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: ContactKind,
    /// Phone number, e-mail address or URL, as the kind needs.
    #[serde(default)]
    pub address: String,
}

impl Contact {
    pub fn name(&self) -> &str {
        self.id.as_deref().unwrap_or(self.kind.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRule {
    /// Delay after being paged.
    #[serde(default, with = "humantime_serde")]
    pub after: Duration,
    /// A contact's id (or type, when it has no id).
    pub contact: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub id: String,
    /// IANA zone the layers' start times, handoffs and restrictions are in.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Later layers are above earlier ones: the final schedule is the
    /// highest layer that has someone on call (after overrides).
    #[serde(default)]
    pub layer: Vec<Spanned<Layer>>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<Spanned<Override>>,
}

fn utc() -> String {
    "UTC".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    #[serde(default)]
    pub name: Option<String>,
    /// Participants in rotation order.
    pub users: Vec<String>,
    /// Length of one turn, counted on the local wall clock: "1w" hands off
    /// at the same local time every week, across daylight-saving changes.
    #[serde(with = "humantime_serde")]
    pub rotation: Duration,
    /// Local date-time at which the first participant's first turn begins;
    /// its time of day is the handoff time.
    pub start: NaiveDateTime,
    /// Local date-time at which the layer stops.
    #[serde(default)]
    pub end: Option<NaiveDateTime>,
    /// When set, the layer has someone on call only inside these windows.
    #[serde(default)]
    pub restrictions: Vec<Restriction>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    /// Days the window starts on; every day when empty.
    #[serde(default)]
    pub days: Vec<Day>,
    /// Local start and end; an end at or before the start runs past midnight.
    pub from: NaiveTime,
    pub to: NaiveTime,
}

/// A weekday as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl From<Day> for Weekday {
    fn from(d: Day) -> Self {
        match d {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

/// Someone takes over the whole schedule for a time range.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub user: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub id: String,
    /// Times the whole policy runs again after its last level, while nobody
    /// acknowledges.
    #[serde(default)]
    pub repeat: u32,
    pub level: Vec<Spanned<Level>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub targets: Vec<Target>,
    /// Wait before the next level.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

/// Who a level pages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    User(String),
    Schedule(String),
}

impl OnCall {
    pub fn user(&self, id: &str) -> Option<&User> {
        self.user.iter().map(Spanned::get_ref).find(|u| u.id == id)
    }

    /// The zone a user lives in: their own, else that of the first
    /// schedule with a layer they are in; `None` when neither says.
    pub fn user_zone(&self, id: &str) -> Option<&str> {
        if let Some(zone) = self.user(id).and_then(|u| u.time_zone.as_deref()) {
            return Some(zone);
        }
        self.schedule
            .iter()
            .map(Spanned::get_ref)
            .find(|s| {
                s.layer
                    .iter()
                    .any(|l| l.get_ref().users.iter().any(|u| u == id))
            })
            .map(|s| s.time_zone.as_str())
    }

    pub fn schedule(&self, id: &str) -> Option<&Schedule> {
        self.schedule
            .iter()
            .map(Spanned::get_ref)
            .find(|s| s.id == id)
    }

    /// The named policy, else the default one.
    /// The route of an alert with these labels: the first that matches.
    pub fn route_for(&self, labels: &std::collections::BTreeMap<String, String>) -> Option<&Route> {
        self.route
            .iter()
            .map(Spanned::get_ref)
            .find(|r| r.matches(labels))
    }

    pub fn route(&self, id: &str) -> Option<&Route> {
        self.route.iter().map(Spanned::get_ref).find(|r| r.id == id)
    }

    pub fn policy(&self, id: Option<&str>) -> Option<&Policy> {
        let find = |id: &str| {
            self.policy
                .iter()
                .map(Spanned::get_ref)
                .find(|p| p.id == id)
        };
        id.and_then(find)
            .or_else(|| self.default_policy.as_ref().and_then(|d| find(d.get_ref())))
    }
}
