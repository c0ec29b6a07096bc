//! `klaxon ingest`: one member of the ingest consumer group.

use anyhow::Result;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{GRACE, create_topics, need_brokers};
use crate::{
    config::{Config, Overrides},
    ingest::{Ingest, IngestArgs},
    lake::Lake,
    shutdown, telemetry,
};

#[derive(Debug, Args)]
pub struct IngestCmdArgs {
    /// Where /metrics is served. Overrides http.listen.
    #[arg(long, env = "KLAXON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
}

impl IngestCmdArgs {
    pub(super) fn overrides(&self, overrides: &mut Overrides) {
        overrides.http_listen = self.http_listen.clone();
    }
}

pub async fn run(config: Config) -> Result<()> {
    need_brokers(&config)?;
    let shutdown = shutdown::on_signals(GRACE);
    let (addr, ingest) = start_ingest(&config, axum::Router::new(), &shutdown).await?;
    tracing::info!(%addr, "serving /metrics");
    ingest.run(shutdown).await?;
    Ok(())
}

/// What `up` and `ingest` share: the topics, the lake, `/metrics` and
/// `routes` (on `http.listen`), and an ingest member ready to run.
pub(super) async fn start_ingest(
    config: &Config,
    routes: axum::Router,
    shutdown: &CancellationToken,
) -> Result<(std::net::SocketAddr, Ingest)> {
    create_topics(config, crate::ingest::topics(config)).await?;
    let lake = Lake::open(&config.lake)?;
    let (addr, _server) = crate::http::serve_with(
        &config.http,
        telemetry::init_metrics(),
        routes,
        shutdown.clone(),
    )
    .await?;
    let ingest = Ingest::new(IngestArgs {
        brokers: config.kafka.brokers.clone(),
        config: config.clone(),
        lake,
    })?;
    Ok((addr, ingest))
}
