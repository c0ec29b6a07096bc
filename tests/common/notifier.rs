//! The notifier under test: its on-call file (alice, then bob; carol by
//! SMS and phone) and config pointed at a [`Recorder`], a broker, and the
//! requests and events tests send it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use rdkafka::{ClientConfig, producer::FutureRecord};
use serde_json::{Value, json};

use super::{
    Broker, KLAXON, Proc, Recorder, produce_all, run_ok, test_dir, wait_until, write_config,
};

pub fn oncall_file(dir: &Path, recorder: &Recorder) -> PathBuf {
    let path = dir.join("oncall.toml");
    let text = format!(
        r#"
default_policy = "payments"

[[user]]
id = "alice"
contact = [{{ type = "webhook", address = "{alice}" }}, {{ type = "slack", address = "{alice_slack}" }}]

[[user]]
id = "bob"
contact = [{{ type = "slack", address = "{bob}" }}]

[[user]]
id = "carol"
contact = [{{ type = "sms", address = "+15550102" }}, {{ type = "phone", address = "+15550103" }}]
notify = [{{ contact = "sms" }}, {{ after = "1s", contact = "phone" }}]

[[schedule]]
id = "primary"
time_zone = "Europe/Berlin"
[[schedule.layer]]
users = ["alice"]
rotation = "1w"
start = "{start}"

[[policy]]
id = "payments"
repeat = 3
[[policy.level]]
targets = [{{ schedule = "primary" }}]
delay = "3s"
[[policy.level]]
targets = [{{ user = "bob" }}]
delay = "3s"
"#,
        // A week ago: alice is on call whatever today's date.
        start = (chrono::Utc::now() - chrono::Duration::weeks(1)).format("%Y-%m-%dT%H:%M:%S"),
        alice = recorder.url("/alice"),
        alice_slack = recorder.url("/slack/alice"),
        bob = recorder.url("/slack/bob"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn notifier_config(dir: &Path, recorder: &Recorder) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[notify]
reload_interval = "200ms"
public_url = "http://klaxon.example"
signing_key = "test-signing-key-0123"
retry = {{ attempts = 2, backoff = "100ms" }}
[notify.twilio]
base_url = "{}"
account_sid = "AC123"
auth_token = "secret"
from = "+15550000"
"#,
            recorder.url("")
        ),
    )
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub recorder: Recorder,
    pub config: PathBuf,
    pub oncall: PathBuf,
}

impl Setup {
    pub async fn new() -> Self {
        let dir = test_dir();
        let broker = Broker::start(dir.path()).await;
        let recorder = Recorder::start().await;
        let config = notifier_config(dir.path(), &recorder);
        let oncall = oncall_file(dir.path(), &recorder);
        Self {
            dir,
            broker,
            recorder,
            config,
            oncall,
        }
    }

    pub async fn notifier(&self, log: &str) -> Proc {
        self.notifier_with_env(log, &[]).await
    }

    /// `klaxon notify` with extra environment variables, once it consumes.
    pub async fn notifier_with_env(&self, log: &str, env: &[(&str, &str)]) -> Proc {
        let proc = Proc::component(
            self.dir.path(),
            &self.config,
            &self.broker.bootstrap(),
            &["notify", "--oncall", self.oncall.to_str().unwrap()],
            env,
            log,
        );
        proc.wait_for_log("restored incidents").await;
        proc
    }

    /// Adds `lines` to the config's `[notify]` table.
    pub fn notify_settings(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(
            &self.config,
            text.replace("[notify]\n", &format!("[notify]\n{lines}\n")),
        )
        .unwrap();
    }

    /// Level 2 waits an hour before the policy repeats (to alice), so tests
    /// that count alice's messages see only what they cause.
    pub fn no_repeat(&self) {
        self.edit_oncall(|text| {
            let at = text.rfind("delay = \"3s\"").expect("level 2's delay");
            format!(
                "{}delay = \"1h\"{}",
                &text[..at],
                &text[at + "delay = \"3s\"".len()..]
            )
        });
    }

    /// Rewrites the on-call file: `edit` gets its text and returns the new.
    pub fn edit_oncall(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.oncall).unwrap();
        std::fs::write(&self.oncall, edit(text)).unwrap();
    }

    /// `klaxon --config CONFIG --brokers BROKERS ARGS` against this broker
    /// and config.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KLAXON);
        command
            .args(["--config", self.config.to_str().unwrap()])
            .args(["--brokers", &self.broker.bootstrap()])
            .args(args);
        command
    }

    /// Runs a klaxon command against this broker and config; its stdout.
    pub fn klaxon(&self, args: &[&str]) -> String {
        run_ok(self.command(args).env("RUST_LOG", "warn"))
    }

    /// Waits until `klaxon incident KEY` says `text`; returns what it says.
    pub async fn wait_for_incident(&self, key: &str, text: &str) -> String {
        let says = || {
            self.command(&["incident", key])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .filter(|out| out.contains(text))
        };
        wait_until(
            Duration::from_secs(30),
            &format!("incident {key}: {text}"),
            async || says().is_some(),
        )
        .await;
        says().expect("it said so a moment ago")
    }

    /// Waits for alice's first page: its body and the id of its incident.
    pub async fn alices_first_page(&self) -> (Value, String) {
        let body = self.recorder.wait_for("/alice", 1).await[0].json();
        let id = incident_id(&body);
        (body, id)
    }

    /// Produces one trigger event to `paging`.
    pub async fn trigger(&self, dedup_key: &str, summary: &str) {
        produce_all(&self.producer(), "paging", &[trigger(dedup_key, summary)]).await;
    }

    /// Sends Events v2 `event` to paging partition `partition`, keyed by
    /// its `dedup_key`: where partitions matter to what is tested (alerts
    /// owned by different partitions, whichever member has them).
    pub async fn produce_to(&self, partition: i32, event: Value) {
        let key = event["dedup_key"].as_str().expect("a dedup_key").to_owned();
        let body = event.to_string();
        self.producer()
            .send(
                FutureRecord::to("paging")
                    .partition(partition)
                    .key(&key)
                    .payload(&body),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivery");
    }

    /// A producer partitioning keys like a Java client.
    pub fn producer(&self) -> klaxon::kafka::Producer {
        ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap())
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap()
    }
}

/// The id of the incident a webhook page is about.
pub fn incident_id(page: &Value) -> String {
    page["incident"]["id"].as_str().unwrap().to_owned()
}

pub fn trigger(dedup_key: &str, summary: &str) -> (String, String) {
    let event = json!({
        "routing_key": "ignored",
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": { "summary": summary, "source": "test", "severity": "critical" },
    });
    (dedup_key.to_owned(), event.to_string())
}

/// Waits (30s at most) until the API's answer at `url` satisfies `done`.
pub async fn wait_for_api(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    wait_until(Duration::from_secs(30), what, async || {
        done(&api_get(http, url, auth).await)
    })
    .await;
}

/// GETs `url` with the bearer header, as JSON.
pub async fn api_get(http: &reqwest::Client, url: &str, auth: &str) -> Value {
    let text = http
        .get(url)
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

/// An HTTP client that gives up on an answer after a minute, so a request
/// that would spin the server fails the test instead of hanging it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    body: String,
) -> (u16, Value) {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn trigger_body(dedup_key: &str, summary: &str) -> String {
    trigger(dedup_key, summary).1
}
