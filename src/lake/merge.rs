//! Merges Parquet files that are each sorted in [`series_order`] into one
//! sorted file, holding only a slice of each input decoded at a time.
//!
//! Compaction's inputs are consecutive flushes of one partition: every
//! series appears in most of them, so the merge interleaves them row by row.
//! It works in steps. Each input has a slice of rows decoded; the smallest
//! of the slices' last keys is the *cut*. Every decoded row up to the cut
//! can be written now (any row still undecoded sorts after its own slice's
//! last row, so after the cut), and at least one slice, the one the cut came
//! from, is used up and replaced by the next. Keys are compared as
//! [`arrow::row`] rows, byte strings that order as the columns do; slices are
//! merged as plain strings and dictionary-encoded again on the way out.
//!
//! Memory: the inputs' bytes, the output's bytes, each input's reader state
//! (its current decompressed pages and decoded dictionaries, so this part
//! grows with the inputs), and about [`ROWS_IN_FLIGHT`] decoded rows across
//! all inputs (64 per input past 4,096 inputs). `benches/compaction.rs`
//! measures the whole: about twice the inputs' bytes at the default target.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, RecordBatch, new_null_array},
    compute::{cast, interleave_record_batch},
    datatypes::{DataType, Field, Schema, SchemaRef},
    row::{RowConverter, Rows, SortField},
};
use bytes::Bytes;
use parquet::arrow::{
    ArrowWriter,
    arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder},
};

use super::{
    LakeError,
    writer::{Encoding, writer_properties},
};
use crate::points::{base_fields, series_order, string_type};

/// Decoded rows held across all inputs at once: each input decodes slices of
/// `ROWS_IN_FLIGHT / inputs` rows (within [`SLICE_ROWS`]). At tens of bytes a
/// row decoded and about as many again as sort keys, tens of MB.
pub const ROWS_IN_FLIGHT: usize = 1 << 18;

/// Bounds on one input's slice: large enough that a step writes many rows,
/// small enough that thousands of inputs stay within budget.
const SLICE_ROWS: std::ops::RangeInclusive<usize> = 64..=8192;

/// What a merge wrote.
#[derive(Debug)]
pub struct MergedFile {
    pub rows: usize,
    /// Every input's columns: the fixed ones, then each tag column of any
    /// input in key order (null in rows whose input lacked it).
    pub schema: SchemaRef,
    pub encoded: Bytes,
}

/// Merges `inputs`, each a Parquet file sorted in [`series_order`], into one
/// file sorted the same way, written with `encoding`. Rows with equal keys
/// are all kept, in no promised order.
pub fn merge_sorted(
    inputs: Vec<Bytes>,
    row_group_rows: usize,
    encoding: Encoding,
) -> Result<MergedFile, LakeError> {
    merge_in_slices(inputs, row_group_rows, encoding, ROWS_IN_FLIGHT)
}

fn merge_in_slices(
    inputs: Vec<Bytes>,
    row_group_rows: usize,
    encoding: Encoding,
    rows_in_flight: usize,
) -> Result<MergedFile, LakeError> {
    let builders = inputs
        .into_iter()
        .map(ParquetRecordBatchReaderBuilder::try_new)
        .collect::<Result<Vec<_>, _>>()?;
    if builders.is_empty() {
        return Err(LakeError::Arrow(
            arrow::error::ArrowError::InvalidArgumentError("nothing to merge".into()),
        ));
    }
    let schema = unified_schema(builders.iter().map(|b| b.schema().as_ref()));
    let working = plain_strings(&schema);
    let order = series_order(&schema);
    let converter = RowConverter::new(
        order
            .iter()
            .map(|&i| SortField::new(working.field(i).data_type().clone()))
            .collect(),
    )?;
    let slice_rows =
        (rows_in_flight / builders.len()).clamp(*SLICE_ROWS.start(), *SLICE_ROWS.end());
    let mut inputs = Vec::with_capacity(builders.len());
    for builder in builders {
        let reader = builder.with_batch_size(slice_rows).build()?;
        if let Some(input) = Input::open(reader, &working, &order, &converter)? {
            inputs.push(input);
        }
    }

    let props = writer_properties(&schema, row_group_rows, encoding)?;
    let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props))?;
    let mut rows = 0;
    while !inputs.is_empty() {
        let cut = inputs
            .iter()
            .map(Input::last_key)
            .min()
            .expect("inputs are not empty")
            .owned();
        // Every input's decoded rows up to the cut.
        let mut picked: Vec<(usize, usize)> = Vec::new();
        for (i, input) in inputs.iter_mut().enumerate() {
            let end = input.end_of_rows_up_to(cut.row());
            picked.extend((input.next..end).map(|row| (i, row)));
            input.next = end;
        }
        picked.sort_unstable_by(|&(a, ra), &(b, rb)| {
            inputs[a].keys.row(ra).cmp(&inputs[b].keys.row(rb))
        });
        let slices: Vec<&RecordBatch> = inputs.iter().map(|input| &input.slice).collect();
        writer.write(&align(
            &interleave_record_batch(&slices, &picked)?,
            &schema,
        )?)?;
        rows += picked.len();

        let mut kept = Vec::with_capacity(inputs.len());
        for input in inputs {
            if input.next < input.slice.num_rows() {
                kept.push(input);
            } else if let Some(next) = input.advance(&working, &order, &converter)? {
                kept.push(next);
            }
        }
        inputs = kept;
    }
    let encoded = Bytes::from(writer.into_inner()?);
    Ok(MergedFile {
        rows,
        schema,
        encoded,
    })
}

/// The fixed columns, then every input's tag columns in key order.
fn unified_schema<'a>(schemas: impl Iterator<Item = &'a Schema>) -> SchemaRef {
    let tags: std::collections::BTreeSet<String> = schemas
        .flat_map(|s| s.fields().iter().skip(3).map(|f| f.name().clone()))
        .collect();
    let mut fields = base_fields();
    fields.extend(tags.into_iter().map(|t| Field::new(t, string_type(), true)));
    Arc::new(Schema::new(fields))
}

/// `schema` with plain strings for dictionaries. Slices are merged as plain
/// strings: each input's slices share the dictionary of its row group, with
/// every value of the file, and both the row format and interleaving would
/// otherwise work through every value of every input's dictionary at every
/// step, not just the rows they take. The merged rows are dictionary-encoded
/// again (once each) before they are written.
fn plain_strings(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => {
                f.as_ref().clone().with_data_type(value.as_ref().clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One input: its decoded slice, the slice's sort keys, and the next row of
/// the slice to write.
struct Input {
    reader: ParquetRecordBatchReader,
    slice: RecordBatch,
    keys: Rows,
    next: usize,
}

impl Input {
    /// The input positioned at its first rows; `None` when it has none.
    fn open(
        mut reader: ParquetRecordBatchReader,
        schema: &SchemaRef,
        order: &[usize],
        converter: &RowConverter,
    ) -> Result<Option<Self>, LakeError> {
        loop {
            let Some(batch) = reader.next().transpose()? else {
                return Ok(None);
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let slice = align(&batch, schema)?;
            let columns: Vec<ArrayRef> =
                order.iter().map(|&i| Arc::clone(slice.column(i))).collect();
            let keys = converter.convert_columns(&columns)?;
            return Ok(Some(Self {
                reader,
                slice,
                keys,
                next: 0,
            }));
        }
    }

    /// The same input at its next slice; `None` when it is used up.
    fn advance(
        self,
        schema: &SchemaRef,
        order: &[usize],
        converter: &RowConverter,
    ) -> Result<Option<Self>, LakeError> {
        Self::open(self.reader, schema, order, converter)
    }

    fn last_key(&self) -> arrow::row::Row<'_> {
        self.keys.row(self.keys.num_rows() - 1)
    }

    /// Where the slice's rows past `cut` begin (its rows are sorted).
    fn end_of_rows_up_to(&self, cut: arrow::row::Row<'_>) -> usize {
        let (mut low, mut high) = (self.next, self.keys.num_rows());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.keys.row(mid) <= cut {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }
}

/// `batch` with `schema`'s columns: null where it lacks a tag, cast where the
/// types differ (dictionaries and plain strings, see [`plain_strings`]; a
/// writer other than klaxon may store either).
fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, LakeError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => Ok(Arc::clone(c)),
            Some(c) => cast(c, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Float64Array, RecordBatchReader};

    use super::*;
    use crate::{
        lake::writer::encode_parquet,
        points::{PointBatchBuilder, sort_by_series},
    };

    fn decode(bytes: Bytes) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let schema = reader.schema();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        arrow::compute::concat_batches(&schema, &batches).unwrap()
    }

    /// `files` flushes of `series` series each, tagged differently from
    /// flush to flush, each sorted and encoded as ingest writes them.
    fn flushes(files: usize, series: usize, points: usize) -> Vec<Bytes> {
        (0..files)
            .map(|f| {
                let mut b = PointBatchBuilder::default();
                for s in 0..series {
                    let host = format!("h{:03}", (s * 7919) % series);
                    let mut tags = vec![("host", host.as_str())];
                    if f % 3 == 1 {
                        tags.push(("dc", "east"));
                    }
                    if s % 5 == 0 {
                        tags.push(("zone", "z"));
                    }
                    for p in 0..points {
                        let time = (p * files + f) as i64 * 1000;
                        b.push(
                            if s % 2 == 0 { "cpu" } else { "mem" },
                            time,
                            (f * 1000 + p) as f64,
                            &tags,
                        );
                    }
                }
                encode_parquet(
                    &sort_by_series(&b.finish().unwrap()).unwrap(),
                    1000,
                    Encoding::Fast,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_merge_equals_sorting_everything_at_once() {
        // 40 inputs of 900 rows in slices of 64: hundreds of steps, each
        // cut inside other inputs' slices.
        let inputs = flushes(40, 300, 3);
        let everything: Vec<RecordBatch> = inputs.iter().cloned().map(decode).collect();
        let schema = unified_schema(everything.iter().map(|b| b.schema_ref().as_ref()));
        let aligned: Vec<RecordBatch> = everything
            .iter()
            .map(|b| align(b, &schema).unwrap())
            .collect();
        let expected =
            sort_by_series(&arrow::compute::concat_batches(&schema, &aligned).unwrap()).unwrap();

        let merged = merge_in_slices(inputs, 5000, Encoding::Compact, 1000).unwrap();
        assert_eq!(merged.rows, 40 * 300 * 3);
        let names: Vec<_> = merged
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["time", "name", "value", "dc", "host", "zone"]);
        let got = decode(merged.encoded);
        assert_eq!(got.schema(), schema);
        // Equal keys do not occur, so the sorted order is unique: the merge
        // must be exactly it, column by column.
        for (i, field) in schema.fields().iter().enumerate() {
            assert_eq!(got.column(i), expected.column(i), "column {}", field.name());
        }
        let values = got
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(values.len(), 36_000);
        assert!(got.column(3).null_count() > 0);
    }

    #[test]
    fn equal_keys_are_all_kept_and_empty_inputs_are_skipped() {
        let file = |value: f64| {
            let mut b = PointBatchBuilder::default();
            if value >= 0.0 {
                b.push("cpu", 1000, value, &[("host", "a")]);
            }
            encode_parquet(&b.finish().unwrap(), 10, Encoding::Fast).unwrap()
        };
        let merged =
            merge_sorted(vec![file(1.0), file(-1.0), file(2.0)], 10, Encoding::Fast).unwrap();
        let got = decode(merged.encoded);
        let values = got
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        let mut values = values.values().to_vec();
        values.sort_by(f64::total_cmp);
        assert_eq!(values, [1.0, 2.0]);
    }
}
