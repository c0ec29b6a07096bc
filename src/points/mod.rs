//! Metric points as Arrow: the SQL surface of DESIGN.md.
//!
//! A batch has `time` (timestamp ms, UTC), `name`, `value` (float64) and one
//! nullable string column per tag key, in key order. Decoders append straight
//! into [`PointBatchBuilder`]; no point is materialised as a Rust struct.

mod builder;
mod dictionary;

use std::{
    borrow::Cow,
    ops::{BitOr, Shl},
    sync::Arc,
};

use arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMillisecondArray, UInt32Array},
    compute::{SortColumn, filter_record_batch, lexsort_to_indices, sort_to_indices},
    datatypes::{DataType, Field, Int32Type, Schema, TimeUnit, TimestampMillisecondType},
    error::ArrowError,
};

pub use builder::{PointBatchBuilder, SeriesId, TagSetId};

pub const TIME: &str = "time";
pub const NAME: &str = "name";
pub const VALUE: &str = "value";

/// Column names a tag may not take. The lake's hive partition columns are
/// reserved too, or a tag would shadow them in queries.
pub const RESERVED: [&str; 5] = [TIME, NAME, VALUE, "date", "hour"];

/// A tag whose key is reserved is stored under this prefix: `tags.time` becomes
/// the column `tag_time`, so no point is lost and no column is ambiguous.
pub const RESERVED_TAG_PREFIX: &str = "tag_";

/// The column a tag key is stored in.
pub fn tag_column_name(key: &str) -> Cow<'_, str> {
    if RESERVED.contains(&key) {
        Cow::Owned(format!("{RESERVED_TAG_PREFIX}{key}"))
    } else {
        Cow::Borrowed(key)
    }
}

pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Names and tag values repeat endlessly, so they are dictionary-encoded.
pub fn string_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The fixed columns every batch starts with.
pub fn base_fields() -> Vec<Field> {
    vec![
        Field::new(TIME, time_type(), false),
        Field::new(NAME, string_type(), false),
        Field::new(VALUE, DataType::Float64, false),
    ]
}

/// The columns lake files are sorted by, as indices into a points schema:
/// `name`, then each tag column in key order, then `time`. Rows of one series
/// end up adjacent, which is what makes Parquet's dictionary and run-length
/// encodings and row-group pruning work. Every column ascending, nulls first
/// (a missing tag sorts before every value).
pub fn series_order(schema: &Schema) -> Vec<usize> {
    let mut order = Vec::with_capacity(schema.fields().len());
    order.push(1);
    order.extend(3..schema.fields().len());
    order.push(0);
    order
}

/// Sorts a batch in [`series_order`]. Its string dictionaries come out
/// in value order, each value once (rows keep their values): the Parquet
/// writer then finds each chunk's dictionary sorted already.
pub fn sort_by_series(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let order = series_order(&batch.schema());
    let ranked = order
        .iter()
        .map(|&i| value_ranks(batch.column(i)))
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let keys: Vec<ArrayRef> = ranked.iter().map(|r| Arc::clone(&r.ranks)).collect();
    let indices = match rows_by_series(&keys) {
        Some(rows) => rows,
        None => sort_indices(keys)?,
    };
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (i, column) in batch.columns().iter().enumerate() {
        let in_value_order = order
            .iter()
            .position(|&o| o == i)
            .and_then(|at| ranked[at].in_value_order(&indices).transpose())
            .transpose()?;
        columns.push(match in_value_order {
            Some(sorted) => sorted,
            None => arrow::compute::take(column, &indices, None)?,
        });
    }
    RecordBatch::try_new(batch.schema(), columns)
}

/// The rows in the order of the sort columns `keys` (see [`packed_keys`]).
fn sort_indices(keys: Vec<ArrayRef>) -> Result<UInt32Array, ArrowError> {
    Ok(match packed_keys(&keys) {
        Some((PackedKeys::Narrow(keys), row_bits)) => rows_in_key_order(keys, row_bits),
        Some((PackedKeys::Wide(keys), row_bits)) => rows_in_key_order(keys, row_bits),
        None => {
            let columns: Vec<SortColumn> = keys
                .into_iter()
                .map(|values| SortColumn {
                    values,
                    options: None,
                })
                .collect();
            lexsort_to_indices(&columns, None)?
        }
    })
}

/// Bits of a series code a radix pass sorts by: 2,048 counters, which stay
/// in the first-level cache.
const RADIX_BITS: u32 = 11;

/// The rows in sort order (series, then time, then arrival), found as the
/// rows by series (every sort column but the last, `time`) with a stable
/// radix sort of their series codes, a pass per 11 bits the codes use:
/// each series' rows come out in arrival order, which is already their
/// time order when its points arrived in time order, as a stream's
/// usually do. One pass checks each series, and a series whose points did
/// not is sorted by time alone, so a late point costs its own series only.
/// `None` when the codes need more than 32 bits or a column is of another
/// kind (the caller sorts by whole keys then). On a flush of `klaxon
/// bench`'s shape (40k points of 10k series) this replaces a comparison
/// sort of the whole keys.
fn rows_by_series(columns: &[ArrayRef]) -> Option<UInt32Array> {
    let (time, series) = columns.split_last()?;
    let times = time.as_primitive_opt::<TimestampMillisecondType>()?;
    if times.null_count() > 0 {
        return None;
    }
    let rows = times.len();
    u32::try_from(rows).ok()?;
    let bits = |max: u32| u32::BITS - max.leading_zeros();
    let mut codes = Vec::with_capacity(series.len());
    let mut used = 0;
    for column in series {
        let ranks = column.as_primitive_opt::<arrow::datatypes::UInt32Type>()?;
        let max = ranks.values().iter().copied().max().unwrap_or(0);
        let width = bits(max.checked_add(1)?);
        used += width;
        if used > u32::BITS {
            return None;
        }
        codes.push(Codes::Ranks(ranks, width));
    }
    // Each row as its series code (high half) and its number (low half).
    let mut keys: Vec<u64> = pack(&codes, rows, u32::BITS);
    let mut spare = vec![0u64; rows];
    let mut counts = vec![0usize; 1 << RADIX_BITS];
    for shift in (0..used).step_by(RADIX_BITS as usize) {
        let digit = |key: u64| ((key >> (u32::BITS + shift)) & ((1 << RADIX_BITS) - 1)) as usize;
        counts.fill(0);
        for &key in &keys {
            counts[digit(key)] += 1;
        }
        // A digit every row shares orders nothing.
        if counts.contains(&rows) {
            continue;
        }
        let mut start = 0;
        for count in counts.iter_mut() {
            (*count, start) = (start, start + *count);
        }
        for &key in &keys {
            let at = &mut counts[digit(key)];
            spare[*at] = key;
            *at += 1;
        }
        std::mem::swap(&mut keys, &mut spare);
    }
    let times = times.values();
    let time = |key: u64| times[key as u32 as usize];
    for series in keys.chunk_by_mut(|a, b| a >> u32::BITS == b >> u32::BITS) {
        if !series.is_sorted_by_key(|&key| time(key)) {
            // The row breaks ties, as the whole keys' order does.
            series.sort_unstable_by_key(|&key| (time(key), key as u32));
        }
    }
    Some(UInt32Array::from_iter_values(
        keys.into_iter().map(|key| key as u32),
    ))
}

/// Each row's whole sort key as one integer: see [`packed_keys`].
#[derive(Debug)]
enum PackedKeys {
    /// Keys that fit 64 bits, the usual flush: half the bytes to move, and
    /// on a flush of 600k points sorting takes about three quarters of the
    /// time it takes with 128-bit keys.
    Narrow(Vec<u64>),
    Wide(Vec<u128>),
}

/// The rows in the order of their packed keys, whose low `row_bits` bits
/// are the row number (the rest of the key orders it).
fn rows_in_key_order<K: Ord + Into<u128>>(mut keys: Vec<K>, row_bits: u32) -> UInt32Array {
    keys.sort_unstable();
    let row_mask = (1u128 << row_bits) - 1;
    UInt32Array::from_iter_values(keys.into_iter().map(|key| (key.into() & row_mask) as u32))
}

/// How one sort column's codes take their bits of a packed key.
enum Codes<'a> {
    /// A rank column: null codes as 0 (nulls first), rank `r` as `r + 1`.
    Ranks(&'a arrow::array::UInt32Array, u32),
    /// Time: its offset from the batch's earliest point.
    Times(&'a [i64], i64, u32),
}

/// Each row's whole sort key in one integer, and how many low bits hold
/// the row number, when it fits: every column takes the bits its largest
/// code needs, most significant first, and the row number fills the low
/// bits (as many as the last row needs). Comparing these integers orders
/// rows exactly as `lexsort` over the columns would, without a dynamic
/// comparator per comparison. The widths are known before any key is
/// built, so keys that fit 64 bits are built as such. `None` when the codes
/// need more than 128 bits, or a column is of another kind; the caller
/// falls back to `lexsort`.
fn packed_keys(columns: &[ArrayRef]) -> Option<(PackedKeys, u32)> {
    let rows = columns.first()?.len();
    if u32::try_from(rows).is_err() {
        return None;
    }
    let bits = |max: u64| u64::BITS - max.leading_zeros();
    let row_bits = bits(rows.saturating_sub(1) as u64);
    let mut used = row_bits;
    let mut codes = Vec::with_capacity(columns.len());
    for column in columns {
        let code = if let Some(ranks) = column.as_primitive_opt::<arrow::datatypes::UInt32Type>() {
            let max = ranks.values().iter().copied().max().unwrap_or(0);
            Codes::Ranks(ranks, bits(u64::from(max) + 1))
        } else if let Some(times) = column.as_primitive_opt::<TimestampMillisecondType>() {
            if times.null_count() > 0 {
                return None;
            }
            let min = times.values().iter().copied().min().unwrap_or(0);
            let max = times.values().iter().copied().max().unwrap_or(0);
            Codes::Times(times.values(), min, bits(max.abs_diff(min)))
        } else {
            return None;
        };
        let (Codes::Ranks(_, width) | Codes::Times(_, _, width)) = code;
        used += width;
        if used > u128::BITS {
            return None;
        }
        codes.push(code);
    }
    let keys = if used <= u64::BITS {
        PackedKeys::Narrow(pack(&codes, rows, row_bits))
    } else {
        PackedKeys::Wide(pack(&codes, rows, row_bits))
    };
    Some((keys, row_bits))
}

/// The keys [`packed_keys`] describes, in integers of type `K`, wide enough
/// for all of `codes`' widths and `row_bits`. Every shift is narrower than
/// `K`: a 64-bit time code leaves no room in a u64 beside the name's code
/// (at least one bit), so it only ever shifts a u128.
fn pack<K>(codes: &[Codes<'_>], rows: usize, row_bits: u32) -> Vec<K>
where
    K: Copy + From<u32> + From<u64> + Shl<u32, Output = K> + BitOr<Output = K>,
{
    let mut packed: Vec<K> = vec![K::from(0u32); rows];
    for code in codes {
        match *code {
            Codes::Ranks(ranks, width) => match ranks.logical_nulls() {
                None => {
                    for (key, &rank) in packed.iter_mut().zip(ranks.values()) {
                        *key = (*key << width) | K::from(u64::from(rank) + 1);
                    }
                }
                Some(nulls) => {
                    for ((key, &rank), valid) in packed.iter_mut().zip(ranks.values()).zip(&nulls) {
                        *key =
                            (*key << width) | K::from(if valid { u64::from(rank) + 1 } else { 0 });
                    }
                }
            },
            Codes::Times(times, min, width) => {
                for (key, &time) in packed.iter_mut().zip(times) {
                    *key = (*key << width) | K::from(time.abs_diff(min));
                }
            }
        }
    }
    for (row, key) in packed.iter_mut().enumerate() {
        *key = (*key << row_bits) | K::from(row as u32);
    }
    packed
}

/// A sort column: the column as it is, or a string dictionary's rows as
/// the ranks of their values (see [`value_ranks`]).
struct Ranked {
    ranks: ArrayRef,
    /// The dictionary's distinct values in rank order, when it has no null
    /// value: rank `r` is the value at `r`.
    values_by_rank: Option<ArrayRef>,
}

impl Ranked {
    /// The dictionary column in the row order `indices`, its values in
    /// value order and its keys the ranks; `None` for a column that is not
    /// a string dictionary without null values.
    fn in_value_order(&self, indices: &UInt32Array) -> Result<Option<ArrayRef>, ArrowError> {
        let Some(values) = &self.values_by_rank else {
            return Ok(None);
        };
        let ranks = arrow::compute::take(&self.ranks, indices, None)?;
        let (_, ranks, nulls) = ranks
            .as_primitive::<arrow::datatypes::UInt32Type>()
            .clone()
            .into_parts();
        // A rank counts distinct values, fewer than 2^31: a string array's
        // i32 offsets hold under 2 GiB of them.
        let keys = arrow::array::Int32Array::new(ranks.into_inner().into(), nulls);
        let dictionary =
            arrow::array::DictionaryArray::<Int32Type>::try_new(keys, Arc::clone(values))?;
        Ok(Some(Arc::new(dictionary)))
    }
}

/// A string dictionary column as the rank of each row's value among the
/// dictionary's values: integers that order as the strings do, so sorting
/// compares integers instead of strings behind two indirections. The
/// dictionary's values are sorted once; a batch has far fewer of them than
/// rows. Any other column is returned as it is.
fn value_ranks(column: &ArrayRef) -> Result<Ranked, ArrowError> {
    let as_it_is = || Ranked {
        ranks: Arc::clone(column),
        values_by_rank: None,
    };
    let Some(dictionary) = column.as_dictionary_opt::<Int32Type>() else {
        return Ok(as_it_is());
    };
    let Some(values) = dictionary.values().as_string_opt::<i32>() else {
        return Ok(as_it_is());
    };
    let keys = dictionary.keys();
    if values.null_count() == 0 && strictly_increasing(values) {
        // Each value is its own rank, as `PointBatchBuilder` leaves them:
        // no sort, and the values as they are.
        let ranks: Vec<u32> = keys
            .values()
            .iter()
            .map(|&k| {
                if (k as usize) < values.len() {
                    k as u32
                } else {
                    0
                }
            })
            .collect();
        return Ok(Ranked {
            ranks: Arc::new(UInt32Array::new(ranks.into(), dictionary.logical_nulls())),
            values_by_rank: Some(Arc::clone(dictionary.values())),
        });
    }
    let sorted = sort_to_indices(values, None, None)?;
    let mut rank = vec![0u32; values.len()];
    // The first value of each rank.
    let mut firsts = Vec::new();
    let mut previous: Option<Option<&str>> = None;
    let mut current = 0;
    for &index in sorted.values() {
        let value = values
            .is_valid(index as usize)
            .then(|| values.value(index as usize));
        // Equal values (a dictionary need not be deduplicated) share a rank.
        if previous.is_some_and(|p| p != value) {
            current += 1;
        }
        if previous != Some(value) {
            firsts.push(index);
        }
        previous = Some(value);
        rank[index as usize] = current;
    }
    let values_by_rank = match values.null_count() {
        0 => Some(arrow::compute::take(
            values,
            &UInt32Array::from(firsts),
            None,
        )?),
        _ => None,
    };
    // A null row's key is arbitrary, possibly past the values: it ranks 0
    // and stays null. A key pointing at a null value is null too, as arrow
    // compares it.
    let ranks: Vec<u32> = keys
        .values()
        .iter()
        .map(|&k| rank.get(k as usize).copied().unwrap_or(0))
        .collect();
    Ok(Ranked {
        ranks: Arc::new(UInt32Array::new(ranks.into(), dictionary.logical_nulls())),
        values_by_rank,
    })
}

/// Whether every value is less than the next, in the order `sort_to_indices`
/// sorts strings (their bytes).
fn strictly_increasing(values: &arrow::array::StringArray) -> bool {
    (1..values.len()).all(|i| values.value(i - 1).as_bytes() < values.value(i).as_bytes())
}

pub const MS_PER_HOUR: i64 = 3_600_000;

/// Splits a batch into one batch per UTC hour (the lake's partitions), in hour
/// order, each keeping the input's row order.
pub fn split_by_hour(batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>, ArrowError> {
    let time = batch
        .column_by_name(TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
        .ok_or_else(|| ArrowError::SchemaError("batch has no millisecond `time`".into()))?;
    let hours: Vec<i64> = time
        .values()
        .iter()
        .map(|t| t.div_euclid(MS_PER_HOUR))
        .collect();
    // A flush spans few hours: a set of them costs one pass, not a sort.
    let distinct: std::collections::BTreeSet<i64> = hours.iter().copied().collect();
    if let (1, Some(&only)) = (distinct.len(), distinct.first()) {
        return Ok(vec![(only, batch.clone())]);
    }
    distinct
        .into_iter()
        .map(|hour| {
            let mask = hours.iter().map(|h| Some(*h == hour)).collect();
            Ok((hour, filter_record_batch(batch, &mask)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::{array::AsArray, compute::take_record_batch, util::pretty::pretty_format_batches};

    use super::*;

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

    #[test]
    fn splits_by_utc_hour_including_before_1970() {
        let mut b = PointBatchBuilder::default();
        for t in [-1, 0, MS_PER_HOUR - 1, MS_PER_HOUR, 5 * MS_PER_HOUR] {
            b.push("x", t, 0.0, &[] as &[(&str, &str)]);
        }
        let parts = split_by_hour(&b.finish().unwrap()).unwrap();
        let shape: Vec<(i64, usize)> = parts.iter().map(|(h, b)| (*h, b.num_rows())).collect();
        assert_eq!(shape, [(-1, 1), (0, 2), (1, 1), (5, 1)]);
    }

    #[test]
    fn reserved_tag_keys_are_prefixed() {
        assert_eq!(tag_column_name("time"), "tag_time");
        assert_eq!(tag_column_name("hour"), "tag_hour");
        assert_eq!(tag_column_name("service"), "service");
    }
}
