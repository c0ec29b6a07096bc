//! Tests of the series sort: every path orders rows as a sort of the
//! strings does.

use arrow::{
    array::{AsArray, TimestampMillisecondArray},
    compute::take_record_batch,
    datatypes::{DataType, Field},
    util::pretty::pretty_format_batches,
};

use super::*;
use crate::points::{NAME, PointBatchBuilder, TIME, VALUE, string_type, time_type};

#[test]
fn sorts_by_name_then_series_then_time() {
    let mut b = PointBatchBuilder::default();
    b.push("b", 5, 1.0, &[("h", "2")]);
    b.push("a", 9, 2.0, &[("h", "1")]);
    b.push("b", 1, 3.0, &[("h", "2")]);
    b.push("b", 7, 4.0, &[("h", "1")]);
    let sorted = sort_by_series(&b.finish().unwrap()).unwrap();
    let values: Vec<f64> = sorted
        .column_by_name("value")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>()
        .values()
        .to_vec();
    assert_eq!(
        values,
        [2.0, 4.0, 3.0, 1.0],
        "{}",
        pretty_format_batches(&[sorted]).unwrap()
    );
}

/// The same order from the strings themselves, as arrow compares them.
fn sorted_by_strings(batch: &RecordBatch) -> RecordBatch {
    let keys: Vec<SortColumn> = series_order(&batch.schema())
        .into_iter()
        .map(|i| SortColumn {
            values: Arc::clone(batch.column(i)),
            options: None,
        })
        .collect();
    take_record_batch(batch, &lexsort_to_indices(&keys, None).unwrap()).unwrap()
}

proptest::proptest! {
    /// Rows sorted by series come out as a sort of the strings puts
    /// them: points of 3 hosts or up to 300 (one or two radix passes),
    /// zones missing or not, times in arrival order or shuffled (each
    /// series then sorted by time).
    #[test]
    fn sorting_by_series_orders_as_the_strings_do(
        points in proptest::collection::vec(
            (0..3usize, 0..4000usize, proptest::option::of(0..3usize)),
            1..300,
        ),
        arrival_order: bool,
        many_hosts: bool,
    ) {
        let mut b = PointBatchBuilder::default();
        let n = points.len();
        for (row, (name, host, zone)) in points.iter().enumerate() {
            let host = format!("h{}", if many_hosts { *host } else { host % 3 });
            let zone = zone.map(|z| format!("z{z}"));
            let mut tags = vec![("host", host.as_str())];
            if let Some(zone) = &zone {
                tags.push(("zone", zone.as_str()));
            }
            // Unique times, so that the order is unique: rows in time
            // order, or a permutation (7919 is prime, n below it).
            let time = if arrival_order { row } else { row * 7919 % n };
            b.push(["b", "a", "c"][*name], time as i64, row as f64, &tags);
        }
        let batch = b.finish().unwrap();
        proptest::prop_assert_eq!(sort_by_series(&batch).unwrap(), sorted_by_strings(&batch));
        let keys: Vec<ArrayRef> = series_order(&batch.schema())
            .into_iter()
            .map(|i| value_ranks(batch.column(i)).unwrap().ranks)
            .collect();
        proptest::prop_assert!(rows_by_series(&keys).is_some(), "sorted by radix");
    }
}

proptest::proptest! {
    /// On rank columns as `value_ranks` gives them (nulls included),
    /// the radix sort by series gives exactly the order of the whole
    /// keys, times tied or out of order within a series, over codes
    /// of one to three passes; past 32 bits it declines.
    #[test]
    fn rows_by_series_orders_as_whole_keys_do(
        rows in proptest::collection::vec(
            (0..8u32, proptest::option::of(0..4096u32), 0..16u32, 0..5i64),
            1..200,
        ),
        widest in proptest::sample::select(vec![7u32, 4095, 1 << 20, u32::MAX - 1]),
        few_series: bool,
    ) {
        // Few series: long runs of tied times, which only the row's
        // tiebreak keeps in order once a run is longer than a small sort.
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(a, b, c, t)| if few_series { (0, b.map(|b| b % 2), 0, t) } else { (a, b, c, t) })
            .collect();
        // The widest column's largest rank sets how many bits the codes
        // use: 4 + 13 + 5 (two passes), 4 + 21 + 5 (three), or past 32.
        let mut wide: Vec<Option<u32>> = rows.iter().map(|r| r.1).collect();
        wide[0] = Some(widest);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(UInt32Array::from(wide)),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.3))),
        ];
        match rows_by_series(&columns) {
            Some(by_series) => {
                proptest::prop_assert!(widest < u32::MAX - 1, "33 bits or more decline");
                proptest::prop_assert_eq!(by_series, sort_indices(columns).unwrap());
            }
            None => proptest::prop_assert_eq!(widest, u32::MAX - 1),
        }
    }
}

#[test]
fn sorting_by_value_ranks_orders_as_the_strings_do() {
    // Values first seen out of order, missing tags (nulls first), and
    // times unique so that the order is unique.
    let mut b = PointBatchBuilder::default();
    for i in 0..500u64 {
        let host = format!("h{}", (i * 7919) % 37);
        let zone = format!("z{}", i % 3);
        let mut tags = vec![("zone", zone.as_str())];
        if i % 5 != 0 {
            tags.push(("host", &host));
        }
        let name = ["zeta", "alpha", "mid", "Alpha"][(i % 4) as usize];
        b.push(name, (i * 7 % 500) as i64, i as f64, &tags);
    }
    let batch = b.finish().unwrap();
    let sorted = sort_by_series(&batch).unwrap();
    assert_eq!(sorted, sorted_by_strings(&batch));
    // The same rows with each dictionary in first-seen order (as arrow's
    // cast builds one), which the sort orders itself.
    let first_seen: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Dictionary(..) => {
                let strings = arrow::compute::cast(c, &DataType::Utf8).unwrap();
                arrow::compute::cast(&strings, c.data_type()).unwrap()
            }
            _ => Arc::clone(c),
        })
        .collect();
    let first_seen = RecordBatch::try_new(batch.schema(), first_seen).unwrap();
    let hosts = first_seen.column_by_name("host").unwrap();
    let hosts = hosts
        .as_dictionary::<Int32Type>()
        .values()
        .as_string::<i32>();
    assert!(
        !strictly_increasing(hosts),
        "the test's dictionary is out of order"
    );
    assert_eq!(sort_by_series(&first_seen).unwrap(), sorted);
    // Each dictionary in value order, each value once.
    for name in ["name", "host", "zone"] {
        let values = sorted
            .column_by_name(name)
            .unwrap()
            .as_dictionary::<Int32Type>()
            .values()
            .clone();
        let values: Vec<&str> = values
            .as_string::<i32>()
            .iter()
            .map(Option::unwrap)
            .collect();
        assert!(
            values.is_sorted() && values.windows(2).all(|w| w[0] != w[1]),
            "{name}: {values:?}"
        );
        assert_eq!(
            values.len(),
            [4, 37, 3][["name", "host", "zone"]
                .iter()
                .position(|n| *n == name)
                .unwrap()]
        );
    }

    // A dictionary holding a value twice (one read back from elsewhere
    // need not be deduplicated): both keys rank alike.
    let names = arrow::array::DictionaryArray::<Int32Type>::try_new(
        vec![0, 1, 2, 3, 0, 2].into(),
        Arc::new(arrow::array::StringArray::from(vec!["b", "a", "b", "c"])),
    )
    .unwrap();
    assert_eq!(
        sorted_names(names, vec![6, 5, 4, 3, 2, 1]),
        [5, 1, 2, 4, 6, 3]
    );

    // A null key and a key pointing at a null value are both null.
    let names = arrow::array::DictionaryArray::<Int32Type>::try_new(
        arrow::array::Int32Array::from(vec![Some(1), Some(0), None, Some(1)]),
        Arc::new(arrow::array::StringArray::from(vec![Some("b"), None])),
    )
    .unwrap();
    assert_eq!(sorted_names(names, vec![4, 3, 2, 1]), [1, 2, 4, 3]);

    // In order, but with a value twice: its keys are not its ranks.
    let names = arrow::array::DictionaryArray::<Int32Type>::try_new(
        vec![2, 1, 0, 1].into(),
        Arc::new(arrow::array::StringArray::from(vec!["a", "a", "b"])),
    )
    .unwrap();
    assert_eq!(sorted_names(names, vec![4, 3, 2, 1]), [1, 2, 3, 4]);
}

#[test]
fn packed_keys_and_their_fallback_order_as_the_strings_do() {
    let ranks = |batch: &RecordBatch| -> Vec<ArrayRef> {
        series_order(&batch.schema())
            .into_iter()
            .map(|i| value_ranks(batch.column(i)).unwrap().ranks)
            .collect()
    };
    // Keys of exactly 64 bits and of 65: two names (2 bits), three hosts
    // (2 bits), 300 rows (9 bits), and times spanning 51 or 52 bits.
    for (time_bits, narrow) in [(51, true), (52, false)] {
        let mut b = PointBatchBuilder::default();
        for i in 0..300i64 {
            let time = if i == 0 {
                (1 << (time_bits - 1)) + 1
            } else {
                i * 7919 % 300
            };
            b.push(
                ["b", "a"][(i % 2) as usize],
                time,
                0.0,
                &[("h", ["x", "y", "z"][(i % 3) as usize])],
            );
        }
        let edge = b.finish().unwrap();
        let packed = packed_keys(&ranks(&edge)).expect("fits 128 bits");
        assert_eq!(
            matches!(packed.0, PackedKeys::Narrow(_)),
            narrow,
            "{time_bits}"
        );
        assert_eq!(sort_by_series(&edge).unwrap(), sorted_by_strings(&edge));
    }

    // Times across most of i64 (64 bits of offset), before and after 1970.
    let mut b = PointBatchBuilder::default();
    for i in 0..300i64 {
        let time = (i * 7919 % 300 - 150) * (i64::MAX / 151);
        b.push(
            ["b", "a"][(i % 2) as usize],
            time,
            0.0,
            &[("h", ["x", "y", "z"][(i % 3) as usize])],
        );
    }
    let wide_times = b.finish().unwrap();
    let packed = packed_keys(&ranks(&wide_times)).expect("fits 128 bits");
    assert!(matches!(packed, (PackedKeys::Wide(_), 9)), "{packed:?}");
    assert_eq!(
        sort_by_series(&wide_times).unwrap(),
        sorted_by_strings(&wide_times)
    );

    // Twelve tag keys of ~300 values each with 600 rows need more than 128 bits: lexsort.
    let mut b = PointBatchBuilder::default();
    for i in 0..600u64 {
        let values: Vec<String> = (0..12)
            .map(|k| format!("v{}", (i * (k + 3)) % 293))
            .collect();
        let tags: Vec<(String, &str)> = values
            .iter()
            .enumerate()
            .filter(|(k, _)| (i + *k as u64) % 4 != 0)
            .map(|(k, v)| (format!("k{k:02}"), v.as_str()))
            .collect();
        b.push("m", i as i64, 0.0, &tags);
    }
    let many_tags = b.finish().unwrap();
    assert!(packed_keys(&ranks(&many_tags)).is_none());
    assert_eq!(
        sort_by_series(&many_tags).unwrap(),
        sorted_by_strings(&many_tags)
    );
}

/// Sorts points of these names and times (no tags), checks the order
/// against arrow's string order, and returns the sorted times.
fn sorted_names(names: arrow::array::DictionaryArray<Int32Type>, times: Vec<i64>) -> Vec<i64> {
    let rows = times.len();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new(TIME, time_type(), false),
            Field::new(NAME, string_type(), true),
            Field::new(VALUE, DataType::Float64, false),
        ])),
        vec![
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(names),
            Arc::new(arrow::array::Float64Array::from(vec![0.0; rows])),
        ],
    )
    .unwrap();
    let sorted = sort_by_series(&batch).unwrap();
    assert_eq!(sorted, sorted_by_strings(&batch));
    // Without null values, the dictionary comes out in value order,
    // each value once, equal values merged.
    let values = sorted.column(1).as_dictionary::<Int32Type>().values();
    if values.null_count() == 0 {
        let values: Vec<&str> = values.as_string::<i32>().iter().flatten().collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    }
    sorted
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
        .values()
        .to_vec()
}
