//! Rule evaluation at 100k active series: a 5m window every 1m, with one
//! point per series per minute (a 60s scrape: 100k new points per hop, 500k
//! per window) and six (a 10s scrape: 600k per hop, 3M per window).
//!
//! `cargo bench --bench rules`. Compares one hop evaluated by panes (reduce
//! the new minute, merge five pane states) with the same hop evaluated over
//! the whole window, and measures the streaming engine taking records
//! (decode, watermarks). Throughput is new points per hop, so the figures
//! compare the cost of keeping up with the same stream. `rules_record`
//! takes the records `cargo bench --bench ingest`'s `decode` reads (10,000
//! points of 1,000 series, 100 a record) the way the rules runner takes
//! them, so the two compare: the runner decodes with ingest's decoder.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use klaxon::{
    decode::Format,
    points::PointBatchBuilder,
    produce::synthetic_point,
    rules::{CompiledRule, EngineOptions, RuleEngine, RuleFile},
};

const SERVICES: usize = 1_000;
const HOSTS: usize = 100;
const SERIES: usize = SERVICES * HOSTS;
const MINUTE: i64 = 60_000;

const RULE: &str = r#"
[[rule]]
name = "cpu-high"
sql = "SELECT service, host, avg(value) AS cpu FROM metrics WHERE name = 'cpu' GROUP BY service, host HAVING avg(value) > 99.9"
window = "5m"
every = "1m"
severity = "warning"
"#;

/// The same condition per service: 1,000 groups over the 100k series.
const PER_SERVICE: &str = r#"
[[rule]]
name = "cpu-high-per-service"
sql = "SELECT service, avg(value) AS cpu FROM metrics WHERE name = 'cpu' GROUP BY service HAVING avg(value) > 99.9"
window = "5m"
every = "1m"
severity = "warning"
"#;

fn compiled(rt: &tokio::runtime::Runtime) -> CompiledRule {
    compiled_from(rt, RULE)
}

fn compiled_from(rt: &tokio::runtime::Runtime, text: &str) -> CompiledRule {
    let file: RuleFile = toml::from_str(text).unwrap();
    let rule = file.rule.into_iter().next().unwrap().into_inner();
    rt.block_on(CompiledRule::compile(rule)).unwrap()
}

fn value(series: usize, minute: i64) -> f64 {
    ((series as i64 * 7919 + minute * 104_729) % 10_000) as f64 / 100.0
}

/// `per_minute` points per series in the minute starting at `minute * MINUTE`.
fn minute_of_points(minute: i64, per_minute: i64) -> arrow::array::RecordBatch {
    let mut b = PointBatchBuilder::default();
    let services: Vec<String> = (0..SERVICES).map(|s| format!("svc-{s}")).collect();
    let hosts: Vec<String> = (0..HOSTS).map(|h| format!("host-{h}")).collect();
    for k in 0..per_minute {
        for s in 0..SERIES {
            let tags = [
                ("host", hosts[s % HOSTS].as_str()),
                ("service", services[s / HOSTS].as_str()),
            ];
            let t =
                minute * MINUTE + k * MINUTE / per_minute + (s as i64 * 17) % (MINUTE / per_minute);
            b.push("cpu", t, value(s, minute + k), &tags);
        }
    }
    b.finish().unwrap()
}

fn hop(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (label, text, per_minute) in [
        ("per_series", RULE, 1),
        ("per_series", RULE, 6),
        ("per_service", PER_SERVICE, 6),
    ] {
        let rule = compiled_from(&rt, text);
        assert!(rule.uses_panes());
        let minutes: Vec<_> = (0..5).map(|m| minute_of_points(m, per_minute)).collect();
        let cached: Vec<_> = minutes[..4]
            .iter()
            .flat_map(|m| {
                rt.block_on(rule.pane_state(std::slice::from_ref(m)))
                    .unwrap()
            })
            .collect();
        let mut group = c.benchmark_group(format!(
            "rules_hop_100k_series_{per_minute}_per_min_{label}"
        ));
        group.sample_size(10);
        group.throughput(Throughput::Elements(SERIES as u64 * per_minute as u64));
        group.bench_function("by_panes", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut states = cached.clone();
                    states.extend(rule.pane_state(&minutes[4..]).await.unwrap());
                    rule.merge_panes(states).await.unwrap()
                })
            })
        });
        group.bench_function("whole_window", |b| {
            b.iter(|| rt.block_on(rule.evaluate(&minutes)).unwrap())
        });
        group.finish();
    }
}

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 100 points per record, as producers pack them.
    let records: Vec<Vec<u8>> = (0..SERIES / 100)
        .map(|r| {
            (r * 100..(r + 1) * 100)
                .map(|s| {
                    format!(
                        r#"{{"name":"cpu","time":{},"value":{},"tags":{{"service":"svc-{}","host":"host-{}"}}}}"#,
                        5 * MINUTE + (s as i64 * 17) % MINUTE,
                        value(s, 5),
                        s / HOSTS,
                        s % HOSTS
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        })
        .collect();
    let mut group = c.benchmark_group("rules_engine_100k_series");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SERIES as u64));
    group.bench_function("record_and_seal", |b| {
        b.iter_with_setup(
            || {
                let mut engine = RuleEngine::new(vec![compiled(&rt)], EngineOptions::default());
                engine.assign(("metrics".to_owned(), 0), 0);
                engine
            },
            |mut engine| {
                let partition = ("metrics".to_owned(), 0);
                for (offset, payload) in records.iter().enumerate() {
                    engine.record(&partition, offset as i64, Format::Json, payload, 0, 0);
                }
                rt.block_on(engine.tick(0))
            },
        )
    });
    group.finish();
}

/// The shape of `cargo bench --bench ingest`'s decode records.
const RECORD_POINTS: u64 = 10_000;
const RECORD_SERIES: u64 = 1_000;
const PER_RECORD: u64 = 100;
const FIRST_TIME_MS: i64 = 1_795_514_400_000;

/// The engine taking ingest's decode records: decode and watermarks, as
/// the runner does for each record it consumes.
fn record(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rule = compiled(&rt);
    let mut group = c.benchmark_group("rules_record");
    group.throughput(Throughput::Elements(RECORD_POINTS));
    for format in [Format::Json, Format::Graphite, Format::Influx] {
        let records: Vec<String> = (0..RECORD_POINTS / PER_RECORD)
            .map(|r| {
                let mut text = String::new();
                for i in r * PER_RECORD..(r + 1) * PER_RECORD {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    let time = FIRST_TIME_MS + i as i64;
                    synthetic_point(&mut text, format, i, RECORD_SERIES, time);
                }
                text
            })
            .collect();
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{format:?}")),
            &records,
            |b, records| {
                b.iter_batched(
                    || {
                        let mut engine =
                            RuleEngine::new(vec![rule.clone()], EngineOptions::default());
                        engine.assign(("metrics".to_owned(), 0), 0);
                        engine
                    },
                    |mut engine| {
                        let partition = ("metrics".to_owned(), 0);
                        let wall_ms = FIRST_TIME_MS + RECORD_POINTS as i64;
                        for (offset, payload) in records.iter().enumerate() {
                            let taken = engine.record(
                                &partition,
                                offset as i64,
                                format,
                                payload.as_bytes(),
                                0,
                                wall_ms,
                            );
                            assert_eq!(taken.points, PER_RECORD as usize);
                        }
                        engine
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, hop, engine, record);
criterion_main!(benches);
