//! The comparison: per workload over a range, the sums of its windows and the
//! ratios an operator decides with (revenue and profit per kWh, volatility,
//! break-even energy price, hardware efficiency), ranked by revenue per kWh.
//!
//! Ratios are taken of sums, never averaged: revenue per kWh over a day is the
//! day's revenue ÷ the day's IT energy. A ratio whose denominator is zero is
//! `null`, not 0 or infinity.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::basis::BasisEnergy;
use super::reconcile::FacilityBasis;
use crate::model::schema::J_PER_KWH;
use crate::revenue::{Efficiency, ModelInfo};
use crate::signal::Window;

/// One workload's numbers in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub workload: String,
    pub site: String,
    pub revenue_model: &'static ModelInfo,
    pub window: Window,
    pub energy_j: f64,
    pub facility_energy_j: f64,
    pub revenue_usd: f64,
    pub energy_cost_usd: f64,
    /// Device-time covered by measurements, and the devices seen.
    pub covered_ns: i64,
    pub devices: usize,
    pub work_th: Option<f64>,
    pub tokens: Option<f64>,
    /// The part of `energy_j` and of `covered_ns` taken from the energy ledger;
    /// the rest came from raw samples.
    pub ledger_energy_j: f64,
    pub ledger_covered_ns: i64,
    /// `energy_j` by what measured it (see [`super::basis`]).
    pub basis: BasisEnergy,
    /// Devices seen in the window without any energy (no power reading).
    pub no_power_devices: usize,
    /// Devices with energy, while the window is computed (not stored).
    pub powered: BTreeSet<String>,
    /// Work (TH) of miners without a power reading, left out of J/TH.
    pub unpowered_work_th: f64,
    /// IT energy of the workload's devices per group (the site's group holds all).
    pub group_energy_j: BTreeMap<String, f64>,
    /// The site's group meter channels: energy and time covered, per group.
    pub group_meter: BTreeMap<String, (f64, i64)>,
    /// Whether `facility_energy_j` is measured by a site meter or IT × PUE.
    pub facility_basis: FacilityBasis,
    /// Why a number may be incomplete (stale market data, missing prices).
    pub warnings: Vec<String>,
}

impl WindowResult {
    pub fn profit_usd(&self) -> f64 {
        self.revenue_usd - self.energy_cost_usd
    }

    pub fn revenue_usd_per_kwh(&self) -> Option<f64> {
        per_kwh(self.revenue_usd, self.energy_j)
    }

    pub fn profit_usd_per_kwh(&self) -> Option<f64> {
        per_kwh(self.profit_usd(), self.energy_j)
    }

    /// Covered device-time ÷ (devices × window); 0 when no device reported.
    pub fn coverage(&self) -> f64 {
        super::energy::coverage(self.covered_ns, self.devices, self.window)
    }

    /// Covered device-time from the ledger ÷ all covered device-time; `None`
    /// without covered time.
    pub fn ledger_share(&self) -> Option<f64> {
        (self.covered_ns > 0).then(|| self.ledger_covered_ns as f64 / self.covered_ns as f64)
    }

    /// Adds a later, adjacent part of the same window (a read chunk). `devices`
    /// is left to the caller, who knows which devices were seen in any part.
    pub fn absorb(&mut self, part: WindowResult) {
        fn add(a: &mut Option<f64>, b: Option<f64>) {
            if let Some(b) = b {
                *a.get_or_insert(0.0) += b;
            }
        }
        self.window.end_ns = self.window.end_ns.max(part.window.end_ns);
        self.energy_j += part.energy_j;
        self.facility_energy_j += part.facility_energy_j;
        self.revenue_usd += part.revenue_usd;
        self.energy_cost_usd += part.energy_cost_usd;
        self.covered_ns += part.covered_ns;
        self.ledger_energy_j += part.ledger_energy_j;
        self.ledger_covered_ns += part.ledger_covered_ns;
        self.basis.absorb(&part.basis);
        self.powered.extend(part.powered);
        self.unpowered_work_th += part.unpowered_work_th;
        for (g, e) in part.group_energy_j {
            *self.group_energy_j.entry(g).or_default() += e;
        }
        for (g, (e, c)) in part.group_meter {
            let m = self.group_meter.entry(g).or_default();
            m.0 += e;
            m.1 += c;
        }
        add(&mut self.work_th, part.work_th);
        add(&mut self.tokens, part.tokens);
        for w in part.warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
    }

    /// Mean IT power over the window.
    pub fn avg_power_w(&self) -> f64 {
        let s = self.window.len_s();
        if s > 0.0 {
            self.energy_j / s
        } else {
            0.0
        }
    }
}

/// `amount` ÷ kWh of `energy_j`, or `None` without energy.
pub fn per_kwh(amount: f64, energy_j: f64) -> Option<f64> {
    (energy_j > 0.0).then(|| amount / (energy_j / J_PER_KWH))
}

/// One row of the comparison, in the report's and the API's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadSummary {
    pub workload: String,
    /// The revenue model, written by its name as in configs.
    #[serde(rename = "model")]
    pub revenue_model: &'static ModelInfo,
    pub energy_j: f64,
    pub facility_energy_j: f64,
    pub revenue_usd: f64,
    pub energy_cost_usd: f64,
    pub profit_usd: f64,
    pub revenue_usd_per_kwh: Option<f64>,
    pub profit_usd_per_kwh: Option<f64>,
    pub coverage: f64,
    pub volatility_cv: Option<f64>,
    pub break_even_usd_per_kwh: Option<f64>,
    pub j_per_th: Option<f64>,
    pub tokens_per_j: Option<f64>,
    /// Which path the energy came from: joules from `energy_ledger` points and
    /// from raw samples, and the ledger's share of the covered device-time.
    pub ledger_energy_j: f64,
    pub raw_energy_j: f64,
    pub ledger_share: Option<f64>,
    /// `energy_j` by basis (`meter_j`, `reported_j`, `board_j`, `estimated_j`),
    /// and as text: `62 % meter, 38 % estimated`, or `no power reading`.
    pub energy_by_basis: BasisEnergy,
    pub energy_basis: String,
    /// What the efficiency figure rests on: `measured`, `nominal` (all of the
    /// energy estimated from nominal J/TH), `partly nominal`; `null` without energy.
    pub efficiency_basis: Option<&'static str>,
    /// The most devices seen without any power reading in one window (their time
    /// counts against coverage; their work is left out of J/TH).
    pub no_power_devices: usize,
    /// `meter` when a site meter measured all of `facility_energy_j`, `pue` when
    /// none of it, `meter and pue` for a mix of windows.
    pub facility_basis: &'static str,
}

/// Folds a workload's windows, one at a time, into its summary.
#[derive(Debug, Clone)]
pub struct Summarizer {
    workload: String,
    revenue_model: &'static ModelInfo,
    energy_j: f64,
    facility_energy_j: f64,
    revenue_usd: f64,
    energy_cost_usd: f64,
    covered_ns: f64,
    ledger_energy_j: f64,
    ledger_covered_ns: f64,
    possible_ns: f64,
    work_th: Option<f64>,
    tokens: Option<f64>,
    per_kwh: Vec<f64>,
    basis: BasisEnergy,
    no_power_devices: usize,
    unpowered_work_th: f64,
    facility: (bool, bool),
    pub warnings: Vec<String>,
}

impl Summarizer {
    pub fn new(workload: &str, revenue_model: &'static ModelInfo) -> Self {
        Summarizer {
            workload: workload.to_string(),
            revenue_model,
            energy_j: 0.0,
            facility_energy_j: 0.0,
            revenue_usd: 0.0,
            energy_cost_usd: 0.0,
            covered_ns: 0.0,
            ledger_energy_j: 0.0,
            ledger_covered_ns: 0.0,
            possible_ns: 0.0,
            work_th: None,
            tokens: None,
            per_kwh: Vec::new(),
            basis: BasisEnergy::default(),
            no_power_devices: 0,
            unpowered_work_th: 0.0,
            facility: (false, false),
            warnings: Vec::new(),
        }
    }

    pub fn add(&mut self, w: &WindowResult) {
        self.energy_j += w.energy_j;
        self.facility_energy_j += w.facility_energy_j;
        self.revenue_usd += w.revenue_usd;
        self.energy_cost_usd += w.energy_cost_usd;
        self.covered_ns += w.covered_ns as f64;
        self.ledger_energy_j += w.ledger_energy_j;
        self.ledger_covered_ns += w.ledger_covered_ns as f64;
        self.possible_ns += w.devices as f64 * w.window.len_ns() as f64;
        if let Some(v) = w.work_th {
            *self.work_th.get_or_insert(0.0) += v;
        }
        if let Some(v) = w.tokens {
            *self.tokens.get_or_insert(0.0) += v;
        }
        if let Some(v) = w.revenue_usd_per_kwh() {
            self.per_kwh.push(v);
        }
        self.basis.absorb(&w.basis);
        self.no_power_devices = self.no_power_devices.max(w.no_power_devices);
        self.unpowered_work_th += w.unpowered_work_th;
        if w.energy_j > 0.0 {
            match w.facility_basis {
                FacilityBasis::Meter => self.facility.0 = true,
                FacilityBasis::Pue => self.facility.1 = true,
            }
        }
        for msg in &w.warnings {
            if !self.warnings.contains(msg) {
                self.warnings.push(msg.clone());
            }
        }
    }

    pub fn finish(self) -> WorkloadSummary {
        let profit_usd = self.revenue_usd - self.energy_cost_usd;
        let coverage = if self.possible_ns > 0.0 { (self.covered_ns / self.possible_ns).clamp(0.0, 1.0) } else { 0.0 };
        let efficiency = self.revenue_model.efficiency;
        let shows = |e: Efficiency| efficiency == Some(e);
        WorkloadSummary {
            revenue_usd_per_kwh: per_kwh(self.revenue_usd, self.energy_j),
            profit_usd_per_kwh: per_kwh(profit_usd, self.energy_j),
            break_even_usd_per_kwh: per_kwh(self.revenue_usd, self.facility_energy_j),
            volatility_cv: coefficient_of_variation(&self.per_kwh),
            // Over the miners with a power reading: no energy is no J/TH, never 0.
            j_per_th: self
                .work_th
                .map(|th| th - self.unpowered_work_th)
                .filter(|&th| shows(Efficiency::JoulesPerTh) && th > 0.0 && self.energy_j > 0.0)
                .map(|th| self.energy_j / th),
            tokens_per_j: self
                .tokens
                .filter(|_| shows(Efficiency::TokensPerJoule) && self.energy_j > 0.0)
                .map(|t| t / self.energy_j),
            workload: self.workload,
            revenue_model: self.revenue_model,
            energy_j: self.energy_j,
            facility_energy_j: self.facility_energy_j,
            revenue_usd: self.revenue_usd,
            energy_cost_usd: self.energy_cost_usd,
            profit_usd,
            coverage,
            ledger_energy_j: self.ledger_energy_j,
            raw_energy_j: self.energy_j - self.ledger_energy_j,
            ledger_share: (self.covered_ns > 0.0).then(|| self.ledger_covered_ns / self.covered_ns),
            energy_by_basis: self.basis,
            energy_basis: self.basis.label(),
            efficiency_basis: self.basis.efficiency_label(),
            no_power_devices: self.no_power_devices,
            facility_basis: match self.facility {
                (true, false) => "meter",
                (true, true) => "meter and pue",
                _ => "pue",
            },
        }
    }
}

/// Population standard deviation ÷ mean; `None` with fewer than two values or a
/// mean that is not positive.
pub fn coefficient_of_variation(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return None;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some(var.sqrt() / mean)
}

/// Highest revenue per kWh first; workloads without energy last, by name.
pub fn rank(rows: &mut [WorkloadSummary]) {
    rows.sort_by(|a, b| match (a.revenue_usd_per_kwh, b.revenue_usd_per_kwh) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.workload.cmp(&b.workload)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.workload.cmp(&b.workload),
    });
}

/// The report: `{"from", "to", "workloads": [...], "warnings": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// Where energy and revenue inputs were read from: `auto`, `raw` or `ledger`.
    pub energy_from: crate::ledger::EnergyFrom,
    pub workloads: Vec<WorkloadSummary>,
    /// Devices whose `workload` tag no workload names, with their energy; absent
    /// when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unassigned: Option<super::unassigned::Unassigned>,
    /// Group meters against the devices they feed, per site and group over the
    /// range; absent where no group meter reported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reconciliation: Vec<super::reconcile::GapSummary>,
    pub warnings: Vec<String>,
}

/// One CSV field, quoted (RFC 4180) when it holds a comma, quote or line break: the
/// quoting of `report --format csv` and `GET /api/workloads.csv`.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The columns of the comparison as CSV (`report --format csv` and
/// `GET /api/workloads.csv`), named as the JSON fields are.
pub const CSV_COLUMNS: &[&str] = &[
    "rank",
    "workload",
    "model",
    "from",
    "to",
    "energy_j",
    "facility_energy_j",
    "revenue_usd",
    "energy_cost_usd",
    "profit_usd",
    "revenue_usd_per_kwh",
    "profit_usd_per_kwh",
    "break_even_usd_per_kwh",
    "volatility_cv",
    "coverage",
    "j_per_th",
    "tokens_per_j",
    "ledger_share",
    "ledger_energy_j",
    "raw_energy_j",
    "energy_basis",
    "efficiency_basis",
    "no_power_devices",
    "facility_basis",
];

/// The comparison as CSV: [`CSV_COLUMNS`], one row per workload in rank order,
/// numbers in full precision, an empty cell where the JSON has `null`; then, when
/// devices are in no workload, a row `(unassigned)` with only their energy. Lines
/// end in CRLF (RFC 4180).
pub fn to_csv(report: &Report) -> String {
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut out = CSV_COLUMNS.join(",") + "\r\n";
    let mut line = |cells: Vec<String>| {
        debug_assert_eq!(cells.len(), CSV_COLUMNS.len());
        out += &cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",");
        out += "\r\n";
    };
    for (i, w) in report.workloads.iter().enumerate() {
        line(vec![
            (i + 1).to_string(),
            w.workload.clone(),
            w.revenue_model.name.to_string(),
            report.from.clone(),
            report.to.clone(),
            num(Some(w.energy_j)),
            num(Some(w.facility_energy_j)),
            num(Some(w.revenue_usd)),
            num(Some(w.energy_cost_usd)),
            num(Some(w.profit_usd)),
            num(w.revenue_usd_per_kwh),
            num(w.profit_usd_per_kwh),
            num(w.break_even_usd_per_kwh),
            num(w.volatility_cv),
            num(Some(w.coverage)),
            num(w.j_per_th),
            num(w.tokens_per_j),
            num(w.ledger_share),
            num(Some(w.ledger_energy_j)),
            num(Some(w.raw_energy_j)),
            w.energy_basis.clone(),
            w.efficiency_basis.unwrap_or_default().to_string(),
            w.no_power_devices.to_string(),
            w.facility_basis.to_string(),
        ]);
    }
    if let Some(u) = &report.unassigned {
        let mut cells = vec![String::new(); CSV_COLUMNS.len()];
        cells[1] = "(unassigned)".into();
        cells[3] = report.from.clone();
        cells[4] = report.to.clone();
        cells[5] = num(Some(u.energy_j));
        line(cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    fn window(hour: i64, energy_j: f64, revenue_usd: f64) -> WindowResult {
        WindowResult {
            workload: "btc".into(),
            site: "a".into(),
            revenue_model: &crate::revenue::bitcoin_fpps::INFO,
            window: Window::new(hour * H, (hour + 1) * H),
            energy_j,
            facility_energy_j: energy_j * 1.1,
            revenue_usd,
            energy_cost_usd: energy_j * 1.1 / 3.6e6 * 0.05,
            covered_ns: H,
            devices: 2,
            work_th: Some(energy_j / 20.0),
            tokens: None,
            ledger_energy_j: energy_j / 2.0,
            ledger_covered_ns: H / 2,
            basis: BasisEnergy { reported_j: energy_j, ..Default::default() },
            no_power_devices: 0,
            powered: BTreeSet::new(),
            unpowered_work_th: 0.0,
            group_energy_j: BTreeMap::new(),
            group_meter: BTreeMap::new(),
            facility_basis: FacilityBasis::Pue,
            warnings: vec![],
        }
    }

    #[test]
    fn summary_of_two_hours() {
        // Hour 0: 36 kWh (1.296e8 J), $3.60 → $0.10/kWh. Hour 1: 36 kWh, $5.40 →
        // $0.15/kWh. Totals: 72 kWh IT, 79.2 kWh facility (PUE 1.1), revenue $9.00,
        // cost 79.2 × 0.05 = $3.96, profit $5.04.
        // revenue/kWh = 9 / 72 = 0.125; profit/kWh = 5.04 / 72 = 0.07;
        // break-even = 9 / 79.2 = 0.113636...; CV of [0.10, 0.15]: mean 0.125,
        // population sd 0.025, CV 0.2. Coverage: 2 × 1 h covered of 2 devices × 2 h = 0.5.
        // J/TH: work = energy / 20, so 20 J/TH.
        let mut s = Summarizer::new("btc", &crate::revenue::bitcoin_fpps::INFO);
        s.add(&window(0, 1.296e8, 3.60));
        s.add(&window(1, 1.296e8, 5.40));
        let r = s.finish();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(r.revenue_usd, 9.0) && close(r.energy_cost_usd, 3.96) && close(r.profit_usd, 5.04), "{r:?}");
        assert!(close(r.revenue_usd_per_kwh.unwrap(), 0.125));
        assert!(close(r.profit_usd_per_kwh.unwrap(), 0.07));
        assert!(close(r.break_even_usd_per_kwh.unwrap(), 9.0 / 79.2));
        assert!(close(r.volatility_cv.unwrap(), 0.2));
        assert!(close(r.coverage, 0.5));
        assert!(close(r.j_per_th.unwrap(), 20.0));
        assert_eq!(r.tokens_per_j, None);
    }

    #[test]
    fn ranking_puts_no_energy_last() {
        let mut a = Summarizer::new("a", &crate::revenue::ai_contract::INFO).finish();
        let mut b = a.clone();
        b.workload = "b".into();
        b.revenue_usd_per_kwh = Some(0.1);
        let mut c = a.clone();
        c.workload = "c".into();
        c.revenue_usd_per_kwh = Some(2.9);
        a.workload = "a".into();
        let mut rows = vec![a, b, c];
        rank(&mut rows);
        let names: Vec<_> = rows.iter().map(|r| r.workload.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
    }
}
