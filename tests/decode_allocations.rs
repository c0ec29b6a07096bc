//! Decoding allocates per record and per batch, never per point, for points
//! as producers usually write them (string tags, epoch times, no escapes):
//! the hot path borrows names and tag values from the record and appends
//! them to Arrow builders whose buffers grow by doubling. A numeric tag
//! value, an RFC 3339 time, an escaped string or a rejected line does
//! allocate: those leave the hot path.
//!
//! A counting global allocator (this test binary only) counts the calls made
//! on the decoding thread.

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
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
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
