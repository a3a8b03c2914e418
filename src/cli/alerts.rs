//! `wattledger alerts --config F`: the alerts as the aggregator last saved them
//! (its `[alerts] state_file`), for a terminal: firing first, then pending, then
//! recently resolved. Reads the file only, so it works while the aggregator runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::aggregate::config::AggregatorConfig;
use crate::alert::config::AlertsConfig;
use crate::alert::{load_book, AlertView, Snapshot};

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// The aggregator's config file.
    #[arg(long)]
    pub config: PathBuf,
    /// `text` (a table) or `json` (the shape of `GET /api/alerts`, without delivery counters).
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub async fn run(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let cfg = AggregatorConfig::load(&args.config)?;
    let alerts = AlertsConfig::from_aggregator(&cfg, super::aggregator::config_dir(&args.config))
        .map_err(|e| anyhow!("{}: {e}", args.config.display()))?;
    let book = load_book(&alerts.state_file)?;
    let snap = Snapshot::of(&book, alerts.enabled);
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&snap)?),
        "text" => print!("{}", table(&snap, &alerts.state_file.display().to_string())),
        other => return Err(anyhow!("--format is `text` or `json`, got {other:?}")),
    }
    Ok(ExitCode::SUCCESS)
}

/// The terminal table.
pub fn table(snap: &Snapshot, source: &str) -> String {
    let mut out = String::new();
    if !snap.enabled {
        out.push_str("alerts are disabled ([alerts] enabled = false)\n");
    }
    if snap.firing.is_empty() && snap.pending.is_empty() {
        out.push_str(&format!("no alerts firing or pending (state from {source})\n"));
    }
    let row = |out: &mut String, a: &AlertView, when: &str| {
        let subject: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{:<9} {:<8} {:<20} {:<17} {}\n          {}\n",
            a.state.as_str(),
            a.severity,
            when,
            a.alertname,
            subject.join(" "),
            a.summary
        ));
    };
    for a in snap.firing.iter().chain(&snap.pending) {
        row(&mut out, a, &a.since);
    }
    if !snap.history.is_empty() {
        out.push_str("recently resolved:\n");
        for a in snap.history.iter().take(10) {
            row(&mut out, a, a.resolved_at.as_deref().unwrap_or(""));
        }
    }
    out
}
