//! Test harness: a real broker and real klaxon processes, killed on drop.
//!
//! The broker is `klaxon broker` (tansu, in its own process) on a free port,
//! so tests can kill and restart it. Waits poll a condition with a generous
//! deadline; they never assert on how fast something happened.

#![allow(dead_code, unreachable_pub)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use klaxon::{config::LakeConfig, lake::Lake, query::QueryEngine};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};

pub const KLAXON: &str = env!("CARGO_BIN_EXE_klaxon");

/// A scratch directory, kept (and printed) when KLAXON_TEST_KEEP is set so a
/// failure's logs and lake can be read afterwards.
pub fn test_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("KLAXON_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix("klaxon-test-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("test dir: {}", dir.path().display());
    }
    dir
}

/// Runs a command to completion, failing the test with its stderr if it
/// fails; returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) when dropped, its stderr kept in a file.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[&str], log: PathBuf) -> Self {
        Self::spawn_in(&std::env::current_dir().unwrap(), args, log)
    }

    pub fn spawn_in(cwd: &Path, args: &[&str], log: PathBuf) -> Self {
        Self::spawn_program(KLAXON, cwd, args, &[], log)
    }

    pub fn spawn_program(
        program: &str,
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .current_dir(cwd)
            .envs(env.iter().copied())
            .args(args)
            .env("RUST_LOG", "info,klaxon=debug,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tansu broker in its own process.
#[derive(Debug)]
pub struct Broker {
    pub proc: Proc,
    pub port: u16,
    pub storage: String,
}

impl Broker {
    /// tansu's sqlite engine. Its memory engine (0.6.0) serves a fetch from
    /// the first batch at or after the offset asked for, skipping the records
    /// before it in the batch that holds it (tests/broker_contract.rs), which
    /// breaks any consumer that resumes from a committed offset.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(dir, free_port(), "sqlite://broker.db".into()).await
    }

    pub async fn start_with(dir: &Path, port: u16, storage: String) -> Self {
        let log = dir.join(format!(
            "broker-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let listen = format!("127.0.0.1:{port}");
        // tansu resolves sqlite:// paths under the working directory.
        let proc = Proc::spawn_in(
            dir,
            &["broker", "--listen", &listen, "--storage", &storage],
            log,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        klaxon::broker::wait_ready(&listen, Duration::from_secs(60))
            .await
            .expect("broker did not come up");
        Self {
            proc,
            port,
            storage,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// GETs `path` from the `/metrics` server whose address `proc` logged.
pub fn http_get(proc: &Proc, path: &str) -> String {
    use std::io::{Read, Write};
    let log = proc.log_text();
    let addr = log
        .lines()
        .find_map(|l| l.split("serving /metrics addr=").nth(1))
        .expect("the process logs its /metrics address")
        .trim()
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of one Prometheus series in a `/metrics` text, if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Writes an ingest config tuned for tests: small flushes, fast rebalances.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("klaxon.toml");
    let text = format!(
        r#"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[topics]
partitions = 4

[ingest]
flush_rows = 700
flush_interval = "300ms"

{extra}
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `klaxon ingest`.
pub fn start_ingest(dir: &Path, config: &Path, brokers: &str, lake: &Path, name: &str) -> Proc {
    start_ingest_with_env(dir, config, brokers, lake.to_str().unwrap(), &[], name)
}

/// Starts `klaxon ingest` on any lake URL, with extra environment variables.
pub fn start_ingest_with_env(
    dir: &Path,
    config: &Path,
    brokers: &str,
    lake: &str,
    env: &[(&str, &str)],
    name: &str,
) -> Proc {
    let log = dir.join(format!("{name}.log"));
    Proc::spawn_program(
        KLAXON,
        dir,
        &[
            "ingest",
            "--config",
            config.to_str().unwrap(),
            "--brokers",
            brokers,
            "--lake",
            lake,
            "--http-listen",
            "127.0.0.1:0",
        ],
        env,
        log,
    )
}

/// The Python environment that `scripts/test` prepares (DuckDB, moto):
/// KLAXON_TEST_PYTHON, else ~/.cache/klaxon/venv/bin/python.
pub fn test_python() -> PathBuf {
    let python = std::env::var_os("KLAXON_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/klaxon/venv/bin/python")
        });
    assert!(
        python.exists(),
        "no test Python at {}: run scripts/test, which installs it, or set KLAXON_TEST_PYTHON",
        python.display()
    );
    python
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "2")
        // Fail a test in seconds, not librdkafka's default five minutes.
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap()
}

/// A consumer reading `topic` from its first record, in its own group.
pub fn topic_reader(brokers: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Produces `records` (key, payload) and waits for every delivery.
pub async fn produce_all(producer: &FutureProducer, topic: &str, records: &[(String, String)]) {
    let sends = records.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(30),
        )
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("delivery");
    }
}

/// `count` JSON points whose value is their sequence number, packed
/// `per_record` to a record.
pub fn json_points(first: u64, count: u64, per_record: u64) -> Vec<(String, String)> {
    let now = chrono::Utc::now().timestamp_millis();
    (first..first + count)
        .collect::<Vec<_>>()
        .chunks(per_record as usize)
        .map(|chunk| {
            let lines: Vec<String> = chunk
                .iter()
                .map(|i| {
                    format!(
                        r#"{{"name":"test.seq","time":{},"value":{i},"tags":{{"series":"s{}"}}}}"#,
                        now + *i as i64,
                        i % 7
                    )
                })
                .collect();
            (chunk[0].to_string(), lines.join("\n"))
        })
        .collect()
}

/// Runs SQL over the lake with a fresh engine (files change between calls).
pub async fn query(lake: &Path, sql: &str) -> Vec<arrow::array::RecordBatch> {
    let lake = Lake::open(&LakeConfig {
        url: lake.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    QueryEngine::open(&lake)
        .await
        .unwrap()
        .sql(sql)
        .await
        .unwrap()
}

/// (rows, distinct values) of `test.seq` in the lake.
pub async fn seq_counts(lake: &Path) -> (i64, i64) {
    use arrow::array::AsArray;
    let batches = query(
        lake,
        "SELECT count(*) AS n, count(DISTINCT value) AS d FROM metrics WHERE name = 'test.seq'",
    )
    .await;
    let b = &batches[0];
    let n = b
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let d = b
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    (n, d)
}

/// Polls until `done` holds, panicking with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the lake holds `expected` rows of `test.seq`, then checks
/// each value is there exactly once.
pub async fn assert_exactly_once(lake: &Path, expected: i64) {
    let mut last = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if lake.join("metrics").exists() {
            last = seq_counts(lake).await;
        }
        if last.0 >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Give a duplicate time to show up if one is coming.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rows, distinct) = seq_counts(lake).await;
    assert_eq!(
        (rows, distinct),
        (expected, expected),
        "(rows, distinct values) in the lake; expected every point exactly once"
    );
}

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// A real HTTP server on 127.0.0.1 that records every request, standing in
/// for webhook receivers, Slack and Twilio-shaped providers. Paths listed in
/// `failing` answer 500.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
    failing: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        use axum::{
            body::Bytes,
            extract::State,
            http::{HeaderMap, StatusCode, Uri},
        };
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failing = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let state = (requests.clone(), failing.clone());
        type Shared = (
            std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
            std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        );
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
            || {
                let got = self.to(path).len();
                async move { got >= n }
            },
        )
        .await;
        self.to(path)
    }
}

/// Whether `actual` has everything `expected` has (objects recursively;
/// numbers compared as numbers).
pub fn json_contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

/// The JSON lines of a file, blank lines skipped.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Exactly as many events as expected, in order, each containing every
/// field its expected line gives.
pub fn assert_events_match(
    case: &str,
    actual: &[serde_json::Value],
    expected: &[serde_json::Value],
) {
    let show = |v: &[serde_json::Value]| v.iter().map(|e| format!("  {e}\n")).collect::<String>();
    assert_eq!(
        actual.len(),
        expected.len(),
        "{case}: events\n{}",
        show(actual)
    );
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            json_contains(a, e),
            "{case}: event {i}\n  got      {a}\n  expected {e}"
        );
    }
}

/// The first of `names` found on PATH.
pub fn program_on_path(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|p| p.is_file())
}
