//! Devices that report a `workload` tag no `[[workloads]]` entry names (or no tag):
//! they belong to no workload's windows, so without this they would vanish from the
//! report, the API and the page. Their energy is measured like any device's and
//! shown as one "unassigned" row, with a warning naming each such tag and the
//! configured workloads close to it (`btc-hostd` → `btc-hosted`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::windows::devices_from_series;
use crate::ledger::accumulator::{sums_over, Rules, Sample};
use crate::model::schema::{self, asic, gpu};
use crate::signal::Window;
use crate::store::{SeriesQuery, Store, StoreError};

/// The devices of one unknown `workload` tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnassignedTag {
    /// The tag as the agents wrote it; empty when the devices carry none.
    pub workload: String,
    pub devices: usize,
    pub energy_j: f64,
    /// Configured workloads whose name is close: the likely typo.
    pub close: Vec<String>,
}

/// The "unassigned" row: every device outside the configured workloads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unassigned {
    pub devices: usize,
    pub energy_j: f64,
    pub tags: Vec<UnassignedTag>,
}

impl Unassigned {
    /// One warning per tag, naming the close workloads.
    pub fn warnings(&self) -> Vec<String> {
        self.tags
            .iter()
            .map(|t| {
                let what = if t.workload.is_empty() {
                    "without a workload tag".to_string()
                } else {
                    format!("with workload = {:?}, which no [[workloads]] entry names", t.workload)
                };
                let close = if t.close.is_empty() {
                    String::new()
                } else {
                    format!("; did you mean {}?", t.close.join(" or "))
                };
                let devices = if t.devices == 1 { "1 device".to_string() } else { format!("{} devices", t.devices) };
                let verb = if t.devices == 1 { "is" } else { "are" };
                format!(
                    "{devices} {what} ({:.3} kWh) {verb} shown as unassigned{close}",
                    t.energy_j / schema::J_PER_KWH
                )
            })
            .collect()
    }
}

/// Reads every GPU and miner over `win` and sums the energy of those whose
/// `workload` tag is not in `configured`; `None` when there are none.
pub async fn unassigned(
    store: &dyn Store,
    configured: &BTreeSet<&str>,
    win: Window,
    max_gap_ns: i64,
) -> Result<Option<Unassigned>, StoreError> {
    let mut by_tag: BTreeMap<String, UnassignedTag> = BTreeMap::new();
    for (measurement, fields) in
        [(gpu::MEASUREMENT, vec![gpu::POWER_W, gpu::ENERGY_J]), (asic::MEASUREMENT, vec![asic::POWER_W])]
    {
        let q = SeriesQuery {
            measurement: measurement.to_string(),
            fields: fields.into_iter().map(String::from).collect(),
            tag_filters: vec![],
            start_ns: win.start_ns - max_gap_ns,
            end_ns: win.end_ns + max_gap_ns,
        };
        let series: Vec<_> = store
            .read(&q)
            .await?
            .into_iter()
            .filter(|s| s.tags.get(schema::TAG_WORKLOAD).is_none_or(|w| !configured.contains(w.as_str())))
            .collect();
        for dev in devices_from_series(measurement, series) {
            let samples = energy_samples(&dev.tracks);
            let in_range = samples.iter().any(|s| s.time_ns >= win.start_ns && s.time_ns < win.end_ns);
            if !in_range {
                continue;
            }
            let rules = Rules { max_gap_ns, util_thresholds_pct: vec![] };
            let e = sums_over(&samples, &rules, win.start_ns, win.end_ns);
            let tag = dev.tags.get(schema::TAG_WORKLOAD).cloned().unwrap_or_default();
            let entry = by_tag.entry(tag.clone()).or_insert_with(|| UnassignedTag {
                close: crate::config::near_misses(&tag, configured.iter().copied())
                    .into_iter()
                    .map(String::from)
                    .collect(),
                workload: tag,
                devices: 0,
                energy_j: 0.0,
            });
            entry.devices += 1;
            entry.energy_j += e.energy_j;
        }
    }
    if by_tag.is_empty() {
        return Ok(None);
    }
    let tags: Vec<UnassignedTag> = by_tag.into_values().collect();
    Ok(Some(Unassigned {
        devices: tags.iter().map(|t| t.devices).sum(),
        energy_j: tags.iter().map(|t| t.energy_j).sum(),
        tags,
    }))
}

/// A device's power and energy readings as the accumulator's samples, in time
/// order: the same integration rules as every workload's energy.
fn energy_samples(dev: &crate::revenue::DeviceTracks) -> Vec<Sample> {
    let mut by_time: BTreeMap<i64, Sample> = BTreeMap::new();
    // `asic` names its power field as `gpu` does.
    for &(t, v) in dev.track(gpu::POWER_W) {
        by_time.entry(t).or_insert_with(|| Sample { time_ns: t, healthy: true, ..Default::default() }).power_w =
            Some(v);
    }
    for &(t, v) in dev.track(gpu::ENERGY_J) {
        by_time.entry(t).or_insert_with(|| Sample { time_ns: t, healthy: true, ..Default::default() }).energy_j =
            Some(v);
    }
    by_time.into_values().collect()
}
