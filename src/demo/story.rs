//! The story, step by step. Each step waits for klaxon's own data to show
//! what happened (the incident in the changelog, the history in the lake)
//! and prints it; nothing is printed that klaxon did not do.

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    DemoFiles, MANAGER, ROTATION, RULE, Timing,
    service::{self, Release},
};
use crate::{
    config::Config,
    kafka::{Producer, Role, client_config},
    lake::Lake,
    notify::{
        Incident, Status,
        client::send_action,
        incident::{Delivery, Purpose},
        queries::{ClientError, all_incidents},
    },
    paging::{EventAction, ManualPage, PageTarget, PagingEvent, Publisher, Severity},
    postmortem::{self, PostmortemError},
    query::{QueryEngine, QueryError, values::ints},
};

/// How long a step may take, in story seconds, before the demo gives up.
const STEP_LIMIT: f64 = 120.0;

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Postmortem(#[from] PostmortemError),
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the demo waited too long for {0}")]
    Stuck(String),
    #[error("stopped")]
    Stopped,
}

struct Narrator {
    started: Instant,
    timing: Timing,
    stop: CancellationToken,
}

impl Narrator {
    fn say(&self, text: &str) {
        let secs = self.started.elapsed().as_secs();
        println!("[demo {:02}:{:02}] {text}", secs / 60, secs % 60);
    }

    async fn sleep(&self, d: Duration) -> Result<(), DemoError> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.stop.cancelled() => Err(DemoError::Stopped),
        }
    }

    /// Polls `found` until it gives a value.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut found: F) -> Result<T, DemoError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, DemoError>>,
    {
        let deadline = Instant::now() + self.timing.secs(STEP_LIMIT);
        loop {
            if let Some(value) = found().await? {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(DemoError::Stuck(what.to_owned()));
            }
            self.sleep(Duration::from_millis(250)).await?;
        }
    }
}

/// Plays the story against the klaxon `config` points at (ingest, the rules
/// of `files` and the notifier with its on-call file already running), and
/// writes the postmortem draft into `out`. Returns the draft's path.
pub async fn play(
    config: &Config,
    timing: Timing,
    files: &DemoFiles,
    out: &Path,
    stop: CancellationToken,
) -> Result<PathBuf, DemoError> {
    let n = Narrator {
        started: Instant::now(),
        timing,
        stop: stop.clone(),
    };
    let begun = chrono::Utc::now();
    let producer: Producer = client_config(
        &config.kafka,
        &config.kafka.brokers,
        Role::IdempotentProducer,
    )
    .create()?;
    let paging = Publisher::new(&config.kafka, &config.notify.paging_topic)?;
    let topic = config.sources()[0].topic.clone();
    let (release, watched) = watch::channel(Release::Stable);
    let service_stop = stop.child_token();
    tokio::spawn(service::run(
        producer,
        topic.clone(),
        timing.tick(),
        watched,
        service_stop.clone(),
    ));
    let _stop_service = service_stop.drop_guard();
    n.say(&format!(
        "checkout v2.4.0 is serving: 200 requests a second, 0.5% failing, memory at 40% of its limit (points on topic {topic})"
    ));

    n.sleep(timing.deploy_after()).await?;
    release.send_replace(Release::Leaking);
    n.say("deploy: checkout v2.4.1 rolls out; it leaks memory");

    let ours = |i: &Incident| i.rule.as_deref() == Some(RULE) && i.opened_at >= begun;
    let (partition, incident) = n
        .wait_for("the rule to fire", async || {
            Ok(all_incidents(config)
                .await?
                .into_iter()
                .find(|(_, i)| ours(i)))
        })
        .await?;
    let id = incident.id.clone();
    n.say(&format!(
        "rule {RULE} fired: incident {id} opened, \"{}\" ({})",
        incident.summary, incident.severity
    ));

    let current = async || -> Result<Option<Incident>, DemoError> {
        Ok(all_incidents(config)
            .await?
            .into_iter()
            .map(|(_, i)| i)
            .find(|i| i.id == id))
    };
    let paged = |i: &Incident, user: Option<&str>| {
        i.notifications
            .iter()
            .find(|x| {
                x.purpose == Purpose::Page
                    && x.state == Delivery::Delivered
                    && user.is_none_or(|u| x.user == u)
            })
            .map(|x| (x.user.clone(), x.kind.as_str()))
    };
    let (on_call, channel) = n
        .wait_for("the first page", async || {
            Ok(current().await?.and_then(|i| paged(&i, None)))
        })
        .await?;
    n.say(&format!(
        "paged {on_call}, on call this week in the five-person rotation checkout-primary ({channel} channel); nobody answers"
    ));

    n.wait_for("the escalation", async || {
        Ok(current().await?.and_then(|i| paged(&i, Some(MANAGER))))
    })
    .await?;
    n.say(&format!(
        "nobody acknowledged in {}: the policy escalated to level 2 and paged {MANAGER}, the engineering manager",
        humantime::format_duration(timing.escalation_delay())
    ));

    let helper = ROTATION
        .iter()
        .find(|u| **u != on_call)
        .copied()
        .unwrap_or(ROTATION[0]);
    let target = PageTarget::User(helper.to_owned());
    let page = PagingEvent::manual_page(&ManualPage {
        target: &target,
        summary: "checkout is failing since the v2.4.1 deploy: can you help?",
        severity: Severity::Critical,
        by: MANAGER,
        client: "klaxon-demo",
        at: chrono::Utc::now(),
    });
    paging.publish(std::slice::from_ref(&page), None).await?;
    n.say(&format!(
        "{MANAGER} asks {helper} for help with a manual page"
    ));
    let (help_partition, help) = n
        .wait_for("the page for help", async || {
            Ok(all_incidents(config)
                .await?
                .into_iter()
                .find(|(_, i)| i.dedup_key == page.dedup_key && paged(i, Some(helper)).is_some()))
        })
        .await?;
    n.say(&format!(
        "paged {helper} for help (incident {}, a page outside any rule)",
        help.id
    ));

    send_action(
        &paging,
        partition,
        &incident,
        EventAction::Acknowledge,
        MANAGER,
        "klaxon-demo",
    )
    .await?;
    n.wait_for("the acknowledgement", async || {
        Ok(current().await?.filter(|i| i.status != Status::Triggered))
    })
    .await?;
    n.say(&format!(
        "{MANAGER} acknowledged incident {id}: escalation stops"
    ));

    n.sleep(timing.secs(5.0)).await?;
    release.send_replace(Release::RolledBack);
    n.say("rollback: checkout is on v2.4.0 again; memory and errors fall back");

    // The fix is in: resolved before the rule's window has drained of the
    // bad minutes (its own resolve then finds nothing open).
    n.sleep(timing.secs(3.0)).await?;
    send_action(
        &paging,
        partition,
        &incident,
        EventAction::Resolve,
        MANAGER,
        "klaxon-demo",
    )
    .await?;
    send_action(
        &paging,
        help_partition,
        &help,
        EventAction::Resolve,
        MANAGER,
        "klaxon-demo",
    )
    .await?;
    let resolved = n
        .wait_for("the resolve", async || {
            Ok(current().await?.filter(|i| i.status == Status::Resolved))
        })
        .await?;
    n.say(&format!(
        "incident {id} resolved by {}",
        resolved.resolved_by.as_deref().unwrap_or("?")
    ));

    let lake = Lake::open(&config.lake)?;
    // The chart shows the recovery: points a window past the resolve.
    let resolved_at = chrono::Utc::now();
    let window = chrono::Duration::from_std(timing.window()).unwrap_or_default();
    let wanted = (resolved_at + window).timestamp_millis();
    n.wait_for("the points after the resolve in the lake", async || {
        let engine = QueryEngine::open(&lake)
            .await
            .map_err(PostmortemError::from)?;
        let newest = engine
            .sql("SELECT CAST(max(time) AS BIGINT) AS newest FROM metrics")
            .await
            .map_err(PostmortemError::from)?;
        let newest = ints(&newest, "newest")
            .map_err(|e| PostmortemError::from(QueryError::from(e)))?
            .first()
            .copied()
            .flatten();
        Ok(newest.filter(|t| *t >= wanted))
    })
    .await?;
    n.wait_for("the incident's history in the lake", async || {
        let engine = QueryEngine::open(&lake)
            .await
            .map_err(PostmortemError::from)?;
        let facts = postmortem::facts::IncidentFacts::read(&engine, &id).await?;
        Ok(facts.filter(|f| f.resolved.is_some()))
    })
    .await?;
    let draft = postmortem::draft(&lake, Some(&files.rules), &id).await?;
    let path = out.join(format!("postmortem-{id}.md"));
    let chart = path.with_extension("svg");
    let chart_name = match &draft.chart {
        Some(svg) => {
            write(&chart, svg)?;
            Some(format!("postmortem-{id}.svg"))
        }
        None => None,
    };
    write(&path, &postmortem::markdown(&draft, chart_name.as_deref()))?;
    n.say(&format!("postmortem draft: {}", path.display()));
    Ok(path)
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(|source| DemoError::Io {
        path: path.display().to_string(),
        source,
    })
}
