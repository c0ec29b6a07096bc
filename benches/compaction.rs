//! Compaction's merge at the default target size: one hour of one partition
//! as ingest flushes it (a file every 10 s, LZ4), until the files add up to
//! `lake.compaction.target_file_size`, merged into one zstd file.
//!
//! `cargo bench --bench compaction` prints the run's size, the merged file's
//! bytes per point and the heap each way of merging allocates beyond the
//! inputs' bytes at its peak (counted by this binary's allocator): the
//! streaming merge compaction uses, and decoding the whole run and sorting it
//! at once, as compaction did before. Then criterion times the streaming
//! merge on a tenth of the run.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use arrow::{array::RecordBatch, compute::concat_batches};
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use klaxon::{
    config::CompactionConfig,
    lake::{
        merge::merge_sorted,
        writer::{Encoding, encode_parquet},
    },
    points::{PointBatchBuilder, sort_by_series},
    produce::synthetic_series,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Counts the heap in use and its peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `klaxon bench`'s default series count.
const SERIES: u64 = 10_000;
/// Each series has a point every `STEP_MS`; a flush holds 10 s of them.
const STEP_MS: u64 = 2_000;
const FLUSH_MS: u64 = 10_000;

/// Flushes of one partition's hour, each sorted and LZ4-encoded as ingest
/// writes it, until they add up to `target` bytes (or the hour ends).
fn flushes(target: u64) -> (Vec<Bytes>, u64) {
    let mut files = Vec::new();
    let (mut bytes, mut points) = (0, 0);
    let per_flush = SERIES * FLUSH_MS / STEP_MS;
    for flush in 0..3_600_000 / FLUSH_MS {
        if bytes >= target {
            break;
        }
        let mut builder = PointBatchBuilder::default();
        for i in flush * per_flush..(flush + 1) * per_flush {
            let (name, value, service, host) = synthetic_series(i, SERIES);
            let (service, host) = (format!("svc-{service}"), format!("host-{host}"));
            let time = (i / SERIES * STEP_MS) as i64 + 1_795_514_400_000;
            let value = (value * 1000.0).round() / 1000.0;
            builder.push(name, time, value, &[("service", &service), ("host", &host)]);
        }
        let sorted = sort_by_series(&builder.finish().expect("batch")).expect("sorted");
        let file = encode_parquet(&sorted, 131_072, Encoding::Fast).expect("encoded");
        bytes += file.len() as u64;
        points += per_flush;
        files.push(file);
    }
    (files, points)
}

/// Compaction before the streaming merge: every input decoded, one batch,
/// one sort, one encode. The inputs here share their columns.
fn merge_at_once(inputs: Vec<Bytes>) -> Bytes {
    let mut batches: Vec<RecordBatch> = Vec::new();
    for bytes in inputs {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("parquet")
            .build()
            .expect("reader");
        batches.extend(reader.map(|b| b.expect("batch")));
    }
    let all = concat_batches(&batches[0].schema(), &batches).expect("concat");
    drop(batches);
    let sorted = sort_by_series(&all).expect("sorted");
    drop(all);
    encode_parquet(&sorted, 131_072, Encoding::Compact).expect("encoded")
}

/// Runs `merge` and returns its output's size, the seconds it took and the
/// heap it held at its peak beyond what was in use before.
fn measured(merge: impl FnOnce() -> usize) -> (usize, f64, usize) {
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let out = merge();
    let secs = started.elapsed().as_secs_f64();
    (out, secs, PEAK.load(Ordering::Relaxed) - before)
}

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let target = CompactionConfig::default().target_file_size.as_u64();
    let (inputs, points) = flushes(target);
    let input_bytes: usize = inputs.iter().map(Bytes::len).sum();
    println!(
        "run: {} files, {:.1} MiB, {:.1}M points ({:.2} bytes/point), {SERIES} series",
        inputs.len(),
        input_bytes as f64 / MIB,
        points as f64 / 1e6,
        input_bytes as f64 / points as f64
    );
    for (name, streaming) in [
        ("streaming merge", true),
        ("decode, sort, encode at once", false),
    ] {
        let run = inputs.clone();
        let (out, secs, peak) = measured(|| {
            if streaming {
                merge_sorted(run, 131_072, Encoding::Compact)
                    .expect("merged")
                    .encoded
                    .len()
            } else {
                merge_at_once(run).len()
            }
        });
        println!(
            "{name}: {:.1} MiB ({:.2} bytes/point) in {secs:.1} s ({:.2}M points/s); \
             heap beyond the inputs at its peak: {:.0} MiB ({:.1}x the inputs)",
            out as f64 / MIB,
            out as f64 / points as f64,
            points as f64 / secs / 1e6,
            peak as f64 / MIB,
            peak as f64 / input_bytes as f64,
        );
    }

    let tenth = &inputs[..inputs.len().div_ceil(10)];
    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    let mut group = criterion.benchmark_group("compaction");
    group.throughput(Throughput::Elements(
        points / inputs.len() as u64 * tenth.len() as u64,
    ));
    group.bench_function("streaming merge, a tenth of the run", |b| {
        b.iter(|| merge_sorted(tenth.to_vec(), 131_072, Encoding::Compact).expect("merged"))
    });
    group.finish();
    criterion.final_summary();
}
