//! `wattledger report`: the per-workload comparison over a time range, computed
//! from the energy ledger and the raw measurements in the configured store
//! (`--energy-from auto`, the default), or from only one of them to audit the
//! other (`raw`, `ledger`). Complete windows the aggregator has stored (with the
//! current config) are read back; the others are computed, and `--recompute`
//! computes every window (nothing is written either way).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::aggregate::compare::{Report, WorkloadSummary};
use crate::aggregate::config::AggregatorConfig;
use crate::aggregate::{parse_rfc3339, Aggregator, Windows};
use crate::ledger::EnergyFrom;
use crate::model::SystemClock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The aggregator's config file (store, sites, market, workloads).
    #[arg(long)]
    pub config: PathBuf,
    /// Start of the range, RFC 3339 (e.g. 2026-11-25T00:00:00Z).
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive), RFC 3339.
    #[arg(long)]
    pub to: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Compute every window from the measurements instead of reading the windows
    /// the aggregator stored (to audit them, or after changing data by hand).
    #[arg(long)]
    pub recompute: bool,
    /// Where energy and revenue inputs come from: `auto` (energy_ledger points,
    /// raw samples for every device and interval without one), `raw` (raw samples
    /// only, the ledger is not read) or `ledger` (ledger points only).
    #[arg(long, value_enum, default_value_t = EnergyFrom::Auto)]
    pub energy_from: EnergyFrom,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let from = parse_rfc3339(&args.from).map_err(anyhow::Error::msg).context("--from")?;
    let to = parse_rfc3339(&args.to).map_err(anyhow::Error::msg).context("--to")?;
    anyhow::ensure!(to > from, "--to ({}) must be after --from ({})", args.to, args.from);
    crate::aggregate::check_range(from, to).context("--from/--to")?;
    let cfg = AggregatorConfig::load(&args.config)?;
    let store = crate::store::open_store(&cfg.store)
        .await
        .with_context(|| format!("opening the store named in {}", args.config.display()))?;
    let agg = Aggregator::new(cfg, store, Arc::new(SystemClock))?.with_energy_from(args.energy_from);
    let mode = if args.recompute { Windows::Recompute } else { Windows::Stored { write_back: false } };
    let report = agg.report(from, to, mode).await.context("computing the report")?;
    let out = match args.format {
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Csv => csv(&report),
        Format::Table => table(&report),
    };
    print!("{out}");
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

const COLUMNS: [&str; 17] = [
    "workload",
    "model",
    "energy_j",
    "facility_energy_j",
    "revenue_usd",
    "energy_cost_usd",
    "profit_usd",
    "revenue_usd_per_kwh",
    "profit_usd_per_kwh",
    "coverage",
    "volatility_cv",
    "break_even_usd_per_kwh",
    "j_per_th",
    "tokens_per_j",
    "ledger_energy_j",
    "raw_energy_j",
    "ledger_share",
];

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV with the JSON's keys as header; empty cells where JSON has null.
pub fn csv(report: &Report) -> String {
    let mut out = COLUMNS.join(",") + "\n";
    for w in &report.workloads {
        let cells = [
            csv_field(&w.workload),
            w.revenue_model.to_string(),
            w.energy_j.to_string(),
            w.facility_energy_j.to_string(),
            w.revenue_usd.to_string(),
            w.energy_cost_usd.to_string(),
            w.profit_usd.to_string(),
            opt(w.revenue_usd_per_kwh),
            opt(w.profit_usd_per_kwh),
            w.coverage.to_string(),
            opt(w.volatility_cv),
            opt(w.break_even_usd_per_kwh),
            opt(w.j_per_th),
            opt(w.tokens_per_j),
            w.ledger_energy_j.to_string(),
            w.raw_energy_j.to_string(),
            opt(w.ledger_share),
        ];
        out += &cells.join(",");
        out.push('\n');
    }
    out
}

fn fixed(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

fn table_row(w: &WorkloadSummary) -> Vec<String> {
    vec![
        w.workload.clone(),
        w.revenue_model.to_string(),
        format!("{:.3}", w.energy_j / 3.6e6),
        format!("{:.2}", w.revenue_usd),
        format!("{:.2}", w.energy_cost_usd),
        format!("{:.2}", w.profit_usd),
        fixed(w.revenue_usd_per_kwh, 4),
        fixed(w.profit_usd_per_kwh, 4),
        format!("{:.1}%", w.coverage * 100.0),
        fixed(w.volatility_cv, 3),
        fixed(w.break_even_usd_per_kwh, 4),
        fixed(w.j_per_th, 2),
        fixed(w.tokens_per_j, 3),
        w.ledger_share.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", x * 100.0)),
    ]
}

/// A plain-text table, ranked by revenue per kWh.
pub fn table(report: &Report) -> String {
    let header: Vec<String> = [
        "workload",
        "model",
        "IT kWh",
        "revenue $",
        "energy $",
        "profit $",
        "$/kWh",
        "profit $/kWh",
        "coverage",
        "CV",
        "break-even $/kWh",
        "J/TH",
        "tokens/J",
        "from ledger",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = std::iter::once(header).chain(report.workloads.iter().map(table_row)).collect();
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = format!("{} .. {}  (energy from: {})\n", report.from, report.to, report.energy_from.as_str());
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(
                |(c, cell)| {
                    if c < 2 {
                        format!("{cell:<w$}", w = widths[c])
                    } else {
                        format!("{cell:>w$}", w = widths[c])
                    }
                },
            )
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
        if i == 0 {
            out += &"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1));
            out.push('\n');
        }
    }
    if report.workloads.is_empty() {
        out += "(no workloads configured)\n";
    }
    out
}
