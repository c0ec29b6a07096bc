//! A real HTTP server standing in for what klaxon pages: webhook receivers,
//! Slack and Twilio-shaped providers.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use super::wait_until;

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl Recorded {
    /// The body as JSON (webhook pages, Slack messages).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", self.path, self.body))
    }
}

/// A real HTTP server on 127.0.0.1 that records every request. Paths listed
/// in `failing` answer 500.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    failing: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        use axum::{
            body::Bytes,
            extract::State,
            http::{HeaderMap, StatusCode, Uri},
        };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(Mutex::new(Vec::<String>::new()));
        let state = (requests.clone(), failing.clone());
        type Shared = (Arc<Mutex<Vec<Recorded>>>, Arc<Mutex<Vec<String>>>);
        async fn record(
            State((requests, failing)): State<Shared>,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let path = uri.path().to_owned();
            requests.lock().unwrap().push(Recorded {
                path: path.clone(),
                authorization: headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            if failing.lock().unwrap().contains(&path) {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
        let app = axum::Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            requests,
            failing,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn fail(&self, path: &str) {
        self.failing.lock().unwrap().push(path.to_owned());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests to `path` so far.
    pub fn to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `path` has received `n` requests, and returns them.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Recorded> {
        wait_until(
            Duration::from_secs(60),
            &format!("{n} requests to {path}"),
            async || self.to(path).len() >= n,
        )
        .await;
        self.to(path)
    }
}
