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
    /// Start of the range: RFC 3339 (2026-11-25T00:00:00Z), `now`, `today` or
    /// `yesterday` (midnight UTC), or a time before now (`24h ago`, `now-7d`).
    #[arg(long, required_unless_present = "last", conflicts_with = "last")]
    pub from: Option<String>,
    /// End of the range (exclusive), in the same forms as --from. Default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// The range that ends now (or at --to), e.g. `24h` or `7d`; instead of --from.
    #[arg(long, value_name = "DURATION")]
    pub last: Option<String>,
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
    let now = crate::model::now_ns();
    let to = match &args.to {
        Some(t) => parse_time(t, now).map_err(anyhow::Error::msg).context("--to")?,
        None => now,
    };
    let from = match (&args.from, &args.last) {
        (Some(f), _) => parse_time(f, now).map_err(anyhow::Error::msg).context("--from")?,
        (None, Some(d)) => {
            let d = crate::config::parse_duration(d).context("--last")?;
            to - i64::try_from(d.as_nanos()).context("--last is too long")?
        }
        (None, None) => anyhow::bail!("give --from or --last"),
    };
    anyhow::ensure!(
        to > from,
        "the range ends ({}) before it starts ({}); --to must be after --from",
        crate::aggregate::rfc3339(to),
        crate::aggregate::rfc3339(from)
    );
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
        Format::Csv => crate::aggregate::compare::to_csv(&report),
        Format::Table => table(&report),
    };
    print!("{out}");
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

const NS_PER_DAY: i64 = 86_400_000_000_000;

/// A time on the command line: RFC 3339, `now`, `today` / `yesterday` (00:00 UTC),
/// or a duration before now written `24h ago`, `now-24h` or `-24h`.
pub fn parse_time(s: &str, now_ns: i64) -> Result<i64, String> {
    let t = s.trim();
    let ago = t
        .strip_suffix(" ago")
        .or_else(|| t.strip_prefix("now-"))
        .or_else(|| t.strip_prefix('-'))
        .map(str::trim)
        .filter(|d| d.starts_with(|c: char| c.is_ascii_digit()));
    match t {
        "now" => Ok(now_ns),
        "today" => Ok(now_ns - now_ns.rem_euclid(NS_PER_DAY)),
        "yesterday" => Ok(now_ns - now_ns.rem_euclid(NS_PER_DAY) - NS_PER_DAY),
        _ => match ago {
            Some(d) => {
                let d = crate::config::parse_duration(d).map_err(|e| e.to_string())?;
                Ok(now_ns - i64::try_from(d.as_nanos()).map_err(|_| format!("`{s}` is too far back"))?)
            }
            None => parse_rfc3339(t).map_err(|e| {
                format!("{e}; or use now, today, yesterday, or a time before now such as `24h ago` or `now-7d`")
            }),
        },
    }
}

/// The demo's table (`$`, its columns and rounding), with the range above it. The
/// rows go through the same JSON the API serves, so the report, the demo's terminal
/// and the page cannot disagree.
pub fn table(report: &Report) -> String {
    let rows: Vec<&WorkloadSummary> = report.workloads.iter().collect();
    let comparison = crate::demo::table::Comparison {
        from: report.from.clone(),
        to: report.to.clone(),
        workloads: rows
            .iter()
            .map(|w| serde_json::to_value(w).and_then(serde_json::from_value))
            .collect::<Result<_, _>>()
            .expect("a workload summary serializes to the API's row"),
    };
    let mut out = format!("{} .. {}  (energy from: {})\n", report.from, report.to, report.energy_from.as_str());
    if report.workloads.is_empty() {
        out += "(no workloads configured)\n";
    } else {
        out += &crate::demo::table::render(&comparison);
    }
    if let Some(u) = &report.unassigned {
        let tags: Vec<String> =
            u.tags.iter().map(|t| if t.workload.is_empty() { "(no tag)".into() } else { t.workload.clone() }).collect();
        out += &format!(
            "unassigned: {} device{}, {:.1} kWh, in no workload (workload tags: {}; see the warnings)\n",
            u.devices,
            if u.devices == 1 { "" } else { "s" },
            u.energy_j / 3.6e6,
            tags.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_170_600_000_000_000; // 2026-11-20T10:30:00Z

    #[test]
    fn relative_times() {
        let at = |s: &str| crate::aggregate::rfc3339(parse_time(s, NOW).unwrap());
        assert_eq!(at("now"), "2026-11-20T10:30:00Z");
        assert_eq!(at("today"), "2026-11-20T00:00:00Z");
        assert_eq!(at("yesterday"), "2026-11-19T00:00:00Z");
        for s in ["24h ago", "now-24h", "-24h", "1d ago"] {
            assert_eq!(at(s), "2026-11-19T10:30:00Z", "{s}");
        }
        assert_eq!(at("now-7d"), "2026-11-13T10:30:00Z");
        assert_eq!(at("2026-11-01T00:00:00Z"), "2026-11-01T00:00:00Z");
        let err = parse_time("last tuesday", NOW).unwrap_err();
        assert!(err.contains("RFC 3339") && err.contains("24h ago"), "{err}");
        assert!(parse_time("now-5 parsecs", NOW).is_err());
    }
}
