//! What the lake already holds of a changelog partition: per incident, the
//! highest entry number written. Read from the partition's own files (their
//! names carry the topic and partition) once an interrupted flush has been
//! discarded, so it matches the committed offset exactly.

use std::collections::HashMap;

use arrow::{
    array::{Array, AsArray},
    compute::cast,
    datatypes::{DataType, Int64Type},
};
use parquet::arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder};

use super::rows::{INCIDENT_ID, SEQ};
use crate::lake::{Lake, LakeError, layout};

/// Highest entry number in the lake per incident id, for `partition` of
/// `topic`.
pub(super) async fn read_written(
    lake: &Lake,
    topic: &str,
    partition: i32,
) -> Result<HashMap<String, u64>, LakeError> {
    let prefix = format!("{topic}-{partition:05}-");
    let mut written: HashMap<String, u64> = HashMap::new();
    for (path, _) in lake.list(layout::INCIDENTS_DIR).await? {
        let name = path.rsplit('/').next().unwrap_or_default();
        if !name.starts_with(&prefix) || !name.ends_with(".parquet") {
            continue;
        }
        let Some(bytes) = lake.get(&path).await? else {
            continue;
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        let schema = builder.parquet_schema();
        let wanted: Vec<usize> = schema
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name() == INCIDENT_ID || c.name() == SEQ)
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::leaves(schema, wanted);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let (Some(ids), Some(seqs)) =
                (batch.column_by_name(INCIDENT_ID), batch.column_by_name(SEQ))
            else {
                continue;
            };
            // Cast, not assumed: a file of another writer may type them
            // differently.
            let ids = cast(ids, &DataType::Utf8)?;
            let ids = ids.as_string::<i32>();
            let seqs = cast(seqs, &DataType::Int64)?;
            let seqs = seqs.as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                if ids.is_null(row) || seqs.is_null(row) {
                    continue;
                }
                let id = ids.value(row);
                let seq = u64::try_from(seqs.value(row)).unwrap_or(0);
                let highest = written.entry(id.to_owned()).or_insert(seq);
                *highest = (*highest).max(seq);
            }
        }
    }
    Ok(written)
}
