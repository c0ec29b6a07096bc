//! `klaxon rules check | test | run`: validate rule files, replay points
//! through them, or evaluate them on the metrics topics.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::{
    GRACE, create_topics, need_brokers,
    table::{aligned, seconds},
};
use crate::{
    backtest::{Backtest, Plan, Progress},
    config::{Config, Overrides},
    decode::Format,
    lake::Lake,
    query::QueryEngine,
    rules::{EngineOptions, RuleSet},
    shutdown, telemetry,
};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate every rule file in a directory: TOML, durations, thresholds,
    /// templates, and the SQL planned against the metrics table. Prints each
    /// problem as FILE:LINE and exits non-zero if there is any.
    Check {
        /// Directory of *.toml rule files.
        dir: PathBuf,
        /// Check column names against this lake's tags too (with --lake or
        /// lake.url). Without it, any column the SQL names is taken for a tag.
        #[arg(long)]
        against_lake: bool,
    },
    /// Replay points from a file through rules and print, as JSON lines, the
    /// paging events they would raise. Time is the points' own: windows step
    /// from the first point until every timer has run out.
    Test {
        /// A rules file, or a directory of them.
        rules: PathBuf,
        /// Points: newline-delimited, in --format.
        #[arg(long)]
        points: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Replay rules over the lake's history in event time, through the
    /// streaming engine, and say per rule how many incidents they would have
    /// opened, how long those lasted, and whom they would have paged at
    /// night (with the on-call file); with --against, beside the rules they
    /// would replace. Progress goes to stderr.
    Backtest(BacktestArgs),
    /// Evaluate rules on the metrics topics (group `klaxon-rules`) and publish
    /// alert events to the paging topic. Rule files are reloaded as they
    /// change; alert state survives restarts (on the state topic).
    Run(RulesRunArgs),
}

/// Flags of `klaxon rules backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The rules to try: a rules file, or a directory of them.
    pub rules: PathBuf,
    /// Replay this last stretch of the lake's history.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "14d")]
    pub since: Duration,
    /// The rules as they are now (a file or directory), replayed over the
    /// same points for comparison.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// The on-call file, for whom each incident pages and in which hours of
    /// their day. Default: notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub oncall: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BacktestFormat::Table)]
    pub format: BacktestFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BacktestFormat {
    /// Per rule figures as a table.
    Table,
    /// Figures and every incident, as one JSON document.
    Json,
}

/// Flags of `klaxon rules run`; each overrides its `[rules]` config key.
#[derive(Debug, Args)]
pub struct RulesRunArgs {
    /// A rules file, or a directory of them. Overrides rules.dir.
    pub rules: Option<PathBuf>,
    #[arg(long, env = "KLAXON_PAGING_TOPIC")]
    pub paging_topic: Option<String>,
    #[arg(long, env = "KLAXON_RULES_STATE_TOPIC")]
    pub state_topic: Option<String>,
    /// A partition silent this long stops holding event time back (30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Points may arrive this late and still count for their window (5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub allowed_lateness: Option<Duration>,
    /// How often rule files are read again for changes (5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub reload_interval: Option<Duration>,
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
}

impl RulesRunArgs {
    pub(super) fn overrides(&self, overrides: &mut Overrides) {
        overrides.http_listen = self.http_listen.clone();
        overrides.rules_dir = self.rules.clone();
        overrides.rules_paging_topic = self.paging_topic.clone();
        overrides.rules_state_topic = self.state_topic.clone();
        overrides.rules_idle_timeout = self.idle_timeout;
        overrides.rules_allowed_lateness = self.allowed_lateness;
        overrides.rules_reload_interval = self.reload_interval;
    }
}

pub async fn run(config: Config, command: RulesCommand) -> Result<()> {
    match command {
        RulesCommand::Check { dir, against_lake } => check(config, &dir, against_lake).await,
        RulesCommand::Test {
            rules,
            points,
            format,
        } => test(&rules, &points, format).await,
        RulesCommand::Backtest(args) => backtest(config, args).await,
        RulesCommand::Run(_) => run_rules(config).await,
    }
}

async fn check(config: Config, dir: &Path, against_lake: bool) -> Result<()> {
    let known = if against_lake {
        let lake = Lake::open(&config.lake)?;
        Some(QueryEngine::open(&lake).await?.rule_schema())
    } else {
        None
    };
    let report = crate::rules::check_dir(dir, known)
        .await
        .with_context(|| format!("reading rules from {}", dir.display()))?;
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    if report.problems.is_empty() {
        println!("{} rules in {} files: OK", report.rules.len(), report.files);
        Ok(())
    } else {
        bail!(
            "{} problems in {} rules ({} files)",
            report.problems.len(),
            report.rules.len(),
            report.files
        )
    }
}

/// Checks and compiles every rule under `path`, refusing them all if any
/// has a problem (each printed as FILE:LINE: reason).
pub(super) async fn load_rules(path: &Path) -> Result<RuleSet> {
    match RuleSet::load(path)
        .await
        .with_context(|| format!("reading rules from {}", path.display()))?
    {
        Ok(set) => Ok(set),
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            bail!("{} problems in the rules", problems.len())
        }
    }
}

async fn run_rules(config: Config) -> Result<()> {
    need_brokers(&config)?;
    let Some(dir) = config.rules.dir.clone() else {
        bail!("no rules: pass a rules directory or set rules.dir in the config file");
    };
    let set = load_rules(&dir).await?;
    let shutdown = shutdown::on_signals(GRACE);
    create_topics(&config, crate::rules::topics(&config)).await?;
    let (addr, _server) =
        crate::http::serve(&config.http, telemetry::init_metrics(), shutdown.clone()).await?;
    tracing::info!(%addr, "serving /metrics");
    crate::rules::run_rules(&config, set, shutdown).await?;
    Ok(())
}

async fn test(rules: &Path, points: &Path, format: Format) -> Result<()> {
    use crate::{
        decode::{Limits, decode_record},
        points::PointBatchBuilder,
        rules::replay,
    };
    let compiled = load_rules(rules).await?.rules();
    let bytes = std::fs::read(points).with_context(|| format!("reading {}", points.display()))?;
    let mut builder = PointBatchBuilder::default();
    let mut rejects = Vec::new();
    decode_record(
        format,
        &bytes,
        0,
        Limits::unbounded(),
        &mut builder,
        &mut rejects,
    );
    for r in &rejects {
        eprintln!(
            "{}:{}: {}: {}",
            points.display(),
            r.line,
            r.reason.as_str(),
            r.detail
        );
    }
    let batch = builder.finish()?;
    let mut stdout = std::io::stdout().lock();
    for rule in &compiled {
        for event in replay(rule, &batch).await? {
            writeln!(stdout, "{}", serde_json::to_string(&event)?)?;
        }
    }
    Ok(())
}

async fn backtest(config: Config, args: BacktestArgs) -> Result<()> {
    let tested = load_rules(&args.rules).await?.rules();
    let against = match &args.against {
        Some(dir) => Some(load_rules(dir).await?.rules()),
        None => None,
    };
    let oncall = match args.oncall.as_ref().or(config.notify.oncall.as_ref()) {
        Some(path) => Some(super::oncall::load_oncall(path)?.oncall),
        None => None,
    };
    let lake = Lake::open(&config.lake)?;
    let query = QueryEngine::open(&lake).await?;
    let mut last_line = std::time::Instant::now();
    let mut progress = |p: Progress| {
        // A line a second at most, and the last one.
        if last_line.elapsed() >= Duration::from_secs(1) || p.hours_done == p.hours {
            last_line = std::time::Instant::now();
            let at = chrono::DateTime::from_timestamp_millis(p.at_ms).unwrap_or_default();
            eprintln!(
                "backtest: event time {} ({} of {} hours with points done, {} points)",
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                p.hours_done,
                p.hours,
                p.points
            );
        }
    };
    let plan = Plan {
        tested,
        against,
        options: EngineOptions::from_config(&config.ingest, &config.rules),
        oncall: oncall.as_ref(),
        from: super::ago(args.since),
        to: chrono::Utc::now(),
    };
    let result = crate::backtest::backtest(&lake, &query, plan, &mut progress).await?;
    let text = match args.format {
        BacktestFormat::Json => serde_json::to_string_pretty(&result)? + "\n",
        BacktestFormat::Table => render_backtest(&result),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Per rule, a line for the rules tried and, with --against, one for the
/// rules they would replace.
fn render_backtest(b: &Backtest) -> String {
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut out = match (b.event_time_from, b.event_time_until) {
        (Some(first), Some(last)) => format!(
            "Backtest over {} points from {} to {}; {} windows evaluated.\n\n",
            b.points,
            time(first),
            time(last),
            b.evaluations
        ),
        // `--since` longer than the calendar starts at the first instant.
        _ if b.from == chrono::DateTime::<chrono::Utc>::MIN_UTC => {
            format!(
                "Backtest: the lake has no points before {}.\n\n",
                time(b.to)
            )
        }
        _ => format!(
            "Backtest: the lake has no points from {} to {}.\n\n",
            time(b.from),
            time(b.to)
        ),
    };
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for c in &b.rules {
        let versions = [("tried", &c.tested), ("against", &c.against)];
        for (version, outcome) in versions {
            let Some(o) = outcome else {
                if version == "tried" || b.against_incidents.is_some() {
                    rows.push(vec![
                        c.rule.clone(),
                        version.to_owned(),
                        "(no such rule)".to_owned(),
                    ]);
                }
                continue;
            };
            let night: Vec<String> = o
                .night_pages
                .iter()
                .map(|(user, n)| format!("{user} {n}"))
                .collect();
            let row = vec![
                c.rule.clone(),
                version.to_owned(),
                o.incidents.to_string(),
                o.open_at_end.to_string(),
                seconds(o.duration_p50_secs),
                seconds(o.duration_p95_secs),
                seconds(o.longest_secs),
                o.pages.to_string(),
                if night.is_empty() {
                    "-".to_owned()
                } else {
                    night.join(", ")
                },
            ];
            if let Some((n, error)) = &o.failed_windows {
                failures.push(format!(
                    "{} ({version}): {n} windows failed: {error}\n",
                    c.rule
                ));
            }
            rows.push(row);
        }
    }
    out.push_str(&aligned(
        &[
            "rule",
            "version",
            "incidents",
            "open at end",
            "p50",
            "p95",
            "longest",
            "pages",
            "night pages (22-08)",
        ],
        &rows,
        false,
    ));
    for failure in failures {
        out.push_str(&failure);
    }
    out
}
