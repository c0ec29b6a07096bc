//! The chunks written here against parquet-rs's own for the same rows and
//! properties: the same rows read back (whole, and through the page index),
//! the same statistics, level histograms and column index, pages of the
//! same rows, and no more bytes.

use std::sync::Arc;

use arrow::{
    array::{Array, DictionaryArray, Int32Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Int32Type, Schema},
};
use bytes::Bytes;
use parquet::{
    arrow::{
        ArrowWriter,
        arrow_reader::{
            ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
        },
    },
    basic::{Compression, ZstdLevel},
    column::page::Page,
    file::{
        metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader},
        page_index::column_index::ColumnIndexMetaData,
        properties::{EnabledStatistics, WriterProperties},
        reader::{FileReader, SerializedFileReader},
    },
};

use crate::{
    lake::writer::encode_with,
    points::{PointBatchBuilder, sort_by_series},
};

/// Points whose tag columns have what a chunk must get right: nulls here
/// and there (`host`), a tag missing from whole row groups (`zone`),
/// values past the 64-byte statistics cut, some of whose last chars cannot
/// be incremented (`label`), thousands of values in a chunk (`request`,
/// indices of 12 bits, mostly bit-packed), and one value in a chunk
/// (`name` in most groups). Sorted as the lake sorts them (dictionaries in
/// value order), or as decoded (dictionaries in first-seen order).
fn points() -> RecordBatch {
    sort_by_series(&unsorted_points()).unwrap()
}

fn unsorted_points() -> RecordBatch {
    let mut builder = PointBatchBuilder::default();
    let labels = [
        "z".repeat(70),
        "é".repeat(40),
        "\u{10FFFF}".repeat(20),
        format!("{}\u{10FFFF}\u{10FFFF}", "a".repeat(63)),
        "short".to_owned(),
    ];
    for i in 0..20_000u32 {
        let host = format!("host-{}", i % 97);
        let request = format!("r{}", (i * 7_919) % 3_000);
        let name = if i < 12_000 { "cpu" } else { "mem" };
        let mut tags = vec![
            ("label", labels[(i % 5) as usize].as_str()),
            ("request", request.as_str()),
        ];
        if i % 7 != 0 {
            tags.push(("host", host.as_str()));
        }
        if i % 3 == 0 && i >= 18_000 {
            tags.push(("zone", "eu-1"));
        }
        builder.push(name, i64::from(i / 13), f64::from(i), &tags);
    }
    builder.finish().unwrap()
}

fn properties(compression: Compression, group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(group_rows))
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

/// Each page's first row, minimum, maximum, null count, null-page flag and
/// definition level histogram, and the boundary order.
type PageIndex = (
    Vec<(
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<i64>,
        bool,
        Option<Vec<i64>>,
    )>,
    Option<parquet::basic::BoundaryOrder>,
);

fn page_index(meta: &ParquetMetaData, group: usize, column: usize) -> PageIndex {
    let locations = meta.offset_index().unwrap()[group][column].page_locations();
    let index = &meta.column_index().unwrap()[group][column];
    let ColumnIndexMetaData::BYTE_ARRAY(pages) = index else {
        panic!("a string column's index is of byte arrays");
    };
    let pages = locations
        .iter()
        .enumerate()
        .map(|(p, location)| {
            (
                location.first_row_index,
                pages.min_value(p).map(<[u8]>::to_vec),
                pages.max_value(p).map(<[u8]>::to_vec),
                pages.null_count(p),
                pages.is_null_page(p),
                pages.definition_level_histogram(p).map(<[i64]>::to_vec),
            )
        })
        .collect();
    (pages, index.get_boundary_order())
}

fn assert_as_parquet_rs(batch: &RecordBatch, props: WriterProperties, at: &str) -> (Bytes, Bytes) {
    let ours = encode_with(batch, props.clone()).unwrap();
    let theirs = parquet_rs(batch, props);
    assert_eq!(&read(&ours), batch, "{at}: the rows read back");
    let (ours_meta, theirs_meta) = (metadata(&ours), metadata(&theirs));
    assert_eq!(
        ours_meta.num_row_groups(),
        theirs_meta.num_row_groups(),
        "{at}"
    );
    let schema = batch.schema();
    for g in 0..ours_meta.num_row_groups() {
        let (ours_group, theirs_group) = (ours_meta.row_group(g), theirs_meta.row_group(g));
        assert_eq!(
            ours_group.num_rows(),
            theirs_group.num_rows(),
            "{at}, group {g}"
        );
        for (c, field) in schema.fields().iter().enumerate() {
            let at = format!("{at}, group {g}, {}", field.name());
            let (ours_column, theirs_column) = (ours_group.column(c), theirs_group.column(c));
            assert_eq!(ours_column.num_values(), theirs_column.num_values(), "{at}");
            assert_eq!(
                ours_column.compression(),
                theirs_column.compression(),
                "{at}"
            );
            assert_eq!(ours_column.statistics(), theirs_column.statistics(), "{at}");
            assert_eq!(
                ours_column.definition_level_histogram(),
                theirs_column.definition_level_histogram(),
                "{at}"
            );
            assert_eq!(
                ours_column.unencoded_byte_array_data_bytes(),
                theirs_column.unencoded_byte_array_data_bytes(),
                "{at}"
            );
            assert_eq!(
                ours_column.encodings().collect::<Vec<_>>(),
                theirs_column.encodings().collect::<Vec<_>>(),
                "{at}"
            );
            if matches!(field.data_type(), DataType::Dictionary(..)) {
                assert_eq!(
                    page_index(&ours_meta, g, c),
                    page_index(&theirs_meta, g, c),
                    "{at}"
                );
            }
        }
    }
    (ours, theirs)
}

#[test]
fn chunks_hold_what_parquet_rs_writes() {
    let batch = points();
    for compression in [
        Compression::LZ4_RAW,
        Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
        Compression::UNCOMPRESSED,
    ] {
        // Groups of whole bytes of rows, and groups starting mid-byte of
        // the null bitmaps, with a short last page.
        for group_rows in [8_192, 4_099] {
            let at = format!("{compression}, groups of {group_rows}");
            let (ours, theirs) =
                assert_as_parquet_rs(&batch, properties(compression, group_rows), &at);
            // Sorted dictionaries against first-seen ones: the bytes may
            // move a little either way, never by more than 2%.
            assert!(
                ours.len() * 50 <= theirs.len() * 51,
                "{at}: {} bytes against parquet-rs's {}",
                ours.len(),
                theirs.len()
            );
        }
    }
}

#[test]
fn unsorted_rows_and_a_dictionary_past_its_limit_are_written_as_parquet_rs_writes_them() {
    let batch = points();
    // 7,919 is prime to 20,000: a permutation of the rows.
    let shuffled = arrow::compute::take_record_batch(
        &batch,
        &arrow::array::UInt32Array::from_iter_values(
            (0..batch.num_rows() as u32).map(|i| (i * 7_919) % batch.num_rows() as u32),
        ),
    )
    .unwrap();
    assert_as_parquet_rs(
        &shuffled,
        properties(Compression::LZ4_RAW, 4_099),
        "shuffled",
    );
    assert_as_parquet_rs(
        &unsorted_points(),
        properties(Compression::LZ4_RAW, 4_099),
        "dictionaries in first-seen order",
    );
    // `request`'s 3,000 values need about 20 kB: past a 4 kB limit the
    // column is parquet-rs's, which falls back to plain pages.
    let small = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(8_192))
        .set_write_batch_size(1_024)
        .set_data_page_row_count_limit(2_048)
        .set_dictionary_page_size_limit(4_096)
        .build();
    let (ours, _) = assert_as_parquet_rs(&batch, small, "small dictionary pages");
    let meta = metadata(&ours);
    let request = batch.schema().index_of("request").unwrap();
    assert!(
        meta.row_group(0)
            .column(request)
            .encodings()
            .any(|e| e == parquet::basic::Encoding::PLAIN),
        "plain pages after the fallback"
    );
}

#[test]
fn the_page_index_finds_the_rows_a_reader_selects() {
    let batch = points();
    let file = encode_with(&batch, properties(Compression::LZ4_RAW, 4_099)).unwrap();
    let selection = RowSelection::from(vec![
        RowSelector::skip(5_000),
        RowSelector::select(700),
        RowSelector::skip(9_000),
        RowSelector::select(10),
    ]);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
        file,
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
    )
    .unwrap()
    .with_row_selection(selection)
    .build()
    .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let read = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let wanted = arrow::compute::concat_batches(
        &batch.schema(),
        &[batch.slice(5_000, 700), batch.slice(14_700, 10)],
    )
    .unwrap();
    assert_eq!(read, wanted);
}

#[test]
fn a_row_group_without_a_tag_is_a_chunk_of_nulls() {
    let batch = points();
    let file = encode_with(&batch, properties(Compression::LZ4_RAW, 8_192)).unwrap();
    let meta = metadata(&file);
    let zone = batch.schema().index_of("zone").unwrap();
    let first = meta.row_group(0).column(zone).statistics().unwrap();
    assert_eq!(first.null_count_opt(), Some(8_192));
    assert_eq!(first.min_bytes_opt(), None);
    let (pages, _) = page_index(&meta, 0, zone);
    assert!(pages.iter().all(|page| page.4), "every page a null page");
    let column = read(&file).column(zone).clone();
    assert_eq!(column.slice(0, 8_192).null_count(), 8_192);
    assert!(
        column.null_count() < column.len(),
        "later groups hold zones"
    );
}

#[test]
fn equal_values_of_an_arrow_dictionary_are_one_parquet_value() {
    // Arrow allows a dictionary to repeat a value (concatenated batches
    // do): out of order (the writer sorts), and in order with equal
    // neighbours (it does not).
    for values in [vec!["b", "a", "b", "c", "a"], vec!["a", "a", "b", "b", "c"]] {
        let keys = Int32Array::from(vec![
            Some(0),
            Some(1),
            None,
            Some(2),
            Some(4),
            Some(3),
            Some(0),
        ]);
        let column = DictionaryArray::<Int32Type>::try_new(
            keys,
            Arc::new(StringArray::from(values.clone())),
        )
        .unwrap();
        let schema = Schema::new(vec![Field::new("tag", column.data_type().clone(), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(column)]).unwrap();
        let at = format!("{values:?}");
        let (ours, _) = assert_as_parquet_rs(&batch, properties(Compression::LZ4_RAW, 1_024), &at);
        let reader = SerializedFileReader::new(ours).unwrap();
        let mut pages = reader
            .get_row_group(0)
            .unwrap()
            .get_column_page_reader(0)
            .unwrap();
        match pages.get_next_page().unwrap() {
            Some(Page::DictionaryPage { num_values, .. }) => assert_eq!(num_values, 3, "{at}"),
            other => panic!("a dictionary page first, not {other:?}"),
        }
    }
}

#[test]
fn lake_files_keep_parquet_rs_statistics() {
    // The lake's own properties: sort order in the metadata, `time` delta
    // encoded, `value` plain, default page limits.
    let batch = points();
    let props = crate::lake::writer::writer_properties(
        &batch.schema(),
        8_192,
        crate::lake::writer::Encoding::Fast,
    )
    .unwrap();
    let ours = encode_with(&batch, props.clone()).unwrap();
    let theirs = parquet_rs(&batch, props);
    assert_eq!(read(&ours), batch);
    let (ours, theirs) = (metadata(&ours), metadata(&theirs));
    assert_eq!(
        ours.row_group(0).sorting_columns(),
        theirs.row_group(0).sorting_columns()
    );
    for g in 0..ours.num_row_groups() {
        for c in 0..batch.num_columns() {
            assert_eq!(
                ours.row_group(g).column(c).statistics(),
                theirs.row_group(g).column(c).statistics()
            );
        }
    }
}
