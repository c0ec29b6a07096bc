//! What each command does, wiring the components together. `main` parses
//! flags and calls [`run`]; everything here is testable without a terminal.

use std::{io::Write, time::Duration};

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::{
    bench::{BenchOptions, run_bench},
    broker::{self, BrokerOptions},
    cli::{
        ActionArgs, BenchArgs, BrokerArgs, Cli, Command, CommonArgs, IngestCmdArgs, NotifyArgs,
        OncallArgs, OncallCommand, PageArgs, ProduceArgs, QueryArgs, RulesCommand, RulesRunArgs,
        UpArgs,
    },
    config::{Config, Secret, short_secret},
    ingest::{Ingest, IngestArgs},
    lake::Lake,
    notify::{LoadedOnCall, Notifier, client, queries},
    paging::{EventAction, ManualPage, PageTarget, PagingEvent, Severity},
    produce::{ProduceOptions, produce},
    query::{OutputFormat, QueryEngine, write_batches},
    rules::RuleSet,
    shutdown, telemetry,
    topics::{TopicSpec, ensure_topics},
};

const GRACE: Duration = Duration::from_secs(30);

pub async fn run(cli: Cli) -> Result<()> {
    let config = load_config(&cli.common)?;
    match cli.command {
        Command::Up(args) => up(config, args).await,
        Command::Ingest(args) => ingest(config, args).await,
        Command::Query(args) => query(config, args).await,
        Command::Produce(args) => produce_cmd(config, args).await,
        Command::Broker(args) => broker_cmd(args).await,
        Command::Rules(RulesCommand::Check { dir, against_lake }) => {
            rules_check(config, &dir, against_lake).await
        }
        Command::Rules(RulesCommand::Test {
            rules,
            points,
            format,
        }) => rules_test(&rules, &points, format).await,
        Command::Rules(RulesCommand::Run(args)) => rules_run(config, args).await,
        Command::Oncall(OncallArgs {
            command: Some(OncallCommand::Check { file }),
            ..
        }) => oncall_check(&file),
        Command::Oncall(args) => oncall_now(config, args),
        Command::Notify(args) => notify_cmd(config, args).await,
        Command::Incidents { status } => incidents_cmd(config, status.as_deref()).await,
        Command::Incident { id } => incident_cmd(config, &id).await,
        Command::Ack(args) => incident_action(config, args, EventAction::Acknowledge).await,
        Command::Resolve(args) => incident_action(config, args, EventAction::Resolve).await,
        Command::Page(args) => page_cmd(config, args).await,
        Command::Bench(args) => bench_cmd(config, args).await,
    }
}

/// `KLAXON_INTEGRATION_KEY_ALERTMANAGER=…` is `notify.integration_keys.alertmanager`.
const INTEGRATION_KEY_PREFIX: &str = "KLAXON_INTEGRATION_KEY_";

/// The config file, then flags and `KLAXON_*` variables on top.
fn load_config(common: &CommonArgs) -> Result<Config> {
    let mut config = match &common.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(brokers) = &common.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(lake) = &common.lake {
        config.lake.url = lake.clone();
    }
    // Secrets are better kept out of config files.
    let secret = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    // klaxon's own credentials get the config file's length check.
    let own_secret = |name: &str| match secret(name) {
        Some(value) => match short_secret(name, &value) {
            Some(problem) => bail!(problem),
            None => Ok(Some(value)),
        },
        None => Ok(None),
    };
    if let Some(key) = own_secret("KLAXON_SIGNING_KEY")? {
        config.notify.signing_key = Some(key);
    }
    if let Some(token) = own_secret("KLAXON_API_TOKEN")? {
        config.notify.api_token = Some(token);
    }
    // vars_os: `vars` panics on a variable that is not Unicode.
    for (var, key) in std::env::vars_os() {
        let (Some(var), Some(key)) = (var.to_str(), key.to_str()) else {
            continue;
        };
        let Some(name) = var.strip_prefix(INTEGRATION_KEY_PREFIX) else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        let name = name.to_lowercase();
        crate::config::check_integration_key(&name, key)
            .map_err(|problem| anyhow::anyhow!("{var}: {problem}"))?;
        config
            .notify
            .integration_keys
            .insert(name, Secret::new(key));
    }
    if let Some(token) = secret("KLAXON_TWILIO_AUTH_TOKEN") {
        config.notify.twilio.auth_token = Some(token);
    }
    if let Some(password) = secret("KLAXON_SMTP_PASSWORD") {
        config.notify.smtp.password = Some(password);
    }
    // Again, with the environment applied: an integration key from it must
    // not be the API token from it either.
    let path = common.config.as_ref().map(|p| p.display().to_string());
    config.validate(path.as_deref())?;
    Ok(config)
}

/// Creates the named topics that are missing, with the partitions and
/// replication config gives, unless `topics.create` is off.
async fn create_topics(config: &Config, names: &[&str]) -> Result<()> {
    if !config.topics.create {
        return Ok(());
    }
    let specs: Vec<TopicSpec> = names
        .iter()
        .map(|name| TopicSpec {
            name: (*name).to_owned(),
            partitions: config.topics.partitions,
            replication_factor: config.topics.replication_factor,
            configs: Vec::new(),
        })
        .collect();
    ensure_topics(&config.kafka, &config.kafka.brokers, &specs).await?;
    Ok(())
}

/// The topics ingest reads, and its dead-letter topic.
async fn prepare_topics(config: &Config) -> Result<()> {
    let sources = config.sources();
    let mut names: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
    names.push(&config.topics.dead_letter);
    create_topics(config, &names).await
}

async fn up(mut config: Config, args: UpArgs) -> Result<()> {
    let shutdown = shutdown::on_signals(GRACE);
    let embedded = config.kafka.brokers.is_empty();
    let mut broker_note = String::from("external");
    if embedded {
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
        broker_note = format!("embedded tansu, storage {storage}");
        if config.lake.url == Config::default().lake.url {
            config.lake.url = args.data_dir.join("lake").display().to_string();
        }
    }
    if let Some(dir) = args.rules {
        config.rules.dir = Some(dir);
    }
    // Rules are checked before anything starts, so a broken rule stops `up`
    // with its file and line instead of running without alerts.
    let rules = match &config.rules.dir {
        Some(dir) => Some((dir.clone(), load_rules(dir).await?)),
        None => None,
    };
    if let Some(file) = args.oncall {
        config.notify.oncall = Some(file);
    }
    let oncall = match &config.notify.oncall {
        Some(file) => Some(load_oncall(file)?),
        None => None,
    };
    let api = match &oncall {
        Some(_) => crate::notify::api::router(&config),
        None => axum::Router::new(),
    };
    let (addr, ingest) = start_ingest(&config, args.http_listen, api, &shutdown).await?;
    let lake = ingest.lake_location();

    let mut banner = String::new();
    banner.push_str("klaxon is up\n");
    banner.push_str(&format!(
        "  kafka bootstrap  {}  ({broker_note})\n",
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
    if let Some((dir, set)) = &rules {
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
    if let Some(loaded) = &oncall {
        banner.push_str(&format!(
            "  notifier         {} -> topic {}\n",
            loaded.path.display(),
            config.notify.incidents_topic
        ));
    }
    print!("{banner}");
    std::io::stdout().flush()?;
    let ruled = async {
        match rules {
            Some((_, set)) => {
                create_rules_topics(&config).await?;
                crate::rules::run_rules(&config, set, shutdown.clone()).await?;
            }
            None => shutdown.cancelled().await,
        }
        anyhow::Ok(())
    };
    let notified = async {
        match oncall {
            Some(loaded) => {
                create_notify_topics(&config).await?;
                Notifier::new(config.clone(), loaded)?
                    .run(shutdown.clone())
                    .await?;
            }
            None => shutdown.cancelled().await,
        }
        anyhow::Ok(())
    };
    let (ingested, ruled, notified) = tokio::join!(ingest.run(shutdown.clone()), ruled, notified);
    ingested?;
    ruled?;
    notified?;
    Ok(())
}

async fn ingest(config: Config, args: IngestCmdArgs) -> Result<()> {
    if config.kafka.brokers.is_empty() {
        bail!("no brokers: pass --brokers or set kafka.brokers in the config file");
    }
    let shutdown = shutdown::on_signals(GRACE);
    let (addr, ingest) =
        start_ingest(&config, args.http_listen, axum::Router::new(), &shutdown).await?;
    tracing::info!(%addr, "serving /metrics");
    ingest.run(shutdown).await?;
    Ok(())
}

/// `[http]` with `--http-listen` on top.
fn http_config(config: &Config, http_listen: Option<String>) -> crate::config::HttpConfig {
    let mut http = config.http.clone();
    if let Some(listen) = http_listen {
        http.listen = listen;
    }
    http
}

/// What `up` and `ingest` share: the topics, the lake, `/metrics` and
/// `routes` (on `http_listen` or `http.listen`), and an ingest member ready
/// to run.
async fn start_ingest(
    config: &Config,
    http_listen: Option<String>,
    routes: axum::Router,
    shutdown: &CancellationToken,
) -> Result<(std::net::SocketAddr, Ingest)> {
    prepare_topics(config).await?;
    let lake = Lake::open(&config.lake)?;
    let http = http_config(config, http_listen);
    let (addr, _server) =
        crate::http::serve_with(&http, telemetry::init_metrics(), routes, shutdown.clone()).await?;
    let ingest = Ingest::new(IngestArgs {
        brokers: config.kafka.brokers.clone(),
        config: config.clone(),
        lake,
    })?;
    Ok((addr, ingest))
}

async fn query(config: Config, args: QueryArgs) -> Result<()> {
    let lake = Lake::open(&config.lake)?;
    let engine = QueryEngine::open(&lake).await?;
    let batches = engine.sql(&args.sql).await?;
    match (&args.output, args.format) {
        (Some(path), format) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write_batches(&batches, format, &mut file)?;
            file.sync_all()?;
        }
        (None, OutputFormat::Parquet) => bail!("--format parquet needs --output FILE"),
        (None, format) => {
            let mut stdout = std::io::stdout();
            write_batches(&batches, format, &mut stdout)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

async fn produce_cmd(config: Config, args: ProduceArgs) -> Result<()> {
    if config.kafka.brokers.is_empty() {
        bail!("no brokers: pass --brokers or set kafka.brokers in the config file");
    }
    if args.count.is_none() && args.duration.is_none() {
        bail!("say how much to produce: --count N or --duration 30s");
    }
    create_topics(&config, &[&args.topic]).await?;
    let report = produce(
        &config.kafka,
        ProduceOptions {
            brokers: config.kafka.brokers.clone(),
            topic: args.topic,
            format: args.format,
            rate: args.rate,
            series: args.series,
            count: args.count,
            duration: args.duration,
            points_per_record: args.points_per_record,
            progress: true,
        },
    )
    .await?;
    println!(
        "produced {} points in {} records in {:.2}s ({:.0} points/s), {} records failed",
        report.points,
        report.records,
        report.elapsed.as_secs_f64(),
        report.points as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.failed_records
    );
    if report.failed_records > 0 {
        bail!("{} records were not delivered", report.failed_records);
    }
    Ok(())
}

async fn rules_check(config: Config, dir: &std::path::Path, against_lake: bool) -> Result<()> {
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
async fn load_rules(path: &std::path::Path) -> Result<RuleSet> {
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

/// The topics the rules runner reads and writes; its state topic is
/// compacted, with one partition so one read rebuilds it in order.
async fn create_rules_topics(config: &Config) -> Result<()> {
    let sources = config.sources();
    let mut topics: Vec<&str> = sources.iter().map(|s| s.topic.as_str()).collect();
    topics.push(&config.rules.paging_topic);
    create_topics(config, &topics).await?;
    create_compacted_topic(config, &config.rules.state_topic, 1).await
}

/// Creates a compacted (changelog) topic if missing, unless `topics.create` is off.
async fn create_compacted_topic(config: &Config, name: &str, partitions: i32) -> Result<()> {
    if config.topics.create {
        let spec = TopicSpec {
            name: name.to_owned(),
            partitions,
            replication_factor: config.topics.replication_factor,
            configs: vec![("cleanup.policy".to_owned(), "compact".to_owned())],
        };
        ensure_topics(&config.kafka, &config.kafka.brokers, &[spec]).await?;
    }
    Ok(())
}

async fn rules_run(mut config: Config, args: RulesRunArgs) -> Result<()> {
    if config.kafka.brokers.is_empty() {
        bail!("no brokers: pass --brokers or set kafka.brokers in the config file");
    }
    let settings = &mut config.rules;
    if let Some(dir) = args.rules {
        settings.dir = Some(dir);
    }
    if let Some(topic) = args.paging_topic {
        settings.paging_topic = topic;
    }
    if let Some(topic) = args.state_topic {
        settings.state_topic = topic;
    }
    if let Some(d) = args.idle_timeout {
        settings.idle_timeout = d;
    }
    if let Some(d) = args.allowed_lateness {
        settings.allowed_lateness = d;
    }
    if let Some(d) = args.reload_interval {
        settings.reload_interval = d;
    }
    config.validate(None)?;
    let Some(dir) = config.rules.dir.clone() else {
        bail!("no rules: pass a rules directory or set rules.dir in the config file");
    };
    let set = load_rules(&dir).await?;
    let shutdown = shutdown::on_signals(GRACE);
    create_rules_topics(&config).await?;
    let http = http_config(&config, args.http_listen);
    let (addr, _server) =
        crate::http::serve(&http, telemetry::init_metrics(), shutdown.clone()).await?;
    tracing::info!(%addr, "serving /metrics");
    crate::rules::run_rules(&config, set, shutdown).await?;
    Ok(())
}

async fn rules_test(
    rules: &std::path::Path,
    points: &std::path::Path,
    format: crate::decode::Format,
) -> Result<()> {
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

async fn broker_cmd(args: BrokerArgs) -> Result<()> {
    let options = BrokerOptions {
        listen: args.listen,
        storage: args.storage,
    };
    println!(
        "kafka bootstrap {} (storage {})",
        options.bootstrap(),
        options.storage
    );
    std::io::stdout().flush()?;
    let shutdown: CancellationToken = shutdown::on_signals(Duration::from_secs(5));
    tokio::select! {
        result = broker::run(options) => result?,
        () = shutdown.cancelled() => {},
    }
    Ok(())
}

/// Reads and checks an on-call file, printing every finding as FILE:LINE;
/// any error refuses it.
fn load_oncall(file: &std::path::Path) -> Result<LoadedOnCall> {
    match LoadedOnCall::load(file.to_owned()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            Ok(loaded)
        }
        Err(findings) => {
            for f in &findings {
                eprintln!("{f}");
            }
            bail!("{} refused", file.display())
        }
    }
}

fn oncall_check(file: &std::path::Path) -> Result<()> {
    let oncall = load_oncall(file)?.oncall;
    println!(
        "{}: OK ({} users, {} schedules, {} policies)",
        file.display(),
        oncall.user.len(),
        oncall.schedule.len(),
        oncall.policy.len()
    );
    Ok(())
}

/// `klaxon oncall`: who each schedule has on call at an instant, and until when.
fn oncall_now(config: Config, args: OncallArgs) -> Result<()> {
    let Some(file) = args.file.or(config.notify.oncall) else {
        bail!("no on-call file: pass --file or set notify.oncall in the config file");
    };
    let oncall = load_oncall(&file)?.oncall;
    let at = args.at.map_or_else(chrono::Utc::now, |t| t.to_utc());
    crate::notify::schedule::check_instant(at)?;
    let answers = queries::on_call_at(&oncall, args.schedule.as_deref(), at);
    if answers.is_empty() {
        bail!(
            "no schedule {:?} in {}",
            args.schedule.unwrap_or_default(),
            file.display()
        );
    }
    let mut stdout = std::io::stdout().lock();
    for answer in answers {
        let shift = answer.shift?;
        let until = if shift.open_ended {
            "for the next 8 weeks at least".to_owned()
        } else {
            format!("until {}", shift.until.to_rfc3339())
        };
        let user = shift.user.as_deref().unwrap_or("(nobody)");
        writeln!(stdout, "{}\t{user}\t{until}", answer.schedule)?;
    }
    Ok(())
}

/// The paging topic, its dead-letter topic, and the incidents changelog:
/// compacted, with as many partitions as paging so partition `p` of one
/// holds the incidents of partition `p` of the other.
async fn create_notify_topics(config: &Config) -> Result<()> {
    let n = &config.notify;
    create_topics(config, &[&n.paging_topic, &n.dead_letter]).await?;
    create_compacted_topic(config, &n.incidents_topic, config.topics.partitions).await
}

fn need_brokers(config: &Config) -> Result<()> {
    if config.kafka.brokers.is_empty() {
        bail!("no brokers: pass --brokers or set kafka.brokers in the config file");
    }
    Ok(())
}

async fn notify_cmd(mut config: Config, args: NotifyArgs) -> Result<()> {
    need_brokers(&config)?;
    if let Some(file) = args.oncall {
        config.notify.oncall = Some(file);
    }
    let Some(file) = config.notify.oncall.clone() else {
        bail!("no on-call file: pass --oncall or set notify.oncall in the config file");
    };
    let loaded = load_oncall(&file)?;
    let shutdown = shutdown::on_signals(GRACE);
    create_notify_topics(&config).await?;
    let http = http_config(&config, args.http_listen);
    let api = crate::notify::api::router(&config);
    let (addr, _server) =
        crate::http::serve_with(&http, telemetry::init_metrics(), api, shutdown.clone()).await?;
    tracing::info!(%addr, "serving /metrics");
    Notifier::new(config, loaded)?.run(shutdown).await?;
    Ok(())
}

async fn incidents_cmd(config: Config, status: Option<&str>) -> Result<()> {
    need_brokers(&config)?;
    let incidents = queries::list_incidents(&config, status).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ID\tSTATUS\tSEVERITY\tOPENED\tSUMMARY\tDEDUP_KEY")?;
    for i in &incidents {
        writeln!(
            stdout,
            "{}\t{}\t{}\t{}\t{}\t{}",
            i.id,
            i.status.as_str(),
            i.severity,
            i.opened_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            i.summary,
            i.dedup_key
        )?;
    }
    Ok(())
}

async fn incident_cmd(config: Config, id: &str) -> Result<()> {
    need_brokers(&config)?;
    let (_, i) = queries::find_incident(&config, id).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "incident   {}", i.id)?;
    writeln!(out, "status     {}", i.status.as_str())?;
    writeln!(out, "summary    {}", i.summary)?;
    writeln!(out, "severity   {}", i.severity)?;
    writeln!(out, "dedup_key  {}", i.dedup_key)?;
    writeln!(
        out,
        "policy     {}",
        i.policy.as_deref().unwrap_or("(none)")
    )?;
    writeln!(out, "triggers   {}", i.triggers)?;
    writeln!(out, "timeline")?;
    for e in &i.timeline {
        let kind = serde_json::to_value(e.kind)?;
        writeln!(
            out,
            "  {}  {:<18} {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            kind.as_str().unwrap_or_default(),
            e.detail
        )?;
    }
    Ok(())
}

/// `klaxon ack` and `klaxon resolve`: an event on the paging topic, so every
/// incident has one ordered log; then wait for the notifier to apply it.
async fn incident_action(config: Config, args: ActionArgs, action: EventAction) -> Result<()> {
    need_brokers(&config)?;
    let by = args.by.unwrap_or_else(|| "klaxon-cli".to_owned());
    let incident = client::act(&config, &args.id, action, &by, "klaxon-cli").await?;
    let wanted = match action {
        EventAction::Acknowledge => crate::notify::Status::Acknowledged,
        _ => crate::notify::Status::Resolved,
    };
    let deadline = std::time::Instant::now() + args.wait;
    loop {
        let (_, now) = queries::find_incident(&config, &incident.id).await?;
        if now.status == wanted
            || (wanted == crate::notify::Status::Acknowledged
                && now.status == crate::notify::Status::Resolved)
        {
            println!("incident {} is {}", now.id, now.status.as_str());
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            println!(
                "sent; incident {} is still {} (is a notifier running?)",
                now.id,
                now.status.as_str()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `klaxon page`: a trigger for a user or schedule, outside any rule.
async fn page_cmd(config: Config, args: PageArgs) -> Result<()> {
    need_brokers(&config)?;
    let by = args.by.unwrap_or_else(|| "klaxon-cli".to_owned());
    let target = match (&args.target.user, &args.target.schedule) {
        (Some(u), _) => PageTarget::User(u.clone()),
        (None, Some(s)) => PageTarget::Schedule(s.clone()),
        (None, None) => bail!("say whom to page: --user or --schedule"),
    };
    let severity: Severity = args.severity.parse()?;
    let event = PagingEvent::manual_page(&ManualPage {
        target: &target,
        summary: &args.summary,
        severity,
        by: &by,
        client: "klaxon-cli",
        at: chrono::Utc::now(),
    });
    client::send_events(&config, std::slice::from_ref(&event), None).await?;
    println!(
        "paged {}: {} (dedup_key {})",
        target.name(),
        args.summary,
        event.dedup_key
    );
    Ok(())
}

async fn bench_cmd(config: Config, args: BenchArgs) -> Result<()> {
    if args.windows == 0 || args.alerts_per_window == 0 {
        bail!("--windows and --alerts-per-window must be at least 1");
    }
    // Each alert needs a series of its own, so every trigger is a new incident.
    let alerts = (args.windows * args.alerts_per_window) as u64;
    if !args.no_latency
        && let Some(&fewest) = args.latency_series.iter().min()
        && fewest < alerts
    {
        bail!(
            "--latency-series {fewest} is fewer than the {alerts} series that breach \
             (--windows × --alerts-per-window)"
        );
    }
    let brokers = Some(config.kafka.brokers.clone()).filter(|b| !b.is_empty());
    let report = run_bench(BenchOptions {
        brokers,
        kafka: config.kafka.clone(),
        partitions: config.topics.partitions,
        points: args.points,
        series: args.series,
        formats: args.formats,
        points_per_record: args.points_per_record,
        memory_budget: args.memory_budget,
        latency_series: if args.no_latency {
            Vec::new()
        } else {
            args.latency_series
        },
        windows: args.windows,
        alerts_per_window: args.alerts_per_window,
        window: args.window,
        queries: !args.no_queries,
        work_dir: args.work_dir,
    })
    .await?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).expect("the report serialises");
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
