//! The HTTP endpoint: `/metrics` in Prometheus text format, `/healthz`.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// Binds `listen` and serves until `shutdown`. Returns the bound address
/// (useful with port 0) and the server task.
pub async fn serve(
    listen: &str,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    serve_with(listen, metrics, Router::new(), shutdown).await
}

/// [`serve`], with more routes (the notifier's API).
pub async fn serve_with(
    listen: &str,
    metrics: PrometheusHandle,
    routes: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let app = routes
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    Ok((addr, task))
}
