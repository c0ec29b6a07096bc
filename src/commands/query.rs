//! `klaxon query`: SQL over the lake, as a table, CSV, JSON or Parquet.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    config::Config,
    lake::Lake,
    query::{OutputFormat, QueryEngine, write_batches},
};

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL statement.
    pub sql: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the result to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub async fn run(config: Config, args: QueryArgs) -> Result<()> {
    let lake = Lake::open(&config.lake)?;
    let engine = QueryEngine::open(&lake).await?;
    let batches = engine.sql(&args.sql).await?;
    match (&args.output, args.format) {
        (Some(path), format) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write_batches(&batches, format, &mut file)?;
            file.sync_all()?;
        }
        (None, OutputFormat::Parquet) => bail!("--format parquet needs --output FILE"),
        (None, format) => {
            let mut stdout = std::io::stdout();
            write_batches(&batches, format, &mut stdout)?;
            stdout.flush()?;
        }
    }
    Ok(())
}
