//! `klaxon up`: everything in one process. The embedded broker unless
//! brokers are configured, ingest and `/metrics`, and the rules runner and
//! the notifier when rules and an on-call file are given (or found as
//! `./rules` and `./oncall.toml`). `--demo` plays the whole story.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{GRACE, create_topics, ingest::start_ingest, oncall::load_oncall, rules::load_rules};
use crate::{
    broker::{self, BrokerOptions},
    config::{Config, Overrides},
    demo,
    history::run_until_stopped,
    lake::Lake,
    notify::{LoadedOnCall, Notifier},
    rules::RuleSet,
    shutdown,
};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the embedded broker listens (when --brokers is not given).
    #[arg(long, env = "KLAXON_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    pub broker_listen: SocketAddr,
    /// The embedded broker's storage: sqlite://FILE keeps topics and offsets
    /// across restarts, memory://tansu/ does not.
    #[arg(long, env = "KLAXON_BROKER_STORAGE")]
    pub broker_storage: Option<String>,
    /// Where data lives when no lake or broker storage is given.
    #[arg(long, env = "KLAXON_DATA_DIR", default_value = "klaxon-data")]
    pub data_dir: PathBuf,
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Also evaluate the alert rules of this directory. Overrides rules.dir.
    #[arg(long, env = "KLAXON_RULES")]
    pub rules: Option<PathBuf>,
    /// Also run the notifier with this on-call file. Overrides notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub oncall: Option<PathBuf>,
    /// Play the demo in about two minutes: a synthetic checkout service, a
    /// bad deploy, the rule firing, the page, the escalation, a page for
    /// help, the acknowledgement, the rollback, the resolve and the
    /// postmortem draft. Its files go in a new directory under --data-dir.
    #[arg(long, conflicts_with_all = ["rules", "oncall"])]
    pub demo: bool,
    /// How many times faster the demo runs (for tests).
    #[arg(long, default_value_t = 1.0, hide = true)]
    pub demo_speed: f64,
}

impl UpArgs {
    pub(super) fn overrides(&self, overrides: &mut Overrides) {
        overrides.http_listen = self.http_listen.clone();
        overrides.rules_dir = self.rules.clone();
        overrides.oncall = self.oncall.clone();
    }
}

pub async fn run(mut config: Config, mut args: UpArgs) -> Result<()> {
    let shutdown = shutdown::on_signals(GRACE);
    let demo = match args.demo {
        true => Some(prepare_demo(&mut config, &mut args)?),
        false => {
            use_files_here(&mut config);
            None
        }
    };
    let broker = if config.kafka.brokers.is_empty() {
        start_embedded_broker(&mut config, args).await?
    } else {
        "external".to_owned()
    };
    // Rules and the on-call file are checked before anything starts, so a
    // broken one stops `up` with its file and line instead of running
    // without alerts or pages.
    let rules = match &config.rules.dir {
        Some(dir) => Some(load_rules(dir).await?),
        None => None,
    };
    let oncall = config
        .notify
        .oncall
        .as_deref()
        .map(load_oncall)
        .transpose()?;
    let api = match &oncall {
        Some(_) => crate::notify::api::router(&config),
        None => axum::Router::new(),
    };
    let (addr, ingest) = start_ingest(&config, api, &shutdown).await?;
    print_banner(
        &config,
        &broker,
        &ingest.lake_location(),
        addr,
        rules.as_ref(),
    )?;
    let (ingested, ruled, notified, played) = tokio::join!(
        ingest.run(shutdown.clone()),
        run_rules(&config, rules, &shutdown),
        run_notifier(&config, oncall, &shutdown),
        play_demo(&config, demo, &shutdown),
    );
    ingested?;
    ruled?;
    notified?;
    played?;
    Ok(())
}

/// `./rules` and `./oncall.toml`, when they exist and nothing else was
/// given: `klaxon up` in a directory that has them runs the rules and the
/// notifier too.
fn use_files_here(config: &mut Config) {
    if config.rules.dir.is_none() && Path::new(RULES_HERE).is_dir() {
        config.rules.dir = Some(PathBuf::from(RULES_HERE));
    }
    if config.notify.oncall.is_none() && Path::new(ONCALL_HERE).is_file() {
        config.notify.oncall = Some(PathBuf::from(ONCALL_HERE));
    }
}

const RULES_HERE: &str = "rules";
const ONCALL_HERE: &str = "oncall.toml";

/// What the demo runs with.
struct Demo {
    timing: demo::Timing,
    files: demo::DemoFiles,
    dir: PathBuf,
}

/// Writes the demo's rule and on-call file into a new directory under
/// `--data-dir` (the broker's storage and the lake go there too) and points
/// `config` at them, every duration scaled to `--demo-speed`.
fn prepare_demo(config: &mut Config, args: &mut UpArgs) -> Result<Demo> {
    let timing = demo::Timing {
        speed: args.demo_speed,
    };
    let stamp = chrono::Utc::now().format("demo-%Y%m%dT%H%M%S");
    let dir = std::path::absolute(args.data_dir.join(stamp.to_string()))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = demo::write_files(&dir, timing)
        .with_context(|| format!("writing the demo's files in {}", dir.display()))?;
    config.rules.dir = Some(files.rules.clone());
    config.notify.oncall = Some(files.oncall.clone());
    // The service's points all land on one partition: the quiet ones must
    // not hold event time back for long.
    config.rules.idle_timeout = timing.secs(5.0);
    config.rules.allowed_lateness = timing.secs(2.0);
    config.notify.history_flush_interval = timing.secs(1.0);
    // The draft's chart reads the points around the resolve from the lake.
    config.ingest.flush_interval = timing.secs(2.0);
    if config.lake.url == Config::default().lake.url {
        config.lake.url = dir.join("lake").display().to_string();
    }
    args.data_dir = dir.clone();
    Ok(Demo { timing, files, dir })
}

/// The demo's story, then a stop of everything; or nothing without `--demo`.
async fn play_demo(
    config: &Config,
    demo: Option<Demo>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let Some(demo) = demo else {
        return Ok(());
    };
    let played = demo::play(
        config,
        demo.timing,
        &demo.files,
        &demo.dir,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    match played {
        Ok(_) => {
            println!(
                "demo done; its broker, lake and files are in {}",
                demo.dir.display()
            );
            Ok(())
        }
        Err(demo::DemoError::Stopped) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Starts tansu in this process and points `config` at it, with the lake
/// under `--data-dir` unless one is configured. Returns how to describe it.
async fn start_embedded_broker(config: &mut Config, args: UpArgs) -> Result<String> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let storage = match args.broker_storage {
        Some(s) => s,
        None => format!(
            "sqlite://{}",
            std::path::absolute(args.data_dir.join("broker.db"))?.display()
        ),
    };
    let options = BrokerOptions {
        listen: args.broker_listen,
        storage: storage.clone(),
    };
    config.kafka.brokers = options.bootstrap();
    tokio::spawn(async move {
        if let Err(e) = broker::run(options).await {
            tracing::error!(error = %e, "embedded broker stopped");
            std::process::exit(1);
        }
    });
    broker::wait_ready(&config.kafka.brokers, Duration::from_secs(30))
        .await
        .context("the embedded broker did not start")?;
    if config.lake.url == Config::default().lake.url {
        config.lake.url = args.data_dir.join("lake").display().to_string();
    }
    Ok(format!("embedded tansu, storage {storage}"))
}

/// What runs where, and what to try first.
fn print_banner(
    config: &Config,
    broker: &str,
    lake: &str,
    addr: SocketAddr,
    rules: Option<&RuleSet>,
) -> Result<()> {
    let mut banner = String::new();
    banner.push_str("klaxon is up\n");
    banner.push_str(&format!(
        "  kafka bootstrap  {}  ({broker})\n",
        config.kafka.brokers
    ));
    for s in config.sources() {
        banner
            .push_str(&format!("  points topic     {} ({:?})\n", s.topic, s.format).to_lowercase());
    }
    banner.push_str(&format!(
        "  dead letters     {}\n",
        config.topics.dead_letter
    ));
    banner.push_str(&format!("  lake             {lake}\n"));
    if let (Some(dir), Some(set)) = (&config.rules.dir, rules) {
        banner.push_str(&format!(
            "  alert rules      {} ({} rules) -> topic {}\n",
            dir.display(),
            set.rules().len(),
            config.rules.paging_topic
        ));
    }
    banner.push_str(&format!("  metrics          http://{addr}/metrics\n"));
    banner.push_str(&format!(
        "  try              klaxon produce --brokers {} --count 10000\n",
        config.kafka.brokers
    ));
    banner.push_str(&format!(
        "                   klaxon query --lake {lake} \"SELECT name, count(*) FROM metrics GROUP BY name\"\n"
    ));
    if let Some(file) = &config.notify.oncall {
        banner.push_str(&format!(
            "  notifier         {} -> topic {}\n",
            file.display(),
            config.notify.incidents_topic
        ));
    }
    print!("{banner}");
    std::io::stdout().flush()?;
    Ok(())
}

/// The rules runner until shutdown, or just the wait without rules.
async fn run_rules(
    config: &Config,
    rules: Option<RuleSet>,
    shutdown: &CancellationToken,
) -> Result<()> {
    match rules {
        Some(set) => {
            create_topics(config, crate::rules::topics(config)).await?;
            crate::rules::run_rules(config, set, shutdown.clone()).await?;
        }
        None => shutdown.cancelled().await,
    }
    Ok(())
}

/// The notifier and its history writer until shutdown, or just the wait
/// without an on-call file.
async fn run_notifier(
    config: &Config,
    oncall: Option<LoadedOnCall>,
    shutdown: &CancellationToken,
) -> Result<()> {
    match oncall {
        Some(loaded) => {
            create_topics(config, crate::notify::topics(config)).await?;
            let history = tokio::spawn(run_until_stopped(
                config.clone(),
                Lake::open(&config.lake)?,
                shutdown.child_token(),
            ));
            let notified = Notifier::new(config.clone(), loaded)?
                .run(shutdown.clone())
                .await;
            // A notifier that failed stops everything, so that `up` exits
            // with its error instead of running on without paging.
            shutdown.cancel();
            let _ = history.await;
            notified?;
        }
        None => shutdown.cancelled().await,
    }
    Ok(())
}
