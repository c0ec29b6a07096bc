//! Size limits on everything a sender controls in a paging event, so that
//! no event, and no incident built from events, can outgrow a Kafka record
//! (1 MB by default on the broker). One 600 KB summary once made the
//! incident's changelog record too large: the notifier exited and
//! crash-looped, paging nobody.
//!
//! These are part of what klaxon's intake promises (the README's Events v2
//! section lists them), so they sit with the contract and [`parse_event`]
//! applies them, whoever reads an event.
//!
//! - A request to an intake route is at most [`MAX_EVENT_BYTES`] (PagerDuty's
//!   limit for one event); larger ones are refused with 413.
//! - Inside an event, long fields are cut, not refused, so a careless
//!   producer still pages: the summary to [`MAX_SUMMARY_CHARS`] (as Events v2
//!   does), other text to [`MAX_FIELD_CHARS`], custom details and labels to
//!   [`MAX_DETAILS_BYTES`] each, links to [`MAX_LINKS`]; a cut text ends in
//!   `…`. A dedup_key over 255 characters becomes a readable prefix and a
//!   hash, as the rules' own keys do. The same cuts apply to events read
//!   from the paging topic, since anyone may produce there.
//! - An incident's timeline keeps its first and last entries, each bounded
//!   with [`cut_json`] (see `notify::incident`).
//!
//! [`parse_event`]: super::parse_event

use serde_json::{Map, Value};

use super::{Link, PAGE_SCHEDULE, PAGE_USER, PagingEvent, bound_dedup_key};

/// One event in a request body, as PagerDuty's Events v2 allows.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// Events v2 truncates `payload.summary` at 1024 characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Every other text field: source, component, group, class, timestamp,
/// client, rule, escalation_policy, by, incident, link texts, label keys
/// and values, and the manual-page targets in custom details.
pub const MAX_FIELD_CHARS: usize = 1024;
/// Link targets, which carry queries (dashboards, runbooks).
pub const MAX_URL_CHARS: usize = 4096;
/// `payload.custom_details`, klaxon's `labels`, and all links together,
/// each as JSON.
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;
/// Links kept per event (within [`MAX_DETAILS_BYTES`]).
pub const MAX_LINKS: usize = 20;

/// The custom-details keys that name a manual page's target; kept first
/// when custom details are cut, since they decide whom to page.
const TARGET_KEYS: [&str; 2] = [PAGE_USER, PAGE_SCHEDULE];

/// Cuts `s` to at most `max` characters, the last of them `…`. True when
/// it was cut.
pub fn cut_chars(s: &mut String, max: usize) -> bool {
    match s.char_indices().nth(max) {
        None => false,
        Some(_) => {
            let keep = s
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(0, |(i, _)| i);
            s.truncate(keep);
            s.push('…');
            true
        }
    }
}

/// How many bytes `c` takes inside a JSON string.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Cuts `s` so that it takes at most `max` bytes as a JSON string (without
/// its quotes), ending in `…` when cut. True when it was cut.
pub fn cut_json(s: &mut String, max: usize) -> bool {
    let mut used = 0;
    // The end of the longest prefix that leaves room for the `…`.
    let mut keep = 0;
    for (i, c) in s.char_indices() {
        used += json_len(c);
        if used > max {
            s.truncate(keep);
            s.push('…');
            return true;
        }
        if used + '…'.len_utf8() <= max {
            keep = i + c.len_utf8();
        }
    }
    false
}

fn json_size(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Keeps the fields of `details` that fit in [`MAX_DETAILS_BYTES`],
/// manual-page targets first, and says what was dropped. True when cut.
fn cap_details(details: &mut Map<String, Value>) -> bool {
    let mut cut = false;
    for key in TARGET_KEYS {
        if let Some(Value::String(s)) = details.get_mut(key) {
            cut |= cut_chars(s, MAX_FIELD_CHARS);
        }
    }
    let size = json_size(&Value::Object(details.clone()));
    if size <= MAX_DETAILS_BYTES {
        return cut;
    }
    let all = std::mem::take(details);
    let total = all.len();
    let (first, rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(k, _)| TARGET_KEYS.contains(&k.as_str()));
    // Room for the note below.
    let budget = MAX_DETAILS_BYTES - 256;
    let mut used = 2;
    for (key, value) in first.into_iter().chain(rest) {
        let n = json_str_len(&key) + json_size(&value) + 2;
        if used + n <= budget {
            used += n;
            details.insert(key, value);
        }
    }
    let note = format!(
        "custom_details were {size} bytes, over klaxon's limit of {MAX_DETAILS_BYTES}: kept {} of {total} fields",
        details.len()
    );
    details.insert("klaxon_truncated".into(), note.into());
    true
}

/// Cuts every field of `event` to its limit; returns the names of those
/// cut, for the sender and the logs.
pub fn cap_event(event: &mut PagingEvent) -> Vec<&'static str> {
    let mut cut = Vec::new();
    let mut note = |name: &'static str, was_cut: bool| {
        if was_cut {
            cut.push(name);
        }
    };
    let key = std::mem::take(&mut event.dedup_key);
    let len = key.len();
    event.dedup_key = bound_dedup_key(key);
    note("dedup_key", event.dedup_key.len() != len);
    let short = |s: &mut String| cut_chars(s, MAX_FIELD_CHARS);
    let short_opt = |s: &mut Option<String>| s.as_mut().is_some_and(short);
    if let Some(p) = &mut event.payload {
        note(
            "payload.summary",
            cut_chars(&mut p.summary, MAX_SUMMARY_CHARS),
        );
        note("payload.source", short(&mut p.source));
        note("payload.timestamp", short(&mut p.timestamp));
        note("payload.component", short_opt(&mut p.component));
        note("payload.group", short_opt(&mut p.group));
        note("payload.class", short_opt(&mut p.class));
        note("payload.custom_details", cap_details(&mut p.custom_details));
    }
    note("links", cap_links(&mut event.links));
    note("client", short_opt(&mut event.client));
    note("rule", short_opt(&mut event.rule));
    note("escalation_policy", short_opt(&mut event.escalation_policy));
    note("by", short_opt(&mut event.by));
    note("incident", short_opt(&mut event.incident));
    if let Some(w) = &mut event.window {
        let start = short(&mut w.start);
        note("window", short(&mut w.end) || start);
    }
    note("labels", cap_labels(&mut event.labels));
    cut
}

/// The bytes `s` takes as a JSON string, quotes included.
fn json_str_len(s: &str) -> usize {
    s.chars().map(json_len).sum::<usize>() + 2
}

/// Keeps the first [`MAX_LINKS`] links, cut, that fit in
/// [`MAX_DETAILS_BYTES`]. True when cut.
fn cap_links(links: &mut Vec<Link>) -> bool {
    let mut cut = links.len() > MAX_LINKS;
    let mut used = 2;
    let all = std::mem::take(links);
    for mut link in all.into_iter().take(MAX_LINKS) {
        cut |= cut_chars(&mut link.href, MAX_URL_CHARS);
        cut |= cut_chars(&mut link.text, MAX_FIELD_CHARS);
        let n = json_str_len(&link.href) + json_str_len(&link.text) + 20;
        if used + n > MAX_DETAILS_BYTES {
            cut = true;
            continue;
        }
        used += n;
        links.push(link);
    }
    cut
}

/// Cuts label keys and values, then keeps the labels that fit in
/// [`MAX_DETAILS_BYTES`]. True when cut.
fn cap_labels(labels: &mut std::collections::BTreeMap<String, String>) -> bool {
    let mut cut = false;
    let mut used = 2;
    let all = std::mem::take(labels);
    for (mut key, mut value) in all {
        cut |= cut_chars(&mut key, MAX_FIELD_CHARS);
        cut |= cut_chars(&mut value, MAX_FIELD_CHARS);
        let n = json_str_len(&key) + json_str_len(&value) + 2;
        if used + n > MAX_DETAILS_BYTES {
            cut = true;
            continue;
        }
        used += n;
        labels.insert(key, value);
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::{EventAction, Payload, Severity};

    fn trigger(summary: String) -> PagingEvent {
        let mut custom_details = Map::new();
        custom_details.insert("blob".into(), "x".repeat(200_000).into());
        custom_details.insert("page_user".into(), "alice".into());
        PagingEvent {
            event_action: EventAction::Trigger,
            dedup_key: "k".repeat(300),
            payload: Some(Payload {
                summary,
                source: "s".repeat(5000),
                severity: Severity::Critical,
                timestamp: String::new(),
                component: None,
                group: None,
                class: None,
                custom_details,
            }),
            links: (0..100)
                .map(|i| Link {
                    href: format!("http://x/{i}"),
                    text: "t".into(),
                })
                .collect(),
            client: None,
            rule: None,
            labels: (0..10_000)
                .map(|i| (format!("k{i}"), "v".repeat(100)))
                .collect(),
            value: None,
            window: None,
            escalation_policy: None,
            by: None,
            incident: None,
            until_resolved: false,
        }
    }

    #[test]
    fn every_field_of_an_event_is_cut_to_its_limit() {
        let mut event = trigger("é".repeat(600_000));
        let cut = cap_event(&mut event);
        assert_eq!(
            cut,
            [
                "dedup_key",
                "payload.summary",
                "payload.source",
                "payload.custom_details",
                "links",
                "labels"
            ]
        );
        let p = event.payload.as_ref().unwrap();
        assert_eq!(p.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(p.summary.ends_with("é…"), "marked as cut");
        assert_eq!(p.source.chars().count(), MAX_FIELD_CHARS);
        assert!(event.dedup_key.len() <= 255);
        assert_eq!(
            p.custom_details["page_user"], "alice",
            "the manual page's target survives the cut"
        );
        assert!(
            p.custom_details["klaxon_truncated"]
                .as_str()
                .unwrap()
                .contains("kept 1 of 2 fields"),
            "{:?}",
            p.custom_details
        );
        assert_eq!(event.links.len(), MAX_LINKS);
        let size = serde_json::to_vec(&event).unwrap().len();
        assert!(size < MAX_EVENT_BYTES / 2, "{size} bytes");

        let mut small = trigger("short".into());
        small
            .payload
            .as_mut()
            .unwrap()
            .custom_details
            .remove("blob");
        small.labels.clear();
        small.links.clear();
        small.dedup_key = "k".into();
        small.payload.as_mut().unwrap().source = "web-1".into();
        let before = small.clone();
        assert!(cap_event(&mut small).is_empty());
        assert_eq!(small, before, "what fits is left alone");
    }

    #[test]
    fn json_cuts_count_escapes() {
        let mut s = "\u{1}".repeat(1000);
        assert!(cut_json(&mut s, 100));
        let quoted = serde_json::to_string(&s).unwrap();
        assert!(quoted.len() - 2 <= 100, "{}", quoted.len());
        assert!(s.ends_with('…'));
        let mut fits = "abc".to_owned();
        assert!(!cut_json(&mut fits, 3));
        assert_eq!(fits, "abc");
    }
}
