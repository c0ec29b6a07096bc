//! Decoding allocates per record and per batch, never per point, for points
//! as producers usually write them (string tags, epoch times, no escapes):
//! the hot path borrows names and tag values from the record and appends
//! them to Arrow builders whose buffers grow by doubling. A numeric tag
//! value, an RFC 3339 time, an escaped string or a rejected line does
//! allocate: those leave the hot path.
//!
//! A counting global allocator (this test binary only) counts the calls made
//! on the decoding thread, and the bytes they hold, so a test can also check
//! that the batch's own measure of its memory (ingest's memory budget) keeps
//! up with what it really holds.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use klaxon::{
    decode::{Format, Limits, decode_record},
    points::PointBatchBuilder,
    produce::synthetic_point,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread.
    static HELD: Cell<i64> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn hold(bytes: i64) {
    let _ = HELD.try_with(|n| n.set(n.get() + bytes));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        hold(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        hold(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        hold(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn held() -> i64 {
    HELD.with(Cell::get)
}

const RECORDS: u64 = 200;
const PER_RECORD: u64 = 100;
/// Few series, so the dictionaries stop growing early and what is left to
/// count is the per-point path.
const SERIES: u64 = 50;

#[test]
fn decoding_allocates_per_record_not_per_point() {
    for format in [Format::Json, Format::Graphite, Format::Influx] {
        let records: Vec<String> = (0..RECORDS)
            .map(|r| {
                let mut text = String::new();
                for i in r * PER_RECORD..(r + 1) * PER_RECORD {
                    synthetic_point(&mut text, format, i, SERIES, 1_795_514_400_000 + i as i64);
                    text.push('\n');
                }
                text
            })
            .collect();
        let mut builder = PointBatchBuilder::default();
        let mut rejects = Vec::new();
        let before = allocations();
        let mut points = 0;
        for record in &records {
            points += decode_record(
                format,
                record.as_bytes(),
                0,
                Limits::unbounded(),
                &mut builder,
                &mut rejects,
            );
        }
        let made = allocations() - before;
        assert_eq!(
            points as u64,
            RECORDS * PER_RECORD,
            "{format:?}: {rejects:?}"
        );
        // A few scratch buffers per record (the line's tags and points,
        // Influx's `measurement.field` name), plus buffer doublings: 298 for
        // JSON and Graphite, 698 for Influx when last measured. One allocation per
        // point would be 20,000.
        let bound = 5 * RECORDS + 200;
        assert!(made > 0, "the counting allocator saw nothing");
        assert!(
            made <= bound,
            "{format:?}: {made} allocations for {points} points in {RECORDS} records (bound {bound})"
        );
        eprintln!("{format:?}: {made} allocations for {points} points in {RECORDS} records");
    }
}

/// Ingest flushes a partition when the memory its batch holds reaches the
/// budget, measured as its input bytes or the batch's own measure
/// (`estimated_bytes`), whichever is more. That measure must follow the
/// memory really held, whatever the input: a batch of ordinary points, and
/// one where every line is a new series of 64 one-letter tags (each line's
/// tag set is stored, at 8 bytes a tag against 4 of input, and a column key
/// per tag and row).
#[test]
fn the_batch_measures_the_memory_it_holds() {
    let ordinary: Vec<String> = (0..RECORDS)
        .map(|r| {
            let mut text = String::new();
            for i in r * PER_RECORD..(r + 1) * PER_RECORD {
                synthetic_point(&mut text, Format::Influx, i, 10_000, 1_795_514_400_000);
                text.push('\n');
            }
            text
        })
        .collect();
    let letters: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let hostile: Vec<String> = (0..RECORDS)
        .map(|r| {
            let mut text = String::new();
            for i in r * PER_RECORD..(r + 1) * PER_RECORD {
                text.push('m');
                for (k, letter) in letters.iter().take(63).enumerate() {
                    // One tag takes a new value each line, the rest cycle.
                    let value = if k == 0 { i } else { i % 7 };
                    text.push_str(&format!(",{letter}={value}"));
                }
                text.push_str(",_=x value=1 1795514400000000000\n");
            }
            text
        })
        .collect();
    for (what, records) in [("ordinary", &ordinary), ("new series", &hostile)] {
        let mut builder = PointBatchBuilder::default();
        let mut rejects = Vec::new();
        let before = held();
        let input: usize = records.iter().map(String::len).sum();
        for record in records {
            decode_record(
                Format::Influx,
                record.as_bytes(),
                0,
                Limits::unbounded(),
                &mut builder,
                &mut rejects,
            );
        }
        assert!(rejects.is_empty(), "{what}: {:?}", rejects.first());
        assert_eq!(builder.len() as u64, RECORDS * PER_RECORD, "{what}");
        let really = (held() - before) as usize;
        let measured = builder.estimated_bytes().max(input);
        eprintln!("{what}: the batch says {measured} bytes, holds {really}");
        // Column buffers grow by doubling and are measured by their rows, so
        // up to half of what is held can be capacity not yet used; past
        // that, the budget is being bypassed.
        assert!(
            measured * 2 >= really,
            "{what}: the batch says {measured} bytes but holds {really}"
        );
    }
}
