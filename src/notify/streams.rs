//! Notifier cases as data: each `tests/notify_streams/*.jsonl` drives one
//! paging partition (the pure `PartitionState` the notifier's loop owns)
//! with the on-call file `tests/notify_streams/oncall.toml` (its
//! maintenance windows and inhibitions included) and injected time; the
//! partition's open incidents stand for the alerts firing everywhere. Every line is a step
//! at `"at"` (a time on Monday 2026-03-02, UTC, or a whole RFC 3339 time):
//!
//! - `{"at": T, "event": EVENT}`: an Events v2 event as the paging topic
//!   carries it (klaxon's `labels`, `rule`, `by`, `incident` included);
//! - `{"at": T, "silence": {"id": S, "match": [..], "from": T, "until": T,
//!   "by": B, "comment": C}}`: a silence added (or replaced);
//! - `{"at": T, "expire": S, "by": B}`: a silence ended now;
//! - `{"at": T, "tick": true}`: time passes;
//! - `{"at": T, "expect": {"key": DEDUP_KEY, ...}}`: the latest incident of
//!   that dedup_key has `status`, `silenced_by` (null for none), `pages`
//!   (the users paged so far, in order), `notes` (what the notifications
//!   sent said of its group, each containing the substring, in order)
//!   and `timeline` (substrings found in its timeline in this order);
//!   `"incidents": N` counts them all.
//!
//! After every step, as the notifier's tick does, the silences are applied
//! to open incidents, timers advance, and every notification due is sent
//! (and delivered). Lines starting with `#` are comments.

use std::{collections::HashMap, path::Path};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    check::{Level, check_oncall},
    incident::{Incident, Purpose},
    inhibit::{Firing, FiringAlert},
    oncall::OnCall,
    partition::PartitionState,
    silence::{Silence, SilenceState, store::NewSilence},
};
use crate::paging::PagingEvent;

fn at(value: &Value) -> DateTime<Utc> {
    let time = value.as_str().expect("times are strings");
    let full = if time.contains('T') {
        time.to_owned()
    } else {
        format!("2026-03-02T{time}Z")
    };
    DateTime::parse_from_rfc3339(&full)
        .unwrap_or_else(|e| panic!("{time}: {e}"))
        .to_utc()
}

/// The alerts firing, as every notifier's follower of the changelog sees
/// them: here the partition's own open incidents (one partition stands for
/// them all).
fn firing_of(state: &PartitionState, oncall: &OnCall) -> Firing {
    let alerts = state
        .incidents
        .values()
        .filter_map(|i| Some((i.id.clone(), FiringAlert::of(i)?)))
        .collect();
    let firing = Firing {
        alerts,
        loaded: true,
        ..Firing::default()
    };
    firing.grouped(oncall)
}

/// What the notifier's tick does at `now`.
/// What the notifications sent said besides the incident (their notes),
/// by incident id, in order.
type Sent = HashMap<String, Vec<String>>;

fn tick(
    state: &mut PartitionState,
    now: DateTime<Utc>,
    oncall: &OnCall,
    silences: &SilenceState,
    sent: &mut Sent,
) {
    state.apply_silences(now, oncall, silences, &firing_of(state, oncall));
    let mut closed = Vec::new();
    for incident in state.incidents.values_mut() {
        incident.advance(now, oncall);
        for seq in incident.due(now) {
            incident.sending(seq);
            let n = incident.notification(seq).expect("due").clone();
            if let Some(note) = incident.note(&n) {
                sent.entry(incident.id.clone()).or_default().push(note);
            }
            incident.delivered(seq, Ok(()), now, oncall);
        }
        if !incident.is_open() {
            closed.push(incident.dedup_key.clone());
        }
    }
    for dedup_key in closed {
        state.forget_closed(&dedup_key);
    }
}

fn latest<'a>(state: &'a PartitionState, key: &str) -> &'a Incident {
    state
        .incidents
        .values()
        .filter(|i| i.dedup_key == key)
        .max_by_key(|i| (i.opened_at, i.triggers))
        .unwrap_or_else(|| panic!("no incident of {key}"))
}

/// An expectation's list of texts.
fn strings(value: &Value) -> Vec<&str> {
    let texts = value.as_array().expect("a list");
    texts.iter().map(|t| t.as_str().expect("texts")).collect()
}

fn check(state: &PartitionState, sent: &Sent, expect: &Value, line: usize) {
    if let Some(n) = expect.get("incidents") {
        assert_eq!(
            state.incidents.len() as u64,
            n.as_u64().unwrap(),
            "line {line}: incidents"
        );
    }
    let Some(key) = expect.get("key").and_then(Value::as_str) else {
        return;
    };
    let incident = latest(state, key);
    let timeline: Vec<String> = incident
        .timeline
        .iter()
        .map(|e| format!("{} {:?} {}", e.at.format("%H:%M:%S"), e.kind, e.detail))
        .collect();
    let context = format!("line {line}, {key}; timeline:\n{}", timeline.join("\n"));
    if let Some(status) = expect.get("status") {
        assert_eq!(
            incident.status.as_str(),
            status.as_str().unwrap(),
            "{context}"
        );
    }
    if let Some(silenced_by) = expect.get("silenced_by") {
        assert_eq!(
            incident.silenced_by.as_deref(),
            silenced_by.as_str(),
            "silenced_by, {context}"
        );
    }
    if let Some(pages) = expect.get("pages") {
        let paged: Vec<&str> = incident
            .notifications
            .iter()
            .filter(|n| {
                n.purpose == Purpose::Page && n.state == super::incident::Delivery::Delivered
            })
            .map(|n| n.user.as_str())
            .collect();
        assert_eq!(paged, strings(pages), "pages, {context}");
    }
    if let Some(notes) = expect.get("notes") {
        let told: Vec<&str> = sent
            .get(&incident.id)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let want = strings(notes);
        assert_eq!(told.len(), want.len(), "notes {told:?}, {context}");
        for (note, want) in told.iter().zip(want) {
            assert!(
                note.contains(want),
                "note {note:?} lacks {want:?}, {context}"
            );
        }
    }
    if let Some(wanted) = expect.get("timeline") {
        let mut from = 0;
        for want in wanted.as_array().unwrap() {
            let want = want.as_str().unwrap();
            match timeline[from..].iter().position(|l| l.contains(want)) {
                Some(i) => from += i + 1,
                None => panic!("{want:?} not found in order, {context}"),
            }
        }
    }
}

/// A silence as `klaxon silence add` makes it (checked as it checks them)
/// and as notifiers read it back from the topic (through its JSON).
fn silence_of(spec: &Value, now: DateTime<Utc>) -> Silence {
    let text = |k: &str, default: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let starts_at = spec.get("from").map_or(now, at);
    let length = (at(&spec["until"]) - starts_at)
        .to_std()
        .expect("a silence ends after it starts");
    let request = NewSilence {
        matchers: spec["match"]
            .as_array()
            .expect("a silence has match")
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect(),
        starts_at: Some(starts_at),
        length,
        created_by: text("by", "ops"),
        comment: text("comment", "maintenance"),
    };
    let mut silence = request
        .check(now)
        .unwrap_or_else(|e| panic!("{spec}: klaxon silence add refuses it: {e}"));
    silence.id = text("id", "s");
    let stored = serde_json::to_vec(&silence).unwrap();
    serde_json::from_slice(&stored).unwrap()
}

fn run(path: &Path, oncall: &OnCall) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut state = PartitionState::default();
    let mut silences = SilenceState {
        loaded: true,
        ..SilenceState::default()
    };
    let mut expectations = 0;
    let mut sent = Sent::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let step: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        let now = at(&step["at"]);
        if let Some(event) = step.get("event") {
            let event: PagingEvent = serde_json::from_value(event.clone())
                .unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            state.apply(&event, now, oncall, &silences, &firing_of(&state, oncall));
        } else if let Some(spec) = step.get("silence") {
            let silence = silence_of(spec, now);
            silences.silences.insert(silence.id.clone(), silence);
        } else if let Some(id) = step.get("expire").and_then(Value::as_str) {
            let silence = silences
                .silences
                .get_mut(id)
                .expect("expire names a silence");
            silence.starts_at = silence.starts_at.min(now);
            silence.ends_at = now;
            silence.expired_by = step["by"].as_str().map(str::to_owned);
        } else if let Some(expect) = step.get("expect") {
            check(&state, &sent, expect, n + 1);
            expectations += 1;
            continue;
        }
        tick(&mut state, now, oncall, &silences, &mut sent);
    }
    assert!(expectations > 0, "{}: nothing is checked", path.display());
}

#[test]
fn notify_streams() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/notify_streams");
    // Checked as `klaxon oncall check` and the notifier check it.
    let text = std::fs::read_to_string(dir.join("oncall.toml")).unwrap();
    let (oncall, findings) = check_oncall(&text, at(&Value::from("00:00:00"))).unwrap();
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        eprintln!("{}", case.display());
        run(&case, &oncall);
    }
}
