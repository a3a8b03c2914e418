//! One device's history for the page's drill-down: power, efficiency and revenue in
//! at most [`MAX_POINTS`] buckets over a range of at most [`MAX_HISTORY_NS`].
//!
//! Energy, coverage and revenue come from the same computation as the workload's
//! windows ([`compute_chunk`]: ledger points, else raw samples), fed only this
//! device's series. Revenue is given per device only where the workload's model earns
//! from what the device itself measures (a miner's accepted difficulty, a GPU's
//! healthy or busy hours); a model paid on inference servers' tokens has no honest
//! per-GPU share, so its GPUs show energy and efficiency only, and say why.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::windows::{compute_chunk, ChunkData, WorkloadPlan};
use super::{check_range, rfc3339, AggregateError, Aggregator};
use crate::ledger::point::ledger_fields;
use crate::ledger::{raw_fields, series_device_id};
use crate::model::schema::{self, asic, energy_ledger as el, gpu};
use crate::model::FieldValue;
use crate::signal::Window;
use crate::store::{Series, SeriesQuery};

const S: i64 = 1_000_000_000;
/// The most buckets one answer holds.
pub const MAX_POINTS: usize = 500;
/// The longest range one history covers: 31 days of one device's 10-second samples
/// is about 270,000 rows read.
pub const MAX_HISTORY_NS: i64 = 31 * 86_400 * S;
/// Bucket lengths, shortest first; the first that fits the range in [`MAX_POINTS`]
/// is used, so buckets fall on round wall-clock times.
const BUCKETS_S: &[i64] = &[60, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400];

/// What a device history says about revenue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevenueBasis {
    /// The workload's model applied to this device's own measurements.
    PerDevice,
    /// The model is paid on something no single device measures (inference tokens).
    WorkloadOnly,
    /// The device is in no configured workload.
    NoWorkload,
}

/// One bucket of a device's history. `None`: nothing measured in the bucket (a gap).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    pub start: String,
    pub end: String,
    /// Mean power over the covered time (energy ÷ covered seconds), else the mean of
    /// the power samples.
    pub power_w: Option<f64>,
    pub energy_j: Option<f64>,
    pub coverage: Option<f64>,
    pub revenue_usd: Option<f64>,
    /// Miners: mean hashrate of the samples, and energy ÷ hash work (J/TH) over the
    /// covered time (Σ power ÷ Σ hashrate of the samples for a device in no workload).
    pub hashrate_ths: Option<f64>,
    pub j_per_th: Option<f64>,
    /// GPUs: mean utilisation, and mean power per utilisation point.
    pub util_gpu_pct: Option<f64>,
    pub w_per_util_pct: Option<f64>,
    pub samples: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceHistory {
    pub device: String,
    pub kind: &'static str,
    pub workload: Option<String>,
    /// The workload's revenue model.
    pub model: Option<&'static str>,
    /// What the power figure is: a miner's `power_source` (`reported`, `estimated`,
    /// `meter`), `board` for a GPU.
    pub power_basis: Option<String>,
    pub from: String,
    pub to: String,
    pub bucket_s: i64,
    pub revenue: RevenueBasis,
    pub notes: Vec<String>,
    pub points: Vec<HistoryPoint>,
}

/// The bucket length for `[from_ns, to_ns)`: the shortest of [`BUCKETS_S`] giving at
/// most [`MAX_POINTS`] aligned buckets.
pub fn bucket_ns(from_ns: i64, to_ns: i64) -> i64 {
    let count = |len: i64| ((to_ns - 1).div_euclid(len) - from_ns.div_euclid(len) + 1) as usize;
    BUCKETS_S.iter().map(|s| s * S).find(|&len| count(len) <= MAX_POINTS).unwrap_or(BUCKETS_S[BUCKETS_S.len() - 1] * S)
}

/// The rows of `series` with `start_ns <= t < end_ns` (rows are in time order).
fn slice(series: &[Series], start_ns: i64, end_ns: i64) -> Vec<Series> {
    series
        .iter()
        .filter_map(|s| {
            let a = s.times_ns.partition_point(|&t| t < start_ns);
            let b = s.times_ns.partition_point(|&t| t < end_ns);
            (a < b).then(|| Series {
                tags: s.tags.clone(),
                fields: s.fields.clone(),
                times_ns: s.times_ns[a..b].to_vec(),
                values: s.values[a..b].to_vec(),
            })
        })
        .collect()
}

/// Sample means of one bucket, from the raw rows inside it.
#[derive(Default)]
struct SampleSums {
    power_w: f64,
    power_n: usize,
    eff_power_w: f64,
    eff_hashrate_ths: f64,
    hashrate_ths: f64,
    hashrate_n: usize,
    util_pct: f64,
    util_n: usize,
}

impl SampleSums {
    fn add(&mut self, series: &[Series]) {
        for s in series {
            let col = |name: &str| s.fields.iter().position(|f| f == name);
            let (p, h, u) = (col(asic::POWER_W), col(asic::HASHRATE_THS), col(gpu::UTIL_GPU_PCT));
            for row in &s.values {
                let num = |j: Option<usize>| {
                    j.and_then(|j| row.get(j))
                        .and_then(Option::as_ref)
                        .and_then(FieldValue::as_f64)
                        .filter(|v| v.is_finite())
                };
                let (power, hashrate, util) = (num(p).filter(|v| *v >= 0.0), num(h), num(u));
                if let Some(v) = power {
                    self.power_w += v;
                    self.power_n += 1;
                }
                if let Some(v) = hashrate {
                    self.hashrate_ths += v;
                    self.hashrate_n += 1;
                }
                if let (Some(pw), Some(hr)) = (power, hashrate.filter(|v| *v > 0.0)) {
                    self.eff_power_w += pw;
                    self.eff_hashrate_ths += hr;
                }
                if let Some(v) = util {
                    self.util_pct += v;
                    self.util_n += 1;
                }
            }
        }
    }

    fn mean(sum: f64, n: usize) -> Option<f64> {
        (n > 0).then(|| sum / n as f64)
    }
}

impl Aggregator {
    /// The history of device `id` (as `/api/fleet` names it) over `[from_ns, to_ns)`.
    pub async fn device_history(&self, id: &str, from_ns: i64, to_ns: i64) -> Result<DeviceHistory, AggregateError> {
        check_range(from_ns, to_ns)?;
        if to_ns - from_ns > MAX_HISTORY_NS {
            return Err(AggregateError::Range(format!(
                "a device history covers at most 31 days; {} .. {} is longer",
                rfc3339(from_ns),
                rfc3339(to_ns)
            )));
        }
        let margin_ns = self
            .plans
            .iter()
            .map(|p| p.max_gap_ns)
            .max()
            .unwrap_or(0)
            .max(self.cfg.aggregator.max_gap.as_nanos() as i64);
        // Device ids start with the host (`rig-1/GPU-…`; agents tag every point with
        // it): reading only that host's series keeps the read to one machine's devices.
        let host_filter: Vec<(String, String)> =
            id.split_once('/').map(|(h, _)| (schema::TAG_HOST.to_string(), h.to_string())).into_iter().collect();
        let mut found = None;
        for (kind, measurement) in [("asic", asic::MEASUREMENT), ("gpu", gpu::MEASUREMENT)] {
            let q = SeriesQuery {
                measurement: measurement.into(),
                fields: raw_fields(measurement).iter().map(|f| f.to_string()).collect(),
                tag_filters: host_filter.clone(),
                start_ns: from_ns - margin_ns,
                end_ns: to_ns + margin_ns,
            };
            let mut raw = self.store.read(&q).await?;
            raw.retain(|s| series_device_id(measurement, &s.tags) == id);
            if !raw.is_empty() {
                found = Some((kind, measurement, raw));
                break;
            }
        }
        let Some((kind, measurement, raw)) = found else {
            return Err(AggregateError::UnknownDevice(format!(
                "no GPU or miner {id:?} reported between {} and {} (an inference server's energy is its GPUs')",
                rfc3339(from_ns),
                rfc3339(to_ns)
            )));
        };
        let tags = &raw[raw.len() - 1].tags;
        let host = tags.get(schema::TAG_HOST).map(String::as_str);
        let workload = tags.get(schema::TAG_WORKLOAD).cloned();
        let power_basis = match kind {
            "asic" => tags.get(asic::TAG_POWER_SOURCE).cloned(),
            _ => Some("board".to_string()),
        };
        let plan = workload.as_deref().and_then(|w| {
            self.plans.iter().find(|p| p.name == w && p.revenue_model.info().inputs.energy_measurement == measurement)
        });
        let mut notes = Vec::new();
        let revenue = match plan.map(|p| p.revenue_model.info()) {
            None => {
                notes.push(match &workload {
                    Some(w) => format!("workload {w:?} is not configured: power and efficiency only"),
                    None => "no workload tag: power and efficiency only".to_string(),
                });
                RevenueBasis::NoWorkload
            }
            Some(info) if info.inputs.revenue_measurement == info.inputs.energy_measurement => RevenueBasis::PerDevice,
            Some(info) => {
                notes.push(format!(
                    "{} is paid on the {} servers' counters, which no single GPU's share of can be measured: revenue is shown per workload only",
                    info.title, info.inputs.revenue_measurement
                ));
                RevenueBasis::WorkloadOnly
            }
        };
        if power_basis.as_deref() == Some("estimated") {
            notes.push(
                "power is estimated from hashrate × the model's nominal J/TH, so J/TH here is the nominal figure"
                    .into(),
            );
        }
        let ledger = match plan {
            Some(p) => {
                let q = SeriesQuery {
                    measurement: el::MEASUREMENT.into(),
                    fields: ledger_fields(&p.rules().util_thresholds_pct),
                    tag_filters: [(schema::TAG_WORKLOAD, p.name.as_str()), (el::TAG_SOURCE, measurement)]
                        .into_iter()
                        .chain(host.map(|h| (schema::TAG_HOST, h)))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    start_ns: from_ns,
                    end_ns: to_ns,
                };
                let mut l = self.store.read(&q).await?;
                l.retain(|s| series_device_id(measurement, &s.tags) == id);
                l
            }
            None => Vec::new(),
        };
        let market = match plan {
            Some(p) if p.revenue_model.info().inputs.market => self.market_history(from_ns, to_ns).await?,
            _ => super::market::MarketHistory::none(),
        };
        let mut tariffs = BTreeMap::new();
        let tariff = match plan {
            Some(p) => Some(self.tariff_for(p, from_ns, to_ns, &mut tariffs).await?.clone()),
            None => None,
        };
        let len_ns = bucket_ns(from_ns, to_ns);
        let mut points = Vec::new();
        for win in super::windows::aligned_windows(from_ns, to_ns, len_ns) {
            let mut sums = SampleSums::default();
            sums.add(&slice(&raw, win.start_ns, win.end_ns));
            let computed = match (plan, &tariff) {
                (Some(p), Some(t)) => Some(self.device_bucket(p, t, win, measurement, &raw, &ledger, &market)),
                _ => None,
            };
            points.push(history_point(win, &sums, computed.as_ref(), revenue));
            for w in computed.iter().flat_map(|c| &c.warnings) {
                if !notes.contains(w) {
                    notes.push(w.clone());
                }
            }
        }
        Ok(DeviceHistory {
            device: id.to_string(),
            kind,
            workload,
            model: plan.map(|p| p.revenue_model.info().name),
            power_basis,
            from: rfc3339(from_ns),
            to: rfc3339(to_ns),
            bucket_s: len_ns / S,
            revenue,
            notes,
            points,
        })
    }

    /// One bucket of one device through the workload's own computation.
    #[allow(clippy::too_many_arguments)]
    fn device_bucket(
        &self,
        plan: &WorkloadPlan,
        tariff: &super::tariff::Tariff,
        win: Window,
        measurement: &'static str,
        raw: &[Series],
        ledger: &[Series],
        market: &super::market::MarketHistory,
    ) -> super::compare::WindowResult {
        // The same read margins as the workload's windows: raw samples `max_gap`
        // either side (they shape the intervals crossing the edges), ledger inside.
        let data = ChunkData {
            ledger: slice(ledger, win.start_ns, win.end_ns),
            raw: vec![(measurement, slice(raw, win.start_ns - plan.max_gap_ns, win.end_ns + plan.max_gap_ns))],
            ..Default::default()
        };
        let mut seen = BTreeSet::new();
        let mut w = compute_chunk(plan, tariff, win, data, &market.at(win.end_ns), &mut seen);
        w.devices = seen.len();
        w
    }
}

fn history_point(
    win: Window,
    sums: &SampleSums,
    computed: Option<&super::compare::WindowResult>,
    revenue: RevenueBasis,
) -> HistoryPoint {
    let covered = computed.filter(|w| w.covered_ns > 0);
    let power_w = covered
        .map(|w| w.energy_j / (w.covered_ns as f64 / 1e9))
        .or_else(|| SampleSums::mean(sums.power_w, sums.power_n));
    let util = SampleSums::mean(sums.util_pct, sums.util_n);
    HistoryPoint {
        start: rfc3339(win.start_ns),
        end: rfc3339(win.end_ns),
        power_w,
        energy_j: covered.map(|w| w.energy_j),
        coverage: computed.map(|w| w.coverage()),
        revenue_usd: covered.filter(|_| revenue == RevenueBasis::PerDevice).map(|w| w.revenue_usd),
        hashrate_ths: SampleSums::mean(sums.hashrate_ths, sums.hashrate_n),
        // As the comparison computes it: energy over hash work of the covered time;
        // from the samples only for a device in no workload.
        j_per_th: match covered {
            Some(w) => w.work_th.filter(|t| *t > 0.0).map(|t| w.energy_j / t),
            None => (sums.eff_hashrate_ths > 0.0).then(|| sums.eff_power_w / sums.eff_hashrate_ths),
        },
        util_gpu_pct: util,
        w_per_util_pct: match (power_w, util) {
            (Some(p), Some(u)) if u > 0.0 => Some(p / u),
            _ => None,
        },
        samples: sums.power_n.max(sums.util_n).max(sums.hashrate_n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_within_the_point_limit_on_round_lengths() {
        let h = 3600 * S;
        assert_eq!(bucket_ns(0, 2 * h), 60 * S);
        assert_eq!(bucket_ns(0, 24 * h), 300 * S);
        assert_eq!(bucket_ns(0, 7 * 24 * h), 1800 * S);
        assert_eq!(bucket_ns(0, MAX_HISTORY_NS), 7200 * S);
        // An unaligned range still fits: 500 minutes starting mid-minute is 501 buckets.
        assert_eq!(bucket_ns(30 * S, 30 * S + 500 * 60 * S), 300 * S);
        for span in [1, 59, 3601, 86_399, 31 * 86_400] {
            let len = bucket_ns(7 * S, 7 * S + span * S);
            assert!(super::super::windows::aligned_windows(7 * S, 7 * S + span * S, len).len() <= MAX_POINTS);
        }
    }
}
