//! The HTTP endpoint: `/metrics` in Prometheus text format, `/healthz`, and
//! the notifier's API when it runs.
//!
//! Every connection is bounded (`[http]` in the config): headers must arrive
//! within `header_read_timeout` (which also closes idle keep-alive
//! connections), a request and its body must be done within
//! `request_timeout`, bodies are capped at `max_body_bytes`, and at most
//! `max_connections` are served at once. `axum::serve` sets none of these:
//! 200 clients that each sent half a request held 200 connections for ever.
//! With `tls_cert` and `tls_key` set, connections are HTTPS (module `tls`); the
//! TLS handshake counts against `header_read_timeout`.

mod tls;

pub use tls::TlsError;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::config::HttpConfig;

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on http.listen {listen}: {source}")]
    Bind {
        listen: String,
        source: std::io::Error,
    },
}

/// Binds `http.listen` and serves until `shutdown`. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve(
    http: &HttpConfig,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, ServerTask), ServeError> {
    serve_with(http, metrics, Router::new(), shutdown).await
}

/// [`serve`], with more routes (the notifier's API).
pub async fn serve_with(
    http: &HttpConfig,
    metrics: PrometheusHandle,
    routes: Router,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, ServerTask), ServeError> {
    let tls = match (&http.tls_cert, &http.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        // `Config::validate` refuses one without the other.
        _ => None,
    };
    let app = routes
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/healthz", get(|| std::future::ready("ok\n")));
    let app = bounded(app, http);
    let bind_error = |source| ServeError::Bind {
        listen: http.listen.clone(),
        source,
    };
    let listener = TcpListener::bind(&http.listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let limits = ConnectionLimits {
        header_read_timeout: http.header_read_timeout,
        max_connections: http.max_connections.max(1),
    };
    let task = tokio::spawn(accept_loop(listener, tls, app, limits, shutdown));
    Ok((addr, task))
}

/// The per-request bounds: body size and total time.
fn bounded(app: Router, http: &HttpConfig) -> Router {
    let max_body = usize::try_from(http.max_body_bytes.as_u64()).unwrap_or(usize::MAX);
    app.layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            http.request_timeout,
            deadline,
        ))
}

/// Answers 503 when the request (reading its body included, which happens
/// inside the handler) is not done in time, and drops its work.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("klaxon_http_request_timeouts_total").increment(1);
            let message = format!(
                "the request took longer than http.request_timeout ({})",
                humantime::format_duration(limit)
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": message })),
            )
                .into_response()
        }
    }
}

/// The per-connection bounds.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    header_read_timeout: Duration,
    max_connections: usize,
}

/// Accepts while a connection slot is free; on `shutdown`, stops accepting,
/// lets requests in flight finish and closes idle connections.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        // Taking the slot before accepting leaves extra clients in the
        // kernel's backlog rather than refusing them.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let (tls, app, shutdown) = (tls.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            metrics::gauge!("klaxon_http_connections").increment(1);
            match tls {
                None => serve_connection(stream, app, limits, shutdown).await,
                Some(tls) => {
                    if let Some(stream) = handshake(&tls, stream, limits).await {
                        serve_connection(stream, app, limits, shutdown).await;
                    }
                }
            }
            metrics::gauge!("klaxon_http_connections").decrement(1);
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Errors of one connection (reset, aborted) are skipped; others, such as
/// running out of file descriptors, are logged and waited out.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting an HTTP connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The TLS handshake, bounded like the headers that follow it: a client
/// that opens a connection and says nothing holds a slot no longer.
async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    limits: ConnectionLimits,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            metrics::counter!("klaxon_http_tls_handshake_failures_total").increment(1);
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics::counter!("klaxon_http_tls_handshake_failures_total").increment(1);
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

async fn serve_connection(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper applies the header timeout only with a timer.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics::counter!("klaxon_http_header_timeouts_total").increment(1);
        }
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    async fn start(http: HttpConfig) -> (SocketAddr, CancellationToken) {
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let shutdown = CancellationToken::new();
        let slow = Router::new().route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let (addr, _task) = serve_with(&http, metrics, slow, shutdown.clone())
            .await
            .unwrap();
        (addr, shutdown)
    }

    fn config() -> HttpConfig {
        HttpConfig {
            listen: "127.0.0.1:0".into(),
            ..HttpConfig::default()
        }
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_connection_beyond_the_cap_waits_for_a_free_slot() {
        let (addr, _shutdown) = start(HttpConfig {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(600),
            ..config()
        })
        .await;
        let silent = std::net::TcpStream::connect(addr).unwrap();
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(exchange(addr, "GET /healthz HTTP/1.0\r\n\r\n"));
        });
        // The only slot is held: the second client is not served...
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(done_rx.try_recv().is_err(), "served beyond the cap");
        // ...until the first one leaves.
        drop(silent);
        let response = tokio::time::timeout(Duration::from_secs(60), done_rx)
            .await
            .unwrap()
            .unwrap();
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bodies_over_the_limit_are_refused() {
        let (addr, _shutdown) = start(HttpConfig {
            max_body_bytes: bytesize::ByteSize::b(100),
            ..config()
        })
        .await;
        let request = |n: usize| {
            format!(
                "POST /echo HTTP/1.0\r\ncontent-length: {n}\r\n\r\n{}",
                "x".repeat(n)
            )
        };
        let ok = tokio::task::spawn_blocking(move || exchange(addr, &request(100)))
            .await
            .unwrap();
        assert!(
            ok.starts_with("HTTP/1.0 200") && ok.ends_with("100"),
            "{ok}"
        );
        let big = tokio::task::spawn_blocking(move || exchange(addr, &request(101)))
            .await
            .unwrap();
        assert!(big.starts_with("HTTP/1.0 413"), "{big}");
    }
}
