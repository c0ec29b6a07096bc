//! Streaming rule cases as data: each directory under tests/rules_streams
//! holds `rules.toml` (and any files its reloads name), `script.jsonl` and
//! `expected.jsonl`. The script drives the same `RuleEngine` that `klaxon
//! rules run` drives, with wall-clock time injected:
//!
//! - `{"options": {"idle_timeout_ms": N, "allowed_lateness_ms": N, "pane_min_yield": X,
//!   "max_future_ms": N, "max_past_ms": N, "max_line_bytes": N, "eval_timeout_ms": N,
//!   "eval_memory_bytes": N}}` (first line, optional; a yield of 0 keeps
//!   hopping windows on panes; limits apply around each step's `at`)
//! - `{"at": MS, "assign": [0, 1]}` / `{"at": MS, "revoke": [1]}`
//! - `{"at": MS, "partition": P, "points": [POINT, ...]}`: one record of
//!   newline-delimited JSON points, at the partition's next offset
//! - `{"at": MS, "tick": true}`: time passes, nothing arrives
//! - `{"at": MS, "reload": "FILE"}`: the rules become FILE's
//! - `{"at": MS, "restart": true}`: the engine is dropped; a new one restores
//!   the last checkpoint and is fed again from the committed offsets
//!
//! Lines starting with `#` are comments.
//!
//! After every step the engine ticks at `at` and checkpoints (as the runner
//! does after a tick), into a map that behaves like the compacted topic.
//! A step may assert `"late": N` (points counted late in it, replays included),
//! `"rejected": N` (points refused by the limits), `"events": N` (events it
//! raised) and `"failures": N` (windows whose evaluation failed; none unless
//! given). The events of all steps must match
//! `expected.jsonl` in order, each containing every field its line gives.

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::{assert_events_match, json_lines, repo_file, sorted_entries};

use klaxon::{
    decode::Format,
    paging::PagingEvent,
    rules::{
        CheckpointDelta, CompiledRule, EngineOptions, PartitionKey, RuleCheckpoint, RuleEngine,
        RuleSet,
    },
};
use serde_json::Value;

/// What the state topic would hold: latest per key, deletions applied.
#[derive(Default)]
struct StateTopic {
    rules: BTreeMap<String, RuleCheckpoint>,
    positions: Vec<(PartitionKey, i64)>,
    committed: BTreeMap<PartitionKey, i64>,
}

impl StateTopic {
    fn apply(&mut self, delta: CheckpointDelta) {
        for rule in delta.rules {
            self.rules.insert(rule.rule.clone(), rule);
        }
        for name in delta.removed {
            self.rules.remove(&name);
        }
        if !delta.positions.is_empty() {
            self.positions = delta.positions;
        }
        self.committed.extend(delta.commit);
    }
}

async fn rules_of(file: &Path) -> Vec<CompiledRule> {
    match RuleSet::load(file).await.unwrap() {
        Ok(set) => set.rules(),
        Err(problems) => panic!("{}: {problems:?}", file.display()),
    }
}

fn partition(n: i64) -> PartitionKey {
    ("metrics".to_owned(), n as i32)
}

async fn run_case(case: &Path) -> Vec<PagingEvent> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let script: Vec<Value> = std::fs::read_to_string(case.join("script.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {l}: {e}")))
        .collect();
    let mut options = EngineOptions::default();
    if let Some(o) = script.first().and_then(|s| s.get("options")) {
        let ms = |key: &str, default: Duration| {
            o.get(key)
                .and_then(Value::as_u64)
                .map_or(default, Duration::from_millis)
        };
        options.idle_timeout = ms("idle_timeout_ms", options.idle_timeout);
        options.allowed_lateness = ms("allowed_lateness_ms", options.allowed_lateness);
        if let Some(y) = o.get("pane_min_yield").and_then(Value::as_f64) {
            options.pane_min_yield = y;
        }
        options.max_future = ms("max_future_ms", options.max_future);
        options.max_past = ms("max_past_ms", options.max_past);
        options.eval_timeout = ms("eval_timeout_ms", options.eval_timeout);
        let bytes = |key: &str, default: usize| {
            o.get(key)
                .and_then(Value::as_u64)
                .map_or(default, |n| n as usize)
        };
        options.max_line_bytes = bytes("max_line_bytes", options.max_line_bytes);
        options.eval_memory = bytes("eval_memory_bytes", options.eval_memory);
    }
    let mut rules_file = case.join("rules.toml");
    let mut engine = RuleEngine::new(rules_of(&rules_file).await, options);
    let mut state = StateTopic::default();
    // Every record ever produced, per partition, in offset order.
    let mut log: BTreeMap<PartitionKey, Vec<Vec<u8>>> = BTreeMap::new();
    let mut assigned: Vec<PartitionKey> = Vec::new();
    let mut events = Vec::new();

    for (i, step) in script.iter().enumerate() {
        let Some(at) = step.get("at").and_then(Value::as_i64) else {
            continue;
        };
        let what = format!("{name}: step {i} {step}");
        let before = events.len();
        let mut late = 0;
        let mut rejected = 0;
        if let Some(list) = step.get("assign").and_then(Value::as_array) {
            for p in list {
                let p = partition(p.as_i64().unwrap());
                engine.assign(p.clone(), at);
                assigned.push(p);
            }
        }
        if let Some(list) = step.get("revoke").and_then(Value::as_array) {
            for p in list {
                let p = partition(p.as_i64().unwrap());
                engine.revoke(&p);
                assigned.retain(|a| *a != p);
            }
        }
        if let Some(points) = step.get("points").and_then(Value::as_array) {
            let p = partition(step["partition"].as_i64().unwrap_or(0));
            let payload = points
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes();
            let records = log.entry(p.clone()).or_default();
            let offset = records.len() as i64;
            let recorded = engine.record(&p, offset, Format::Json, &payload, at, at);
            late += recorded.late;
            rejected += recorded.rejected;
            records.push(payload);
        }
        if let Some(file) = step.get("reload").and_then(Value::as_str) {
            rules_file = case.join(file);
            events.extend(engine.reload(rules_of(&rules_file).await));
        }
        if step.get("restart").is_some() {
            engine = RuleEngine::new(rules_of(&rules_file).await, options);
            for p in &assigned {
                engine.assign(p.clone(), at);
            }
            events.extend(engine.restore(
                state.rules.values().cloned().collect(),
                state.positions.clone(),
                at,
            ));
            for p in &assigned {
                let from = state.committed.get(p).copied().unwrap_or(0);
                for (offset, payload) in log[p].iter().enumerate().skip(from as usize) {
                    late += engine
                        .record(p, offset as i64, Format::Json, payload, at, at)
                        .late;
                }
            }
        }
        let tick = engine.tick(at).await;
        let failures = step.get("failures").and_then(Value::as_u64).unwrap_or(0);
        assert_eq!(
            tick.failures.len() as u64,
            failures,
            "{what}: {:?}",
            tick.failures
        );
        events.extend(tick.events);
        state.apply(engine.checkpoint());
        if let Some(expected) = step.get("late").and_then(Value::as_u64) {
            assert_eq!(late as u64, expected, "{what}: late points");
        }
        if let Some(expected) = step.get("rejected").and_then(Value::as_u64) {
            assert_eq!(rejected as u64, expected, "{what}: rejected points");
        }
        if let Some(expected) = step.get("events").and_then(Value::as_u64) {
            assert_eq!((events.len() - before) as u64, expected, "{what}: events");
        }
    }
    events
}

#[tokio::test]
async fn every_stream_case_raises_exactly_its_expected_events() {
    let cases = sorted_entries(&repo_file("tests/rules_streams"));
    assert!(cases.len() >= 5, "{cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let actual: Vec<Value> = run_case(&case)
            .await
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        let expected = json_lines(&case.join("expected.jsonl"));
        assert_events_match(&name, &actual, &expected);
    }
}
