//! Runs a rule's SQL over one window of points and reads the result as
//! observations: labels from the text columns, the value from the value column.
//!
//! Hopping windows are evaluated by panes where the SQL allows it. A window
//! of `window / every` hops is the union of that many panes; when the SQL is
//! one aggregation over row-local work (filters, projections), each pane is
//! reduced once to DataFusion's partial aggregate state, and a window merges
//! its panes' states with the final aggregate. A hop then costs one pane of
//! points plus a merge of states, not a whole window of points. Other SQL
//! (nested aggregates, joins, window functions) is evaluated over the window.
//!
//! Every evaluation runs within [`EvalLimits`]: a bounded memory pool and a
//! time limit, since rule SQL can ask for anything (`generate_series(1,
//! 1e11)`, a recursive CTE that never ends). A rule over either fails with
//! an error, like any other evaluation failure, and the other rules run on.

use std::{
    collections::BTreeMap,
    sync::{Arc, LazyLock},
    time::Duration,
};

use arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array},
    compute::cast,
    datatypes::{DataType, Float64Type, SchemaRef},
    error::ArrowError,
    util::display::array_value_to_string,
};
use datafusion::{
    common::tree_node::{Transformed, TreeNode, TreeNodeRecursion},
    datasource::{MemTable, memory::MemorySourceConfig},
    error::DataFusionError,
    execution::{
        TaskContext,
        disk_manager::{DiskManagerBuilder, DiskManagerMode},
        memory_pool::GreedyMemoryPool,
        runtime_env::{RuntimeEnv, RuntimeEnvBuilder},
    },
    physical_plan::{
        ExecutionPlan,
        aggregates::{AggregateExec, AggregateMode},
        collect,
    },
    prelude::{SessionConfig, SessionContext},
};

use crate::config::RulesConfig;

use super::{
    check::{Planned, plan},
    definition::Rule,
    state::Observation,
    store::between,
};

/// What one evaluation may use: memory from a pool shared by every
/// evaluation of an engine (they run one at a time), and time.
#[derive(Debug, Clone)]
pub struct EvalLimits {
    runtime: Arc<RuntimeEnv>,
    timeout: Duration,
}

/// The defaults of `rules.eval_memory` and `rules.eval_timeout`, built once.
static DEFAULT_LIMITS: LazyLock<EvalLimits> = LazyLock::new(|| {
    let rules = RulesConfig::default();
    EvalLimits::new(rules.eval_memory.as_u64() as usize, rules.eval_timeout)
});

impl EvalLimits {
    pub fn new(memory_bytes: usize, timeout: Duration) -> Self {
        // No spilling: a rule that outgrows its pool fails rather than
        // filling the disk under the runner.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(memory_bytes)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .expect("a runtime without disk or object stores builds");
        Self { runtime, timeout }
    }
}

impl Default for EvalLimits {
    fn default() -> Self {
        DEFAULT_LIMITS.clone()
    }
}

/// A rule with its SQL planned and its result columns sorted into roles.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: Rule,
    planned: Planned,
    /// The result column that carries the value.
    value_column: String,
    /// The partial aggregate state a pane reduces to, when the SQL can be
    /// evaluated by panes (see the module docs).
    pane_state: Option<SchemaRef>,
    limits: EvalLimits,
}

impl CompiledRule {
    /// Plans the rule; the error is the same reason `rules check` gives.
    pub async fn compile(rule: Rule) -> Result<Self, String> {
        let planned = plan(rule.sql.get_ref(), None).await?;
        let numeric: Vec<&str> = planned
            .output
            .fields()
            .iter()
            .filter(|f| f.data_type().is_numeric())
            .map(|f| f.name().as_str())
            .collect();
        let value_column = match &rule.thresholds {
            Some(t) => t.get_ref().column.clone(),
            None if numeric.contains(&"value") => "value".to_owned(),
            None => numeric
                .last()
                .ok_or("the SQL returns no numeric column to carry the value")?
                .to_string(),
        };
        let mut compiled = Self {
            rule,
            planned,
            value_column,
            pane_state: None,
            limits: EvalLimits::default(),
        };
        let (plan, _) = compiled
            .physical_plan(Vec::new())
            .await
            .map_err(|e| format!("SQL: {}", e.strip_backtrace()))?;
        compiled.pane_state = match aggregate_site(&plan) {
            Some(site) => Some(
                site.partial(site.input())
                    .map_err(|e| format!("SQL: {}", e.strip_backtrace()))?
                    .schema(),
            ),
            None => None,
        };
        Ok(compiled)
    }

    /// The same rule evaluated within `limits`.
    pub fn with_limits(mut self, limits: EvalLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether hops are evaluated by panes: the SQL allows it and a window
    /// spans more than one hop.
    pub fn uses_panes(&self) -> bool {
        self.pane_state.is_some() && self.rule.every() < self.rule.window
    }

    /// Evaluates the rule over the points of `batches` that fall in the
    /// window `[start, end)`.
    pub async fn evaluate_window(
        &self,
        batches: &[RecordBatch],
        start: i64,
        end: i64,
    ) -> Result<Vec<Observation>, DataFusionError> {
        let window = batches
            .iter()
            .map(|b| between(b, start, end))
            .collect::<Result<Vec<_>, _>>()?;
        self.evaluate(&window).await
    }

    /// Evaluates the rule over the points of one window.
    pub async fn evaluate(
        &self,
        window: &[RecordBatch],
    ) -> Result<Vec<Observation>, DataFusionError> {
        let (plan, task) = self.physical_plan(window.to_vec()).await?;
        self.observations_of(&self.run(plan, task).await?)
    }

    /// Reduces one pane's points to partial aggregate state. Only for rules
    /// that [use panes](Self::uses_panes).
    pub async fn pane_state(
        &self,
        points: &[RecordBatch],
    ) -> Result<Vec<RecordBatch>, DataFusionError> {
        let (plan, task) = self.physical_plan(points.to_vec()).await?;
        let site = aggregate_site(&plan).ok_or_else(not_by_panes)?;
        self.run(site.partial(site.input())?, task).await
    }

    /// Evaluates a window from the partial states of its panes.
    pub async fn merge_panes(
        &self,
        states: Vec<RecordBatch>,
    ) -> Result<Vec<Observation>, DataFusionError> {
        let schema = self.pane_state.clone().ok_or_else(not_by_panes)?;
        let (plan, task) = self.physical_plan(Vec::new()).await?;
        let site = aggregate_site(&plan).ok_or_else(not_by_panes)?;
        let input = MemorySourceConfig::try_new_exec(&[states], schema, None)?;
        let merged: Arc<dyn ExecutionPlan> = Arc::new(site.merge(input)?);
        let top = site.top;
        // Everything above the aggregation (HAVING, projections, ORDER BY)
        // runs unchanged over the merged result.
        let plan = plan
            .transform_down(|node| {
                if Arc::ptr_eq(&node, &top) {
                    Ok(Transformed::new(
                        Arc::clone(&merged),
                        true,
                        TreeNodeRecursion::Jump,
                    ))
                } else {
                    Ok(Transformed::no(node))
                }
            })?
            .data;
        self.observations_of(&self.run(plan, task).await?)
    }

    /// Runs `plan` to its end within the time limit (the memory pool is in
    /// `task`). It runs as its own task, so that hitting the limit stops it:
    /// DataFusion's operators yield to tokio cooperatively, and an aborted
    /// task ends at its next yield.
    async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>, DataFusionError> {
        let mut job = tokio::spawn(collect(plan, task));
        match tokio::time::timeout(self.limits.timeout, &mut job).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(DataFusionError::External(Box::new(e))),
            Err(_) => {
                job.abort();
                Err(DataFusionError::ResourcesExhausted(format!(
                    "the evaluation took longer than {} (rules.eval_timeout)",
                    humantime::format_duration(self.limits.timeout)
                )))
            }
        }
    }

    /// The rule's SQL planned over `points` as the table `metrics`. One
    /// partition: a window is small, and a single aggregation is what panes
    /// split.
    async fn physical_plan(
        &self,
        points: Vec<RecordBatch>,
    ) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>), DataFusionError> {
        let input = self.planned.input.clone();
        let batches = points
            .iter()
            .map(|b| conform(b, &input))
            .collect::<Result<Vec<_>, _>>()?;
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new().with_target_partitions(1),
            Arc::clone(&self.limits.runtime),
        );
        ctx.register_table(
            "metrics",
            Arc::new(MemTable::try_new(input, vec![batches])?),
        )?;
        let plan = ctx
            .sql(self.rule.sql.get_ref())
            .await?
            .create_physical_plan()
            .await?;
        Ok((plan, ctx.task_ctx()))
    }

    fn observations_of(
        &self,
        results: &[RecordBatch],
    ) -> Result<Vec<Observation>, DataFusionError> {
        let mut out = Vec::new();
        for batch in results {
            out.extend(self.observations(batch)?);
        }
        Ok(out)
    }

    fn observations(&self, batch: &RecordBatch) -> Result<Vec<Observation>, ArrowError> {
        let schema = batch.schema();
        let mut labels = Vec::new();
        let mut numbers = Vec::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if field.data_type().is_numeric() {
                numbers.push((field.name().clone(), cast(column, &DataType::Float64)?));
            } else {
                labels.push((field.name().clone(), column.clone()));
            }
        }
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut o = Observation {
                labels: BTreeMap::new(),
                value: f64::NAN,
                details: BTreeMap::new(),
            };
            for (name, column) in &labels {
                if column.is_valid(row) {
                    o.labels
                        .insert(name.clone(), array_value_to_string(column, row)?);
                }
            }
            for (name, column) in &numbers {
                let values = column.as_primitive::<Float64Type>();
                if values.is_null(row) {
                    continue;
                }
                // Every numeric column, the value's own included, goes into the
                // details, so templates and the event can name it.
                if *name == self.value_column {
                    o.value = values.value(row);
                }
                o.details.insert(name.clone(), values.value(row));
            }
            // A row without a value (NULL) cannot be compared with anything.
            if !o.value.is_nan() {
                out.push(o);
            }
        }
        Ok(out)
    }
}

/// Gives a batch exactly the rule's input columns: tags the batch lacks
/// become NULL, tags the rule does not name are dropped.
fn conform(
    batch: &RecordBatch,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// Fills `{{name}}` from the labels, the details and `value`; an unknown name
/// is left as written so the gap shows.
pub fn render(
    template: &str,
    labels: &BTreeMap<String, String>,
    value: Option<f64>,
    details: &BTreeMap<String, f64>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        match (labels.get(name), details.get(name)) {
            (Some(v), _) => out.push_str(v),
            (None, Some(v)) => out.push_str(&v.to_string()),
            (None, None) if name == "value" => match value {
                Some(v) => out.push_str(&v.to_string()),
                None => out.push_str("no data"),
            },
            _ => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn not_by_panes() -> DataFusionError {
    DataFusionError::Internal("this rule is not evaluated by panes".to_owned())
}

/// Where a plan splits into panes: its one aggregation, found below nodes
/// that each have one input, over nothing but row-local work.
#[derive(Debug)]
struct AggregateSite {
    /// The node a window replaces with the merge of pane states.
    top: Arc<dyn ExecutionPlan>,
    /// The aggregation with the rule's group and aggregate expressions, over
    /// the raw points (the `Single` node, or the `Partial` under a `Final`).
    base: Arc<dyn ExecutionPlan>,
}

impl AggregateSite {
    fn base(&self) -> &AggregateExec {
        self.base
            .downcast_ref::<AggregateExec>()
            .expect("the base is an aggregation")
    }

    fn input(&self) -> Arc<dyn ExecutionPlan> {
        Arc::clone(self.base().input())
    }

    /// The first phase over `input`: one row of accumulator state per group.
    fn partial(
        &self,
        input: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let base = self.base();
        Ok(Arc::new(AggregateExec::try_new(
            AggregateMode::Partial,
            base.group_expr().clone(),
            base.aggr_expr().to_vec(),
            base.filter_expr().to_vec(),
            input,
            base.input_schema(),
        )?))
    }

    /// The second phase over pane states: the rule's aggregate values.
    fn merge(&self, states: Arc<dyn ExecutionPlan>) -> Result<AggregateExec, DataFusionError> {
        let base = self.base();
        AggregateExec::try_new(
            AggregateMode::Final,
            base.group_expr().as_final(),
            base.aggr_expr().to_vec(),
            base.filter_expr().to_vec(),
            states,
            base.input_schema(),
        )
    }
}

fn aggregate_site(plan: &Arc<dyn ExecutionPlan>) -> Option<AggregateSite> {
    let mut node = Arc::clone(plan);
    loop {
        if let Some(agg) = node.downcast_ref::<AggregateExec>() {
            let base = match agg.mode() {
                AggregateMode::Single | AggregateMode::SinglePartitioned => Arc::clone(&node),
                AggregateMode::Final | AggregateMode::FinalPartitioned => {
                    partial_below(agg.input())?
                }
                _ => return None,
            };
            let input = base.downcast_ref::<AggregateExec>()?.input();
            return row_local(input).then_some(AggregateSite { top: node, base });
        }
        match node.children().as_slice() {
            [only] => node = Arc::clone(only),
            _ => return None,
        }
    }
}

/// The `Partial` aggregation feeding a `Final` one, through exchanges.
fn partial_below(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if let Some(agg) = plan.downcast_ref::<AggregateExec>() {
        return (*agg.mode() == AggregateMode::Partial).then(|| Arc::clone(plan));
    }
    match (plan.name(), plan.children().as_slice()) {
        ("CoalescePartitionsExec" | "RepartitionExec" | "CoalesceBatchesExec", [only]) => {
            partial_below(only)
        }
        _ => None,
    }
}

/// Work that treats each point on its own, so it may run pane by pane.
fn row_local(plan: &Arc<dyn ExecutionPlan>) -> bool {
    matches!(
        plan.name(),
        "FilterExec"
            | "ProjectionExec"
            | "CoalesceBatchesExec"
            | "RepartitionExec"
            | "CoalescePartitionsExec"
            | "DataSourceExec"
    ) && plan.children().iter().all(|c| row_local(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::points::PointBatchBuilder;

    async fn compiled(sql: &str, window: &str, every: &str) -> CompiledRule {
        let text = format!(
            "[[rule]]\nname = \"r\"\nsql = \"{sql}\"\nwindow = \"{window}\"\nevery = \"{every}\"\nseverity = \"warning\"\n"
        );
        let file: super::super::RuleFile = toml::from_str(&text).unwrap();
        CompiledRule::compile(file.rule.into_iter().next().unwrap().into_inner())
            .await
            .unwrap()
    }

    /// Points of 50 series over four minutes, with a gap-free but uneven
    /// spread of values, some series missing the `az` tag.
    fn points() -> RecordBatch {
        let mut b = PointBatchBuilder::default();
        let mut seed = 7_u64;
        for i in 0..4_000_i64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let service = format!("svc{}", i % 50);
            let value = (seed >> 40) as f64 / 1000.0;
            let name = if i % 3 == 0 { "latency" } else { "errors" };
            if i % 4 == 0 {
                b.push(name, i * 60, value, &[("service", service.as_str())]);
            } else {
                let az = if i % 2 == 0 { "a" } else { "b" };
                b.push(
                    name,
                    i * 60,
                    value,
                    &[("az", az), ("service", service.as_str())],
                );
            }
        }
        b.finish().unwrap()
    }

    /// An observation as comparable lists: labels, then numbers.
    type Row = (Vec<(String, String)>, Vec<(String, f64)>);

    fn sorted(mut o: Vec<Observation>) -> Vec<Row> {
        o.sort_by(|a, b| a.labels.cmp(&b.labels));
        o.into_iter()
            .map(|o| {
                (
                    o.labels.into_iter().collect(),
                    o.details.into_iter().collect(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn panes_give_what_the_whole_window_gives() {
        let all = points();
        for sql in [
            "SELECT service, sum(value) AS s, count(*) AS n, min(value) AS lo, max(value) AS hi FROM metrics WHERE name = 'errors' GROUP BY service",
            "SELECT service, az, avg(value) AS mean FROM metrics GROUP BY service, az HAVING avg(value) > 100",
            "SELECT count(DISTINCT service) AS services, median(value) AS med FROM metrics WHERE name = 'latency'",
            "SELECT upper(service) AS svc, sum(value * 2) FILTER (WHERE az = 'a') AS doubled FROM metrics GROUP BY upper(service) ORDER BY doubled DESC NULLS LAST LIMIT 5",
        ] {
            let rule = compiled(sql, "2m", "30s").await;
            assert!(rule.uses_panes(), "{sql}");
            let every = 30_000;
            for end in [60_000, 120_000, 150_000, 240_000] {
                let start = end - 120_000;
                let whole = rule
                    .evaluate_window(std::slice::from_ref(&all), start, end)
                    .await
                    .unwrap();
                let mut states = Vec::new();
                let mut pane_end = start + every;
                while pane_end <= end {
                    let pane = between(&all, pane_end - every, pane_end).unwrap();
                    states.extend(rule.pane_state(&[pane]).await.unwrap());
                    pane_end += every;
                }
                let by_panes = rule.merge_panes(states).await.unwrap();
                let (whole, by_panes) = (sorted(whole), sorted(by_panes));
                assert_eq!(whole.len(), by_panes.len(), "{sql} at {end}");
                assert!(
                    !whole.is_empty() || end == 60_000,
                    "{sql} at {end}: a real comparison"
                );
                for (w, p) in whole.iter().zip(&by_panes) {
                    assert_eq!(w.0, p.0, "{sql} at {end}");
                    for ((wn, wv), (pn, pv)) in w.1.iter().zip(&p.1) {
                        assert_eq!(wn, pn);
                        // Sums may add in another order.
                        assert!(
                            (wv - pv).abs() <= 1e-9 * wv.abs().max(1.0),
                            "{sql} at {end}: {wn} {wv} != {pv}"
                        );
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn sql_that_panes_cannot_split_is_evaluated_whole() {
        for sql in [
            "SELECT count(*) AS n FROM (SELECT service, sum(value) AS s FROM metrics GROUP BY service) WHERE s > 10",
            "SELECT service, value FROM metrics WHERE value > 10",
        ] {
            let rule = compiled(sql, "2m", "30s").await;
            assert!(!rule.uses_panes(), "{sql}");
        }
        let tumbling = compiled("SELECT sum(value) AS s FROM metrics", "1m", "1m").await;
        assert!(!tumbling.uses_panes(), "one pane per window gains nothing");
    }
}
