//! The on-call file as the notifier, the CLI and the HTTP API load it:
//! checked ([`check_oncall`]), with its warnings, and reloaded by the
//! notifier when its content changes.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{
    check::{Level, check_oncall},
    oncall::OnCall,
};

/// The on-call file as loaded, with the digest that tells a change.
#[derive(Debug)]
pub struct LoadedOnCall {
    pub path: PathBuf,
    pub oncall: OnCall,
    /// The loaded version's warnings (gaps ahead), as FILE:LINE lines.
    pub warnings: Vec<String>,
    digest: [u8; 32],
}

impl LoadedOnCall {
    /// Reads and checks the file. `Err` is every finding, as FILE:LINE
    /// lines in line order, when any of them is an error.
    pub fn load(path: PathBuf) -> Result<Self, Vec<String>> {
        Self::load_at(path, Utc::now())
    }

    /// [`LoadedOnCall::load`], looking for gaps in the two weeks from `now`.
    pub fn load_at(path: PathBuf, now: DateTime<Utc>) -> Result<Self, Vec<String>> {
        let text =
            std::fs::read_to_string(&path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let (oncall, findings) = check_oncall(&text, now).map_err(|f| vec![f.display(&path)])?;
        if findings.iter().any(|f| f.level == Level::Error) {
            return Err(findings.iter().map(|f| f.display(&path)).collect());
        }
        Ok(Self {
            warnings: findings.iter().map(|f| f.display(&path)).collect(),
            path,
            oncall,
            digest,
        })
    }

    /// Reads the file again if it changed; a broken new version is refused
    /// (logged with its lines) and this one stays.
    pub fn reload(&mut self) {
        let Ok(text) = std::fs::read(&self.path) else {
            return;
        };
        let digest: [u8; 32] = Sha256::digest(&text).into();
        if digest == self.digest {
            return;
        }
        match Self::load(self.path.clone()) {
            Ok(next) => {
                for warning in &next.warnings {
                    tracing::warn!("{warning}");
                }
                *self = next;
                tracing::info!(file = %self.path.display(), "on-call file reloaded");
            }
            Err(problems) => {
                for p in problems {
                    tracing::error!("{p} (refused; the previous on-call config stays active)");
                }
                // Report this version once.
                self.digest = digest;
                metrics::counter!("klaxon_notify_oncall_reload_failures_total").increment(1);
            }
        }
    }
}
