//! `klaxon broker`: the embedded Kafka-compatible broker (tansu) on its own.

use std::{io::Write, net::SocketAddr, time::Duration};

use anyhow::Result;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{self, BrokerOptions},
    shutdown,
};

#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[arg(long, env = "KLAXON_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// sqlite://FILE (survives restarts; resolved under the working directory)
    /// or memory://tansu/ (lost on exit, and tansu 0.6.0's memory engine skips
    /// records when a consumer resumes inside a batch: tests only).
    #[arg(
        long,
        env = "KLAXON_BROKER_STORAGE",
        default_value = "sqlite://klaxon-broker.db"
    )]
    pub storage: String,
}

pub async fn run(args: BrokerArgs) -> Result<()> {
    let options = BrokerOptions {
        listen: args.listen,
        storage: args.storage,
    };
    println!(
        "kafka bootstrap {} (storage {})",
        options.bootstrap(),
        options.storage
    );
    std::io::stdout().flush()?;
    let shutdown: CancellationToken = shutdown::on_signals(Duration::from_secs(5));
    tokio::select! {
        result = broker::run(options) => result?,
        () = shutdown.cancelled() => {},
    }
    Ok(())
}
