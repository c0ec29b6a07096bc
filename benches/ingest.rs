//! Hot-path micro-benchmarks: decoding each format into Arrow, building Arrow
//! batches from already parsed points, and turning a batch into a sorted,
//! Parquet file compressed as ingest writes it (LZ4).
//!
//! `cargo bench --bench ingest`; throughput is reported in points per second
//! on one core (criterion runs single-threaded).

use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use klaxon::{
    decode::{Format, Limits, decode_record},
    lake::writer::{Encoding, encode_parquet},
    points::{PointBatchBuilder, series_order, sort_by_series},
    produce::synthetic_point,
};

const POINTS: u64 = 10_000;
const SERIES: u64 = 1_000;
const PER_RECORD: u64 = 100;

/// Records of `PER_RECORD` newline-delimited points, as producers send them.
fn records(format: Format) -> Vec<String> {
    (0..POINTS / PER_RECORD)
        .map(|r| {
            let mut text = String::new();
            for i in r * PER_RECORD..(r + 1) * PER_RECORD {
                if !text.is_empty() {
                    text.push('\n');
                }
                synthetic_point(&mut text, format, i, SERIES, 1_795_514_400_000 + i as i64);
            }
            text
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(POINTS));
    for format in [Format::Json, Format::Graphite, Format::Influx] {
        let input = records(format);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{format:?}")),
            &input,
            |b, input| {
                let mut builder = PointBatchBuilder::default();
                let mut rejects = Vec::new();
                b.iter(|| {
                    for record in input {
                        decode_record(
                            format,
                            record.as_bytes(),
                            0,
                            Limits::unbounded(),
                            &mut builder,
                            &mut rejects,
                        );
                    }
                    builder.finish().unwrap()
                });
            },
        );
    }
    group.finish();
}

/// A parsed point: name, time, value, tags.
type Parsed = (String, i64, f64, [(String, String); 2]);

/// The Arrow side of decoding alone: appending parsed points (dictionary
/// name and tag columns) and finishing the batch.
fn build(c: &mut Criterion) {
    let points: Vec<Parsed> = (0..POINTS)
        .map(|i| {
            let s = i % SERIES;
            (
                format!("metric.{}", s % 4),
                1_795_514_400_000 + i as i64,
                i as f64,
                [
                    ("service".to_owned(), format!("svc-{}", s % 50)),
                    ("host".to_owned(), format!("host-{s}")),
                ],
            )
        })
        .collect();
    let mut group = c.benchmark_group("arrow");
    group.throughput(Throughput::Elements(POINTS));
    group.bench_function("push_and_finish", |b| {
        let mut builder = PointBatchBuilder::default();
        b.iter(|| {
            for (name, time, value, tags) in &points {
                builder.push(name, *time, *value, tags);
            }
            builder.finish().unwrap()
        })
    });
    group.finish();
}

fn parquet(c: &mut Criterion) {
    let mut builder = PointBatchBuilder::default();
    let mut rejects = Vec::new();
    for record in records(Format::Json) {
        decode_record(
            Format::Json,
            record.as_bytes(),
            0,
            Limits::unbounded(),
            &mut builder,
            &mut rejects,
        );
    }
    let batch = builder.finish().unwrap();
    let mut group = c.benchmark_group("lake");
    group.throughput(Throughput::Elements(POINTS));
    group.bench_function("sort_by_series", |b| {
        b.iter(|| sort_by_series(&batch).unwrap())
    });
    // What `sort_by_series` did before it ranked dictionary values:
    // lexsort over the dictionary columns, comparing strings.
    group.bench_function("sort_comparing_strings", |b| {
        b.iter(|| {
            let keys: Vec<SortColumn> = series_order(&batch.schema())
                .into_iter()
                .map(|i| SortColumn {
                    values: batch.column(i).clone(),
                    options: None,
                })
                .collect();
            take_record_batch(&batch, &lexsort_to_indices(&keys, None).unwrap()).unwrap()
        })
    });
    group.bench_function("encode_parquet", |b| {
        let sorted = sort_by_series(&batch).unwrap();
        b.iter(|| encode_parquet(&sorted, 128 * 1024, Encoding::Fast).unwrap())
    });
    group.bench_function("sort_and_encode_parquet", |b| {
        b.iter(|| {
            encode_parquet(&sort_by_series(&batch).unwrap(), 128 * 1024, Encoding::Fast).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, decode, build, parquet);
criterion_main!(benches);
