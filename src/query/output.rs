//! Query results as an aligned table, CSV, JSON lines or Parquet.

use std::{io::Write, sync::Arc};

use arrow::{
    array::RecordBatch,
    compute::cast,
    datatypes::{DataType, Field, Schema},
    util::pretty::pretty_format_batches,
};

use super::QueryError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Writes batches in `format`. Dictionary columns are written as plain strings
/// so every consumer of the output can read them.
pub fn write_batches(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> Result<(), QueryError> {
    let err = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    let batches = batches
        .iter()
        .map(plain_strings)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))?;
    match format {
        OutputFormat::Table => {
            writeln!(
                out,
                "{}",
                pretty_format_batches(&batches).map_err(|e| err(&e))?
            )
            .map_err(|e| err(&e))?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in &batches {
                w.write(b).map_err(|e| err(&e))?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            for b in &batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.finish().map_err(|e| err(&e))?;
        }
        OutputFormat::Parquet => {
            let Some(first) = batches.first() else {
                return Ok(());
            };
            let mut w = parquet::arrow::ArrowWriter::try_new(out, first.schema(), None)
                .map_err(|e| err(&e))?;
            for b in &batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.close().map_err(|e| err(&e))?;
        }
    }
    Ok(())
}

fn plain_strings(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(..)))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if let DataType::Dictionary(_, value) = field.data_type() {
            fields.push(Field::new(
                field.name(),
                value.as_ref().clone(),
                field.is_nullable(),
            ));
            columns.push(cast(column, value)?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
