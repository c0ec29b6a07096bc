//! One shutdown coordinator for every command.
//!
//! The first SIGINT or SIGTERM cancels the token: components stop fetching,
//! flush, commit and return. A second signal, or the grace period running
//! out, exits at once; what was not committed is replayed on the next start.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels the returned token on the first signal; exits the process on the
/// second, or `grace` after the first.
pub fn on_signals(grace: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down (signal again to force)");
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
            () = tokio::time::sleep(grace) => tracing::warn!("grace period over"),
        }
        std::process::exit(130);
    });
    token
}
