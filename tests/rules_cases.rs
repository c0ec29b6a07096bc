//! Rule cases as data: each directory under tests/rules_cases holds
//! `rules.toml`, `points.jsonl` and `expected.jsonl`. `klaxon rules test`
//! must print exactly as many events as expected, in order, each containing
//! every field its expected line gives.

mod common;

use std::process::Command;

use common::{KLAXON, assert_events_match, json_lines, repo_file, sorted_entries};
use serde_json::Value;

#[test]
fn every_case_raises_exactly_its_expected_events() {
    let cases = sorted_entries(&repo_file("tests/rules_cases"));
    assert!(cases.len() >= 4);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("schemas/paging-event.schema.json")).unwrap(),
    )
    .unwrap();
    let schema = jsonschema::validator_for(&schema).unwrap();
    for case in cases {
        let out = Command::new(KLAXON)
            .args(["rules", "test"])
            .arg(case.join("rules.toml"))
            .arg("--points")
            .arg(case.join("points.jsonl"))
            .output()
            .unwrap();
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let actual: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected = json_lines(&case.join("expected.jsonl"));
        assert_events_match(&name, &actual, &expected);
        for (i, a) in actual.iter().enumerate() {
            let errors: Vec<String> = schema.iter_errors(a).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{name}: event {i} breaks the schema: {errors:?}\n{a}"
            );
        }
    }
}
