//! A dictionary-encoded string column that can be appended to by key.
//!
//! arrow's `StringDictionaryBuilder` only appends values, hashing each one.
//! A batch sees the same tag sets over and over, so the batch builder
//! resolves a tag set's values to keys once and then appends keys alone
//! (see [`super::builder::TagSetId`]). This column is arrow's builder with
//! that door open: the same parts (keys, a validity bitmap, the distinct
//! values, a hash index over them), finished into the same
//! `DictionaryArray`.
//!
//! The values and their index outlive a batch, so that a stream's next
//! batch finds its series' values stored already (the batch builder keeps
//! them while most are still in use; see [`DictionaryColumn::clear`]).
//! A finished batch holds only the values its rows use, in value order:
//! the order lake files are sorted in (`points::sort_by_series`), which
//! then finds each dictionary sorted already instead of sorting its values
//! once a file. The column keeps its stored values' order from batch to
//! batch, so a batch pays only for ordering the values new to it.

use std::{hash::BuildHasher, sync::Arc};

use arrow::{
    array::{
        ArrayBuilder, DictionaryArray, Int32Array, NullBufferBuilder, StringArray, StringBuilder,
    },
    buffer::OffsetBuffer,
    datatypes::Int32Type,
};
use hashbrown::HashTable;

/// The key a null row holds until `finish`, which gives it 0 (a null row's
/// key is arbitrary, but must index the values).
const NULL_ROW: i32 = -1;

pub(super) struct DictionaryColumn {
    /// Each row's key into `values` since the last `finish`.
    keys: Vec<i32>,
    nulls: NullBufferBuilder,
    /// Every value stored since the last `clear`.
    values: StringBuilder,
    /// Keys of `values`, found by the value's hash. foldhash with a random
    /// seed: fast, and only minimally resistant to chosen collisions; what
    /// bounds a flood is the batch's size (ingest flushes by bytes held).
    index: HashTable<i32>,
    hasher: foldhash::fast::RandomState,
    /// The first `order.len()` stored values' keys, in value order; the
    /// values stored since are merged in at the next `finish`.
    order: Vec<i32>,
    /// Scratch for `finish`: each stored value's key in the finished batch.
    renumbered: Vec<i32>,
    /// How many stored values the last finished batch used.
    used: usize,
}

impl Default for DictionaryColumn {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            values: StringBuilder::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            order: Vec::new(),
            renumbered: Vec::new(),
            used: 0,
        }
    }
}

impl DictionaryColumn {
    /// Rows appended since the last `finish`.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Distinct values stored, used by this batch or not.
    pub(super) fn stored(&self) -> usize {
        self.values.len()
    }

    /// Distinct values the last finished batch used.
    pub(super) fn used(&self) -> usize {
        self.used
    }

    /// The key of `value`, adding it to the dictionary if it is new.
    ///
    /// # Panics
    /// Past 2^31 distinct values or 2 GiB of them stored, as arrow's
    /// builder does; ingest's memory budget flushes long before.
    pub(super) fn intern(&mut self, value: &str) -> i32 {
        let hash = self.hasher.hash_one(value.as_bytes());
        let values = &self.values;
        if let Some(&key) = self
            .index
            .find(hash, |&key| value_of(values, key) == value.as_bytes())
        {
            return key;
        }
        let key = i32::try_from(self.values.len()).expect("fewer than 2^31 distinct values");
        self.values.append_value(value);
        let (values, hasher) = (&self.values, &self.hasher);
        self.index
            .insert_unique(hash, key, |&key| hasher.hash_one(value_of(values, key)));
        key
    }

    /// The bytes of the value `key` (from [`Self::intern`]) stands for.
    pub(super) fn value(&self, key: i32) -> &[u8] {
        value_of(&self.values, key)
    }

    /// Heap bytes of the distinct values: their bytes, offsets and index
    /// entries (the keys are counted per row by the batch).
    pub(super) fn held_bytes(&self) -> usize {
        let distinct = self.values.len();
        // Per value: its offset, its index entry, its place in `order` and
        // its slot in `renumbered`.
        self.values.values_slice().len()
            + distinct * (3 * size_of::<i32>() + super::builder::INDEX_ENTRY_BYTES)
    }

    /// Appends a row holding the value of `key` (from [`Self::intern`]).
    pub(super) fn push_key(&mut self, key: i32) {
        self.keys.push(key);
        self.nulls.append_non_null();
    }

    /// Appends `rows` null rows.
    pub(super) fn push_nulls(&mut self, rows: usize) {
        self.keys.resize(self.keys.len() + rows, NULL_ROW);
        self.nulls.append_n_nulls(rows);
    }

    /// The rows since the last `finish` as an array holding the values they
    /// use, in value order; the stored values stay.
    pub(super) fn finish(&mut self) -> DictionaryArray<Int32Type> {
        self.order_new_values();
        let mut keys = std::mem::take(&mut self.keys);
        let renumbered = &mut self.renumbered;
        renumbered.clear();
        renumbered.resize(self.values.len(), NULL_ROW);
        // Mark the values the rows use, number them in value order, then
        // give each row its value's number.
        for &key in &keys {
            if key != NULL_ROW {
                renumbered[key as usize] = 0;
            }
        }
        // The used values' bytes, checked as UTF-8 once as a whole when the
        // array is made (each was stored from a `&str`).
        let mut offsets = vec![0i32];
        let mut bytes = Vec::new();
        for &key in &self.order {
            let slot = &mut renumbered[key as usize];
            if *slot != NULL_ROW {
                // Fewer used values than stored ones, which fit an i32.
                *slot = offsets.len() as i32 - 1;
                bytes.extend_from_slice(value_of(&self.values, key));
                // Within the stored values' bytes, which fit an i32.
                offsets.push(bytes.len() as i32);
            }
        }
        for key in &mut keys {
            *key = match *key {
                NULL_ROW => 0,
                stored => renumbered[stored as usize],
            };
        }
        self.used = offsets.len() - 1;
        let used = StringArray::try_new(OffsetBuffer::new(offsets.into()), bytes.into(), None)
            .expect("whole stored values, each stored from a str");
        let keys = Int32Array::new(keys.into(), self.nulls.finish());
        DictionaryArray::try_new(keys, Arc::new(used))
            .expect("every key is renumbered into the used values")
    }

    /// Merges the values stored since the last `finish` into `order`: a
    /// sort of the new ones alone, then the standard stable sort, which
    /// finds the two sorted runs and merges them in one pass.
    fn order_new_values(&mut self) {
        let ordered = self.order.len();
        let stored = self.values.len();
        if ordered == stored {
            return;
        }
        let values = &self.values;
        let by_value = |&a: &i32, &b: &i32| value_of(values, a).cmp(value_of(values, b));
        // Keys are below 2^31 (see `intern`).
        self.order.extend(ordered as i32..stored as i32);
        self.order[ordered..].sort_unstable_by(by_value);
        self.order.sort_by(by_value);
    }

    /// Notes a finished batch without rows in this column (it used none of
    /// its values).
    pub(super) fn skip_batch(&mut self) {
        self.used = 0;
    }

    /// Forgets the stored values (the rows since the last `finish` must be
    /// none), keeping at most a usual batch's index: one batch of many
    /// distinct values must not pin its memory for the life of the column.
    pub(super) fn clear(&mut self) {
        debug_assert!(self.keys.is_empty(), "clear follows finish");
        self.values = StringBuilder::new();
        self.index.clear();
        self.index.shrink_to(4096, |_| 0);
        self.order = Vec::new();
        self.renumbered = Vec::new();
        self.used = 0;
    }
}

/// The bytes of the value `key` stands for.
fn value_of(values: &StringBuilder, key: i32) -> &[u8] {
    let offsets = values.offsets_slice();
    let at = key as usize;
    &values.values_slice()[offsets[at] as usize..offsets[at + 1] as usize]
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    #[test]
    fn values_are_interned_once_and_rows_keep_their_order() {
        let mut column = DictionaryColumn::default();
        let b = column.intern("b");
        column.push_key(b);
        column.push_nulls(2);
        let a = column.intern("a");
        column.push_key(a);
        // Interned again: the same key, the value not stored twice.
        let b_again = column.intern("b");
        assert_eq!(b_again, b);
        column.push_key(b_again);
        assert_eq!(column.len(), 5);
        let array = column.finish();
        assert_eq!(array.values().len(), 2, "each value stored once");
        let strings = arrow::compute::cast(&array, &arrow::datatypes::DataType::Utf8).unwrap();
        let strings = strings.as_string::<i32>();
        let rows: Vec<Option<&str>> = strings.iter().collect();
        assert_eq!(rows, [Some("b"), None, None, Some("a"), Some("b")]);
        assert_eq!(column.len(), 0, "finish starts over");
        let c = column.intern("c");
        column.push_key(c);
        assert_eq!(
            column.finish().values().len(),
            1,
            "a batch holds only the values its rows use"
        );
    }

    proptest::proptest! {
        /// Batch after batch, a finished column holds each row's value (or
        /// null) and exactly the values its rows use, in strictly
        /// increasing order, however values were stored before.
        #[test]
        fn each_batch_holds_its_values_in_value_order(
            batches in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of("[a-c]{0,3}"), 0..30),
                1..6,
            )
        ) {
            let mut column = DictionaryColumn::default();
            for rows in batches {
                for row in &rows {
                    match row {
                        Some(value) => {
                            let key = column.intern(value);
                            column.push_key(key);
                        }
                        None => column.push_nulls(1),
                    }
                }
                let array = column.finish();
                let values = array.values().as_string::<i32>();
                let values: Vec<&str> = values.iter().map(Option::unwrap).collect();
                proptest::prop_assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
                let mut used: Vec<&str> = rows.iter().flatten().map(String::as_str).collect();
                used.sort_unstable();
                used.dedup();
                proptest::prop_assert_eq!(&values, &used);
                proptest::prop_assert_eq!(column.used(), used.len());
                let strings = arrow::compute::cast(&array, &arrow::datatypes::DataType::Utf8).unwrap();
                let got: Vec<Option<&str>> = strings.as_string::<i32>().iter().collect();
                let want: Vec<Option<&str>> = rows.iter().map(Option::as_deref).collect();
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
