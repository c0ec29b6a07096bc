//! The chunks written here against parquet-rs's own for the same rows and
//! properties: the same rows read back, the same statistics, the same
//! column index, pages of the same rows, and no more bytes.

use arrow::array::{Array, RecordBatch};
use bytes::Bytes;
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::{Compression, ZstdLevel},
    file::{
        metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader},
        page_index::column_index::ColumnIndexMetaData,
        properties::{EnabledStatistics, WriterProperties},
    },
};

use crate::{
    lake::writer::encode_with,
    points::{PointBatchBuilder, sort_by_series},
};

/// Sorted points whose tag columns have what a chunk must get right: nulls
/// here and there (`host`), a tag missing from whole row groups (`zone`),
/// values past the 64-byte statistics cut, some of whose last chars cannot
/// be incremented (`label`), and one value in a chunk (`name` in a group).
fn points() -> RecordBatch {
    let mut builder = PointBatchBuilder::default();
    let labels = [
        "z".repeat(70),
        "é".repeat(40),
        "\u{10FFFF}".repeat(20),
        format!("{}\u{10FFFF}\u{10FFFF}", "a".repeat(63)),
        "short".to_owned(),
    ];
    for i in 0..10_000u32 {
        let host = format!("host-{}", i % 97);
        let label = &labels[(i % 5) as usize];
        let name = if i < 6_000 { "cpu" } else { "mem" };
        let mut tags = vec![("label", label.as_str())];
        if i % 7 != 0 {
            tags.push(("host", host.as_str()));
        }
        if i % 3 == 0 && i >= 9_000 {
            tags.push(("zone", "eu-1"));
        }
        builder.push(name, i64::from(i / 13), f64::from(i), &tags);
    }
    sort_by_series(&builder.finish().unwrap()).unwrap()
}

fn properties(compression: Compression) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(4_096))
        // parquet-rs checks its page limit every write batch, so with a
        // limit of whole batches both writers cut pages at the same rows.
        .set_write_batch_size(1_024)
        .set_data_page_row_count_limit(2_048)
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

fn parquet_rs(batch: &RecordBatch, props: WriterProperties) -> Bytes {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    Bytes::from(out)
}

fn read(file: &Bytes) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn metadata(file: &Bytes) -> ParquetMetaData {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .parse_and_finish(file)
        .unwrap()
}

#[test]
fn chunks_hold_what_parquet_rs_writes() {
    let batch = points();
    for compression in [
        Compression::LZ4_RAW,
        Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
        Compression::UNCOMPRESSED,
    ] {
        let ours = encode_with(&batch, properties(compression)).unwrap();
        let theirs = parquet_rs(&batch, properties(compression));
        assert_eq!(read(&ours), batch, "{compression}: the rows read back");
        assert_eq!(read(&ours), read(&theirs), "{compression}");

        let (ours_meta, theirs_meta) = (metadata(&ours), metadata(&theirs));
        assert_eq!(ours_meta.num_row_groups(), 3);
        assert_eq!(ours_meta.num_row_groups(), theirs_meta.num_row_groups());
        let schema = batch.schema();
        for (g, (ours_group, theirs_group)) in ours_meta
            .row_groups()
            .iter()
            .zip(theirs_meta.row_groups())
            .enumerate()
        {
            for (c, (ours_column, theirs_column)) in ours_group
                .columns()
                .iter()
                .zip(theirs_group.columns())
                .enumerate()
            {
                let at = format!("{compression}, group {g}, {}", schema.field(c).name());
                assert_eq!(ours_column.num_values(), theirs_column.num_values(), "{at}");
                assert_eq!(
                    ours_column.compression(),
                    theirs_column.compression(),
                    "{at}"
                );
                assert_eq!(ours_column.statistics(), theirs_column.statistics(), "{at}");
                assert_eq!(
                    ours_column.encodings().collect::<Vec<_>>(),
                    theirs_column.encodings().collect::<Vec<_>>(),
                    "{at}"
                );
                let pages = |meta: &ParquetMetaData| {
                    meta.offset_index().unwrap()[g][c]
                        .page_locations()
                        .iter()
                        .map(|p| p.first_row_index)
                        .collect::<Vec<_>>()
                };
                assert_eq!(pages(&ours_meta), pages(&theirs_meta), "{at}");
                let index = |meta: &ParquetMetaData| match &meta.column_index().unwrap()[g][c] {
                    whole @ ColumnIndexMetaData::BYTE_ARRAY(index) => Some((
                        (0..index.num_pages() as usize)
                            .map(|p| {
                                (
                                    index.min_value(p).map(|v| v.to_vec()),
                                    index.max_value(p).map(|v| v.to_vec()),
                                    index.null_count(p),
                                    index.is_null_page(p),
                                )
                            })
                            .collect::<Vec<_>>(),
                        whole.get_boundary_order(),
                    )),
                    _ => None,
                };
                assert_eq!(index(&ours_meta), index(&theirs_meta), "{at}");
            }
        }
        // Sorted dictionaries against first-seen ones: the bytes may move a
        // little either way, never by more than 2%.
        assert!(
            ours.len() * 50 <= theirs.len() * 51,
            "{compression}: {} bytes against parquet-rs's {}",
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn a_row_group_without_a_tag_is_a_chunk_of_nulls() {
    let batch = points();
    let file = encode_with(&batch, properties(Compression::LZ4_RAW)).unwrap();
    let meta = metadata(&file);
    let zone = batch.schema().index_of("zone").unwrap();
    let first = meta.row_group(0).column(zone).statistics().unwrap();
    assert_eq!(first.null_count_opt(), Some(4_096));
    assert_eq!(first.min_bytes_opt(), None);
    let ColumnIndexMetaData::BYTE_ARRAY(index) = &meta.column_index().unwrap()[0][zone] else {
        panic!("a string column's index is of byte arrays");
    };
    assert!((0..index.num_pages() as usize).all(|p| index.is_null_page(p)));
    let column = read(&file).column(zone).clone();
    assert_eq!(column.slice(0, 4_096).null_count(), 4_096);
    assert!(
        column.null_count() < column.len(),
        "later groups hold zones"
    );
}
