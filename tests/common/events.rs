//! Expected outcomes as data: alert events compared with the JSON lines a
//! case directory expects.

use std::path::Path;

/// Whether `actual` has everything `expected` has (objects recursively;
/// numbers compared as numbers).
pub fn json_contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

/// The JSON lines of a file, blank lines skipped.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Exactly as many events as expected, in order, each containing every
/// field its expected line gives.
pub fn assert_events_match(
    case: &str,
    actual: &[serde_json::Value],
    expected: &[serde_json::Value],
) {
    let show = |v: &[serde_json::Value]| v.iter().map(|e| format!("  {e}\n")).collect::<String>();
    assert_eq!(
        actual.len(),
        expected.len(),
        "{case}: events\n{}",
        show(actual)
    );
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            json_contains(a, e),
            "{case}: event {i}\n  got      {a}\n  expected {e}"
        );
    }
}
