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
//!
//! Series outlive their batch. A stream sends the same series batch after
//! batch, and a batch flushed every second holds only a few points of each:
//! storing every series afresh per batch (its tags parsed and checked, its
//! values interned, its set and series indexed) was about a third of
//! decoding at `klaxon bench`'s shape. So the tag columns, their stored
//! values, the tag sets and the series stay from one batch to the next
//! while most of them are still in use (see [`Kept`]); a finished batch
//! holds only what its own rows use, as it would from a new builder.

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

/// A tag set as [`PointBatchBuilder::add_tag_set`] stored it. Valid until
/// the builder forgets its sets (at a `finish`); [`PointBatchBuilder::known_tag_set`]
/// finds it again while it is valid.
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
    /// The batch each set last had a point in, by [`PointBatchBuilder::batch`].
    appended: Vec<u32>,
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
            + self.sets.capacity() * (size_of::<(Range<usize>, Range<usize>)>() + size_of::<u32>())
            + self.index.capacity() * INDEX_ENTRY_BYTES
    }

    /// Empties the store, keeping at most a usual batch's allocations: one
    /// batch of new series must not pin its store's memory for the life of
    /// the partition.
    fn clear(&mut self) {
        const KEPT_SETS: usize = 4096;
        self.index.clear();
        self.spellings.clear();
        self.sets.clear();
        self.pairs.clear();
        self.appended.clear();
        self.index.shrink_to(KEPT_SETS, |_| 0);
        self.spellings.shrink_to(KEPT_SETS * 64);
        self.sets.shrink_to(KEPT_SETS);
        self.pairs.shrink_to(KEPT_SETS * 8);
        self.appended.shrink_to(KEPT_SETS);
    }
}

/// A series as [`PointBatchBuilder::add_series`] stored it: a name and a
/// stored tag set. Valid as a [`TagSetId`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesId(u32);

/// Series as (name key, tag set), found by their name and tags spelling.
/// Nothing is copied: a lookup compares the name with the name dictionary's
/// value and the spelling with the tag set's.
#[derive(Default)]
struct SeriesIndex {
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    series: Vec<Series>,
}

/// A stored series: its name's key, its tag set, and the batch it last had
/// a point in (by [`PointBatchBuilder::batch`]).
#[derive(Clone, Copy)]
struct Series {
    name_key: i32,
    tags: TagSetId,
    appended: u32,
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
        self.series.capacity() * size_of::<Series>() + self.index.capacity() * INDEX_ENTRY_BYTES
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
    /// Tag columns in the order their keys first appeared, kept with the
    /// stored values; a batch's own are those with rows in it.
    tags: Vec<TagColumn>,
    /// Index into `tags` by key; hashed with foldhash rather than SipHash,
    /// flooding it is bounded by `max_tag_keys`.
    columns: HashMap<String, ColumnIndex>,
    /// How many of `tags` have rows in this batch.
    batch_columns: usize,
    tag_sets: TagSets,
    series: SeriesIndex,
    /// Scratch for [`Self::push`]'s resolved tags.
    resolved: Vec<(ColumnIndex, i32)>,
    rows: usize,
    /// This batch's number since the builder was made (wrapping: a stale
    /// mark would need 2^32 batches to look current).
    batch: u32,
    /// The most memory ([`Self::estimated_bytes`] of an empty batch) kept
    /// from one batch for the next; see [`Self::keep_at_most`].
    kept_limit: usize,
}

/// What a tag column costs besides its rows, values and key: its parts'
/// headers and an index entry.
const COLUMN_BYTES: usize = 256;

/// [`PointBatchBuilder::keep_at_most`]'s default.
const KEPT_LIMIT: usize = 16 << 20;

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
            batch_columns: 0,
            tag_sets: TagSets::default(),
            series: SeriesIndex::default(),
            resolved: Vec::new(),
            rows: 0,
            batch: 0,
            kept_limit: KEPT_LIMIT,
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
        self.columns
            .get(key)
            .is_some_and(|&column| self.tags[column as usize].values.len() > 0)
    }

    /// How many distinct tag columns the batch has.
    pub fn tag_columns(&self) -> usize {
        self.batch_columns
    }

    /// Memory the batch holds, the measure of ingest's memory budget: the
    /// fixed-width parts the finished batch will take (20 bytes per row for
    /// time, name key and value, and 4 bytes plus a validity bit per row in
    /// every tag column of the batch, since each is padded to every row),
    /// every dictionary's stored values with their offsets and index, and
    /// the stored tag sets and series, kept from earlier batches or not.
    /// The last two are not bounded by the input's size: a line of many
    /// one-letter tags, each line a new set, stores about 16 bytes of pairs
    /// per 4 bytes of input.
    pub fn estimated_bytes(&self) -> usize {
        let columns = self.batch_columns;
        let per_row = 20 + columns.saturating_mul(4) + columns.div_ceil(8);
        // A column's key is held twice (the column's and the index's).
        let dictionaries: usize = self
            .tags
            .iter()
            .map(|column| column.values.held_bytes() + 2 * column.key.len() + COLUMN_BYTES)
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

    /// The tag set a decoder stored under `spelling`, if the builder has it.
    /// A spelling must mean one tag set whatever format spelled it: each
    /// decoder's spellings start with their own delimiter (JSON `{`,
    /// Graphite `;`, Influx `,`), and the empty spelling means no tags in all.
    pub fn known_tag_set(&self, spelling: &[u8]) -> Option<TagSetId> {
        self.tag_sets.find(spelling)
    }

    /// How many tags the stored set `set` has.
    pub fn tag_set_len(&self, set: TagSetId) -> usize {
        self.tag_sets.pairs(set).len()
    }

    /// How many of the stored set `set`'s tag columns have no row in this
    /// batch yet: the keys a point of it would add to the batch.
    pub fn columns_new_to_batch(&self, set: TagSetId) -> usize {
        self.tag_sets
            .pairs(set)
            .iter()
            .filter(|&&(column, _)| self.tags[column as usize].values.len() == 0)
            .count()
    }

    /// The stored tag set of the stored series `series`.
    pub fn series_tags(&self, series: SeriesId) -> TagSetId {
        self.series.series[series.0 as usize].tags
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
        let id = u32::try_from(sets.sets.len()).expect("fewer than 2^32 tag sets stored");
        let spelled = sets.spellings.len()..sets.spellings.len() + spelling.len();
        sets.spellings.extend_from_slice(spelling);
        sets.sets.push((spelled, start..sets.pairs.len()));
        sets.appended.push(self.batch.wrapping_sub(1));
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
                let series = index.series[id as usize];
                self.name.value(series.name_key) == name.as_bytes()
                    && self.tag_sets.spelling(series.tags) == spelling
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
        let id = u32::try_from(series.len()).expect("fewer than 2^32 series stored");
        series.push(Series {
            name_key,
            tags,
            appended: self.batch.wrapping_sub(1),
        });
        let (names, sets) = (&self.name, &self.tag_sets);
        let hash = series_hash(hasher, name.as_bytes(), sets.spelling(tags));
        index.insert_unique(hash, id, |&id| {
            let series = series[id as usize];
            series_hash(
                hasher,
                names.value(series.name_key),
                sets.spelling(series.tags),
            )
        });
        SeriesId(id)
    }

    /// Appends one point of a stored series.
    pub fn push_series(&mut self, series: SeriesId, time_ms: i64, value: f64) {
        let series = &mut self.series.series[series.0 as usize];
        series.appended = self.batch;
        let Series { name_key, tags, .. } = *series;
        self.append_set(tags);
        self.push_fixed(name_key, time_ms, value);
    }

    /// Appends one point of a stored tag set.
    pub fn push_tagged(&mut self, name: &str, time_ms: i64, value: f64, tags: TagSetId) {
        self.tag_sets.appended[tags.0 as usize] = self.batch;
        self.append_set(tags);
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
        append_tags(
            &mut self.tags,
            &self.resolved,
            self.rows,
            &mut self.batch_columns,
        );
        let name_key = self.name.intern(name);
        self.push_fixed(name_key, time_ms, value);
    }

    /// Appends the stored set `tags`' tags to the row being added.
    fn append_set(&mut self, tags: TagSetId) {
        let pairs = self.tag_sets.pairs(tags);
        append_tags(&mut self.tags, pairs, self.rows, &mut self.batch_columns);
    }

    /// The columns every row has: time, the name's key, value.
    fn push_fixed(&mut self, name_key: i32, time_ms: i64, value: f64) {
        self.time.push(time_ms);
        self.name.push_key(name_key);
        self.value.push(value);
        self.rows += 1;
    }

    /// Finishes the batch: its rows, and the tag columns and values they
    /// use. What it stored is kept for the next batch while that pays (see
    /// [`Kept`]).
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
        let mut in_batch = Vec::with_capacity(self.batch_columns);
        for column in &mut self.tags {
            match column.values.len() {
                0 => column.values.skip_batch(),
                _ => in_batch.push(column),
            }
        }
        in_batch.sort_by(|a, b| a.key.cmp(&b.key));
        for column in in_batch {
            column.pad(rows);
            fields.push(Field::new(column.key.clone(), string_type(), true));
            columns.push(Arc::new(column.values.finish()));
        }
        self.rows = 0;
        self.batch_columns = 0;
        // Measured with no rows: what keeping would hold.
        if !self.kept().worth_keeping() || self.estimated_bytes() > self.kept_limit {
            self.forget_stored();
        }
        self.batch = self.batch.wrapping_add(1);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }

    /// Keeps at most `bytes` (as [`Self::estimated_bytes`] counts them) from
    /// one batch for the next: what is kept counts against the next batch's
    /// memory, so its owner bounds it by what a batch may hold.
    pub fn keep_at_most(&mut self, bytes: usize) {
        self.kept_limit = bytes;
    }

    /// Forgets what the builder keeps between batches (see [`Kept`]), when
    /// memory is short. Only between batches: a batch with rows still needs
    /// what it stored.
    pub fn forget_kept(&mut self) {
        if self.rows == 0 {
            self.forget_stored();
        }
    }

    /// What the builder stores, and how much of it the batch just finished
    /// used.
    fn kept(&mut self) -> Kept {
        let batch = self.batch;
        let mut kept = Kept::default();
        for series in &self.series.series {
            if series.appended == batch {
                kept.used += 1;
                // A set is in use if a series of it is.
                self.tag_sets.appended[series.tags.0 as usize] = batch;
            }
        }
        kept.stored += self.series.series.len();
        kept.stored += self.tag_sets.appended.len();
        kept.used += self
            .tag_sets
            .appended
            .iter()
            .filter(|&&b| b == batch)
            .count();
        for column in std::iter::once(&self.name).chain(self.tags.iter().map(|c| &c.values)) {
            kept.stored += column.stored();
            kept.used += column.used();
        }
        kept
    }

    /// Forgets every stored series, tag set, value and tag column; the
    /// next batch stores its own afresh.
    fn forget_stored(&mut self) {
        self.name.clear();
        self.tags.clear();
        self.columns.clear();
        self.tag_sets.clear();
        self.series.clear();
    }
}

/// Entries the builder stores (series, tag sets, dictionary values), and
/// how many of them the last batch used. They are kept for the next batch
/// while at most about half are unused: a stream of the same series keeps
/// them all, and one whose series change is bounded to about twice what a
/// batch uses, plus [`Kept::SLACK`].
#[derive(Debug, Default)]
struct Kept {
    stored: usize,
    used: usize,
}

impl Kept {
    /// Unused entries kept whatever the batch used: a small store costs
    /// little, and a quiet batch should not cost its stream its series.
    /// Small in unit tests, so that property tests reach the forgetting.
    const SLACK: usize = if cfg!(test) { 16 } else { 4096 };

    fn worth_keeping(&self) -> bool {
        let unused = self.stored.saturating_sub(self.used);
        unused <= self.used.saturating_add(Self::SLACK)
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

/// Appends row `row`'s tags, padding each column up to it first, and
/// counts in `batch_columns` the columns that had no row in the batch yet.
fn append_tags(
    tags: &mut [TagColumn],
    pairs: &[(ColumnIndex, i32)],
    row: usize,
    batch_columns: &mut usize,
) {
    for &(column, key) in pairs {
        let column = &mut tags[column as usize];
        if column.values.len() == 0 {
            *batch_columns += 1;
        }
        column.pad(row);
        column.values.push_key(key);
    }
}

#[cfg(test)]
mod tests;
