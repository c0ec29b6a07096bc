//! Runs a rule's SQL over one window of points and reads the result as
//! observations: labels from the text columns, the value from the value column.

use std::{collections::BTreeMap, sync::Arc};

use arrow::{
    array::{
        Array, ArrayRef, AsArray, RecordBatch, Scalar, TimestampMillisecondArray, new_null_array,
    },
    compute::{and, cast, filter_record_batch, kernels::cmp},
    datatypes::{DataType, Float64Type},
    error::ArrowError,
    util::display::array_value_to_string,
};
use datafusion::{datasource::MemTable, error::DataFusionError, prelude::SessionContext};

use super::{
    check::{Planned, plan},
    definition::Rule,
    state::Observation,
};

/// A rule with its SQL planned and its result columns sorted into roles.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: Rule,
    planned: Planned,
    /// The result column that carries the value.
    value_column: String,
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
        Ok(Self {
            rule,
            planned,
            value_column,
        })
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
            .map(|b| window_of(b, start, end))
            .collect::<Result<Vec<_>, _>>()?;
        self.evaluate(&window).await
    }

    /// Evaluates the rule over the points of one window.
    pub async fn evaluate(
        &self,
        window: &[RecordBatch],
    ) -> Result<Vec<Observation>, DataFusionError> {
        let input = self.planned.input.clone();
        let batches = window
            .iter()
            .map(|b| conform(b, &input))
            .collect::<Result<Vec<_>, _>>()?;
        let ctx = SessionContext::new();
        ctx.register_table(
            "metrics",
            Arc::new(MemTable::try_new(input, vec![batches])?),
        )?;
        let results = ctx.sql(self.rule.sql.get_ref()).await?.collect().await?;
        let mut out = Vec::new();
        for batch in &results {
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

/// The rows with `start <= time < end`.
fn window_of(points: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch, DataFusionError> {
    let time = points
        .column_by_name("time")
        .expect("point batches have time");
    let bound = |ms| Scalar::new(TimestampMillisecondArray::from(vec![ms]).with_timezone("UTC"));
    let mask = and(
        &cmp::gt_eq(time, &bound(start))?,
        &cmp::lt(time, &bound(end))?,
    )?;
    Ok(filter_record_batch(points, &mask)?)
}
