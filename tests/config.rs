//! The shipped example config parses, the schemas accept what klaxon accepts,
//! and a bad config stops the binary with file, line and reason.

mod common;

use std::process::Command;

use common::{KLAXON, repo_file, run};
use klaxon::config::Config;

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_file(&format!("schemas/{name}"))).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn example_config_parses_and_matches_its_schema() {
    let config = Config::load(&repo_file("docker/klaxon.toml")).unwrap();
    assert_eq!(config.sources().len(), 3);
    let as_json = serde_json::to_value(
        toml::from_str::<toml::Value>(
            &std::fs::read_to_string(repo_file("docker/klaxon.toml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = schema("config.schema.json");
    let errors: Vec<String> = validator
        .iter_errors(&as_json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // The schema refuses what the parser refuses.
    let typo = serde_json::json!({"ingest": {"flush_rowz": 1}});
    assert!(!validator.is_valid(&typo));
}

#[test]
fn point_schema_matches_the_decoder() {
    let validator = schema("metric-point.schema.json");
    let good = [
        r#"{"name": "http.server.errors", "time": "2026-11-24T10:00:00Z", "value": 3.0, "tags": {"service": "checkout", "host": "web-3"}}"#,
        r#"{"name": "a", "time": 1795514400000, "value": 1, "tags": {"n": 7, "ok": true, "gone": null}}"#,
        r#"{"name": "a", "value": 1}"#,
    ];
    let bad = [
        r#"{"time": 1, "value": 1}"#,
        r#"{"name": "a", "time": 1, "value": "3"}"#,
        r#"{"name": "a", "value": 1, "tags": {"k": [1]}}"#,
    ];
    for text in good {
        assert!(
            validator.is_valid(&serde_json::from_str(text).unwrap()),
            "{text}"
        );
    }
    for text in bad {
        assert!(
            !validator.is_valid(&serde_json::from_str(text).unwrap()),
            "{text}"
        );
    }
}

#[test]
fn paging_schema_accepts_events_v2_from_other_senders() {
    let validator = schema("paging-event.schema.json");
    let pagerduty_example = serde_json::json!({
        "routing_key": "R0123456789",
        "event_action": "trigger",
        "dedup_key": "srv01/HTTP",
        "payload": {"summary": "Example alert on host1", "source": "host1", "severity": "critical",
                    "custom_details": {"ping time": "1500ms"}},
        "links": [{"href": "https://example.com/", "text": "Link text"}]
    });
    assert!(validator.is_valid(&pagerduty_example));
    assert!(
        validator
            .is_valid(&serde_json::json!({"event_action": "resolve", "dedup_key": "srv01/HTTP"}))
    );
    assert!(
        !validator.is_valid(&serde_json::json!({"event_action": "trigger", "dedup_key": "x"})),
        "a trigger needs a payload"
    );
    assert!(!validator.is_valid(&serde_json::json!({"event_action": "page", "dedup_key": "x"})));
}

#[test]
fn bad_config_is_refused_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[ingest]\nflush_interval = \"10s\"\nflush_intervall = \"5s\"\n",
    )
    .unwrap();
    let (ok, _, err) =
        run(Command::new(KLAXON).args(["--config", path.to_str().unwrap(), "query", "SELECT 1"]));
    assert!(!ok);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("unknown field `flush_intervall`"), "{err}");
}

#[test]
fn short_credentials_are_refused_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, "[notify]\napi_token = \"\"\n").unwrap();
    let (ok, _, err) =
        run(Command::new(KLAXON).args(["--config", path.to_str().unwrap(), "query", "SELECT 1"]));
    assert!(!ok);
    assert!(err.contains("klaxon.toml"), "{err}");
    assert!(
        err.contains("notify.api_token must be at least 16 bytes"),
        "{err}"
    );

    let (ok, _, err) = run(Command::new(KLAXON)
        .args(["query", "SELECT 1"])
        .env("KLAXON_SIGNING_KEY", "short"));
    assert!(!ok);
    assert!(
        err.contains("KLAXON_SIGNING_KEY must be at least 16 bytes"),
        "{err}"
    );
}

#[test]
fn an_integration_key_from_the_environment_may_not_be_the_api_token() {
    let token = "0123456789abcdef-operator";
    let (ok, _, err) = run(Command::new(KLAXON)
        .args(["query", "SELECT 1"])
        .env("KLAXON_API_TOKEN", token)
        .env("KLAXON_INTEGRATION_KEY_GRAFANA", token));
    assert!(!ok, "the operator token would pass as an integration key");
    assert!(
        err.contains("notify.integration_keys.grafana is the API token"),
        "{err}"
    );
    assert!(!err.contains(token), "no credential in the error: {err}");
}

#[test]
fn rules_and_notifier_paging_topics_set_apart_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("klaxon.toml");
    std::fs::write(&path, "[notify]\npaging_topic = \"paging\"\n").unwrap();
    let out = Command::new(KLAXON)
        .args(["--config", path.to_str().unwrap(), "rules", "run"])
        .args(["--paging-topic", "alerts", "--brokers", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("klaxon.toml"), "{err}");
    assert!(
        err.contains("rules.paging_topic \"alerts\" and notify.paging_topic \"paging\" differ"),
        "{err}"
    );
}
