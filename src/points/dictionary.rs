//! A dictionary-encoded string column that can be appended to by key.
//!
//! arrow's `StringDictionaryBuilder` only appends values, hashing each one.
//! A batch sees the same tag sets over and over, so the batch builder
//! resolves a tag set's values to keys once and then appends keys alone
//! (see [`super::builder::TagSetId`]). This column is arrow's builder with
//! that door open: the same parts (keys, a validity bitmap, the distinct
//! values in first-seen order, a hash index over them), finished into the
//! same `DictionaryArray`.

use std::{hash::BuildHasher, sync::Arc};

use arrow::{
    array::{ArrayBuilder, DictionaryArray, Int32Array, NullBufferBuilder, StringBuilder},
    datatypes::Int32Type,
};
use hashbrown::HashTable;

pub(super) struct DictionaryColumn {
    keys: Vec<i32>,
    nulls: NullBufferBuilder,
    values: StringBuilder,
    /// Keys of `values`, found by the value's hash. foldhash with a random
    /// seed: fast, and only minimally resistant to chosen collisions; what
    /// bounds a flood is the batch's size (ingest flushes by bytes held).
    index: HashTable<i32>,
    hasher: foldhash::fast::RandomState,
}

impl Default for DictionaryColumn {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            values: StringBuilder::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl DictionaryColumn {
    /// Rows appended since the last `finish`.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key of `value`, adding it to the dictionary if it is new.
    ///
    /// # Panics
    /// Past 2^31 distinct values or 2 GiB of them in one batch, as arrow's
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
        self.values.values_slice().len()
            + distinct * (size_of::<i32>() + super::builder::INDEX_ENTRY_BYTES)
    }

    /// Appends a row holding the value of `key` (from [`Self::intern`]).
    pub(super) fn push_key(&mut self, key: i32) {
        self.keys.push(key);
        self.nulls.append_non_null();
    }

    /// Appends `rows` null rows.
    pub(super) fn push_nulls(&mut self, rows: usize) {
        self.keys.resize(self.keys.len() + rows, 0);
        self.nulls.append_n_nulls(rows);
    }

    /// The column as an array; the builder starts over, empty.
    pub(super) fn finish(&mut self) -> DictionaryArray<Int32Type> {
        let keys = Int32Array::new(std::mem::take(&mut self.keys).into(), self.nulls.finish());
        self.index.clear();
        // A batch of many distinct values must not pin its index's memory.
        self.index.shrink_to(4096, |_| 0);
        DictionaryArray::try_new(keys, Arc::new(self.values.finish()))
            .expect("every key comes from intern, so it indexes the values")
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
            "the index starts over too"
        );
    }
}
