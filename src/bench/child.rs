//! The processes a benchmark measures: klaxon's own binary run as broker,
//! ingest, rules runner or notifier, with its CPU time and peak RSS read
//! from `/proc` as `time -v` would report them.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

pub(crate) use crate::harness::free_port;

use super::BenchError;

/// CPU time (user + system) and peak resident memory of a process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
}

impl Usage {
    /// Of process `pid`, from `/proc/PID/stat` and `/proc/PID/status`.
    pub(crate) fn of(pid: i32) -> Result<Self, BenchError> {
        let process = procfs::process::Process::new(pid)?;
        let stat = process.stat()?;
        let ticks = procfs::ticks_per_second() as f64;
        let cpu = Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks);
        let peak_kib = process.status()?.vmhwm.unwrap_or(0);
        Ok(Self {
            cpu,
            peak_rss_bytes: peak_kib * 1024,
        })
    }

    /// Of this process.
    pub(crate) fn own() -> Result<Self, BenchError> {
        Self::of(std::process::id() as i32)
    }
}

/// A klaxon subcommand running as a child process, killed when dropped.
#[derive(Debug)]
pub(crate) struct Child {
    name: String,
    process: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Runs `klaxon ARGS` in `dir`, its output going to `dir/NAME.log`.
    pub(crate) fn spawn(name: &str, dir: &Path, args: &[&str]) -> Result<Self, BenchError> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let process = Command::new(std::env::current_exe()?)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Self {
            name: name.to_owned(),
            process,
            log,
        })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.process.id() as i32
    }

    pub(crate) fn usage(&self) -> Result<Usage, BenchError> {
        Usage::of(self.pid())
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An error if the process has exited, with the end of its log.
    pub(crate) fn ensure_running(&mut self) -> Result<(), BenchError> {
        match self.process.try_wait()? {
            None => Ok(()),
            Some(status) => Err(BenchError::ChildExited {
                name: self.name.clone(),
                status: status.to_string(),
                log_tail: tail(&self.log_text(), 20),
            }),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `ready` every 50ms until it holds, failing after `timeout` or as
/// soon as one of `children` exits.
pub(crate) async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    children: &mut [&mut Child],
    ready: F,
) -> Result<(), BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until_every(what, timeout, Duration::from_millis(50), children, ready).await
}

/// [`wait_until`], polling every `every`.
pub(crate) async fn wait_until_every<F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    children: &mut [&mut Child],
    mut ready: F,
) -> Result<(), BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let held = crate::harness::poll_until(timeout, every, async || -> Result<bool, BenchError> {
        if ready().await {
            return Ok(true);
        }
        for child in children.iter_mut() {
            child.ensure_running()?;
        }
        Ok(false)
    })
    .await?;
    if held {
        return Ok(());
    }
    let logs = children
        .iter()
        .map(|c| format!("--- {}.log\n{}", c.name, tail(&c.log_text(), 20)))
        .collect::<Vec<_>>()
        .join("\n");
    Err(BenchError::Timeout {
        what: what.to_owned(),
        timeout,
        logs,
    })
}

/// Reads a component's `/metrics` and sums every series of `name`
/// (all label sets), or 0 when it has none yet.
pub(crate) async fn scrape(http: &reqwest::Client, port: u16, name: &str) -> f64 {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let Ok(response) = http.get(url).send().await else {
        return 0.0;
    };
    let Ok(text) = response.text().await else {
        return 0.0;
    };
    metric_sum(&text, name)
}

/// Sums the samples of `name` in Prometheus text format.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_of_one_metric_only() {
        let text = "# TYPE klaxon_x counter\nklaxon_x{topic=\"a\"} 3\nklaxon_x{topic=\"b\"} 4.5\nklaxon_x_total 100\nklaxon_xy 7\n";
        assert_eq!(metric_sum(text, "klaxon_x"), 7.5);
        assert_eq!(metric_sum(text, "klaxon_x_total"), 100.0);
        assert_eq!(metric_sum(text, "klaxon_missing"), 0.0);
    }

    #[test]
    fn reads_own_cpu_and_peak_rss() {
        let usage = Usage::own().unwrap();
        assert!(usage.peak_rss_bytes > 1 << 20, "{usage:?}");
    }
}
