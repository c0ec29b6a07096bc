//! One rule in the engine: its compiled SQL, event clock and alert
//! states, and the cache of pane states that lets a window be evaluated from
//! partial aggregates instead of all its points, while that pays off.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;

use super::{RuleCheckpoint, ms};
use crate::{
    paging::PagingEvent,
    rules::{
        evaluate::CompiledRule,
        event::to_event,
        state::{AlertStates, Observation, Transition},
        store::PointStore,
        watermark::Watermarks,
    },
};

/// How often a rule evaluated whole tries panes again.
const PANE_REPROBE: u32 = 32;

#[derive(Debug)]
pub(super) struct RuleSlot {
    pub(super) compiled: CompiledRule,
    pub(super) marks: Watermarks,
    pub(super) states: AlertStates,
    /// Partial aggregate state of each pane, by pane end (see `evaluate`).
    pub(super) panes: BTreeMap<i64, Vec<RecordBatch>>,
    /// Points per state row of the last pane reduced.
    pub(super) pane_yield: Option<f64>,
    /// Windows evaluated whole since panes were last tried.
    pub(super) whole_windows: u32,
    /// Changed since the last checkpoint.
    pub(super) dirty: bool,
}

impl RuleSlot {
    pub(super) fn window_ms(&self) -> i64 {
        ms(self.compiled.rule.window)
    }

    pub(super) fn every_ms(&self) -> i64 {
        ms(self.compiled.rule.every())
    }

    /// Whether this window is evaluated by panes; see
    /// [`super::EngineOptions::pane_min_yield`].
    fn by_panes(&mut self, min_yield: f64) -> bool {
        if !self.compiled.uses_panes() {
            return false;
        }
        match self.pane_yield {
            Some(y) if y < min_yield => {
                self.whole_windows += 1;
                if self.whole_windows >= PANE_REPROBE {
                    self.whole_windows = 0;
                    true
                } else {
                    // Cached panes would go stale while unused.
                    self.panes.clear();
                    false
                }
            }
            _ => true,
        }
    }

    /// Runs the rule over `[start, end)`: from pane states when panes pay
    /// off (computing the panes not yet cached), else over the points.
    pub(super) async fn evaluate(
        &mut self,
        store: &PointStore,
        start: i64,
        end: i64,
        min_yield: f64,
    ) -> Result<Vec<Observation>, DataFusionError> {
        if !self.by_panes(min_yield) {
            return self.compiled.evaluate(&store.window(start, end)?).await;
        }
        let every = self.every_ms();
        let mut states = Vec::new();
        let mut pane_end = start + every;
        while pane_end <= end {
            if !self.panes.contains_key(&pane_end) {
                let points = store.window(pane_end - every, pane_end)?;
                let state = self.compiled.pane_state(&points).await?;
                let rows = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
                if rows(&points) > 0 {
                    self.pane_yield = Some(rows(&points) as f64 / rows(&state).max(1) as f64);
                }
                self.panes.insert(pane_end, state);
            }
            states.extend(self.panes[&pane_end].iter().cloned());
            pane_end += every;
        }
        self.compiled.merge_panes(states).await
    }

    /// A point arrived on time for a pane already reduced: reduce it again.
    pub(super) fn invalidate_pane(&mut self, event_ms: i64) {
        if !self.panes.is_empty() {
            let every = self.every_ms();
            let pane_end = event_ms.div_euclid(every).saturating_add(1);
            self.panes.remove(&pane_end.saturating_mul(every));
        }
    }

    /// Drops panes that no window after the one ending at `end` needs.
    pub(super) fn evict_panes(&mut self, end: i64) {
        let next_start = end.saturating_add(self.every_ms() - self.window_ms());
        self.panes.retain(|pane_end, _| *pane_end > next_start);
    }

    pub(super) fn checkpoint(&self) -> RuleCheckpoint {
        RuleCheckpoint {
            rule: self.compiled.rule.name.clone(),
            closed_until_ms: self.marks.closed_until(),
            first_event_ms: self.marks.first_event(),
            alerts: self.states.clone(),
        }
    }

    /// Resolve events for everything firing, as the rule goes away.
    pub(super) fn resolve_all(&self) -> Vec<PagingEvent> {
        let Some(end) = self.marks.closed_until() else {
            return Vec::new();
        };
        let start = end.saturating_sub(self.window_ms());
        self.states
            .firing()
            .into_iter()
            .map(|f| {
                let transition = Transition::Resolve {
                    labels: f.labels,
                    value: None,
                    no_data: f.no_data,
                };
                to_event(&self.compiled.rule, &transition, start, end)
            })
            .collect()
    }
}
