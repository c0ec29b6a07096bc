//! A run's figures: one table for people, the same as JSON for machines.

use std::fmt::Write as _;

use procfs::Current;
use serde::Serialize;

use super::{
    drain::DrainResult, latency::LatencyResult, queries::QueryTiming, scaling::LakeScaling,
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    pub klaxon_version: String,
    pub machine: Machine,
    pub broker: String,
    pub drains: Vec<DrainResult>,
    pub queries: Vec<QueryTiming>,
    pub latency: Vec<LatencyResult>,
    pub scaling: Option<LakeScaling>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: u64,
}

impl Machine {
    pub(crate) fn this() -> Self {
        let cpu = procfs::CpuInfo::current()
            .ok()
            .and_then(|info| info.model_name(0).map(str::to_owned))
            .unwrap_or_default();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: procfs::Meminfo::current().map_or(0, |m| m.mem_total),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl BenchReport {
    /// Every figure as one Markdown table: benchmark, measure, value.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String, String)> = Vec::new();
        let mut row = |bench: &str, measure: &str, value: String| {
            rows.push((bench.to_owned(), measure.to_owned(), value));
        };
        let m = &self.machine;
        row(
            "machine",
            "cpu, memory",
            format!("{} × {}, {}", m.cores, m.cpu, mib(m.memory_bytes)),
        );
        row("machine", "broker", self.broker.clone());
        for d in &self.drains {
            let bench = format!(
                "ingest {} ({} points, {} series)",
                d.format,
                thousands(d.points as f64),
                thousands(d.series as f64)
            );
            row(
                &bench,
                "points/s",
                format!("{} ({:.1} s)", thousands(d.points_per_sec), d.drain_secs),
            );
            row(&bench, "input MB/s", format!("{:.1}", d.input_mb_per_sec));
            row(
                &bench,
                "points/s per CPU second",
                format!(
                    "{} ({:.2} cores busy)",
                    thousands(d.points_per_cpu_sec),
                    d.cores_used
                ),
            );
            if let Some(python) = &d.python {
                row(
                    &bench,
                    "hand-written Python consumer: points/s per CPU second",
                    match (python.points_per_cpu_sec, python.klaxon_ratio) {
                        (Some(rate), Some(ratio)) => {
                            format!("{} (klaxon: {ratio:.1}×)", thousands(rate))
                        }
                        _ => format!(
                            "not run: {}",
                            python.missing.as_deref().unwrap_or("unknown")
                        ),
                    },
                );
            }
            row(
                &bench,
                "transport ceiling (bare consumer) points/s",
                format!(
                    "{} ({:.1} MB/s)",
                    thousands(d.raw.points_per_sec),
                    d.raw.mb_per_sec
                ),
            );
            row(
                &bench,
                "ingest / ceiling",
                format!("{:.0}%", d.fraction_of_ceiling * 100.0),
            );
            if let Some(cpu) = d.broker_cpu_secs {
                row(
                    &bench,
                    "broker CPU while draining",
                    format!("{:.2} cores", cpu / d.drain_secs),
                );
            }
            row(
                &bench,
                "peak RSS (budget)",
                format!("{} ({})", mib(d.peak_rss_bytes), mib(d.memory_budget_bytes)),
            );
            row(
                &bench,
                "bytes per point on disk",
                format!(
                    "{:.2} (input {:.1})",
                    d.lake_bytes_per_point,
                    d.input_bytes as f64 / d.points as f64
                ),
            );
            row(
                &bench,
                "after compaction: files, bytes per point",
                format!("{}, {:.2}", d.compacted_files, d.compacted_bytes_per_point),
            );
        }
        for q in &self.queries {
            row(
                &format!("query: {}", q.name),
                "median of 5 (min)",
                format!(
                    "{:.0} ms ({:.0} ms), {} rows",
                    q.median_ms, q.min_ms, q.rows
                ),
            );
        }
        if let Some(scaling) = &self.scaling {
            for q in &scaling.queries {
                let duckdb = match q.duckdb_median_ms {
                    Some(theirs) => format!(
                        "{:.0} ms / {:.0} ms ({:.2}×)",
                        q.klaxon_median_ms,
                        theirs,
                        q.klaxon_median_ms / theirs
                    ),
                    None => format!("{:.0} ms / not run", q.klaxon_median_ms),
                };
                row(
                    &format!(
                        "lake: {} ({} files, {} points)",
                        q.lake,
                        thousands(q.files as f64),
                        thousands(q.points as f64)
                    ),
                    &format!("{}: klaxon / DuckDB median", q.query),
                    duckdb,
                );
            }
            if let Some(secs) = scaling.compaction_secs {
                row(
                    "lake scaling",
                    "compacting the most fragmented lake",
                    format!("{secs:.1} s"),
                );
            }
            if let Some(reason) = &scaling.duckdb_missing {
                row("lake scaling", "DuckDB not run", reason.clone());
            }
        }
        for l in &self.latency {
            let bench = format!(
                "alert latency ({} series, {} alerts)",
                thousands(l.series as f64),
                l.alerts
            );
            row(
                &bench,
                "to paging p50 / p99 / max",
                format!(
                    "{:.0} / {:.0} / {:.0} ms",
                    l.to_paging_ms.p50, l.to_paging_ms.p99, l.to_paging_ms.max
                ),
            );
            row(
                &bench,
                "to webhook p50 / p99 / max",
                format!(
                    "{:.0} / {:.0} / {:.0} ms",
                    l.to_webhook_ms.p50, l.to_webhook_ms.p99, l.to_webhook_ms.max
                ),
            );
            row(
                &bench,
                "rules peak RSS, notifier peak RSS",
                format!(
                    "{}, {}",
                    mib(l.rules_peak_rss_bytes),
                    mib(l.notify_peak_rss_bytes)
                ),
            );
        }
        let width = |f: fn(&(String, String, String)) -> &String, header: &str| {
            rows.iter()
                .map(|r| f(r).chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (
            width(|r| &r.0, "benchmark"),
            width(|r| &r.1, "measure"),
            width(|r| &r.2, "value"),
        );
        let mut out = String::new();
        let mut line = |a: &str, b: &str, c: &str| {
            let _ = writeln!(out, "| {a:<w0$} | {b:<w1$} | {c:<w2$} |");
        };
        line("benchmark", "measure", "value");
        line(&"-".repeat(w0), &"-".repeat(w1), &"-".repeat(w2));
        for (a, b, c) in &rows {
            line(a, b, c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
    }
}
