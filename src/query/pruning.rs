//! Partition pruning from time predicates.
//!
//! Queries filter on `time`, but the lake is partitioned by the strings
//! `date` and `hour`. This wrapper reads the bounds a query puts on `time`
//! and adds the equivalent `date`/`hour` predicates to the scan, which the
//! listing table then uses to skip whole directories.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::{
    catalog::{Session, TableProvider},
    common::ScalarValue,
    datasource::TableType,
    error::Result,
    logical_expr::{
        BinaryExpr, Expr, Operator, TableProviderFilterPushDown, utils::split_conjunction,
    },
    physical_plan::ExecutionPlan,
    prelude::{col, lit},
};

use crate::points::{MS_PER_HOUR, TIME};

#[derive(Debug)]
pub struct TimePrunedTable {
    inner: Arc<dyn TableProvider>,
}

impl TimePrunedTable {
    pub fn new(inner: Arc<dyn TableProvider>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl TableProvider for TimePrunedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut filters = filters.to_vec();
        filters.extend(partition_filters(&time_bounds(&filters)));
        self.inner.scan(state, projection, &filters, limit).await
    }
}

/// Inclusive bounds in epoch milliseconds that every matching row's `time`
/// lies within, as far as the filters tell.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeBounds {
    pub(crate) min_ms: Option<i64>,
    pub(crate) max_ms: Option<i64>,
}

pub(crate) fn time_bounds(filters: &[Expr]) -> TimeBounds {
    let mut bounds = TimeBounds::default();
    for filter in filters {
        for expr in split_conjunction(filter) {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
                continue;
            };
            // Normalise to `time OP literal`.
            let (op, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) if c.name == TIME => (*op, v),
                (Expr::Literal(v, _), Expr::Column(c)) if c.name == TIME => match op.swap() {
                    Some(op) => (op, v),
                    None => continue,
                },
                _ => continue,
            };
            let Some(ms) = timestamp_ms(value) else {
                continue;
            };
            let (low, high) = match op {
                Operator::Eq => (Some(ms), Some(ms)),
                Operator::Gt | Operator::GtEq => (Some(ms), None),
                Operator::Lt | Operator::LtEq => (None, Some(ms)),
                _ => (None, None),
            };
            if let Some(l) = low {
                bounds.min_ms = Some(bounds.min_ms.map_or(l, |m| m.max(l)));
            }
            if let Some(h) = high {
                bounds.max_ms = Some(bounds.max_ms.map_or(h, |m| m.min(h)));
            }
        }
    }
    bounds
}

fn timestamp_ms(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
        // Rounding outward keeps the bound safe: never prunes a matching row.
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000_000)),
        _ => None,
    }
}

/// `date`/`hour` predicates implied by the bounds.
pub(crate) fn partition_filters(bounds: &TimeBounds) -> Vec<Expr> {
    let split = |ms: i64| {
        let hour_start = ms.div_euclid(MS_PER_HOUR) * MS_PER_HOUR;
        let t =
            DateTime::<Utc>::from_timestamp_millis(hour_start).unwrap_or(DateTime::<Utc>::MIN_UTC);
        (t.format("%Y-%m-%d").to_string(), t.format("%H").to_string())
    };
    let mut out = Vec::new();
    if let Some(min) = bounds.min_ms {
        let (d, h) = split(min);
        out.push(
            col("date")
                .gt(lit(d.clone()))
                .or(col("date").eq(lit(d)).and(col("hour").gt_eq(lit(h)))),
        );
    }
    if let Some(max) = bounds.max_ms {
        let (d, h) = split(max);
        out.push(
            col("date")
                .lt(lit(d.clone()))
                .or(col("date").eq(lit(d)).and(col("hour").lt_eq(lit(h)))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(
            Some(ms),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn bounds_from_conjunctions_and_swapped_operands() {
        let filters = vec![
            col("time").gt_eq(ts(1_000)).and(col("name").eq(lit("x"))),
            ts(10 * MS_PER_HOUR).gt(col("time")),
            col("time").lt_eq(ts(20 * MS_PER_HOUR)),
        ];
        assert_eq!(
            time_bounds(&filters),
            TimeBounds {
                min_ms: Some(1_000),
                max_ms: Some(10 * MS_PER_HOUR)
            }
        );
    }

    #[test]
    fn disjunctions_give_no_bound() {
        let filters = vec![col("time").gt(ts(5)).or(col("name").eq(lit("x")))];
        assert_eq!(time_bounds(&filters), TimeBounds::default());
    }

    #[test]
    fn partition_filter_text() {
        let bounds = TimeBounds {
            min_ms: Some(1_764_000_000_000),
            max_ms: None,
        };
        let f = partition_filters(&bounds);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].to_string(),
            "date > Utf8(\"2025-11-24\") OR date = Utf8(\"2025-11-24\") AND hour >= Utf8(\"16\")"
        );
    }
}
