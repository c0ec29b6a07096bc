//! `klaxon notify`: the notifier, with the HTTP API beside `/metrics`, and
//! the writer of its incidents' history into the lake.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::{GRACE, create_topics, need_brokers, oncall::load_oncall};
use crate::{
    config::{Config, Overrides},
    history::run_until_stopped,
    lake::Lake,
    notify::Notifier,
    shutdown, telemetry,
};

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The on-call file. Overrides notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub oncall: Option<PathBuf>,
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
}

impl NotifyArgs {
    pub(super) fn overrides(&self, overrides: &mut Overrides) {
        overrides.oncall = self.oncall.clone();
        overrides.http_listen = self.http_listen.clone();
    }
}

pub async fn run(config: Config) -> Result<()> {
    need_brokers(&config)?;
    let Some(file) = config.notify.oncall.clone() else {
        bail!("no on-call file: pass --oncall or set notify.oncall in the config file");
    };
    let loaded = load_oncall(&file)?;
    let shutdown = shutdown::on_signals(GRACE);
    create_topics(&config, crate::notify::topics(&config)).await?;
    let api = crate::notify::api::router(&config);
    let (addr, _server) = crate::http::serve_with(
        &config.http,
        telemetry::init_metrics(),
        api,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "serving /metrics");
    let history = tokio::spawn(run_until_stopped(
        config.clone(),
        Lake::open(&config.lake)?,
        shutdown.child_token(),
    ));
    let notified = Notifier::new(config, loaded)?.run(shutdown.clone()).await;
    // A notifier that failed takes the process down, history with it, so a
    // supervisor restarts both.
    shutdown.cancel();
    let _ = history.await;
    notified?;
    Ok(())
}
