//! `klaxon report`: on-call health from the lake's `incidents` table.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::{
    config::Config,
    lake::Lake,
    query::QueryEngine,
    report::{Report, report},
};

use super::table::seconds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Md,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Incidents opened in this last stretch of time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30d")]
    pub since: Duration,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Print the SQL behind each figure (DataFusion and DuckDB run it alike).
    #[arg(long)]
    pub show_sql: bool,
    /// The on-call file, for each person's time zone. Default: notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub oncall: Option<PathBuf>,
}

pub async fn run(config: Config, args: ReportArgs) -> Result<()> {
    let oncall = match args.oncall.as_ref().or(config.notify.oncall.as_ref()) {
        Some(path) => Some(super::oncall::load_oncall(path)?.oncall),
        None => None,
    };
    let lake = Lake::open(&config.lake)?;
    let engine = QueryEngine::open(&lake).await?;
    let since = super::ago(args.since);
    let report = report(&engine, since, oncall.as_ref()).await?;
    let text = match args.format {
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Table => render(&report, false, args.show_sql),
        ReportFormat::Md => render(&report, true, args.show_sql),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if args.format == ReportFormat::Json && args.show_sql {
        for q in &report.queries {
            writeln!(stdout, "-- {}\n{};\n", q.title, q.sql)?;
        }
    }
    Ok(())
}

/// The report as aligned text or Markdown tables, each with its SQL when asked.
fn render(r: &Report, markdown: bool, show_sql: bool) -> String {
    let mut out = String::new();
    let since = r.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let title = if markdown { "# " } else { "" };
    out.push_str(&format!(
        "{title}On-call report: incidents opened since {since}\n"
    ));
    let mut table = |title: &str, header: &[&str], rows: Vec<Vec<String>>, sql: &str| {
        out.push_str(&format!(
            "\n{}{title}\n\n",
            if markdown { "## " } else { "" }
        ));
        out.push_str(&super::table::aligned(header, &rows, markdown));
        if show_sql {
            out.push_str(&format!("\n```sql\n{sql};\n```\n"));
        }
    };
    let sql = |i: usize| r.queries.get(i).map_or("", |q| q.sql.as_str());
    table(
        "Incidents by service, rule and severity",
        &["service", "rule", "severity", "incidents"],
        r.by_rule
            .iter()
            .map(|b| {
                vec![
                    b.service.clone().unwrap_or_else(|| "-".to_owned()),
                    b.rule.clone(),
                    b.severity.clone(),
                    b.incidents.to_string(),
                ]
            })
            .collect(),
        sql(0),
    );
    let p = &r.response;
    table(
        "Time to acknowledge and resolve (incidents that paged someone)",
        &[
            "incidents",
            "ack p50",
            "ack p95",
            "resolve p50",
            "resolve p95",
        ],
        vec![vec![
            p.paged_incidents.to_string(),
            seconds(p.tta_p50_s),
            seconds(p.tta_p95_s),
            seconds(p.ttr_p50_s),
            seconds(p.ttr_p95_s),
        ]],
        sql(1),
    );
    table(
        "Interruptions per person (business 08-18 weekdays, sleep 22-08, off: the rest)",
        &[
            "user",
            "time zone",
            "business",
            "off hours",
            "sleep",
            "total",
        ],
        r.interruptions
            .iter()
            .map(|i| {
                vec![
                    i.user.clone(),
                    i.time_zone.clone(),
                    i.business.to_string(),
                    i.off_hours.to_string(),
                    i.sleep.to_string(),
                    (i.business + i.off_hours + i.sleep).to_string(),
                ]
            })
            .collect(),
        sql(2),
    );
    table(
        "Noisiest rules (flapping candidates: resolved by the rule within 5 minutes; flapping: by a route's flap detection)",
        &[
            "rule",
            "triggers",
            "incidents",
            "self-resolved within 5m",
            "flapping",
        ],
        r.noisiest
            .iter()
            .map(|n| {
                vec![
                    n.rule.clone(),
                    n.triggers.to_string(),
                    n.incidents.to_string(),
                    n.self_resolved_within_5m.to_string(),
                    n.flapping.to_string(),
                ]
            })
            .collect(),
        sql(3),
    );
    out
}
