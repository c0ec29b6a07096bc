//! Child processes: klaxon's components and the helper programs tests run
//! (moto, an SMTP server, PagerDuty's Python client), each killed on drop
//! with its log kept in a file.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub const KLAXON: &str = env!("CARGO_BIN_EXE_klaxon");

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    klaxon::harness::free_port().unwrap()
}

/// Who holds the socket listening on 127.0.0.1:`port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The process asked about.
    Ours,
    /// Some other process: the one asked about cannot bind the port.
    Other,
    Nobody,
}

/// Who holds the socket listening on 127.0.0.1:`port`, as seen from process
/// `pid`: the socket's inode in /proc/net/tcp, among `pid`'s open files or not.
pub fn listener(pid: u32, port: u16) -> Listener {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return Listener::Nobody;
    };
    // Columns: sl local_address rem_address st ... uid timeout inode.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9).map(|i| format!("socket:[{i}]")))
                .flatten()
        })
        .collect();
    if inodes.is_empty() {
        return Listener::Nobody;
    }
    let ours = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok).any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| inodes.iter().any(|i| l.to_string_lossy() == *i))
        })
    });
    if ours {
        Listener::Ours
    } else {
        Listener::Other
    }
}

/// Starts a server that listens where it is told (moto, SMTP, Alertmanager,
/// `klaxon up`) on a free port, and waits until it holds the listening socket.
/// `free_port` only says the port was free a moment ago: when another process
/// binds it first, the server exits or never gets the socket, and it is
/// started again on another port.
pub async fn spawn_listening(what: &str, mut spawn: impl FnMut(u16) -> Proc) -> (Proc, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut proc = spawn(port);
        let held = klaxon::harness::poll_until(
            Duration::from_secs(60),
            Duration::from_millis(50),
            async || {
                let exited = proc.child.try_wait().unwrap().is_some();
                match listener(proc.child.id(), port) {
                    Listener::Ours if !exited => Ok(true),
                    Listener::Other => Err(()),
                    // It exited on its own: only a port taken in the
                    // meantime is a reason to try another.
                    _ if exited => {
                        let log = proc.log_text();
                        if log.to_lowercase().contains("in use") {
                            Err(())
                        } else {
                            panic!("{what} exited:\n{log}")
                        }
                    }
                    _ => Ok(false),
                }
            },
        )
        .await;
        match held {
            Ok(true) => return (proc, port),
            Ok(false) => panic!("{what} did not listen on {port}:\n{}", proc.log_text()),
            Err(()) => eprintln!(
                "port {port} was taken before {what} bound it:\n{}",
                proc.log_text()
            ),
        }
    }
    panic!("{what} came up on none of five free ports");
}

/// Polls `done` every 250ms until it holds, panicking with `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let held = klaxon::harness::poll_until(limit, Duration::from_millis(250), async || {
        Ok::<_, std::convert::Infallible>(done().await)
    })
    .await;
    assert!(held.unwrap(), "timed out waiting for {what}");
}

/// Waits (five minutes at most) until the ingest process `ingest` has
/// decoded `points` points from topic `metrics`.
pub async fn wait_for_points(ingest: &Proc, points: u64) {
    wait_until(
        Duration::from_secs(300),
        &format!("{points} points decoded"),
        async || {
            metric_value(
                &http_get(ingest, "/metrics"),
                r#"klaxon_ingest_points_total{topic="metrics"}"#,
            ) == Some(points as f64)
        },
    )
    .await;
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

/// Runs a command to completion: (success, stdout, stderr).
pub fn run(command: &mut Command) -> (bool, String, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

    /// A long-running klaxon component in `dir`: `klaxon --config CONFIG
    /// --brokers BROKERS ARGS --http-listen 127.0.0.1:0`, logging to
    /// `dir/LOG`.
    pub fn component(
        dir: &Path,
        config: &Path,
        brokers: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &str,
    ) -> Self {
        let mut all = vec!["--config", config.to_str().unwrap(), "--brokers", brokers];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--http-listen", "127.0.0.1:0"]);
        Self::spawn_program(KLAXON, dir, &all, env, dir.join(log))
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

    /// Waits (a minute at most) for the process to abort at crash point
    /// `point` (`KLAXON_CRASH_AT`, see `klaxon::crash`): killed by SIGABRT,
    /// its log naming the point.
    pub async fn wait_for_crash(&mut self, point: &str) {
        use std::os::unix::process::ExitStatusExt;
        let name = point.split(':').next().unwrap();
        let mut status = None;
        wait_until(Duration::from_secs(60), point, async || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        })
        .await;
        let log = self.log_text();
        assert_eq!(
            status.unwrap().signal(),
            Some(libc::SIGABRT),
            "did not abort at {point}:\n{log}"
        );
        assert!(
            log.contains(&format!("crash point {name} reached")),
            "aborted elsewhere than at {point}:\n{log}"
        );
    }

    /// Waits until the group gave this member a partition.
    pub async fn wait_for_assignment(&self) {
        self.wait_for_log("partition assigned").await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (a minute at most) until the log holds `text`.
    pub async fn wait_for_log(&self, text: &str) {
        wait_until(Duration::from_secs(60), text, async || {
            self.log_text().contains(text)
        })
        .await;
    }

    /// The `host:port` the process logged for its HTTP server (`/metrics`,
    /// `/healthz`, the notifier's API).
    pub fn http_addr(&self) -> String {
        self.log_text()
            .lines()
            .find_map(|l| l.split("serving /metrics addr=").nth(1))
            .expect("the process logs its HTTP address")
            .trim()
            .to_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
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
    Proc::component(
        dir,
        config,
        brokers,
        &["ingest", "--lake", lake],
        env,
        &format!("{name}.log"),
    )
}

/// A raw HTTP/1.0 request to `addr`; the whole response, head and body.
pub fn http_request(addr: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// GETs `path` from the `/metrics` server whose address `proc` logged.
pub fn http_get(proc: &Proc, path: &str) -> String {
    http_request(&proc.http_addr(), "GET", path)
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

/// The first of `names` found on PATH.
pub fn program_on_path(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|p| p.is_file())
}
