//! Parquet column chunks written from an Arrow string dictionary as it is.
//!
//! parquet-rs's `ArrowWriter` encodes a dictionary column row by row: each
//! row's string is looked up in a hash table of the writer's own (a hash
//! and a comparison) and compared with the page's minimum and maximum (two
//! more), work the batch builder already did when it interned the values.
//! On a flush of `klaxon bench`'s shape the three dictionary columns were
//! 70% of encoding (scratch program: 156 ns a point with them, 45 without).
//! Here a chunk costs a pass over its keys to find the values its rows use,
//! those values in order (a look at each one's neighbour when the batch's
//! dictionary is in value order already, as `points::sort_by_series` leaves
//! it; a sort otherwise), and a pass writing each row's index: a sorted
//! dictionary makes every page's minimum and maximum an integer comparison.
//!
//! The chunk is what parquet-rs would write for the column: a PLAIN
//! dictionary page, then v1 data pages of RLE definition levels and
//! RLE_DICTIONARY indices, split every `data_page_row_count_limit` rows (or
//! sooner at `data_page_size_limit`), chunk statistics and the column and
//! offset indexes with level histograms, min and max truncated as
//! parquet-rs truncates them. A chunk whose distinct values would pass the
//! dictionary page limit is left to parquet-rs, which falls back to plain
//! pages.

mod hybrid;

use arrow::{
    array::{Array, ArrayRef, AsArray, DictionaryArray, StringArray},
    datatypes::{DataType, Int32Type},
};
use bytes::Bytes;
use parquet::{
    basic::{BoundaryOrder, Compression, Encoding, PageType},
    column::{
        page::{CompressedPage, Page, PageWriteSpec, PageWriter},
        writer::ColumnCloseResult,
    },
    errors::ParquetError,
    file::{
        metadata::{
            ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder,
            PageEncodingStats,
        },
        properties::{EnabledStatistics, WriterProperties, WriterVersion},
        statistics::{Statistics, ValueStatistics},
        writer::{SerializedPageWriter, TrackedWrite},
    },
    schema::types::ColumnDescPtr,
};

use hybrid::{HybridEncoder, bit_width};

/// `column` as a dictionary this module can write with `props`, or `None`
/// when the column is anything else or `props` ask for what it does not do
/// (bloom filters, v2 pages, other codecs, repeated fields); such a column
/// goes through parquet-rs's writer.
pub(super) fn writable<'a>(
    column: &'a ArrayRef,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Option<&'a DictionaryArray<Int32Type>> {
    let dictionary = column.as_dictionary_opt::<Int32Type>()?;
    let path = descr.path();
    let plain_strings =
        dictionary.values().data_type() == &DataType::Utf8 && dictionary.values().null_count() == 0;
    // A required column's rows must all be values: parquet-rs refuses
    // nulls there, and this writer would drop them.
    let levels_fit = descr.max_def_level() == 1 || dictionary.keys().null_count() == 0;
    let supported = plain_strings
        && levels_fit
        && descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
        && props.dictionary_enabled(path)
        && props.statistics_enabled(path) == EnabledStatistics::Page
        && props.bloom_filter_properties(path).is_none()
        && !props.write_page_header_statistics(path)
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && Codec::of(props.compression(path)).is_some();
    supported.then_some(dictionary)
}

/// Writes `dictionary` (one row group's rows of the column `descr`) as a
/// column chunk: its bytes, and what `SerializedRowGroupWriter::append_column`
/// needs to place them. `None` when the values the rows use would pass the
/// dictionary page limit: parquet-rs's writer then writes the column, and
/// falls back to plain pages as it goes (a tag of request ids must not
/// make every reader load one huge dictionary page per row group).
pub(super) fn write(
    dictionary: &DictionaryArray<Int32Type>,
    descr: ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<(Bytes, ColumnCloseResult)>, ParquetError> {
    let path = descr.path().clone();
    let compression = props.compression(&path);
    let codec = Codec::of(compression)
        .ok_or_else(|| ParquetError::General(format!("{compression} is not written here")))?;
    let values = dictionary.values().as_string::<i32>();
    let keys = dictionary.keys();
    let indices = Indices::of(keys, values);
    if indices.dictionary_bytes > props.column_dictionary_page_size_limit(&path) {
        return Ok(None);
    }
    let nullable = descr.max_def_level() > 0;

    let mut pages = ChunkPages::new(codec);
    pages.write(indices.dictionary_page(values), |buf| {
        Page::DictionaryPage {
            buf,
            num_values: indices.dictionary.len() as u32,
            encoding: Encoding::PLAIN,
            is_sorted: true,
        }
    })?;
    let width = bit_width(indices.dictionary.len().saturating_sub(1) as u32);
    let page_rows = page_rows(props, &path, width, nullable);
    let mut index = ChunkIndex::new(&descr);
    let mut start = 0;
    while start < keys.len() || index.data_pages == 0 {
        let rows = page_rows.min(keys.len() - start);
        let page = indices.page(start, rows, width, nullable);
        let bounds = page.min_max.map(|(min, max)| {
            let truncate = props.column_index_truncate_length();
            (
                (min, truncate_min(indices.value(values, min), truncate).0),
                (max, truncate_max(indices.value(values, max), truncate).0),
            )
        });
        let (nulls, value_bytes) = (page.nulls, page.value_bytes);
        let spec = pages.write(page.buf, |buf| Page::DataPage {
            buf,
            num_values: rows as u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        })?;
        index.add_page(&spec, rows, nulls, value_bytes, bounds);
        start += rows;
    }

    let truncate = props.statistics_truncate_length();
    let statistics = match indices.dictionary.len() {
        0 => ValueStatistics::new(None, None, None, Some(index.null_count), false),
        distinct => {
            let last = distinct as u32 - 1;
            let (min, min_truncated) = truncate_min(indices.value(values, 0), truncate);
            let (max, max_truncated) = truncate_max(indices.value(values, last), truncate);
            ValueStatistics::new(
                Some(min.into()),
                Some(max.into()),
                None,
                Some(index.null_count),
                false,
            )
            .with_min_is_exact(!min_truncated)
            .with_max_is_exact(!max_truncated)
        }
    };
    let (uncompressed, compressed) = (pages.uncompressed, pages.compressed);
    let bytes = Bytes::from(pages.sink.into_inner()?);
    debug_assert_eq!(bytes.len(), compressed, "every page is counted once");
    let metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(compression)
        .set_encodings(vec![
            Encoding::PLAIN,
            Encoding::RLE,
            Encoding::RLE_DICTIONARY,
        ])
        .set_page_encoding_stats(vec![
            PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            },
            PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::RLE_DICTIONARY,
                count: index.data_pages,
            },
        ])
        .set_total_compressed_size(compressed as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_num_values(keys.len() as i64)
        .set_dictionary_page_offset(Some(0))
        .set_data_page_offset(index.first_data_page.unwrap_or(compressed as i64))
        .set_statistics(Statistics::ByteArray(statistics))
        .set_unencoded_byte_array_data_bytes(Some(index.unencoded_bytes))
        .set_definition_level_histogram(index.levels)
        .build()?;
    let mut column_index = index.column_index;
    column_index.set_boundary_order(index.order.boundary());
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: keys.len() as u64,
        metadata,
        bloom_filter: None,
        column_index: Some(column_index.build()?),
        offset_index: Some(index.offset_index.build()),
    };
    Ok(Some((bytes, close)))
}

/// A chunk's pages, compressed and written one after another, and the
/// sizes its metadata sums (page headers included).
struct ChunkPages {
    sink: TrackedWrite<Vec<u8>>,
    codec: Codec,
    uncompressed: usize,
    compressed: usize,
}

impl ChunkPages {
    fn new(codec: Codec) -> Self {
        Self {
            sink: TrackedWrite::new(Vec::new()),
            codec,
            uncompressed: 0,
            compressed: 0,
        }
    }

    /// Compresses `body` and writes the page `page` makes of it.
    fn write(
        &mut self,
        body: Vec<u8>,
        page: impl FnOnce(Bytes) -> Page,
    ) -> Result<PageWriteSpec, ParquetError> {
        let uncompressed = body.len();
        let page = CompressedPage::new(page(self.codec.compress(body)?), uncompressed);
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(page)?;
        self.uncompressed += spec.uncompressed_size;
        self.compressed += spec.compressed_size;
        Ok(spec)
    }
}

/// What a chunk's data pages add up to: the column and offset indexes,
/// level histograms and counts, as parquet-rs records them.
struct ChunkIndex {
    column_index: ColumnIndexBuilder,
    offset_index: OffsetIndexBuilder,
    order: PageOrder,
    /// Rows without and with a value, for a nullable column.
    levels: Option<LevelHistogram>,
    first_data_page: Option<i64>,
    data_pages: i32,
    null_count: u64,
    unencoded_bytes: i64,
}

/// A page's smallest and largest dictionary index, each with its value
/// as the column index stores it.
type PageBounds = ((u32, Vec<u8>), (u32, Vec<u8>));

impl ChunkIndex {
    fn new(descr: &ColumnDescPtr) -> Self {
        Self {
            column_index: ColumnIndexBuilder::new(descr.physical_type()),
            offset_index: OffsetIndexBuilder::new(),
            order: PageOrder::default(),
            levels: LevelHistogram::try_new(descr.max_def_level()),
            first_data_page: None,
            data_pages: 0,
            null_count: 0,
            unencoded_bytes: 0,
        }
    }

    /// Records a data page of `rows` rows, `nulls` of them null; `bounds`
    /// is `None` for a page of nulls only.
    fn add_page(
        &mut self,
        spec: &PageWriteSpec,
        rows: usize,
        nulls: u64,
        value_bytes: i64,
        bounds: Option<PageBounds>,
    ) {
        self.first_data_page.get_or_insert(spec.offset as i64);
        self.offset_index
            .append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        self.offset_index.append_row_count(rows as i64);
        self.offset_index
            .append_unencoded_byte_array_data_bytes(Some(value_bytes));
        match bounds {
            Some(((min, min_value), (max, max_value))) => {
                self.order.see(min, max);
                self.column_index
                    .append(false, min_value, max_value, nulls as i64);
            }
            None => self
                .column_index
                .append(true, Vec::new(), Vec::new(), nulls as i64),
        }
        if let Some(levels) = self.levels.as_mut() {
            let page = LevelHistogram::from(vec![nulls as i64, (rows as u64 - nulls) as i64]);
            self.column_index
                .append_histograms(&None, &Some(page.clone()));
            levels.add(&page);
        }
        self.null_count += nulls;
        self.unencoded_bytes += value_bytes;
        self.data_pages += 1;
    }
}

/// Rows per data page: parquet-rs's row limit, and fewer if the page's
/// indices (and levels) could pass its byte limit.
fn page_rows(
    props: &WriterProperties,
    path: &parquet::schema::types::ColumnPath,
    width: u8,
    nullable: bool,
) -> usize {
    let bits_per_row = usize::from(width) + usize::from(nullable);
    let by_bytes = (props.column_data_page_size_limit(path) * 8)
        .checked_div(bits_per_row)
        .unwrap_or(usize::MAX);
    props.data_page_row_count_limit().min(by_bytes).max(1)
}

/// The chunk's rows as indices into a sorted dictionary of the values they use.
struct Indices<'a> {
    keys: &'a arrow::array::Int32Array,
    /// Arrow dictionary keys of the distinct values the rows use, in value
    /// order: the Parquet dictionary.
    dictionary: Vec<u32>,
    /// Each Arrow key's index in `dictionary` (`u32::MAX` for unused keys;
    /// equal values, which an Arrow dictionary may hold, share an index).
    remap: Vec<u32>,
    /// Each used Arrow key's value length, for the size statistics.
    lengths: Vec<u32>,
    /// The PLAIN dictionary page's size.
    dictionary_bytes: usize,
}

impl<'a> Indices<'a> {
    fn of(keys: &'a arrow::array::Int32Array, values: &StringArray) -> Self {
        let mut remap = vec![u32::MAX; values.len()];
        match keys.nulls() {
            None => keys
                .values()
                .iter()
                .for_each(|&key| remap[key as usize] = 0),
            Some(nulls) => nulls
                .valid_indices()
                .for_each(|row| remap[keys.values()[row] as usize] = 0),
        }
        let mut used: Vec<u32> = (0..values.len() as u32)
            .filter(|&key| remap[key as usize] == 0)
            .collect();
        // Strings order as their bytes, as Parquet orders UTF8 statistics.
        // `points::sort_by_series` leaves dictionaries in value order, so
        // the used values are usually in order already: a look at each
        // neighbour instead of a sort.
        let value = |key: u32| values.value(key as usize);
        if !used.windows(2).all(|pair| value(pair[0]) <= value(pair[1])) {
            used.sort_unstable_by(|&a, &b| value(a).cmp(value(b)));
        }
        let mut dictionary: Vec<u32> = Vec::with_capacity(used.len());
        let mut lengths = vec![0; values.len()];
        let mut dictionary_bytes = 0;
        for &key in &used {
            let len = value(key).len();
            if dictionary
                .last()
                .is_none_or(|&last| value(last) != value(key))
            {
                dictionary.push(key);
                dictionary_bytes += 4 + len;
            }
            remap[key as usize] = dictionary.len() as u32 - 1;
            lengths[key as usize] = len as u32;
        }
        Self {
            keys,
            dictionary,
            remap,
            lengths,
            dictionary_bytes,
        }
    }

    /// The value at `index` of the Parquet dictionary.
    fn value<'v>(&self, values: &'v StringArray, index: u32) -> &'v str {
        values.value(self.dictionary[index as usize] as usize)
    }

    /// The PLAIN dictionary page: each value's length (u32, little endian)
    /// and bytes.
    fn dictionary_page(&self, values: &StringArray) -> Vec<u8> {
        let mut page = Vec::with_capacity(self.dictionary_bytes);
        for &key in &self.dictionary {
            let value = values.value(key as usize).as_bytes();
            page.extend_from_slice(&(value.len() as u32).to_le_bytes());
            page.extend_from_slice(value);
        }
        page
    }

    /// Rows `start..start + rows` as a v1 data page body (uncompressed).
    fn page(&self, start: usize, rows: usize, width: u8, nullable: bool) -> EncodedPage {
        let keys = &self.keys.values()[start..start + rows];
        let nulls = self.keys.nulls().map(|n| n.slice(start, rows));
        let mut buf = Vec::with_capacity(2 + rows * usize::from(width) / 8);
        if nullable {
            // Definition levels, prefixed by their length.
            buf.extend_from_slice(&[0; 4]);
            let mut levels = HybridEncoder::new(1, buf);
            match &nulls {
                None => levels.put_repeated(1, rows),
                Some(nulls) => (0..rows).for_each(|row| levels.put(u32::from(nulls.is_valid(row)))),
            }
            buf = levels.finish();
            let length = (buf.len() - 4) as u32;
            buf[..4].copy_from_slice(&length.to_le_bytes());
        }
        buf.push(width);
        let mut encoder = HybridEncoder::new(width, buf);
        let (mut min, mut max) = (u32::MAX, 0);
        let mut value_bytes = 0i64;
        let mut take = |key: i32| {
            let index = self.remap[key as usize];
            min = min.min(index);
            max = max.max(index);
            value_bytes += i64::from(self.lengths[key as usize]);
            encoder.put(index);
        };
        let nulls_in_page = match &nulls {
            None => {
                keys.iter().for_each(|&key| take(key));
                0
            }
            Some(nulls) => {
                nulls.valid_indices().for_each(|row| take(keys[row]));
                nulls.null_count() as u64
            }
        };
        EncodedPage {
            buf: encoder.finish(),
            min_max: (min <= max).then_some((min, max)),
            nulls: nulls_in_page,
            value_bytes,
        }
    }
}

struct EncodedPage {
    buf: Vec<u8>,
    /// The smallest and largest dictionary index of the page's values;
    /// `None` for a page of nulls only.
    min_max: Option<(u32, u32)>,
    nulls: u64,
    /// Bytes of the page's values as plain strings.
    value_bytes: i64,
}

/// Whether the pages' minima and maxima only rise (or only fall), for the
/// column index's boundary order, as parquet-rs decides it.
struct PageOrder {
    last: Option<(u32, u32)>,
    ascending: bool,
    descending: bool,
}

impl Default for PageOrder {
    fn default() -> Self {
        Self {
            last: None,
            ascending: true,
            descending: true,
        }
    }
}

impl PageOrder {
    fn see(&mut self, min: u32, max: u32) {
        if let Some((last_min, last_max)) = self.last {
            self.ascending &= last_min <= min && last_max <= max;
            self.descending &= last_min >= min && last_max >= max;
        }
        self.last = Some((min, max));
    }

    fn boundary(&self) -> BoundaryOrder {
        match (self.ascending, self.descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        }
    }
}

/// The codecs the lake writes with.
#[derive(Debug, Clone, Copy)]
enum Codec {
    Uncompressed,
    Lz4Raw,
    Zstd(i32),
}

impl Codec {
    fn of(compression: Compression) -> Option<Self> {
        match compression {
            Compression::UNCOMPRESSED => Some(Self::Uncompressed),
            Compression::LZ4_RAW => Some(Self::Lz4Raw),
            Compression::ZSTD(level) => Some(Self::Zstd(level.compression_level())),
            _ => None,
        }
    }

    /// `page` compressed as parquet-rs's codecs do: LZ4 blocks without a
    /// frame (LZ4_RAW), a zstd frame.
    fn compress(self, page: Vec<u8>) -> Result<Bytes, ParquetError> {
        Ok(match self {
            Self::Uncompressed => Bytes::from(page),
            Self::Lz4Raw => Bytes::from(lz4_flex::block::compress(&page)),
            Self::Zstd(level) => Bytes::from(
                zstd::bulk::compress(&page, level)
                    .map_err(|e| ParquetError::External(Box::new(e)))?,
            ),
        })
    }
}

/// A statistic's lower bound cut to `length` bytes at a char boundary, and
/// whether it was cut (parquet-rs's `truncate_min_value` for strings).
fn truncate_min(value: &str, length: Option<usize>) -> (Vec<u8>, bool) {
    match length.filter(|&l| value.len() > l) {
        Some(l) => match (1..=l).rfind(|&at| value.is_char_boundary(at)) {
            Some(at) => (value.as_bytes()[..at].to_vec(), true),
            None => (value.as_bytes().to_vec(), false),
        },
        None => (value.as_bytes().to_vec(), false),
    }
}

/// A statistic's upper bound cut to at most `length` bytes with its last
/// char incremented so it still bounds the value (parquet-rs's
/// `truncate_max_value` for strings); the whole value when no such cut is.
fn truncate_max(value: &str, length: Option<usize>) -> (Vec<u8>, bool) {
    let cut = length.filter(|&l| value.len() > l).and_then(|l| {
        let at = (l.saturating_sub(3)..=l).rfind(|&at| value.is_char_boundary(at))?;
        increment_last_char(value.get(..at)?)
    });
    match cut {
        Some(cut) => (cut, true),
        None => (value.as_bytes().to_vec(), false),
    }
}

/// `prefix` with its last char that can be incremented without changing
/// its width incremented, and what follows it dropped.
fn increment_last_char(prefix: &str) -> Option<Vec<u8>> {
    prefix.char_indices().rev().find_map(|(at, c)| {
        let next = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8())?;
        let mut bytes = prefix.as_bytes()[..at + c.len_utf8()].to_vec();
        next.encode_utf8(&mut bytes[at..]);
        Some(bytes)
    })
}

#[cfg(test)]
mod tests;
