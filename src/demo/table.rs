//! The short comparison the demo prints in the terminal, read from the same
//! `GET /api/workloads` the web page shows, so both always agree.

use std::fmt::Write;

use serde::Deserialize;

/// The part of `GET /api/workloads` the terminal table shows.
#[derive(Debug, Clone, Deserialize)]
pub struct Comparison {
    pub from: String,
    pub to: String,
    pub workloads: Vec<WorkloadRow>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkloadRow {
    pub workload: String,
    pub model: String,
    pub energy_j: Option<f64>,
    pub revenue_usd: Option<f64>,
    pub profit_usd: Option<f64>,
    pub revenue_usd_per_kwh: Option<f64>,
    pub profit_usd_per_kwh: Option<f64>,
    pub volatility_cv: Option<f64>,
    pub break_even_usd_per_kwh: Option<f64>,
    pub j_per_th: Option<f64>,
    pub tokens_per_j: Option<f64>,
    pub coverage: Option<f64>,
    /// The energy ledger's share of the covered device-time (the rest came from raw samples).
    #[serde(default)]
    pub ledger_share: Option<f64>,
    /// Shares of the energy by what measured it: `62 % meter, 38 % estimated`.
    #[serde(default)]
    pub energy_basis: Option<String>,
    /// `measured`, `nominal` or `partly nominal`.
    #[serde(default)]
    pub efficiency_basis: Option<String>,
    #[serde(default)]
    pub no_power_devices: usize,
}

/// `$1.50`, `-$0.01`; an amount that rounds to zero is `$0.00`, never `-$0.00`.
fn usd(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => {
            let s = format!("{:.digits$}", v.abs());
            let zero = s.bytes().all(|b| b == b'0' || b == b'.');
            format!("{}${s}", if v < 0.0 && !zero { "-" } else { "" })
        }
        None => "-".into(),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// A plain-text table, ranked as the API ranks it (by revenue per kWh).
pub fn render(c: &Comparison) -> String {
    let header = [
        "workload",
        "model",
        "revenue $/kWh",
        "profit $/kWh",
        "volatility CV",
        "break-even $/kWh",
        "efficiency",
        "coverage",
        "energy kWh",
        "revenue $",
        "measured by",
        "from ledger",
    ];
    let rows: Vec<[String; 12]> = c
        .workloads
        .iter()
        .map(|w| {
            // An efficiency from estimated power is the spec sheet's, not a measurement.
            let nominal = match w.efficiency_basis.as_deref() {
                Some(b @ ("nominal" | "partly nominal")) => format!(" ({b})"),
                _ => String::new(),
            };
            let efficiency = match (w.j_per_th, w.tokens_per_j) {
                (Some(j), _) => format!("{j:.1} J/TH{nominal}"),
                (None, Some(t)) => format!("{t:.2} tok/J"),
                _ if w.no_power_devices > 0 && w.energy_j.unwrap_or(0.0) <= 0.0 => "no power reading".into(),
                _ => "-".into(),
            };
            [
                w.workload.clone(),
                w.model.clone(),
                usd(w.revenue_usd_per_kwh, 3),
                usd(w.profit_usd_per_kwh, 3),
                opt(w.volatility_cv, |v| format!("{:.1} %", v * 100.0)),
                usd(w.break_even_usd_per_kwh, 3),
                efficiency,
                opt(w.coverage, |v| format!("{:.0} %", v * 100.0)),
                opt(w.energy_j, |v| format!("{:.1}", v / 3.6e6)),
                usd(w.revenue_usd, 2),
                w.energy_basis.clone().unwrap_or_else(|| "-".into()),
                opt(w.ledger_share, |v| format!("{:.0} %", v * 100.0)),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            // Names left-aligned, numbers right-aligned.
            if i < 2 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "{}{cell}", " ".repeat(pad));
            }
            out.push_str(if i + 1 < cells.len() { "  " } else { "\n" });
        }
    };
    line(&mut out, &header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule.iter().map(String::as_str).collect::<Vec<_>>());
    for r in &rows {
        line(&mut out, &r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        out.push_str("(no workload has measurements yet)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_api_json_aligned_with_units() {
        let json = r#"{"from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z","workloads":[
          {"workload":"gpu-contract","model":"ai_contract","energy_j":3.6e8,"facility_energy_j":4.0e8,"revenue_usd":150.0,
           "energy_cost_usd":8.0,"profit_usd":142.0,"revenue_usd_per_kwh":1.5,"profit_usd_per_kwh":1.42,"coverage":0.99,
           "volatility_cv":0.004,"break_even_usd_per_kwh":1.35,"j_per_th":null,"tokens_per_j":null,"ledger_share":0.97},
          {"workload":"btc-fleet","model":"bitcoin_fpps","energy_j":3.6e9,"facility_energy_j":4.0e9,"revenue_usd":90.0,
           "energy_cost_usd":80.0,"profit_usd":10.0,"revenue_usd_per_kwh":0.09,"profit_usd_per_kwh":-0.01,"coverage":1.0,
           "volatility_cv":0.12,"break_even_usd_per_kwh":0.081,"j_per_th":19.44,"tokens_per_j":null}]}"#;
        let c: Comparison = serde_json::from_str(json).unwrap();
        let t = render(&c);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[2].starts_with("gpu-contract  ai_contract"), "{t}");
        assert!(lines[2].contains("$1.500") && lines[2].contains("0.4 %") && lines[2].contains("100.0"), "{t}");
        assert!(lines[2].ends_with("97 %") && lines[3].ends_with("-"), "{t}");
        assert!(lines[3].contains("-$0.010") && lines[3].contains("19.4 J/TH") && lines[3].contains("12.0 %"), "{t}");
        assert_eq!(
            (usd(Some(-0.0004), 3), usd(Some(-0.0), 2), usd(Some(-0.006), 2)),
            ("$0.000".into(), "$0.00".into(), "-$0.01".into())
        );
        // Every line has the same width: columns line up.
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}");
    }
}
