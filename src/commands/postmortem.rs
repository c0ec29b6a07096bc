//! `klaxon postmortem ID`: a blameless draft of one incident, from the lake.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::{config::Config, lake::Lake, postmortem};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DraftFormat {
    /// Markdown, the chart as an SVG file beside it.
    Md,
    /// One self-contained HTML page, the chart inline.
    Html,
}

#[derive(Debug, Args)]
pub struct PostmortemArgs {
    /// Incident id, or its dedup_key (the latest incident of it).
    pub id: String,
    /// Where to write the draft (default: postmortem-ID.md or .html).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DraftFormat::Md)]
    pub format: DraftFormat,
    /// The rules, to run the alerting rule again over the lake for the
    /// first breach and the chart. Default: rules.dir.
    #[arg(long, env = "KLAXON_RULES")]
    pub rules: Option<PathBuf>,
}

pub async fn run(config: Config, args: PostmortemArgs) -> Result<()> {
    let lake = Lake::open(&config.lake)?;
    let rules = args.rules.as_deref().or(config.rules.dir.as_deref());
    let draft = postmortem::draft(&lake, rules, &args.id).await?;
    let extension = match args.format {
        DraftFormat::Md => "md",
        DraftFormat::Html => "html",
    };
    let path = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("postmortem-{}.{extension}", draft.facts.id)));
    match args.format {
        DraftFormat::Html => write(&path, &postmortem::html(&draft))?,
        DraftFormat::Md => {
            let chart = match &draft.chart {
                Some(svg) => {
                    let chart = path.with_extension("svg");
                    write(&chart, svg)?;
                    Some(chart)
                }
                None => None,
            };
            let name = chart
                .as_ref()
                .and_then(|c| c.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            write(&path, &postmortem::markdown(&draft, name.as_deref()))?;
            if let Some(chart) = chart {
                println!("chart {}", chart.display());
            }
        }
    }
    println!("draft {}", path.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
