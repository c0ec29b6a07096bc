//! Partition pruning from time predicates.
//!
//! Queries filter on `time`, but the lake is partitioned by the strings
//! `date` and `hour`. This wrapper reads the bounds a query puts on `time`
//! and adds the equivalent `date`/`hour` predicates to the scan, which the
//! listing table then uses to skip whole directories.
//!
//! Range predicates prune files only after the listing table has listed the
//! whole table (every file of a month, to read one hour), while equalities
//! narrow the listing itself to one directory. So a bounded query becomes one
//! scan per hour (a day or less) or per date (up to [`MAX_DATE_SCANS`]),
//! each with `date = …` (and `hour = …`) added, under one union: what it
//! lists grows with the time it asks for, not with the lake's age.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::{
    catalog::{Session, TableProvider},
    common::ScalarValue,
    datasource::TableType,
    error::Result,
    logical_expr::{
        BinaryExpr, Expr, Operator, TableProviderFilterPushDown, utils::split_conjunction,
    },
    physical_plan::{ExecutionPlan, union::UnionExec},
    prelude::{col, lit},
};

use crate::{
    lake::layout::partition_values,
    points::{MS_PER_HOUR, TIME},
};

const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

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
        let bounds = time_bounds(filters);
        let mut filters = filters.to_vec();
        filters.extend(partition_filters(&bounds));
        let directories = directory_filters(&bounds);
        if directories.is_empty() {
            return self.inner.scan(state, projection, &filters, limit).await;
        }
        let scans = directories.into_iter().map(|directory| {
            let mut filters = filters.clone();
            filters.extend(directory);
            async move { self.inner.scan(state, projection, &filters, limit).await }
        });
        UnionExec::try_new(futures::future::try_join_all(scans).await?)
    }
}

/// Most hours a bounded query lists one directory at a time.
const MAX_HOUR_SCANS: i64 = 24;
/// Most dates a bounded query lists one directory at a time; beyond, one
/// listing of the whole table is cheaper than that many.
pub(crate) const MAX_DATE_SCANS: i64 = 400;

/// Equalities that narrow the listing to each hour or date directory the
/// bounds cover; empty when they do not bound the query on both sides or
/// cover too many.
pub(crate) fn directory_filters(bounds: &TimeBounds) -> Vec<Vec<Expr>> {
    let (Some(min), Some(max)) = (bounds.min_ms, bounds.max_ms) else {
        return Vec::new();
    };
    if min > max {
        return Vec::new();
    }
    let (first_hour, last_hour) = (min.div_euclid(MS_PER_HOUR), max.div_euclid(MS_PER_HOUR));
    if last_hour - first_hour < MAX_HOUR_SCANS {
        return (first_hour..=last_hour)
            .map(|hour| {
                let (date, hour) = directory(hour * MS_PER_HOUR);
                vec![col("date").eq(lit(date)), col("hour").eq(lit(hour))]
            })
            .collect();
    }
    let (first_day, last_day) = (min.div_euclid(MS_PER_DAY), max.div_euclid(MS_PER_DAY));
    if last_day - first_day < MAX_DATE_SCANS {
        return (first_day..=last_day)
            .map(|day| vec![col("date").eq(lit(directory(day * MS_PER_DAY).0))])
            .collect();
    }
    Vec::new()
}

/// The `date` and `hour` partition values of the hour holding `ms`, as
/// the writer names its directory.
fn directory(ms: i64) -> (String, String) {
    partition_values(ms.div_euclid(MS_PER_HOUR))
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
            let Some((ms, exact)) = timestamp_ms(value) else {
                continue;
            };
            // Rows hold whole milliseconds: `time < t` ends at t - 1 when t is
            // one, so `time < 13:00` does not reach into the 13:00 hour.
            let strict = |step: i64| {
                if exact {
                    ms.checked_add(step)
                } else {
                    Some(ms)
                }
            };
            let (low, high) = match op {
                Operator::Eq => (Some(ms), Some(ms)),
                Operator::GtEq => (Some(ms), None),
                Operator::Gt => (strict(1), None),
                Operator::LtEq => (None, Some(ms)),
                Operator::Lt => (None, strict(-1)),
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

/// A timestamp literal in epoch milliseconds, rounded down, and whether it
/// was a whole millisecond.
fn timestamp_ms(value: &ScalarValue) -> Option<(i64, bool)> {
    let sub_ms = |v: i64, per_ms: i64| (v.div_euclid(per_ms), v.rem_euclid(per_ms) == 0);
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => Some((v.checked_mul(1000)?, true)),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some((*v, true)),
        // Rounding down keeps a bound safe on either side when the
        // literal falls inside a millisecond: it never prunes a matching row.
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(sub_ms(*v, 1000)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(sub_ms(*v, 1_000_000)),
        _ => None,
    }
}

/// `date`/`hour` predicates implied by the bounds.
pub(crate) fn partition_filters(bounds: &TimeBounds) -> Vec<Expr> {
    let split = directory;
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
        // `10h > time` is `time < 10h`: up to its last millisecond.
        assert_eq!(
            time_bounds(&filters),
            TimeBounds {
                min_ms: Some(1_000),
                max_ms: Some(10 * MS_PER_HOUR - 1)
            }
        );
    }

    #[test]
    fn strict_bounds_step_a_whole_millisecond_only() {
        let micros = |us: i64| lit(ScalarValue::TimestampMicrosecond(Some(us), None));
        let bounds = |filter: Expr| time_bounds(&[filter]);
        let at = |min_ms, max_ms| TimeBounds { min_ms, max_ms };
        assert_eq!(bounds(col("time").gt(ts(7))), at(Some(8), None));
        assert_eq!(bounds(col("time").lt(ts(7))), at(None, Some(6)));
        // 7.5 ms: rows at 7 ms are below it and rows at 8 ms above.
        assert_eq!(bounds(col("time").lt(micros(7_500))), at(None, Some(7)));
        assert_eq!(bounds(col("time").gt(micros(7_500))), at(Some(7), None));
        assert_eq!(bounds(col("time").lt(micros(7_000))), at(None, Some(6)));
        assert_eq!(bounds(col("time").lt(micros(-1))), at(None, Some(-1)));
        assert_eq!(bounds(col("time").gt(ts(i64::MAX))), at(None, None));
    }

    #[test]
    fn disjunctions_give_no_bound() {
        let filters = vec![col("time").gt(ts(5)).or(col("name").eq(lit("x")))];
        assert_eq!(time_bounds(&filters), TimeBounds::default());
    }

    fn texts(directories: Vec<Vec<Expr>>) -> Vec<String> {
        directories
            .into_iter()
            .map(|d| {
                d.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(" AND ")
            })
            .collect()
    }

    #[test]
    fn bounded_queries_list_each_hour_or_date_they_cover() {
        // 2025-11-24T16:00Z, an hour boundary.
        let at = 1_764_000_000_000;
        let hour = |min_ms, max_ms| TimeBounds {
            min_ms: Some(min_ms),
            max_ms: Some(max_ms),
        };
        assert_eq!(
            texts(directory_filters(&hour(at, at + MS_PER_HOUR - 1))),
            ["date = Utf8(\"2025-11-24\") AND hour = Utf8(\"16\")"]
        );
        // An inclusive bound on the next hour's first millisecond lists it.
        assert_eq!(
            texts(directory_filters(&hour(at - 1, at + MS_PER_HOUR))),
            [
                "date = Utf8(\"2025-11-24\") AND hour = Utf8(\"15\")",
                "date = Utf8(\"2025-11-24\") AND hour = Utf8(\"16\")",
                "date = Utf8(\"2025-11-24\") AND hour = Utf8(\"17\")",
            ]
        );
        // Past midnight.
        let across = texts(directory_filters(&hour(
            at + 7 * MS_PER_HOUR,
            at + 9 * MS_PER_HOUR,
        )));
        assert_eq!(across.len(), 3);
        assert_eq!(
            across[2],
            "date = Utf8(\"2025-11-25\") AND hour = Utf8(\"01\")"
        );
        // A day and more: dates.
        assert_eq!(
            texts(directory_filters(&hour(at, at + 30 * MS_PER_HOUR))),
            ["date = Utf8(\"2025-11-24\")", "date = Utf8(\"2025-11-25\")"]
        );
        assert_eq!(
            directory_filters(&hour(at, at + (MAX_DATE_SCANS - 1) * MS_PER_DAY)).len(),
            MAX_DATE_SCANS as usize
        );
        // Too long, open-ended or empty: one listing of the table.
        assert!(directory_filters(&hour(at, at + MAX_DATE_SCANS * MS_PER_DAY)).is_empty());
        assert!(directory_filters(&hour(i64::MIN, i64::MAX)).is_empty());
        assert!(directory_filters(&hour(at + 1, at)).is_empty());
        let open = TimeBounds {
            min_ms: Some(at),
            max_ms: None,
        };
        assert!(directory_filters(&open).is_empty());
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
