//! Devices that report a `workload` tag no `[[workloads]]` entry names (or no tag):
//! they belong to no workload's windows, so without this they would vanish from the
//! report, the API and the page. Their energy is measured like any device's and
//! shown as one "unassigned" row, with a warning naming each such tag and the
//! configured workloads close to it (`btc-hostd` → `btc-hosted`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::windows::{read_devices, RawTarget, WantedDevices};
use crate::ledger::accumulator::{Cuts, DeviceAccumulator, Rules, Sample, Sums};
use crate::ledger::series_device_id;
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

/// Finds the GPUs and miners over `win` whose `workload` tag is not in
/// `configured` (from the store's series, without reading rows) and sums their
/// energy, streaming only their rows; `None` when there are none.
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
        let outside =
            Outside { configured, win, rules: Rules { max_gap_ns, util_thresholds_pct: vec![] }, devices: vec![] };
        let mut wanted = WantedDevices::new();
        for tags in store.series_keys(&q).await?.into_iter().filter(|t| outside.accepts(t)) {
            // All of the series' tags: its identity tags would also select the
            // device's series in configured workloads.
            let all = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            wanted.entry(series_device_id(measurement, &tags)).or_insert_with(|| (all, 0)).1 += 1;
        }
        let outside = read_devices(store, &q, measurement, wanted, outside).await?;
        for (tag, sums, in_range) in outside.devices {
            if !in_range {
                continue;
            }
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
            entry.energy_j += sums.energy_j;
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

/// Devices outside the configured workloads, folded by the same rules as every
/// workload's energy: per device its `workload` tag, sums over the window, and
/// whether it had a sample inside it.
struct Outside<'a> {
    configured: &'a BTreeSet<&'a str>,
    win: Window,
    rules: Rules,
    devices: Vec<(String, Sums, bool)>,
}

impl RawTarget for Outside<'_> {
    fn accepts(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(schema::TAG_WORKLOAD).is_none_or(|w| !self.configured.contains(w.as_str()))
    }

    fn open(&mut self, _id: &str, tags: &BTreeMap<String, String>) -> (usize, Cuts) {
        let tag = tags.get(schema::TAG_WORKLOAD).cloned().unwrap_or_default();
        self.devices.push((tag, Sums::default(), false));
        (self.devices.len() - 1, Cuts { grid_ns: 0, list: vec![self.win.start_ns, self.win.end_ns] })
    }

    fn sample(&mut self, slot: usize, acc: &mut DeviceAccumulator, cuts: &Cuts, sample: &Sample) {
        let (start, end) = (self.win.start_ns, self.win.end_ns);
        let (_, sums, in_range) = &mut self.devices[slot];
        *in_range |= sample.time_ns >= start && sample.time_ns < end;
        // The parts [`crate::ledger::accumulator::sums_over`] keeps.
        acc.push(sample, &self.rules, cuts, |a, b, part| {
            if a >= start && (b < end || (b == end && a < b)) {
                sums.add_part(a, b, part);
            }
        });
    }
}
