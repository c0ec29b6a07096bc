//! The streaming rule engine as pure code: records in, paging events out.
//!
//! [`RuleEngine`] is everything `klaxon rules run` does except talk to Kafka.
//! Wall-clock time is passed in, so tests drive it step by step.
//!
//! - Records are decoded into one Arrow builder; each tick seals it into the
//!   [`PointStore`] with the offsets it came from.
//! - Each rule has its own event clock ([`Watermarks`]). When a window closes
//!   its SQL runs (by panes where it can), its alert states advance, and each
//!   transition becomes a paging event.
//! - A checkpoint holds, per rule, the last closed window and the alert
//!   states, plus the position reached in each partition. It is written
//!   before offsets are committed, and the commit point of a partition is
//!   the first record whose points an open window still needs. A restarted
//!   engine restores the checkpoint and is fed again from the commit point:
//!   windows already closed are not evaluated twice, a firing alert stays
//!   firing without a new trigger, and replayed points are not counted late
//!   a second time.
//! - A reload keeps the state of every rule whose definition is unchanged;
//!   a changed rule keeps its alert states (as Prometheus copies state by
//!   rule name) on a clock for its new window; a removed rule resolves what
//!   it had firing.
//!
//! Here: the engine over all rules (records, ticks, reloads, checkpoints).
//! One rule's evaluation, by panes where they pay off, is in `slot`.

mod slot;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use arrow::{
    array::{AsArray, RecordBatch},
    datatypes::TimestampMillisecondType,
    error::ArrowError,
};
use datafusion::error::DataFusionError;
use serde::{Deserialize, Serialize};

use self::slot::RuleSlot;
use super::{
    evaluate::{CompiledRule, EvalLimits},
    event::{resolve_orphan, to_event},
    state::AlertStates,
    store::PointStore,
    watermark::{Arrival, PartitionKey, Watermarks},
};
use crate::{
    config::{IngestConfig, RulesConfig},
    decode::{Format, Limits, Rejected, decode_record},
    paging::PagingEvent,
    points::{PointBatchBuilder, TIME, time_type},
};

/// How the engine keeps event time, and when it evaluates by panes.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// A partition silent this long stops holding event time back.
    pub idle_timeout: Duration,
    /// Points may arrive this late and still count.
    pub allowed_lateness: Duration,
    /// Panes pay off only when a pane's partial state is much smaller than
    /// its points (few groups, many points each): merging states costs about
    /// what aggregating as many raw points does. A rule whose last pane had
    /// fewer points than this many per state row is evaluated over whole
    /// windows, and tries panes again every `PANE_REPROBE` (32) windows.
    pub pane_min_yield: f64,
    /// Bounds on decoded points, the same as ingest's (`ingest.max_line_bytes`,
    /// `max_past`, `max_future`): a point ingest refuses cannot move event
    /// time either. Each partition's watermark also stays within `max_future`
    /// of the wall clock.
    pub max_line_bytes: usize,
    pub max_past: Duration,
    pub max_future: Duration,
    /// Tag caps, the same as ingest's (`ingest.max_tags_per_point`,
    /// `max_tag_keys`); the key cap holds for the points of one tick.
    pub max_tags_per_point: usize,
    pub max_tag_keys: usize,
    /// The memory pool and time limit of one evaluation (`rules.eval_memory`,
    /// `rules.eval_timeout`).
    pub eval_memory: usize,
    pub eval_timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self::from_config(&IngestConfig::default(), &RulesConfig::default())
    }
}

impl EngineOptions {
    /// The options `rules.*` sets, with ingest's bounds on points (`ingest.*`).
    pub fn from_config(ingest: &IngestConfig, rules: &RulesConfig) -> Self {
        Self {
            idle_timeout: rules.idle_timeout,
            allowed_lateness: rules.allowed_lateness,
            // Measured (benches/rules.rs, 100k series): at 6 points per state
            // row panes were 8% slower than whole windows; at 600, 4.4x faster.
            pane_min_yield: 10.0,
            max_line_bytes: ingest.max_line_bytes.as_u64() as usize,
            max_past: ingest.max_past,
            max_future: ingest.max_future,
            max_tags_per_point: ingest.max_tags_per_point,
            max_tag_keys: ingest.max_tag_keys,
            eval_memory: rules.eval_memory.as_u64() as usize,
            eval_timeout: rules.eval_timeout,
        }
    }
}

/// What one record brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub points: usize,
    /// Points (counted once per rule) whose windows had closed, not counting
    /// points replayed after a restart.
    pub late: usize,
    /// Points refused by the limits or as malformed (see
    /// [`RuleEngine::rejected`]); they do not move event time.
    pub rejected: usize,
}

/// What a tick did.
#[derive(Debug, Default)]
pub struct Tick {
    pub events: Vec<PagingEvent>,
    pub evaluations: u64,
    /// Windows whose evaluation failed, by rule; the window is skipped.
    pub failures: Vec<(String, DataFusionError)>,
}

/// One rule's durable state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleCheckpoint {
    pub rule: String,
    /// The end of the last window evaluated.
    pub closed_until_ms: Option<i64>,
    pub first_event_ms: Option<i64>,
    pub alerts: AlertStates,
}

/// What changed since the last checkpoint, in the shape of a compacted
/// topic: one entry per rule, deletions, and positions.
#[derive(Debug, Clone, Default)]
pub struct CheckpointDelta {
    pub rules: Vec<RuleCheckpoint>,
    /// Rules gone since the last checkpoint: delete their state.
    pub removed: Vec<String>,
    /// The next offset per partition the engine has seen.
    pub positions: Vec<(PartitionKey, i64)>,
    /// Where to commit: replaying from here re-delivers every point an open
    /// window still needs. Commit only once the rest of the delta is durable.
    pub commit: Vec<(PartitionKey, i64)>,
}

impl CheckpointDelta {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.removed.is_empty() && self.commit.is_empty()
    }
}
fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Notes the event times of one record's points on every rule's clock.
/// Returns how many came late (not counting a record `replayed` after a
/// restart, counted the first time).
fn observe(
    slots: &mut BTreeMap<String, RuleSlot>,
    partition: &PartitionKey,
    times: &[i64],
    replayed: bool,
    wall_ms: i64,
) -> usize {
    let mut late = 0;
    for slot in slots.values_mut() {
        for &t in times {
            match slot.marks.observe(partition, t, wall_ms) {
                Arrival::Late if !replayed => late += 1,
                Arrival::Late => {}
                Arrival::OnTime => slot.invalidate_pane(t),
            }
        }
    }
    late
}

/// Every active rule over the points of the assigned partitions.
#[derive(Debug)]
pub struct RuleEngine {
    options: EngineOptions,
    slots: BTreeMap<String, RuleSlot>,
    store: PointStore,
    builder: PointBatchBuilder,
    /// First offset, per partition, of the records in `builder`.
    building: HashMap<PartitionKey, i64>,
    /// The next offset per partition.
    positions: HashMap<PartitionKey, i64>,
    /// Records below these offsets were processed before a restart.
    replayed_until: HashMap<PartitionKey, i64>,
    /// Assigned partitions and when: a rule added later tracks them too.
    assigned: HashMap<PartitionKey, i64>,
    /// Rules removed since the last checkpoint.
    removed: Vec<String>,
    /// The last record's refused lines; ingest dead-letters them, the
    /// runner only counts them.
    rejects: Vec<Rejected>,
    /// The pool and time limit every rule's evaluations share.
    eval_limits: EvalLimits,
}

impl RuleEngine {
    pub fn new(rules: Vec<CompiledRule>, options: EngineOptions) -> Self {
        let mut engine = Self {
            options,
            slots: BTreeMap::new(),
            store: PointStore::default(),
            builder: PointBatchBuilder::default(),
            building: HashMap::new(),
            positions: HashMap::new(),
            replayed_until: HashMap::new(),
            assigned: HashMap::new(),
            removed: Vec::new(),
            rejects: Vec::new(),
            eval_limits: EvalLimits::new(options.eval_memory, options.eval_timeout),
        };
        for rule in rules {
            let slot = engine.new_slot(rule);
            engine.slots.insert(slot.compiled.rule.name.clone(), slot);
        }
        engine
    }

    fn new_marks(&self, rule: &CompiledRule) -> Watermarks {
        let mut marks = Watermarks::new(
            ms(self.options.idle_timeout),
            ms(self.options.allowed_lateness),
            ms(rule.rule.window),
            ms(rule.rule.every()),
        )
        .with_max_future(ms(self.options.max_future));
        for (partition, since) in &self.assigned {
            marks.assign(partition.clone(), *since);
        }
        marks
    }

    fn new_slot(&self, compiled: CompiledRule) -> RuleSlot {
        let compiled = compiled.with_limits(self.eval_limits.clone());
        RuleSlot {
            marks: self.new_marks(&compiled),
            states: AlertStates::default(),
            panes: BTreeMap::new(),
            pane_yield: None,
            whole_windows: 0,
            dirty: true,
            compiled,
        }
    }

    /// The active rules' names, in order.
    pub fn rule_names(&self) -> Vec<&str> {
        self.slots.keys().map(String::as_str).collect()
    }

    /// Points held for open windows.
    pub fn points_held(&self) -> usize {
        self.store.rows() + self.builder.len()
    }

    /// A partition was assigned: it holds event time back until it speaks
    /// or goes idle.
    pub fn assign(&mut self, partition: PartitionKey, wall_ms: i64) {
        for slot in self.slots.values_mut() {
            slot.marks.assign(partition.clone(), wall_ms);
        }
        self.assigned.insert(partition, wall_ms);
    }

    /// A partition was revoked: it no longer holds time back.
    pub fn revoke(&mut self, partition: &PartitionKey) {
        for slot in self.slots.values_mut() {
            slot.marks.revoke(partition);
        }
        self.assigned.remove(partition);
        self.positions.remove(partition);
    }

    /// Decodes one record of `partition` at `offset`, within the limits
    /// around `wall_ms`, and notes its points' event times.
    pub fn record(
        &mut self,
        partition: &PartitionKey,
        offset: i64,
        format: Format,
        payload: &[u8],
        record_time_ms: i64,
        wall_ms: i64,
    ) -> Recorded {
        let before = self.builder.len();
        self.rejects.clear();
        let limits = Limits {
            max_line_bytes: self.options.max_line_bytes,
            min_time_ms: wall_ms.saturating_sub(ms(self.options.max_past)),
            max_time_ms: wall_ms.saturating_add(ms(self.options.max_future)),
            max_tags_per_point: self.options.max_tags_per_point,
            max_tag_keys: self.options.max_tag_keys,
        };
        let points = decode_record(
            format,
            payload,
            record_time_ms,
            limits,
            &mut self.builder,
            &mut self.rejects,
        );
        self.building.entry(partition.clone()).or_insert(offset);
        let replayed = self.reached(partition, offset);
        let times = &self.builder.times()[before..];
        let late = observe(&mut self.slots, partition, times, replayed, wall_ms);
        Recorded {
            points,
            late,
            rejected: self.rejects.len(),
        }
    }

    /// Takes points already decoded (the lake's, for a backtest) as the
    /// record of `partition` at `offset`: `batch` has the point columns,
    /// `time` first, as a [`PointBatchBuilder`] or the lake's `metrics`
    /// table (without its partition columns) gives them. No limits apply:
    /// they were applied when the points were first taken in.
    pub fn points(
        &mut self,
        partition: &PartitionKey,
        offset: i64,
        batch: RecordBatch,
        wall_ms: i64,
    ) -> Result<Recorded, ArrowError> {
        let schema = batch.schema();
        let time = schema.fields().first();
        if time.is_none_or(|f| f.name() != TIME || *f.data_type() != time_type()) {
            return Err(ArrowError::SchemaError(format!(
                "points must start with a `{TIME}` column of {}, not {schema}",
                time_type()
            )));
        }
        let replayed = self.reached(partition, offset);
        let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let late = observe(
            &mut self.slots,
            partition,
            times.values(),
            replayed,
            wall_ms,
        );
        let points = batch.num_rows();
        self.store
            .push(batch, HashMap::from([(partition.clone(), offset)]));
        Ok(Recorded {
            points,
            late,
            rejected: 0,
        })
    }

    /// Notes that `partition` reached `offset`, and says whether its
    /// points were processed before a restart.
    fn reached(&mut self, partition: &PartitionKey, offset: i64) -> bool {
        self.positions.insert(partition.clone(), offset + 1);
        self.replayed_until
            .get(partition)
            .is_some_and(|until| offset < *until)
    }

    /// The lines the last [`record`](Self::record) call refused.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejects
    }

    /// Closes every window the watermarks allow, evaluates it, and returns
    /// the events of the alert transitions.
    pub async fn tick(&mut self, wall_ms: i64) -> Tick {
        if !self.builder.is_empty() {
            let batch = self.builder.finish().expect("a point batch always builds");
            self.store.push(batch, std::mem::take(&mut self.building));
        }
        let mut tick = Tick::default();
        let min_yield = self.options.pane_min_yield;
        for slot in self.slots.values_mut() {
            for end in slot.marks.closable(wall_ms) {
                let start = end.saturating_sub(slot.window_ms());
                match slot.evaluate(&self.store, start, end, min_yield).await {
                    Ok(observed) => {
                        tick.evaluations += 1;
                        let rule = &slot.compiled.rule;
                        for t in slot.states.advance(rule, end, &observed) {
                            tick.events.push(to_event(rule, &t, start, end));
                        }
                    }
                    Err(e) => tick.failures.push((slot.compiled.rule.name.clone(), e)),
                }
                slot.dirty = true;
                slot.evict_panes(end);
            }
        }
        // Keep what the next window of any rule may still need.
        let keep_from = self
            .slots
            .values()
            .map(|s| {
                s.marks
                    .closed_until()
                    .map_or(i64::MIN, |c| c.saturating_add(s.every_ms() - s.window_ms()))
            })
            .min()
            .unwrap_or(i64::MAX);
        self.store.evict(keep_from);
        tick
    }

    /// Replaces the rules. Unchanged rules keep everything; changed rules
    /// keep their alert states on a clock for their new window; removed rules
    /// resolve what they had firing, and those events are returned.
    pub fn reload(&mut self, rules: Vec<CompiledRule>) -> Vec<PagingEvent> {
        let mut old = std::mem::take(&mut self.slots);
        for compiled in rules {
            let name = compiled.rule.name.clone();
            let slot = match old.remove(&name) {
                Some(slot) if slot.compiled.rule == compiled.rule => slot,
                Some(previous) => {
                    tracing::info!(rule = %name, "rule changed; its alert states carry over");
                    let mut slot = self.new_slot(compiled);
                    slot.marks = previous
                        .marks
                        .with_grid(ms(slot.compiled.rule.window), slot.every_ms());
                    slot.states = previous.states;
                    slot
                }
                None => {
                    tracing::info!(rule = %name, "rule added");
                    self.new_slot(compiled)
                }
            };
            self.slots.insert(name, slot);
        }
        let mut events = Vec::new();
        for (name, slot) in old {
            tracing::info!(rule = %name, "rule removed; resolving its alerts");
            events.extend(slot.resolve_all());
            self.removed.push(name);
        }
        events
    }

    /// Restores a checkpoint read back after a restart at `wall_ms`, before
    /// any record is fed. State of rules that no longer exist is resolved:
    /// those events are returned. A closed mark further ahead than
    /// `max_future` (event time pushed on by points from a clock far ahead,
    /// before limits applied) comes back to it.
    pub fn restore(
        &mut self,
        rules: Vec<RuleCheckpoint>,
        positions: Vec<(PartitionKey, i64)>,
        wall_ms: i64,
    ) -> Vec<PagingEvent> {
        let ahead = wall_ms.saturating_add(ms(self.options.max_future));
        let mut events = Vec::new();
        for checkpoint in rules {
            match self.slots.get_mut(&checkpoint.rule) {
                Some(slot) => {
                    let closed = checkpoint.closed_until_ms.map(|c| c.min(ahead));
                    let first = checkpoint.first_event_ms.map(|f| f.min(ahead));
                    slot.marks.resume(closed, first);
                    slot.states = checkpoint.alerts;
                }
                None => {
                    tracing::info!(rule = %checkpoint.rule, "rule gone since the last run; resolving its alerts");
                    events.extend(
                        checkpoint
                            .alerts
                            .firing()
                            .iter()
                            .map(|f| resolve_orphan(&checkpoint.rule, f)),
                    );
                    self.removed.push(checkpoint.rule);
                }
            }
        }
        self.replayed_until = positions.into_iter().collect();
        events
    }

    /// A checkpoint could not be written: what it held is written again
    /// with the next one (as the engine's state by then).
    pub fn checkpoint_failed(&mut self, delta: CheckpointDelta) {
        for rule in &delta.rules {
            if let Some(slot) = self.slots.get_mut(&rule.rule) {
                slot.dirty = true;
            }
        }
        let removed = delta
            .removed
            .into_iter()
            .filter(|name| !self.slots.contains_key(name));
        self.removed.extend(removed);
    }

    /// What changed since the last call; see [`CheckpointDelta`].
    pub fn checkpoint(&mut self) -> CheckpointDelta {
        let mut rules = Vec::new();
        for slot in self.slots.values_mut().filter(|s| s.dirty) {
            rules.push(slot.checkpoint());
            slot.dirty = false;
        }
        let commit = self
            .positions
            .iter()
            .map(|(partition, next)| {
                let held = [
                    self.store.first_offset(partition),
                    self.building.get(partition).copied(),
                ];
                let from = held.into_iter().flatten().min().unwrap_or(*next);
                (partition.clone(), from.min(*next))
            })
            .collect();
        CheckpointDelta {
            rules,
            removed: std::mem::take(&mut self.removed),
            positions: self
                .positions
                .iter()
                .map(|(p, o)| (p.clone(), *o))
                .collect(),
            commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleFile;

    const M: i64 = 60_000;

    async fn errors_rule() -> CompiledRule {
        let file: RuleFile = toml::from_str(
            r#"[[rule]]
            name = "errors"
            sql = "SELECT service, sum(value) AS errors FROM metrics GROUP BY service HAVING sum(value) > 10"
            window = "1m"
            severity = "critical""#,
        )
        .unwrap();
        CompiledRule::compile(file.rule.into_iter().next().unwrap().into_inner())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn decoded_points_move_event_time_as_records_do() {
        let options = EngineOptions {
            allowed_lateness: Duration::ZERO,
            ..EngineOptions::default()
        };
        let mut engine = RuleEngine::new(vec![errors_rule().await], options);
        let p = ("lake".to_owned(), 0);
        let batch = |points: &[(i64, f64)]| {
            let mut b = PointBatchBuilder::default();
            for &(t, v) in points {
                b.push("e", t, v, &[("service", "checkout")]);
            }
            b.finish().unwrap()
        };
        let wall = 10 * M;
        engine
            .points(&p, 0, batch(&[(10, 20.0), (M + 10, 1.0)]), wall)
            .unwrap();
        let tick = engine.tick(wall).await;
        assert_eq!(tick.events.len(), 1, "the first minute breached");
        let late = engine.points(&p, 1, batch(&[(20, 5.0)]), wall).unwrap();
        assert_eq!(late.late, 1, "its window had closed");
        // Points must come as the lake or the builder gives them.
        let no_time = RecordBatch::try_from_iter([(
            "value",
            std::sync::Arc::new(arrow::array::Float64Array::from(vec![1.0])) as _,
        )])
        .unwrap();
        assert!(engine.points(&p, 2, no_time, wall).is_err());
    }

    #[tokio::test]
    async fn a_checkpoint_pushed_a_day_ahead_comes_back_and_real_breaches_alert() {
        let options = EngineOptions {
            allowed_lateness: Duration::ZERO,
            idle_timeout: Duration::from_secs(3600),
            max_future: Duration::from_secs(60),
            ..EngineOptions::default()
        };
        let mut engine = RuleEngine::new(vec![errors_rule().await], options);
        let wall = 1_000 * M;
        // Written before limits applied, after a point dated a day ahead.
        let poisoned = RuleCheckpoint {
            rule: "errors".to_owned(),
            closed_until_ms: Some(wall + 24 * 60 * M),
            first_event_ms: Some(wall - M),
            alerts: AlertStates::default(),
        };
        engine.restore(vec![poisoned], Vec::new(), wall);
        let p = ("metrics".to_owned(), 0);
        engine.assign(p.clone(), wall);
        let point = |t: i64, v: f64| {
            format!(r#"{{"name":"e","time":{t},"value":{v},"tags":{{"service":"checkout"}}}}"#)
        };
        let breach = engine.record(
            &p,
            0,
            Format::Json,
            point(wall + 2 * M + 10, 20.0).as_bytes(),
            wall,
            wall + 2 * M,
        );
        assert_eq!(breach.late, 0, "the breach counts");
        engine.record(
            &p,
            1,
            Format::Json,
            point(wall + 3 * M, 1.0).as_bytes(),
            wall,
            wall + 3 * M,
        );
        let tick = engine.tick(wall + 3 * M).await;
        assert_eq!(tick.events.len(), 1, "{:?}", tick.events);
    }
}
