//! [`PointBatchBuilder`]: points appended straight into Arrow columns.
//!
//! A batch holds few series and many points of each, so the work per point
//! is kept to what differs between points. A decoder hands over a tag set
//! once, with the bytes it read it from; later lines spelling the same bytes
//! find it with one hash ([`PointBatchBuilder::known_tag_set`]) and append
//! its already resolved column keys, skipping the parse of their tags, the
//! checks on them and a dictionary lookup per tag. A decoder that reads a
//! name and a tag set per line looks both up at once, as a series
//! ([`PointBatchBuilder::known_series`]): one hash per point, not two.

use std::{hash::BuildHasher, ops::Range, sync::Arc};

use arrow::{
    array::{ArrayRef, Float64Array, RecordBatch, TimestampMillisecondArray},
    datatypes::{Field, Schema},
    error::ArrowError,
};
use foldhash::{HashMap, HashMapExt};
use hashbrown::HashTable;

use super::{base_fields, dictionary::DictionaryColumn, string_type};

/// One tag column; its length lags the batch's row count until it is
/// padded, so a point pays only for the tags it has.
struct TagColumn {
    key: String,
    values: DictionaryColumn,
}

impl TagColumn {
    fn pad(&mut self, rows: usize) {
        let missing = rows.saturating_sub(self.values.len());
        if missing > 0 {
            self.values.push_nulls(missing);
        }
    }
}

/// A tag set of the batch being built, as [`PointBatchBuilder::add_tag_set`]
/// stored it. Valid until the batch is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagSetId(u32);

/// A tag column's place in the batch; u32 rather than usize halves a
/// stored tag pair (a batch has at most `max_tag_keys` columns).
type ColumnIndex = u32;

/// Tag sets resolved to (tag column, dictionary key) pairs, found by the
/// bytes a decoder read them from.
#[derive(Default)]
struct TagSets {
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Every set's spelling, one after the other.
    spellings: Vec<u8>,
    /// Each set's spelling and pairs, as ranges of `spellings` and `pairs`.
    sets: Vec<(Range<usize>, Range<usize>)>,
    pairs: Vec<(ColumnIndex, i32)>,
}

impl TagSets {
    fn find(&self, spelling: &[u8]) -> Option<TagSetId> {
        let hash = self.hasher.hash_one(spelling);
        self.index
            .find(hash, |&id| {
                &self.spellings[self.sets[id as usize].0.clone()] == spelling
            })
            .map(|&id| TagSetId(id))
    }

    fn spelling(&self, id: TagSetId) -> &[u8] {
        &self.spellings[self.sets[id.0 as usize].0.clone()]
    }

    fn pairs(&self, id: TagSetId) -> &[(ColumnIndex, i32)] {
        &self.pairs[self.sets[id.0 as usize].1.clone()]
    }

    /// Heap bytes the store holds, by capacity: a batch of new series grows
    /// these by doubling, and the unused half is held all the same.
    fn held_bytes(&self) -> usize {
        self.spellings.capacity()
            + self.pairs.capacity() * size_of::<(ColumnIndex, i32)>()
            + self.sets.capacity() * size_of::<(Range<usize>, Range<usize>)>()
            + self.index.capacity() * INDEX_ENTRY_BYTES
    }

    /// Empties the store for the next batch, keeping at most a usual
    /// batch's allocations: one batch of new series must not pin its
    /// store's memory for the life of the partition.
    fn clear(&mut self) {
        const KEPT_SETS: usize = 4096;
        self.index.clear();
        self.spellings.clear();
        self.sets.clear();
        self.pairs.clear();
        self.index.shrink_to(KEPT_SETS, |_| 0);
        self.spellings.shrink_to(KEPT_SETS * 64);
        self.sets.shrink_to(KEPT_SETS);
        self.pairs.shrink_to(KEPT_SETS * 8);
    }
}

/// A series of the batch being built, as [`PointBatchBuilder::add_series`]
/// stored it: a name and a stored tag set. Valid until the batch is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesId(u32);

/// Series as (name key, tag set), found by their name and tags spelling.
/// Nothing is copied: a lookup compares the name with the name dictionary's
/// value and the spelling with the tag set's.
#[derive(Default)]
struct SeriesIndex {
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    series: Vec<(i32, TagSetId)>,
}

/// The hash a series is found by: its name, then its tags spelling.
fn series_hash(hasher: &foldhash::fast::RandomState, name: &[u8], spelling: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut state = hasher.build_hasher();
    state.write(name);
    // The name's length gives `ab`+`c` and `a`+`bc` different hashes; a
    // lookup compares name and spelling apart, so it only spreads them.
    state.write_usize(name.len());
    state.write(spelling);
    state.finish()
}

impl SeriesIndex {
    fn held_bytes(&self) -> usize {
        self.series.capacity() * size_of::<(i32, TagSetId)>()
            + self.index.capacity() * INDEX_ENTRY_BYTES
    }

    /// As [`TagSets::clear`].
    fn clear(&mut self) {
        const KEPT_SERIES: usize = 4096;
        self.index.clear();
        self.series.clear();
        self.index.shrink_to(KEPT_SERIES, |_| 0);
        self.series.shrink_to(KEPT_SERIES);
    }
}

/// What a hash index entry costs besides its value: a 4-byte id and a
/// control byte, at hashbrown's load factor of 7/8 rounded up.
pub(super) const INDEX_ENTRY_BYTES: usize = 8;

/// Builds one Arrow batch of points.
pub struct PointBatchBuilder {
    /// Plain vectors for the columns that are never null: a push is a
    /// push, and `finish` hands them to Arrow without a copy.
    time: Vec<i64>,
    name: DictionaryColumn,
    value: Vec<f64>,
    /// Tag columns in the order their keys first appeared.
    tags: Vec<TagColumn>,
    /// Index into `tags` by key; hashed with foldhash rather than SipHash,
    /// flooding it is bounded by `max_tag_keys`.
    columns: HashMap<String, ColumnIndex>,
    tag_sets: TagSets,
    series: SeriesIndex,
    /// Scratch for [`Self::push`]'s resolved tags.
    resolved: Vec<(ColumnIndex, i32)>,
    rows: usize,
}

impl std::fmt::Debug for PointBatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut tags: Vec<&String> = self.columns.keys().collect();
        tags.sort();
        f.debug_struct("PointBatchBuilder")
            .field("rows", &self.rows)
            .field("tags", &tags)
            .field("tag_sets", &self.tag_sets.sets.len())
            .finish()
    }
}

impl Default for PointBatchBuilder {
    fn default() -> Self {
        Self {
            time: Vec::new(),
            name: DictionaryColumn::default(),
            value: Vec::new(),
            tags: Vec::new(),
            columns: HashMap::new(),
            tag_sets: TagSets::default(),
            series: SeriesIndex::default(),
            resolved: Vec::new(),
            rows: 0,
        }
    }
}

impl PointBatchBuilder {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Whether some point of this batch has the tag column `key`.
    pub fn has_tag_column(&self, key: &str) -> bool {
        self.columns.contains_key(key)
    }

    /// How many distinct tag columns the batch has.
    pub fn tag_columns(&self) -> usize {
        self.tags.len()
    }

    /// Memory the batch holds, the measure of ingest's memory budget: the
    /// fixed-width parts the finished batch will take (20 bytes per row for
    /// time, name key and value, and 4 bytes plus a validity bit per row in
    /// every tag column, since each column is padded to every row), every
    /// dictionary's distinct values with their offsets and index, and the
    /// stored tag sets. The last two are not bounded by the input's size: a
    /// line of many one-letter tags, each line a new set, stores about 16
    /// bytes of pairs per 4 bytes of input.
    pub fn estimated_bytes(&self) -> usize {
        let per_row = 20 + self.tags.len().saturating_mul(4) + self.tags.len().div_ceil(8);
        let dictionaries: usize = self
            .tags
            .iter()
            .map(|column| column.values.held_bytes())
            .sum();
        self.rows
            .saturating_mul(per_row)
            .saturating_add(self.name.held_bytes())
            .saturating_add(dictionaries)
            .saturating_add(self.tag_sets.held_bytes())
            .saturating_add(self.series.held_bytes())
    }

    /// Event times of the points appended since the last `finish`, in order.
    pub fn times(&self) -> &[i64] {
        &self.time
    }

    /// The tag set a decoder stored under `spelling` in this batch, if any.
    /// A spelling must mean one tag set whatever format spelled it: each
    /// decoder's spellings start with their own delimiter (JSON `{`,
    /// Graphite `;`, Influx `,`), and the empty spelling means no tags in all.
    pub fn known_tag_set(&self, spelling: &[u8]) -> Option<TagSetId> {
        self.tag_sets.find(spelling)
    }

    /// Stores a tag set under the bytes it was read from, for
    /// [`Self::push_tagged`] and [`Self::known_tag_set`]. Tag keys must be
    /// distinct and already column names (see [`super::tag_column_name`]).
    pub fn add_tag_set<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        spelling: &[u8],
        tags: &[(K, V)],
    ) -> TagSetId {
        let sets = &mut self.tag_sets;
        let start = sets.pairs.len();
        for (key, value) in tags {
            let column = column_index(&mut self.tags, &mut self.columns, key.as_ref());
            let value = self.tags[column as usize].values.intern(value.as_ref());
            sets.pairs.push((column, value));
        }
        let id = u32::try_from(sets.sets.len()).expect("fewer than 2^32 tag sets in a batch");
        let spelled = sets.spellings.len()..sets.spellings.len() + spelling.len();
        sets.spellings.extend_from_slice(spelling);
        sets.sets.push((spelled, start..sets.pairs.len()));
        let hash = sets.hasher.hash_one(spelling);
        let (all, spellings, hasher) = (&sets.sets, &sets.spellings, &sets.hasher);
        sets.index.insert_unique(hash, id, |&id| {
            hasher.hash_one(&spellings[all[id as usize].0.clone()])
        });
        TagSetId(id)
    }

    /// The series a decoder stored with [`Self::add_series`] under `name`
    /// and tags spelled `spelling` (as for [`Self::known_tag_set`]), if any.
    pub fn known_series(&self, name: &str, spelling: &[u8]) -> Option<SeriesId> {
        let index = &self.series;
        let hash = series_hash(&index.hasher, name.as_bytes(), spelling);
        index
            .index
            .find(hash, |&id| {
                let (name_key, set) = index.series[id as usize];
                self.name.value(name_key) == name.as_bytes()
                    && self.tag_sets.spelling(set) == spelling
            })
            .map(|&id| SeriesId(id))
    }

    /// Stores the series `name` of the stored tag set `tags`, for
    /// [`Self::push_series`] and [`Self::known_series`].
    pub fn add_series(&mut self, name: &str, tags: TagSetId) -> SeriesId {
        let name_key = self.name.intern(name);
        let SeriesIndex {
            index,
            hasher,
            series,
        } = &mut self.series;
        let id = u32::try_from(series.len()).expect("fewer than 2^32 series in a batch");
        series.push((name_key, tags));
        let (names, sets) = (&self.name, &self.tag_sets);
        let hash = series_hash(hasher, name.as_bytes(), sets.spelling(tags));
        index.insert_unique(hash, id, |&id| {
            let (name_key, set) = series[id as usize];
            series_hash(hasher, names.value(name_key), sets.spelling(set))
        });
        SeriesId(id)
    }

    /// Appends one point of a stored series.
    pub fn push_series(&mut self, series: SeriesId, time_ms: i64, value: f64) {
        let (name_key, set) = self.series.series[series.0 as usize];
        append_tags(&mut self.tags, self.tag_sets.pairs(set), self.rows);
        self.push_fixed(name_key, time_ms, value);
    }

    /// Appends one point of a stored tag set.
    pub fn push_tagged(&mut self, name: &str, time_ms: i64, value: f64, tags: TagSetId) {
        append_tags(&mut self.tags, self.tag_sets.pairs(tags), self.rows);
        let name_key = self.name.intern(name);
        self.push_fixed(name_key, time_ms, value);
    }

    /// Appends one point. Tag keys must be distinct; `tags` holds column names
    /// already (see [`super::tag_column_name`]).
    pub fn push<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        name: &str,
        time_ms: i64,
        value: f64,
        tags: &[(K, V)],
    ) {
        self.resolved.clear();
        for (key, value) in tags {
            let column = column_index(&mut self.tags, &mut self.columns, key.as_ref());
            let value = self.tags[column as usize].values.intern(value.as_ref());
            self.resolved.push((column, value));
        }
        append_tags(&mut self.tags, &self.resolved, self.rows);
        let name_key = self.name.intern(name);
        self.push_fixed(name_key, time_ms, value);
    }

    /// The columns every row has: time, the name's key, value.
    fn push_fixed(&mut self, name_key: i32, time_ms: i64, value: f64) {
        self.time.push(time_ms);
        self.name.push_key(name_key);
        self.value.push(value);
        self.rows += 1;
    }

    /// Finishes the batch and resets the builder for reuse.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let mut fields = base_fields();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMillisecondArray::new(std::mem::take(&mut self.time).into(), None)
                    .with_timezone("UTC"),
            ),
            Arc::new(self.name.finish()),
            Arc::new(Float64Array::new(
                std::mem::take(&mut self.value).into(),
                None,
            )),
        ];
        let mut tags = std::mem::take(&mut self.tags);
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        for mut column in tags {
            column.pad(rows);
            fields.push(Field::new(column.key, string_type(), true));
            columns.push(Arc::new(column.values.finish()));
        }
        self.columns.clear();
        self.tag_sets.clear();
        self.series.clear();
        self.rows = 0;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }
}

/// The index of the tag column `key`, added if the batch has none yet.
fn column_index(
    tags: &mut Vec<TagColumn>,
    columns: &mut HashMap<String, ColumnIndex>,
    key: &str,
) -> ColumnIndex {
    if let Some(&column) = columns.get(key) {
        return column;
    }
    let column = ColumnIndex::try_from(tags.len()).expect("fewer than 2^32 tag columns");
    tags.push(TagColumn {
        key: key.to_owned(),
        values: DictionaryColumn::default(),
    });
    columns.insert(key.to_owned(), column);
    column
}

/// Appends row `row`'s tags, padding each column up to it first.
fn append_tags(tags: &mut [TagColumn], pairs: &[(ColumnIndex, i32)], row: usize) {
    for &(column, key) in pairs {
        let column = &mut tags[column as usize];
        column.pad(row);
        column.values.push_key(key);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;

    #[test]
    fn missing_tags_are_null_and_columns_sorted() {
        let mut b = PointBatchBuilder::default();
        b.push("cpu", 1_000, 1.0, &[("host", "a")]);
        b.push("cpu", 2_000, 2.0, &[("zone", "z1"), ("host", "b")]);
        b.push("mem", 3_000, 3.0, &[] as &[(&str, &str)]);
        let batch = b.finish().unwrap();
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["time", "name", "value", "host", "zone"]);
        let zone = batch.column_by_name("zone").unwrap();
        assert_eq!(zone.null_count(), 2);
        assert!(b.is_empty(), "finish resets the builder");
    }

    #[test]
    fn a_stored_tag_set_appends_as_its_tags_would() {
        let mut by_set = PointBatchBuilder::default();
        let mut by_tags = PointBatchBuilder::default();
        let web = [("host", "web-1"), ("zone", "a")];
        let db = [("host", "db-1")];
        assert_eq!(by_set.known_tag_set(b"{web}"), None);
        let web_set = by_set.add_tag_set(b"{web}", &web);
        let db_set = by_set.add_tag_set(b"{db}", &db);
        let none = by_set.add_tag_set(b"", &[] as &[(&str, &str)]);
        for i in 0..6 {
            let (set, tags): (TagSetId, &[(&str, &str)]) = match i % 3 {
                0 => (web_set, &web),
                1 => (db_set, &db),
                _ => (none, &[]),
            };
            let found = by_set.known_tag_set(match i % 3 {
                0 => b"{web}".as_slice(),
                1 => b"{db}",
                _ => b"",
            });
            assert_eq!(found, Some(set));
            by_set.push_tagged("cpu", i, i as f64, set);
            by_tags.push("cpu", i, i as f64, tags);
        }
        let (by_set, by_tags) = (by_set.finish().unwrap(), by_tags.finish().unwrap());
        assert_eq!(by_set, by_tags);
        let hosts = by_set
            .column_by_name("host")
            .unwrap()
            .as_dictionary::<arrow::datatypes::Int32Type>();
        assert_eq!(hosts.values().len(), 2, "a value is stored once");

        let mut next = PointBatchBuilder::default();
        next.add_tag_set(b"{web}", &web);
        next.finish().unwrap();
        assert_eq!(
            next.known_tag_set(b"{web}"),
            None,
            "sets end with their batch"
        );
    }
    #[test]
    fn a_stored_series_appends_as_its_name_and_tags_would() {
        let mut by_series = PointBatchBuilder::default();
        let mut by_tags = PointBatchBuilder::default();
        let web = [("host", "web-1")];
        let set = by_series.add_tag_set(b"{web}", &web);
        let none = by_series.add_tag_set(b"", &[] as &[(&str, &str)]);
        assert_eq!(by_series.known_series("cpu", b"{web}"), None);
        let cpu = by_series.add_series("cpu", set);
        let mem = by_series.add_series("mem", set);
        // A name and a spelling are one series only together: `ab` with no
        // tags is not `a` with a spelling `b`.
        let ab = by_series.add_series("ab", none);
        assert_eq!(by_series.known_series("cpu", b"{web}"), Some(cpu));
        assert_eq!(by_series.known_series("mem", b"{web}"), Some(mem));
        assert_eq!(by_series.known_series("ab", b""), Some(ab));
        assert_eq!(by_series.known_series("a", b"b"), None);
        assert_eq!(by_series.known_series("cpu", b"{db}"), None);
        for i in 0..4 {
            let (series, name, tags): (SeriesId, &str, &[(&str, &str)]) = match i % 3 {
                0 => (cpu, "cpu", &web),
                1 => (mem, "mem", &web),
                _ => (ab, "ab", &[]),
            };
            by_series.push_series(series, i, i as f64);
            by_tags.push(name, i, i as f64, tags);
        }
        assert_eq!(by_series.finish().unwrap(), by_tags.finish().unwrap());
        assert_eq!(
            by_series.known_series("cpu", b"{web}"),
            None,
            "series end with their batch"
        );
    }
}
