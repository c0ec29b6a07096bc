//! Turns a partition's buffered batch into durable Parquet files.

use std::sync::Arc;

use arrow::{array::RecordBatch, datatypes::Schema};
use bytes::Bytes;
use parquet::{
    arrow::{ArrowWriter, arrow_writer::compute_leaves},
    basic::{Compression, Encoding as ParquetEncoding, ZstdLevel},
    file::{
        metadata::SortingColumn,
        properties::{EnabledStatistics, WriterProperties},
    },
    schema::types::ColumnPath,
};

use super::{Lake, LakeError, columns, dictionary_chunk, layout};
use crate::points::{TIME, VALUE, base_fields, series_order, sort_by_series, split_by_hour};

/// What one flush covers: a contiguous offset range of one topic partition,
/// written into one table.
#[derive(Debug, Clone)]
pub struct FlushRange {
    /// The table's directory: [`layout::TABLE_DIR`] for points.
    pub table: &'static str,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What a flush wrote.
#[derive(Debug, Clone, Default)]
pub struct FlushOutcome {
    pub files: Vec<String>,
    pub rows: usize,
    pub bytes: usize,
}

/// Sorts a batch of points by series and time, splits it by hour and writes
/// one file per hour, after recording them in the partition's in-flight marker.
pub async fn write_flush(
    lake: &Lake,
    range: &FlushRange,
    batch: RecordBatch,
    row_group_rows: usize,
) -> Result<FlushOutcome, LakeError> {
    // Before any file holding them can be listed.
    columns::record(lake, range.table, &base_fields(), &batch.schema()).await?;
    let parts = tokio::task::spawn_blocking(move || -> Result<_, LakeError> {
        let sorted = sort_by_series(&batch)?;
        let mut encoded = Vec::new();
        for (hour, part) in split_by_hour(&sorted)? {
            let rows = part.num_rows();
            encoded.push((
                hour,
                rows,
                encode_parquet(&part, row_group_rows, Encoding::Fast)?,
            ));
        }
        Ok(encoded)
    })
    .await
    .expect("parquet encoding task panicked")?;
    write_hours(lake, range, parts).await
}

/// Writes a flush's files, one per hour (`(hour, rows, Parquet bytes)`),
/// after recording them in the partition's in-flight marker. Whoever calls
/// it has recorded the files' open-ended columns ([`columns::record`]).
pub async fn write_hours(
    lake: &Lake,
    range: &FlushRange,
    parts: Vec<(i64, usize, Bytes)>,
) -> Result<FlushOutcome, LakeError> {
    let files: Vec<String> = parts
        .iter()
        .map(|(hour, _, _)| {
            layout::table_file(
                range.table,
                &range.topic,
                range.partition,
                range.first_offset,
                range.last_offset,
                *hour,
            )
        })
        .collect();
    let marker = layout::InflightMarker {
        topic: range.topic.clone(),
        partition: range.partition,
        first_offset: range.first_offset,
        last_offset: range.last_offset,
        files: files.clone(),
    };
    lake.put_durable(
        &layout::InflightMarker::path(range.table, &range.topic, range.partition),
        Bytes::from(serde_json::to_vec(&marker).expect("marker serialises")),
    )
    .await?;
    crate::crash::point("flush.after_marker");

    let mut outcome = FlushOutcome::default();
    for (path, (_, rows, bytes)) in files.iter().zip(parts) {
        outcome.rows += rows;
        outcome.bytes += bytes.len();
        lake.put_durable(path, bytes).await?;
    }
    outcome.files = files;
    Ok(outcome)
}

/// Deletes the files of a flush that never committed, if `first_seen_offset`
/// shows the partition is being replayed from inside it, and what a write
/// killed before its rename left of them. Returns the files the marker named
/// (written or not).
pub async fn discard_uncommitted(
    lake: &Lake,
    table: &str,
    topic: &str,
    partition: i32,
    first_seen_offset: i64,
) -> Result<Vec<String>, LakeError> {
    let path = layout::InflightMarker::path(table, topic, partition);
    // A marker killed before its rename left only a temporary file.
    lake.delete_temporaries(&path).await?;
    let Some(bytes) = lake.get(&path).await? else {
        return Ok(Vec::new());
    };
    let marker: layout::InflightMarker =
        serde_json::from_slice(&bytes).map_err(|source| LakeError::Marker {
            path: path.clone(),
            source,
        })?;
    if first_seen_offset > marker.last_offset {
        return Ok(Vec::new());
    }
    for file in &marker.files {
        lake.delete(file).await?;
        let temporaries = lake.delete_temporaries(file).await?;
        if temporaries > 0 {
            tracing::warn!(
                file,
                temporaries,
                "removed temporary files of a write killed before its rename"
            );
        }
    }
    lake.delete(&path).await?;
    Ok(marker.files)
}

/// How hard to work on a file's bytes. Both write `time` delta-encoded and
/// `value` plain (no dictionaries: neither repeats much within a series,
/// and interning every row's value in a dictionary was a fifth of
/// encoding), and `name` and tags dictionary-encoded; they differ in
/// compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Ingest's small files: LZ4. Cheap to write, since a flush is on the
    /// path to the offset commit, and cheap to read while they last: a zstd
    /// column chunk costs its reader a new zstd context, about a tenth of a
    /// scan over 10,000 small files, and compaction rewrites them within
    /// the hour (README: "Queries as the lake grows"). On a flush of 600k
    /// points of `klaxon bench`'s shape: 90 ns and 3.62 bytes per point,
    /// against 118 ns and 4.00 with dictionaries for `time` and `value`
    /// (parquet-rs writing every column; 41-43 ns with the dictionary
    /// columns written by `dictionary_chunk`, on a slower day).
    Fast,
    /// Compaction's large files, written once and read for months: zstd
    /// level 9. On 2M points of `klaxon bench`'s shape in one sorted file:
    /// 0.97 bytes per point, against 1.34 for LZ4 with dictionaries
    /// everywhere and 1.52 with byte-stream-split values (measured while
    /// choosing; see README).
    Compact,
}

/// Encodes one batch of points as a Parquet file with statistics for
/// pruning and the sort order recorded in its metadata.
pub fn encode_parquet(
    batch: &RecordBatch,
    row_group_rows: usize,
    encoding: Encoding,
) -> Result<Bytes, LakeError> {
    encode_sorted_by(
        batch,
        &series_order(&batch.schema()),
        row_group_rows,
        encoding,
    )
}

/// [`encode_parquet`] for a batch of any table, sorted by the columns at
/// `sorting` (ascending, nulls first).
pub fn encode_sorted_by(
    batch: &RecordBatch,
    sorting: &[usize],
    row_group_rows: usize,
    encoding: Encoding,
) -> Result<Bytes, LakeError> {
    let props = properties_sorted_by(sorting, row_group_rows, encoding)?;
    encode_with(batch, props)
}

/// Encodes `batch` as one Parquet file written with `props`.
pub(super) fn encode_with(
    batch: &RecordBatch,
    props: WriterProperties,
) -> Result<Bytes, LakeError> {
    let schema = batch.schema();
    let group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
    // Row groups cut by bytes or by content are parquet-rs's to cut.
    let by_rows =
        props.max_row_group_bytes().is_none() && props.content_defined_chunking().is_none();
    let mut writer = ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(props))?;
    if !by_rows {
        writer.write(batch)?;
        writer.close()?;
        return Ok(Bytes::from(out));
    }
    // parquet-rs's writer for the file, its schema and footer; the row
    // groups column by column, dictionary columns by `dictionary_chunk`.
    let (mut file, column_writers) = writer.into_serialized_writer()?;
    let descriptors = file.schema_descr().columns().to_vec();
    let props = Arc::clone(file.properties());
    let flat = descriptors.len() == schema.fields().len();
    let rows = batch.num_rows();
    for (index, start) in (0..rows).step_by(group_rows).enumerate() {
        let part = batch.slice(start, group_rows.min(rows - start));
        let writers = column_writers.create_column_writers(index)?;
        let mut group = file.next_row_group()?;
        if flat {
            let columns = schema.fields().iter().zip(part.columns()).zip(&descriptors);
            for (((field, column), descr), mut writer) in columns.zip(writers) {
                let chunk = match dictionary_chunk::writable(column, descr, &props) {
                    Some(dictionary) => {
                        dictionary_chunk::write(dictionary, Arc::clone(descr), &props)?
                    }
                    None => None,
                };
                if let Some((bytes, close)) = chunk {
                    group.append_column(&bytes, close)?;
                } else {
                    for leaf in compute_leaves(field, column)? {
                        writer.write(&leaf)?;
                    }
                    writer.close()?.append_to_row_group(&mut group)?;
                }
            }
        } else {
            // Nested columns have several leaves each: parquet-rs's way.
            let mut writers = writers.into_iter();
            for (field, column) in schema.fields().iter().zip(part.columns()) {
                for leaf in compute_leaves(field, column)? {
                    let mut writer = writers.next().expect("a writer per leaf");
                    writer.write(&leaf)?;
                    writer.close()?.append_to_row_group(&mut group)?;
                }
            }
        }
        group.close()?;
    }
    file.close()?;
    Ok(Bytes::from(out))
}

/// How every lake file is written: page statistics for pruning, the sort
/// order of [`series_order`] in the metadata, and `encoding`'s choices.
pub fn writer_properties(
    schema: &Schema,
    row_group_rows: usize,
    encoding: Encoding,
) -> Result<WriterProperties, LakeError> {
    properties_sorted_by(&series_order(schema), row_group_rows, encoding)
}

fn properties_sorted_by(
    sorting: &[usize],
    row_group_rows: usize,
    encoding: Encoding,
) -> Result<WriterProperties, LakeError> {
    let sorting = sorting
        .iter()
        .map(|&i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: true,
        })
        .collect();
    let compression = match encoding {
        Encoding::Fast => Compression::LZ4_RAW,
        Encoding::Compact => Compression::ZSTD(ZstdLevel::try_new(9)?),
    };
    let (time, value) = (ColumnPath::from(TIME), ColumnPath::from(VALUE));
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("klaxon {}", env!("CARGO_PKG_VERSION")))
        .set_column_dictionary_enabled(time.clone(), false)
        .set_column_encoding(time, ParquetEncoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(value, false);
    Ok(props.build())
}

#[cfg(test)]
mod tests {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::{config::LakeConfig, points::PointBatchBuilder};

    fn lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            url: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        (dir, lake)
    }

    #[tokio::test]
    async fn flush_splits_by_hour_and_replay_discards_orphans() {
        let (dir, lake) = lake();
        let mut b = PointBatchBuilder::default();
        b.push("x", 10, 1.0, &[("h", "a")]);
        b.push("x", 3_600_000 + 10, 2.0, &[("h", "a")]);
        let range = FlushRange {
            table: layout::TABLE_DIR,
            topic: "metrics".into(),
            partition: 0,
            first_offset: 5,
            last_offset: 6,
        };
        let out = write_flush(&lake, &range, b.finish().unwrap(), 1024)
            .await
            .unwrap();
        assert_eq!(out.rows, 2);
        assert_eq!(out.files.len(), 2);
        for f in &out.files {
            let file = std::fs::File::open(dir.path().join(f)).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
            assert_eq!(rows, 1, "{f}");
        }
        // The partition resumed after the flush: nothing to discard.
        assert!(
            discard_uncommitted(&lake, layout::TABLE_DIR, "metrics", 0, 7)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(dir.path().join(&out.files[0]).exists());
        // Replayed from inside the flush: its files go.
        let gone = discard_uncommitted(&lake, layout::TABLE_DIR, "metrics", 0, 5)
            .await
            .unwrap();
        assert_eq!(gone, out.files);
        assert!(!dir.path().join(&out.files[0]).exists());
        assert!(!dir.path().join(&out.files[1]).exists());
    }
}
