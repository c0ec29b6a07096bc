//! Sorting a batch in series order, as lake files are written: rows by
//! series (name, then tags in key order), then time, with each string
//! dictionary handed on in value order.

use std::{
    ops::{BitOr, Shl},
    sync::Arc,
};

use arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array},
    compute::{SortColumn, lexsort_to_indices, sort_to_indices},
    datatypes::{Int32Type, Schema, TimestampMillisecondType},
    error::ArrowError,
};

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
    let mut codes = Vec::with_capacity(series.len());
    let mut used = 0;
    for column in series {
        let (ranks, width) = rank_code(column)?;
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

/// A rank column and the bits its codes take (null as 0, rank `r` as
/// `r + 1`: see [`Codes::Ranks`]); `None` for a column of another kind.
fn rank_code(column: &ArrayRef) -> Option<(&UInt32Array, u32)> {
    let ranks = column.as_primitive_opt::<arrow::datatypes::UInt32Type>()?;
    let max = ranks.values().iter().copied().max().unwrap_or(0);
    Some((ranks, bit_width(u64::from(max) + 1)))
}

/// Bits `max` takes.
fn bit_width(max: u64) -> u32 {
    u64::BITS - max.leading_zeros()
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
    let bits = bit_width;
    let row_bits = bits(rows.saturating_sub(1) as u64);
    let mut used = row_bits;
    let mut codes = Vec::with_capacity(columns.len());
    for column in columns {
        let code = if let Some((ranks, width)) = rank_code(column) {
            Codes::Ranks(ranks, width)
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

#[cfg(test)]
mod tests;
