//! Reading a paging event as the notifier does, from the topic or an intake
//! route: a refusal gets a reason (the dead-letter reason and a metric
//! label), and every field is cut to klaxon's [`limits`](super::limits).

use chrono::DateTime;

use super::{
    EventAction, PagingEvent,
    limits::{MAX_FIELD_CHARS, cap_event, cut_chars},
};

/// Why an event is refused (the dead-letter reason, a metric label) and
/// the detail for the sender.
pub type Refusal = (&'static str, String);

/// Every reason [`parse_event`] gives for refusing an event.
pub const EVENT_REJECT_REASONS: [&str; 4] = [
    "invalid_json",
    "missing_dedup_key",
    "invalid_event",
    "missing_payload",
];

/// An Events v2 event with every field cut to klaxon's limits, and the
/// names of the fields cut; or the dead-letter reason and detail (one of
/// [`EVENT_REJECT_REASONS`]).
pub fn parse_event(payload: &[u8]) -> Result<(PagingEvent, Vec<&'static str>), Refusal> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ("invalid_json", e.to_string()))?;
    parse_event_value(value)
}

/// [`parse_event`] of a body already read as JSON (the HTTP intake reads
/// it first for its routing key and to fill in a missing dedup_key).
pub fn parse_event_value(
    value: serde_json::Value,
) -> Result<(PagingEvent, Vec<&'static str>), Refusal> {
    if value
        .get("dedup_key")
        .and_then(|k| k.as_str())
        .is_none_or(str::is_empty)
    {
        return Err(("missing_dedup_key", "dedup_key is required".to_owned()));
    }
    let mut event: PagingEvent = serde_json::from_value(value).map_err(|e| {
        // serde quotes the offending value, which the sender controls.
        let mut detail = e.to_string();
        cut_chars(&mut detail, MAX_FIELD_CHARS);
        ("invalid_event", detail)
    })?;
    if event.event_action == EventAction::Trigger && event.payload.is_none() {
        return Err((
            "missing_payload",
            "a trigger needs payload.summary, source and severity".to_owned(),
        ));
    }
    check_times(&event)?;
    let cut = cap_event(&mut event);
    Ok((event, cut))
}

/// The schema says `date-time` (RFC 3339) for `payload.timestamp` and the
/// window's ends: refuse anything else rather than carry "yesterday" into
/// incidents and pages as if it were a time.
fn check_times(event: &PagingEvent) -> Result<(), Refusal> {
    let timestamp = event
        .payload
        .as_ref()
        .map(|p| ("payload.timestamp", &p.timestamp));
    let window = event
        .window
        .iter()
        .flat_map(|w| [("window.start", &w.start), ("window.end", &w.end)]);
    for (field, text) in timestamp.into_iter().chain(window) {
        // An empty timestamp is an absent one (Events v2 makes it optional).
        if field == "payload.timestamp" && text.is_empty() {
            continue;
        }
        if DateTime::parse_from_rfc3339(text).is_err() {
            let mut shown = text.clone();
            cut_chars(&mut shown, 64);
            return Err((
                "invalid_event",
                format!(
                    "{field} {shown:?} is not an RFC 3339 date-time (e.g. 2026-11-25T10:00:00Z)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_events_get_a_reason() {
        let reason = |text: &str| parse_event(text.as_bytes()).err().map(|(r, _)| r);
        let long_action = format!(
            r#"{{"event_action":"{}","dedup_key":"k"}}"#,
            "x".repeat(600_000)
        );
        let (_, detail) = parse_event(long_action.as_bytes()).unwrap_err();
        assert!(detail.len() < 4096, "the detail quotes no 600 KB value");
        assert_eq!(reason("not json"), Some("invalid_json"));
        assert_eq!(
            reason(r#"{"event_action":"trigger"}"#),
            Some("missing_dedup_key")
        );
        assert_eq!(
            reason(r#"{"event_action":"explode","dedup_key":"k"}"#),
            Some("invalid_event")
        );
        assert_eq!(
            reason(r#"{"event_action":"trigger","dedup_key":"k"}"#),
            Some("missing_payload")
        );
        assert_eq!(
            reason(r#"{"event_action":"resolve","dedup_key":"k","routing_key":"r"}"#),
            None
        );
    }

    /// The schema the paging topic is documented by, and its examples.
    fn schema_and_examples() -> (serde_json::Value, Vec<serde_json::Value>) {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/paging-event.schema.json")).unwrap();
        let examples = schema["examples"].as_array().cloned().unwrap_or_default();
        assert!(examples.len() >= 5, "the schema shows its events");
        (schema, examples)
    }

    #[test]
    fn every_schema_example_is_taken_from_the_paging_topic() {
        let (schema, examples) = schema_and_examples();
        for example in examples {
            assert!(jsonschema::is_valid(&schema, &example), "{example}");
            let bytes = serde_json::to_vec(&example).unwrap();
            let (event, cut) = parse_event(&bytes).unwrap_or_else(|e| panic!("{example}: {e:?}"));
            assert_eq!(cut, Vec::<&str>::new(), "{example}");
            assert_eq!(event.dedup_key, example["dedup_key"].as_str().unwrap());
            // What klaxon writes back validates too, links without text included.
            let again = serde_json::to_value(&event).unwrap();
            assert!(jsonschema::is_valid(&schema, &again), "{again}");
            assert_eq!(again.get("links"), example.get("links"), "{example}");
        }
    }

    #[test]
    fn times_must_be_rfc3339_date_times_as_the_schema_says() {
        let with = |timestamp: &str| {
            let event = serde_json::json!({
                "event_action": "trigger", "dedup_key": "k",
                "payload": { "summary": "s", "source": "x", "severity": "info", "timestamp": timestamp },
            });
            parse_event(event.to_string().as_bytes()).map(|_| ())
        };
        let (reason, detail) = with("yesterday").unwrap_err();
        assert_eq!(reason, "invalid_event");
        assert!(detail.contains("payload.timestamp"), "{detail}");
        assert!(with("2026-13-01T00:00:00Z").is_err());
        assert!(with("2026-11-25T10:00:00Z").is_ok());
        assert!(with("2026-11-25T10:00:00.5-05:00").is_ok());
        let window = r#"{"event_action":"resolve","dedup_key":"k","window":{"start":"then","end":"2026-11-25T10:00:00Z"}}"#;
        let (_, detail) = parse_event(window.as_bytes()).unwrap_err();
        assert!(detail.contains("window.start"), "{detail}");
    }

    #[test]
    fn every_refusal_reason_is_registered_at_zero() {
        let refused: &[&[u8]] = &[
            b"not json",
            br#"{"event_action":"trigger"}"#,
            br#"{"event_action":"explode","dedup_key":"k"}"#,
            br#"{"event_action":"trigger","dedup_key":"k"}"#,
        ];
        let reasons: Vec<&str> = refused
            .iter()
            .map(|payload| parse_event(payload).unwrap_err().0)
            .collect();
        assert_eq!(reasons, EVENT_REJECT_REASONS);
    }
}
