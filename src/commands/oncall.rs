//! `klaxon oncall [check FILE]`: who is on call, or whether an on-call file
//! holds together.

use std::{io::Write, path::Path, path::PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::{
    config::{Config, Overrides},
    notify::{LoadedOnCall, queries},
};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OncallArgs {
    #[command(subcommand)]
    pub command: Option<OncallCommand>,
    /// The on-call file. Overrides notify.oncall.
    #[arg(long, env = "KLAXON_ONCALL")]
    pub file: Option<PathBuf>,
    /// Only this schedule.
    #[arg(long)]
    pub schedule: Option<String>,
    /// An RFC 3339 instant, e.g. 2026-12-24T20:00:00Z (default: now).
    #[arg(long)]
    pub at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

#[derive(Debug, Subcommand)]
pub enum OncallCommand {
    /// Validate an on-call file: unknown users, schedules or policies nobody
    /// can be paged by, users with no contact method, overlapping layers,
    /// bad time zones; warns about gaps in the next two weeks. Prints each
    /// as FILE:LINE and exits non-zero on any error.
    Check {
        /// The on-call file (TOML).
        file: PathBuf,
        /// Look for gaps in the two weeks from this RFC 3339 instant
        /// (default: now), e.g. before a schedule change takes effect.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::FixedOffset>>,
    },
}

impl OncallArgs {
    pub(super) fn overrides(&self, overrides: &mut Overrides) {
        overrides.oncall = self.file.clone();
    }
}

pub fn run(config: Config, args: OncallArgs) -> Result<()> {
    match args.command {
        Some(OncallCommand::Check { file, from }) => {
            check(&file, from.map_or_else(chrono::Utc::now, |t| t.to_utc()))
        }
        None => now(config, args),
    }
}

/// Reads and checks an on-call file, printing every finding as FILE:LINE;
/// any error refuses it.
pub(super) fn load_oncall(file: &Path) -> Result<LoadedOnCall> {
    load_oncall_at(file, chrono::Utc::now())
}

/// [`load_oncall`], looking for gaps in the two weeks from `from`.
fn load_oncall_at(file: &Path, from: chrono::DateTime<chrono::Utc>) -> Result<LoadedOnCall> {
    match LoadedOnCall::load_at(file.to_owned(), from) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            Ok(loaded)
        }
        Err(findings) => {
            for f in &findings {
                eprintln!("{f}");
            }
            bail!("{} refused", file.display())
        }
    }
}

fn check(file: &Path, from: chrono::DateTime<chrono::Utc>) -> Result<()> {
    let oncall = load_oncall_at(file, from)?.oncall;
    println!(
        "{}: OK ({} users, {} schedules, {} policies)",
        file.display(),
        oncall.user.len(),
        oncall.schedule.len(),
        oncall.policy.len()
    );
    Ok(())
}

/// `klaxon oncall`: who each schedule has on call at an instant, and until when.
fn now(config: Config, args: OncallArgs) -> Result<()> {
    let Some(file) = config.notify.oncall else {
        bail!("no on-call file: pass --file or set notify.oncall in the config file");
    };
    let oncall = load_oncall(&file)?.oncall;
    let at = args.at.map_or_else(chrono::Utc::now, |t| t.to_utc());
    crate::notify::schedule::check_instant(at)?;
    let answers = queries::on_call_at(&oncall, args.schedule.as_deref(), at);
    if answers.is_empty() {
        bail!(
            "no schedule {:?} in {}",
            args.schedule.unwrap_or_default(),
            file.display()
        );
    }
    let mut stdout = std::io::stdout().lock();
    for answer in answers {
        let shift = answer.shift?;
        let until = if shift.open_ended {
            "for the next 8 weeks at least".to_owned()
        } else {
            format!("until {}", shift.until.to_rfc3339())
        };
        let user = shift.user.as_deref().unwrap_or("(nobody)");
        writeln!(stdout, "{}\t{user}\t{until}", answer.schedule)?;
    }
    Ok(())
}
