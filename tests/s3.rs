//! The lake on S3: the same exactly-once contract through `object_store`,
//! against a real S3-compatible HTTP server (moto) on 127.0.0.1.

mod common;

use std::{process::Command, time::Duration};

use common::*;

const S3_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

/// The config's `[lake.s3]` table for moto on `port`.
fn s3_settings(port: u16) -> String {
    format!(
        "[lake.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\nallow_http = true\n"
    )
}

/// Starts moto's S3 server on a free port and creates `bucket`.
async fn s3_server(dir: &std::path::Path, bucket: &str) -> (Proc, u16) {
    let (proc, port) = spawn_listening("the S3 server", |port| {
        spawn_moto(dir, port, &format!("moto-{port}.log"))
    })
    .await;
    create_bucket(port, bucket);
    (proc, port)
}

/// Ingest killed at each named point of a flush on S3 (no rename there:
/// each object is one PUT), then a clean member: it replays, removes what
/// the interrupted flush wrote (or keeps it, once committed), and every
/// point is in the lake exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn s3_lake_is_exactly_once_across_crashes_at_each_flush_point() {
    let dir = test_dir();
    let (_s3, port) = s3_server(dir.path(), "lake").await;
    let broker = Broker::start(dir.path()).await;
    let config = write_config(dir.path(), &s3_settings(port));
    let lake = "s3://lake/metrics-lake";
    let producer = producer(&broker.bootstrap());
    let count = || {
        let out = Command::new(KLAXON)
            .args(["--config", config.to_str().unwrap(), "--lake", lake, "query", "--format", "csv"])
            .arg("SELECT count(*) AS n, count(DISTINCT value) AS d FROM metrics WHERE name = 'test.seq'")
            .envs(S3_ENV)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let start = |name: &str, env: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = S3_ENV.iter().chain(env).copied().collect();
        start_ingest_with_env(dir.path(), &config, &broker.bootstrap(), lake, &env, name)
    };

    let mut produced = 0u64;
    for (point, discards) in [
        ("flush.after_marker", true),
        ("flush.before_commit", true),
        ("flush.after_commit", false),
    ] {
        let mut crashing = start(point, &[("KLAXON_CRASH_AT", point)]);
        crashing.wait_for_assignment().await;
        produce_all(&producer, "metrics", &json_points(produced, 2000, 20)).await;
        produced += 2000;
        crashing.wait_for_crash(point).await;

        let mut clean = start(&format!("after-{point}"), &[]);
        clean.wait_for_assignment().await;
        // New points for every partition, the crashed one included.
        produce_all(&producer, "metrics", &json_points(produced, 2000, 20)).await;
        produced += 2000;
        let want = format!("n,d\n{produced},{produced}\n");
        wait_until(Duration::from_secs(120), &want, || {
            let text = count();
            let done = text == want;
            async move { done }
        })
        .await;
        assert!(clean.terminate().success(), "{}", clean.log_text());
        let log = clean.log_text();
        assert_eq!(
            log.contains("removed files of an interrupted flush"),
            discards,
            "{point}:\n{log}"
        );
    }
    assert_eq!(count(), format!("n,d\n{produced},{produced}\n"));
}

/// Compaction on an object store (no rename, no directories): killed after
/// its first merged file, then finished by a clean run; `klaxon query` counts
/// every point once after each step, and `klaxon lake stats` sees the merge.
#[tokio::test(flavor = "multi_thread")]
async fn s3_compaction_killed_midway_keeps_every_row_once() {
    let dir = test_dir();
    let (_s3, port) = s3_server(dir.path(), "lake").await;
    let broker = Broker::start(dir.path()).await;
    let config = small_flush_config(
        dir.path(),
        &format!(
            "{}\n[lake.compaction]\nenabled = false\nsettle = \"0s\"\ngrace = \"1s\"\n",
            s3_settings(port)
        ),
    );
    let lake = "s3://lake/aged";
    let mut ingest = start_ingest_with_env(
        dir.path(),
        &config,
        &broker.bootstrap(),
        lake,
        &S3_ENV,
        "ingest",
    );
    ingest.wait_for_log("ingest started").await;
    produce_past_hours(&broker.bootstrap()).await;

    let klaxon = |args: &[&str], crash_at: Option<&str>| {
        let mut command = Command::new(KLAXON);
        command
            .args([
                "--config",
                config.to_str().unwrap(),
                "--brokers",
                &broker.bootstrap(),
                "--lake",
                lake,
            ])
            .args(args)
            .envs(S3_ENV);
        if let Some(point) = crash_at {
            command.env("KLAXON_CRASH_AT", point);
        }
        command.output().unwrap()
    };
    let count = || {
        let out = klaxon(
            &[
                "query",
                "--format",
                "csv",
                "SELECT count(*) AS n, count(DISTINCT value) AS d FROM metrics WHERE name = 'test.seq'",
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let exact = format!("n,d\n{POINTS},{POINTS}\n");
    wait_until(
        Duration::from_secs(120),
        "every point in the S3 lake",
        || {
            let done = count() == exact;
            async move { done }
        },
    )
    .await;
    // Stopped cleanly, ingest has committed everything it wrote.
    assert!(ingest.terminate().success());
    // (files, rows) summed over the days of `klaxon lake stats`.
    let stats = || {
        let out = klaxon(&["lake", "stats"], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut cols = l.split_whitespace().skip(1);
                Some((
                    cols.next()?.parse::<u64>().ok()?,
                    cols.next()?.parse::<u64>().ok()?,
                ))
            })
            .fold((0, 0), |(f, r), (files, rows)| (f + files, r + rows))
    };
    let (before, rows) = stats();
    assert_eq!(rows, POINTS as u64);
    assert!(before >= 40, "only {before} files: nothing to compact");

    let out = klaxon(&["compact"], Some("compact.after_output"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("crash point compact.after_output"),
        "{stderr}"
    );
    assert_eq!(
        count(),
        exact,
        "after a compaction killed after its first output"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = klaxon(&["compact"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(), exact, "after the clean run");
    let (after, rows) = stats();
    assert_eq!(rows, POINTS as u64);
    assert!(after <= 5 * 4, "{before} files became {after}");
}

/// Starts moto's S3 server on `port` and creates `bucket`.
async fn s3_server_on(dir: &std::path::Path, bucket: &str, port: u16, log: &str) -> Proc {
    let mut proc = spawn_moto(dir, port, log);
    wait_until(Duration::from_secs(60), "the S3 server", || {
        assert!(
            proc.child.try_wait().unwrap().is_none(),
            "moto exited:\n{}",
            proc.log_text()
        );
        let ours = listener(proc.child.id(), port) == Listener::Ours;
        async move { ours }
    })
    .await;
    create_bucket(port, bucket);
    proc
}

fn spawn_moto(dir: &std::path::Path, port: u16, log: &str) -> Proc {
    let server = test_python().with_file_name("moto_server");
    Proc::spawn_program(
        server.to_str().unwrap(),
        dir,
        &["-p", &port.to_string()],
        &[],
        dir.join(log),
    )
}

/// CreateBucket is a bare PUT on the bucket.
fn create_bucket(port: u16, bucket: &str) {
    let response = http_request(&format!("127.0.0.1:{port}"), "PUT", &format!("/{bucket}"));
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
}

/// The S3 server goes down before points arrive: ingest keeps running,
/// retries the lake until it answers, and once the server is back every
/// point is in the lake once. (moto keeps its buckets in memory, so the outage comes
/// before anything is written; a restarted moto starts empty.)
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_is_waited_out_without_loss() {
    let dir = test_dir();
    let (mut s3, port) = s3_server(dir.path(), "lake").await;
    let broker = Broker::start(dir.path()).await;
    let config = write_config(dir.path(), &s3_settings(port));
    let lake = "s3://lake/outage";
    let mut ingest = start_ingest_with_env(
        dir.path(),
        &config,
        &broker.bootstrap(),
        lake,
        &S3_ENV,
        "ingest",
    );
    ingest.wait_for_assignment().await;
    s3.kill();
    produce_all(
        &producer(&broker.bootstrap()),
        "metrics",
        &json_points(0, 2000, 20),
    )
    .await;
    // The first record of each partition looks for an interrupted flush's
    // marker: that read is retried while the store is down.
    ingest
        .wait_for_log("lake unreachable while looking for an interrupted flush; retrying")
        .await;
    let metrics = http_get(&ingest, "/metrics");
    assert_eq!(
        metric_value(&metrics, "klaxon_lake_files_written_total"),
        Some(0.0),
        "nothing written while the store is down"
    );
    assert!(
        ingest.child.try_wait().unwrap().is_none(),
        "ingest kept running"
    );

    let _s3 = s3_server_on(dir.path(), "lake", port, "moto-2.log").await;
    let count = || {
        let out = Command::new(KLAXON)
            .args(["--config", config.to_str().unwrap(), "--lake", lake, "query", "--format", "csv"])
            .arg("SELECT count(*) AS n, count(DISTINCT value) AS d FROM metrics WHERE name = 'test.seq'")
            .envs(S3_ENV)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(
        Duration::from_secs(180),
        "2000 points in the S3 lake",
        || {
            let done = count() == "n,d\n2000,2000\n";
            async move { done }
        },
    )
    .await;
    assert!(ingest.terminate().success(), "{}", ingest.log_text());
}
