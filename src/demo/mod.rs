//! `klaxon up --demo`: the whole story on the embedded default, in about two
//! minutes, with no files of the user's.
//!
//! A synthetic checkout service emits metrics ([`service`]); a minute in, a
//! deploy leaks memory and its error rate climbs; the rule fires; the engineer
//! on call in a five-person weekly rotation is paged on the console channel;
//! nobody acknowledges, so the policy escalates to the manager; the manager
//! asks a colleague for help with a manual page; the demo acknowledges, rolls
//! back, resolves, and writes the postmortem draft ([`story`]). Each step is
//! printed as klaxon's own data shows it happened: the incident is read from
//! the changelog, the draft from the lake.
//!
//! The rule, the on-call file and every wait are scaled by `speed` (1 by
//! default; tests run faster), so the story is the same at any speed.

mod service;
mod story;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

pub use story::{DemoError, play};

/// The rule that pages.
pub const RULE: &str = "checkout_error_rate";
/// The rotation's five engineers, then their manager.
pub const ROTATION: [&str; 5] = ["ana", "ben", "chloe", "dev", "eli"];
pub const MANAGER: &str = "maya";

/// The story's durations at speed 1.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub speed: f64,
}

impl Timing {
    /// `secs` seconds of the story at this speed.
    pub fn secs(&self, secs: f64) -> Duration {
        Duration::from_secs_f64(secs / self.speed.max(0.01))
    }

    /// The service's tick: one point of each metric.
    pub fn tick(&self) -> Duration {
        self.secs(1.0)
    }
    /// The deploy comes after this.
    pub fn deploy_after(&self) -> Duration {
        self.secs(60.0)
    }
    /// Level 1's wait for an acknowledgement before the manager is paged.
    pub fn escalation_delay(&self) -> Duration {
        self.secs(20.0)
    }
    /// The rule's window and hop.
    pub fn window(&self) -> Duration {
        self.secs(15.0)
    }
    pub fn every(&self) -> Duration {
        self.secs(5.0)
    }
}

/// A duration as the rule and on-call files spell it, in milliseconds.
fn spelled(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Where the demo's rule and on-call file are written.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    pub rules: PathBuf,
    pub oncall: PathBuf,
}

/// Writes the demo's rule and on-call file under `dir`.
pub fn write_files(dir: &Path, timing: Timing) -> std::io::Result<DemoFiles> {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules)?;
    std::fs::write(rules.join("checkout.toml"), rule_file(timing))?;
    let oncall = dir.join("oncall.toml");
    std::fs::write(&oncall, oncall_file(timing))?;
    Ok(DemoFiles { rules, oncall })
}

/// The share of checkout's requests that fail, in percent, over a window.
/// Critical only: a warning level would fire again on the way down, after
/// the demo has resolved the incident. It keeps firing 30s after recovering,
/// as rules that must not flap do, so the manager's resolve comes first.
fn rule_file(timing: Timing) -> String {
    format!(
        r#"[[rule]]
name = "{RULE}"
sql = """
SELECT service,
       round(100.0 * sum(CASE WHEN name = 'checkout.errors' THEN value ELSE 0 END)
                   / sum(CASE WHEN name = 'checkout.requests' THEN value ELSE 0 END), 1) AS error_pct
FROM metrics
WHERE name IN ('checkout.requests', 'checkout.errors')
GROUP BY service
"""
window = "{window}"
every = "{every}"
keep_firing_for = "{keep}"
summary = "{{{{service}}}}: {{{{error_pct}}}}% of requests failing"
runbook = "https://runbooks.example/checkout"
escalation_policy = "checkout"
labels = {{ team = "checkout" }}
[rule.thresholds]
column = "error_pct"
critical = 5
"#,
        window = spelled(timing.window()),
        every = spelled(timing.every()),
        keep = spelled(timing.secs(30.0)),
    )
}

/// Five engineers in a weekly rotation, their manager at level 2, everyone
/// on the console channel.
fn oncall_file(timing: Timing) -> String {
    let mut text = String::from("default_policy = \"checkout\"\n");
    for user in ROTATION.iter().chain([&MANAGER]) {
        text.push_str(&format!(
            "\n[[user]]\nid = \"{user}\"\ncontact = [{{ type = \"console\", address = \"{user}\" }}]\n"
        ));
    }
    let rotation = ROTATION.map(|u| format!("\"{u}\"")).join(", ");
    text.push_str(&format!(
        r#"
[[schedule]]
id = "checkout-primary"
time_zone = "UTC"
[[schedule.layer]]
users = [{rotation}]
rotation = "1w"
start = "2026-01-05T09:00:00"

[[policy]]
id = "checkout"
[[policy.level]]
targets = [{{ schedule = "checkout-primary" }}]
delay = "{delay}"
[[policy.level]]
targets = [{{ user = "{MANAGER}" }}]
delay = "{delay}"
"#,
        delay = spelled(timing.escalation_delay()),
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_files_pass_their_own_checks() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path(), Timing { speed: 4.0 }).unwrap();
        let text = std::fs::read_to_string(&files.oncall).unwrap();
        let (_, findings) = crate::notify::check_oncall(&text, chrono::Utc::now()).unwrap();
        assert!(
            findings
                .iter()
                .all(|f| f.level != crate::notify::Level::Error),
            "{findings:?}"
        );
        let report = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(crate::rules::check_dir(&files.rules, None))
            .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
