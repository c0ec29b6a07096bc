use std::time::Duration;

use clap::Parser;

/// How long the tasks a finished command leaves behind get to end.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    let cli = klaxon::commands::Cli::parse();
    klaxon::telemetry::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(klaxon::commands::run(cli));
    // The command is done: what is left are detached tasks, among them a
    // Kafka consumer whose drop waits for a broker that may be gone (its
    // close loops until the group is left). They must not keep the
    // process alive.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
