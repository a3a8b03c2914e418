//! Reconciliation against group meters (a site meter, a feeder, a container).
//!
//! A meter channel with `group = "…"` measures every device in that group: the
//! devices whose points carry the tag `group` with that name (the agent's `group`
//! setting), and, for a group named like the site, every device of the site. Each
//! window, its energy is compared with the sum of those devices' IT energy over
//! all the site's workloads (after device-level meters, see [`super::basis`]); the
//! difference is the gap, in kWh and as a percentage of the meter's energy:
//! cooling, PSU and distribution losses, and devices nobody configured.
//!
//! The gap is only a percentage when the group meter had energy for at least
//! [`MIN_METER_COVERAGE`] of the window: a meter that was offline for part of it
//! measured a different span than the devices.
//!
//! **Facility energy.** Where the site's own group meter reconciles (covered, and
//! reading at least what its devices read), the measured facility energy replaces
//! IT × PUE: each workload's facility energy is its IT energy × (site meter ÷ all
//! the site's devices), and its energy cost is scaled by the same factor. Otherwise
//! the workload keeps IT × PUE (`facility_basis = pue`). Feeder and container
//! meters are reconciled but do not change facility energy.

use std::collections::BTreeMap;

use serde::Serialize;

use super::compare::WindowResult;
use crate::model::schema::{meter_reconciliation as mr, J_PER_KWH};
use crate::model::Point;
use crate::signal::Window;

/// The share of a window a group meter must cover for its gap to count.
pub const MIN_METER_COVERAGE: f64 = 0.95;

/// What a workload's facility energy is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FacilityBasis {
    /// IT energy × the site's configured PUE.
    #[default]
    Pue,
    /// Measured by the site's meter.
    Meter,
}

impl FacilityBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            FacilityBasis::Pue => "pue",
            FacilityBasis::Meter => "meter",
        }
    }

    pub fn parse(s: &str) -> FacilityBasis {
        if s == "meter" {
            FacilityBasis::Meter
        } else {
            FacilityBasis::Pue
        }
    }
}

/// One group meter against its devices in one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciliation {
    pub site: String,
    pub group: String,
    #[serde(skip)]
    pub window: Window,
    pub meter_energy_j: f64,
    /// Time the meter had energy ÷ the window.
    pub meter_coverage: f64,
    pub devices_energy_j: f64,
    /// Meter − devices, in kWh (positive: energy the devices do not explain).
    pub gap_kwh: f64,
    /// The gap ÷ the meter's energy × 100; `None` when the meter covered less than
    /// [`MIN_METER_COVERAGE`] of the window or measured nothing.
    pub gap_pct: Option<f64>,
}

impl Reconciliation {
    /// The `meter_reconciliation` point, stamped at the window start.
    pub fn point(&self, window_tag: &str) -> Point {
        Point::new(mr::MEASUREMENT, self.window.start_ns)
            .tag(mr::TAG_SITE, self.site.as_str())
            .tag(mr::TAG_GROUP, self.group.as_str())
            .tag(mr::TAG_WINDOW, window_tag)
            .field(mr::METER_ENERGY_J, self.meter_energy_j)
            .field(mr::METER_COVERAGE, self.meter_coverage)
            .field(mr::DEVICES_ENERGY_J, self.devices_energy_j)
            .field(mr::GAP_KWH, self.gap_kwh)
            .field_opt(mr::GAP_PCT, self.gap_pct)
    }
}

/// Reconciles the windows of one site and window (every workload of the site) and
/// applies the site meter's facility energy to them (see the module docs).
pub fn reconcile_site(results: &mut [WindowResult]) -> Vec<Reconciliation> {
    let Some(first) = results.first() else { return Vec::new() };
    let (site, window) = (first.site.clone(), first.window);
    // Every workload reads the same site meters; take the best-covered reading of each group.
    let mut meters: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for w in results.iter() {
        for (g, &(j, c)) in &w.group_meter {
            let m = meters.entry(g.clone()).or_insert((j, c));
            if c > m.1 {
                *m = (j, c);
            }
        }
    }
    let mut out = Vec::new();
    for (group, (meter_j, covered_ns)) in meters {
        let devices_j: f64 = results.iter().map(|w| w.group_energy_j.get(&group).copied().unwrap_or(0.0)).sum();
        let coverage = if window.len_ns() > 0 { (covered_ns as f64 / window.len_ns() as f64).min(1.0) } else { 0.0 };
        let comparable = coverage >= MIN_METER_COVERAGE && meter_j > 0.0;
        let r = Reconciliation {
            site: site.clone(),
            group: group.clone(),
            window,
            meter_energy_j: meter_j,
            meter_coverage: coverage,
            devices_energy_j: devices_j,
            gap_kwh: (meter_j - devices_j) / J_PER_KWH,
            gap_pct: comparable.then(|| (meter_j - devices_j) / meter_j * 100.0),
        };
        if group == site {
            apply_site_meter(results, &r);
        }
        out.push(r);
    }
    out
}

/// Replaces IT × PUE by the site meter's share where it reconciles.
fn apply_site_meter(results: &mut [WindowResult], r: &Reconciliation) {
    let usable = r.gap_pct.is_some() && r.devices_energy_j > 0.0 && r.meter_energy_j >= r.devices_energy_j;
    if !usable {
        if r.gap_pct.is_some() && r.meter_energy_j < r.devices_energy_j {
            let msg = format!(
                "site {}: the site meter read {:.3} kWh, less than its devices' {:.3} kWh; facility energy uses the configured PUE",
                r.site,
                r.meter_energy_j / J_PER_KWH,
                r.devices_energy_j / J_PER_KWH
            );
            for w in results.iter_mut() {
                if !w.warnings.contains(&msg) {
                    w.warnings.push(msg.clone());
                }
            }
        }
        return;
    }
    let factor = r.meter_energy_j / r.devices_energy_j;
    for w in results.iter_mut() {
        let facility = w.energy_j * factor;
        if w.facility_energy_j > 0.0 {
            w.energy_cost_usd *= facility / w.facility_energy_j;
        }
        w.facility_energy_j = facility;
        w.facility_basis = FacilityBasis::Meter;
    }
}

/// One group meter over a range: the sums of its windows. `gap_pct` is taken over
/// the windows the meter covered (see [`MIN_METER_COVERAGE`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapSummary {
    pub site: String,
    pub group: String,
    pub meter_energy_j: f64,
    pub devices_energy_j: f64,
    pub gap_kwh: f64,
    pub gap_pct: Option<f64>,
    pub windows: usize,
    /// Windows whose gap counts (the meter covered them).
    pub compared_windows: usize,
}

/// Sums reconciliations per site and group.
pub fn summarise(rs: &[Reconciliation]) -> Vec<GapSummary> {
    let mut by: BTreeMap<(String, String), (GapSummary, f64, f64)> = BTreeMap::new();
    for r in rs {
        let (s, meter_c, gap_c) = by.entry((r.site.clone(), r.group.clone())).or_insert_with(|| {
            let s = GapSummary {
                site: r.site.clone(),
                group: r.group.clone(),
                meter_energy_j: 0.0,
                devices_energy_j: 0.0,
                gap_kwh: 0.0,
                gap_pct: None,
                windows: 0,
                compared_windows: 0,
            };
            (s, 0.0, 0.0)
        });
        s.meter_energy_j += r.meter_energy_j;
        s.devices_energy_j += r.devices_energy_j;
        s.gap_kwh += r.gap_kwh;
        s.windows += 1;
        if r.gap_pct.is_some() {
            s.compared_windows += 1;
            *meter_c += r.meter_energy_j;
            *gap_c += r.meter_energy_j - r.devices_energy_j;
        }
    }
    by.into_values()
        .map(|(mut s, meter_c, gap_c)| {
            s.gap_pct = (meter_c > 0.0).then(|| gap_c / meter_c * 100.0);
            s
        })
        .collect()
}

/// Groups windows by site and window start and reconciles each group (see
/// [`reconcile_site`]); returns every reconciliation, by site, start and group.
pub fn reconcile_all(results: &mut [WindowResult]) -> Vec<Reconciliation> {
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by(|&a, &b| {
        (results[a].site.as_str(), results[a].window.start_ns)
            .cmp(&(results[b].site.as_str(), results[b].window.start_ns))
    });
    let mut out = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let key = (results[order[i]].site.clone(), results[order[i]].window.start_ns);
        let mut j = i;
        while j < order.len() && (results[order[j]].site.clone(), results[order[j]].window.start_ns) == key {
            j += 1;
        }
        let mut group: Vec<WindowResult> = order[i..j].iter().map(|&k| results[k].clone()).collect();
        out.extend(reconcile_site(&mut group));
        for (&k, w) in order[i..j].iter().zip(group) {
            results[k] = w;
        }
        i = j;
    }
    out
}

/// `a=1.5;b=2` ↔ map of group → value, for the string fields a stored window keeps.
/// `%` and `;` in a group's name are written `%25` and `%3B`.
pub fn encode_groups(m: &BTreeMap<String, f64>) -> Option<String> {
    let esc = |g: &str| g.replace('%', "%25").replace(';', "%3B");
    (!m.is_empty()).then(|| m.iter().map(|(g, v)| format!("{}={v}", esc(g))).collect::<Vec<_>>().join(";"))
}

/// The inverse of [`encode_groups`]; entries that do not parse are left out.
pub fn decode_groups(s: &str) -> BTreeMap<String, f64> {
    let unesc = |g: &str| g.replace("%3B", ";").replace("%25", "%");
    s.split(';')
        .filter_map(|kv| kv.rsplit_once('='))
        .filter_map(|(g, v)| v.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (unesc(g), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::basis::BasisEnergy;

    const H: i64 = 3_600_000_000_000;

    fn window(workload: &str, energy_j: f64, groups: &[(&str, f64)], meter: &[(&str, f64, i64)]) -> WindowResult {
        WindowResult {
            workload: workload.into(),
            site: "a".into(),
            revenue_model: &crate::revenue::bitcoin_fpps::INFO,
            window: Window::new(0, H),
            energy_j,
            facility_energy_j: energy_j * 1.1,
            revenue_usd: 1.0,
            energy_cost_usd: energy_j * 1.1 / J_PER_KWH * 0.05,
            covered_ns: H,
            devices: 1,
            work_th: None,
            tokens: None,
            ledger_energy_j: 0.0,
            ledger_covered_ns: 0,
            basis: BasisEnergy { reported_j: energy_j, ..Default::default() },
            no_power_devices: 0,
            powered: Default::default(),
            unpowered_work_th: 0.0,
            group_energy_j: groups.iter().map(|(g, e)| (g.to_string(), *e)).collect(),
            group_meter: meter.iter().map(|(g, e, c)| (g.to_string(), (*e, *c))).collect(),
            facility_basis: FacilityBasis::Pue,
            warnings: vec![],
        }
    }

    #[test]
    fn a_site_meter_reconciles_and_replaces_pue() {
        // Two workloads, 100 kWh and 50 kWh of IT energy; the site meter reads
        // 180 kWh over the whole hour: gap 30 kWh, 30/180 = 16.67 %. Facility
        // factor 180/150 = 1.2, replacing PUE 1.1; cost scales by 1.2/1.1.
        let kwh = J_PER_KWH;
        let meter = [("a", 180.0 * kwh, H)];
        let mut ws = vec![
            window("btc", 100.0 * kwh, &[("a", 100.0 * kwh)], &meter),
            window("h100", 50.0 * kwh, &[("a", 50.0 * kwh)], &meter),
        ];
        let cost0 = ws[0].energy_cost_usd;
        let r = reconcile_all(&mut ws);
        assert_eq!(r.len(), 1);
        assert!((r[0].gap_kwh - 30.0).abs() < 1e-9);
        assert!((r[0].gap_pct.unwrap() - 100.0 / 6.0).abs() < 1e-9);
        assert!((ws[0].facility_energy_j - 120.0 * kwh).abs() < 1e-3);
        assert!((ws[1].facility_energy_j - 60.0 * kwh).abs() < 1e-3);
        assert!((ws[0].energy_cost_usd - cost0 * 1.2 / 1.1).abs() < 1e-9);
        assert_eq!(ws[0].facility_basis, FacilityBasis::Meter);
        let p = r[0].point("1h");
        assert_eq!(p.tag_value("group"), Some("a"));
    }

    #[test]
    fn a_meter_offline_for_half_the_window_is_not_compared_and_pue_stays() {
        let kwh = J_PER_KWH;
        let mut ws = vec![window("btc", 100.0 * kwh, &[("a", 100.0 * kwh)], &[("a", 60.0 * kwh, H / 2)])];
        let r = reconcile_all(&mut ws);
        assert_eq!(r[0].gap_pct, None);
        assert_eq!(ws[0].facility_basis, FacilityBasis::Pue);
        assert!((ws[0].facility_energy_j - 110.0 * kwh).abs() < 1e-3);
    }

    #[test]
    fn a_meter_reading_less_than_its_devices_keeps_pue_with_a_warning() {
        let kwh = J_PER_KWH;
        let mut ws = vec![window("btc", 100.0 * kwh, &[("a", 100.0 * kwh)], &[("a", 90.0 * kwh, H)])];
        let r = reconcile_all(&mut ws);
        assert!((r[0].gap_pct.unwrap() + 100.0 / 9.0).abs() < 1e-9);
        assert_eq!(ws[0].facility_basis, FacilityBasis::Pue);
        assert!(ws[0].warnings[0].contains("less than its devices"), "{:?}", ws[0].warnings);
    }

    proptest::proptest! {
        #[test]
        fn any_group_map_round_trips(m in proptest::collection::btree_map(".{0,12}", -1e15f64..1e15, 0..6)) {
            let back = encode_groups(&m).map(|s| decode_groups(&s)).unwrap_or_default();
            proptest::prop_assert_eq!(back, m);
        }

        #[test]
        fn decoding_any_text_does_not_panic(s in ".{0,64}") {
            let _ = decode_groups(&s);
        }
    }

    #[test]
    fn group_maps_round_trip() {
        let m: BTreeMap<String, f64> = [("feeder-a".to_string(), 1.5e6), ("a".to_string(), 2.0)].into();
        assert_eq!(decode_groups(&encode_groups(&m).unwrap()), m);
        assert!(decode_groups("x=nan;=;y").is_empty());
    }
}
