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

use super::basis::{BasisEnergy, Target};
use super::windows::{compute_chunk, ChunkData, WorkloadPlan};
use super::{check_range, rfc3339, AggregateError, Aggregator};
use crate::ledger::point::ledger_fields;
use crate::ledger::{identity_filter, raw_fields, series_device_id};
use crate::model::schema::{self, asic, energy_ledger as el, gpu, meter};
use crate::model::FieldValue;
use crate::signal::Window;
use crate::store::{Series, SeriesCollector, SeriesQuery, Store, StoreError};

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
    /// The bucket's energy by what measured it (a meter channel covering the
    /// device, else its own basis), and as shares (`100 % meter`); `None` without
    /// the workload's computation (a device in no workload).
    pub energy_by_basis: Option<BasisEnergy>,
    pub energy_basis: Option<String>,
    /// How the bucket's J/TH is labelled: `measured`, `nominal` (from estimated
    /// power) or `partly nominal`.
    pub efficiency_basis: Option<&'static str>,
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

/// The longest stretch of a history read at once: the buckets are computed a
/// piece of at most this long (or one bucket) at a time, so that what is held is
/// one device's rows (and its meters', and its host's GPUs' where a host meter
/// splits) over this time, however long the range.
pub const CHUNK_NS: i64 = 6 * 3600 * S;

/// What the drill-down reads of one device: its own series, the meter channels
/// covering it, and the GPU host they cover (whose GPUs weigh a host meter's split).
struct DeviceReads {
    measurement: &'static str,
    id: String,
    /// Tag filters selecting the device's own series.
    own: Vec<Vec<(String, String)>>,
    /// Tag filters of the meter channels covering it.
    meters: Vec<Vec<(String, String)>>,
    /// The site and host whose GPUs are read for a host meter's split.
    host_gpus: Option<Vec<(String, String)>>,
}

impl DeviceReads {
    /// Rows of `filters` in `[start_ns, end_ns)`, one device's worth.
    async fn read(
        store: &dyn Store,
        measurement: &str,
        fields: Vec<String>,
        base: Vec<(String, String)>,
        filters: &[Vec<(String, String)>],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<Series>, StoreError> {
        let q = SeriesQuery { measurement: measurement.into(), fields, tag_filters: base, start_ns, end_ns };
        let mut out = SeriesCollector::new(&q.fields);
        store.read_each_any(&q, filters, &mut out).await?;
        Ok(out.finish())
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
        let store = self.store.as_ref();
        let margin_ns = self
            .plans
            .iter()
            .map(|p| p.max_gap_ns)
            .max()
            .unwrap_or(0)
            .max(self.cfg.aggregator.max_gap.as_nanos() as i64);
        let unknown = || {
            AggregateError::UnknownDevice(format!(
                "no GPU or miner {id:?} reported between {} and {} (an inference server's energy is its GPUs')",
                rfc3339(from_ns),
                rfc3339(to_ns)
            ))
        };
        // Device ids start with the host (`rig-1/GPU-…`; agents tag every point with
        // it): looking only at that host's series keeps the search to one machine's devices.
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
            let mut keys = store.series_keys(&q).await?;
            keys.retain(|tags| series_device_id(measurement, tags) == id);
            if !keys.is_empty() {
                found = Some((kind, measurement, keys));
                break;
            }
        }
        let Some((kind, measurement, keys)) = found else { return Err(unknown()) };
        let tags = &keys[keys.len() - 1];
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
        let mut reads = DeviceReads {
            measurement,
            id: id.to_string(),
            own: keys.iter().map(|t| identity_filter(measurement, t)).collect(),
            meters: Vec::new(),
            host_gpus: None,
        };
        reads.own.dedup();
        // The meter channels of the workload's site that cover this device: they
        // replace its own energy where they answered, as in the workload's windows.
        if let Some(p) = plan {
            let q = SeriesQuery {
                measurement: meter::MEASUREMENT.into(),
                fields: raw_fields(meter::MEASUREMENT).iter().map(|f| f.to_string()).collect(),
                tag_filters: vec![(schema::TAG_SITE.to_string(), p.site.clone())],
                start_ns: from_ns - margin_ns,
                end_ns: to_ns + margin_ns,
            };
            let channels: Vec<(Target, BTreeMap<String, String>)> = store
                .series_keys(&q)
                .await?
                .into_iter()
                .filter_map(|t| Target::of_channel(&t).map(|target| (target, t)))
                .collect();
            if let Some(target) = Target::of_device(measurement, tags, channels.iter().map(|c| &c.0)) {
                let mut names = Vec::new();
                for (_, t) in channels.iter().filter(|c| c.0 == target) {
                    let f = identity_filter(meter::MEASUREMENT, t);
                    if !reads.meters.contains(&f) {
                        names.push(series_device_id(meter::MEASUREMENT, t));
                        reads.meters.push(f);
                    }
                }
                if let Target::GpuHost(h) = &target {
                    reads.host_gpus = Some(vec![
                        (schema::TAG_SITE.to_string(), p.site.clone()),
                        (schema::TAG_HOST.to_string(), h.clone()),
                    ]);
                }
                notes.push(format!(
                    "measured at the wall by meter channel(s) {}{}: their energy replaces the device's own where they answered (each bucket's energy_basis says which)",
                    names.join(", "),
                    if reads.host_gpus.is_some() { ", split over the host's GPUs by board energy" } else { "" }
                ));
            }
        }
        if power_basis.as_deref() == Some("estimated") {
            notes.push(if reads.meters.is_empty() {
                "power is estimated from hashrate × the model's nominal J/TH, so J/TH here is the nominal figure".into()
            } else {
                "the miner's own power is estimated from hashrate × the model's nominal J/TH: J/TH is the nominal figure in buckets whose energy_basis is estimated".into()
            });
        }
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
        let buckets = super::windows::aligned_windows(from_ns, to_ns, len_ns);
        let mut points = Vec::new();
        let mut any_rows = false;
        for piece in buckets.chunks((CHUNK_NS / len_ns).max(1) as usize) {
            let (a, b) = (piece[0].start_ns, piece[piece.len() - 1].end_ns);
            let data = self.device_chunk(&reads, plan, host, a - margin_ns, b + margin_ns, (a, b)).await?;
            let raw = data.raw.iter().find(|(m, _)| *m == measurement).map_or(&[][..], |(_, s)| s.as_slice());
            any_rows |= !raw.is_empty();
            for &win in piece {
                let mut sums = SampleSums::default();
                sums.add(&slice(raw, win.start_ns, win.end_ns));
                let computed = match (plan, &tariff) {
                    (Some(p), Some(t)) => Some(self.device_bucket(p, t, win, measurement, &data, &market)),
                    _ => None,
                };
                points.push(history_point(win, &sums, computed.as_ref(), revenue));
                for w in computed.iter().flat_map(|c| &c.warnings) {
                    if !notes.contains(w) {
                        notes.push(w.clone());
                    }
                }
            }
        }
        if !any_rows {
            return Err(unknown());
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

    /// One piece of a device's history: its raw rows in `[start_ns, end_ns)` (the
    /// piece ± the read margin), its ledger rows inside the piece `ledger_ns`, and
    /// the meter channels and host GPUs over the raw range.
    async fn device_chunk(
        &self,
        reads: &DeviceReads,
        plan: Option<&WorkloadPlan>,
        host: Option<&str>,
        start_ns: i64,
        end_ns: i64,
        ledger_ns: (i64, i64),
    ) -> Result<ChunkData, AggregateError> {
        let store = self.store.as_ref();
        let m = reads.measurement;
        let mut raw = DeviceReads::read(store, m, fields_of(m), vec![], &reads.own, start_ns, end_ns).await?;
        raw.retain(|s| series_device_id(m, &s.tags) == reads.id);
        let mut data = ChunkData::default();
        if let Some(p) = plan {
            let base: Vec<(String, String)> = [(schema::TAG_WORKLOAD, p.name.as_str()), (el::TAG_SOURCE, m)]
                .into_iter()
                .chain(host.map(|h| (schema::TAG_HOST, h)))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let fields = ledger_fields(&p.rules().util_thresholds_pct);
            let (a, b) = ledger_ns;
            let mut l = DeviceReads::read(store, el::MEASUREMENT, fields, base, &reads.own, a, b).await?;
            l.retain(|s| series_device_id(m, &s.tags) == reads.id);
            data.ledger = l;
            if !reads.meters.is_empty() {
                let mf = fields_of(meter::MEASUREMENT);
                data.meters =
                    DeviceReads::read(store, meter::MEASUREMENT, mf, vec![], &reads.meters, start_ns, end_ns).await?;
            }
            if let Some(h) = &reads.host_gpus {
                let q = SeriesQuery {
                    measurement: gpu::MEASUREMENT.into(),
                    fields: fields_of(gpu::MEASUREMENT),
                    tag_filters: h.clone(),
                    start_ns,
                    end_ns,
                };
                let mut out = SeriesCollector::new(&q.fields);
                store.read_each(&q, &mut out).await?;
                data.host_gpus = out.finish();
            }
        }
        data.raw = vec![(m, raw)];
        Ok(data)
    }

    /// One bucket of one device through the workload's own computation.
    fn device_bucket(
        &self,
        plan: &WorkloadPlan,
        tariff: &super::tariff::Tariff,
        win: Window,
        measurement: &'static str,
        data: &ChunkData,
        market: &super::market::MarketHistory,
    ) -> super::compare::WindowResult {
        // The same read margins as the workload's windows: raw samples `max_gap`
        // either side (they shape the intervals crossing the edges), ledger inside.
        let raw = data.raw.iter().find(|(m, _)| *m == measurement).map_or(&[][..], |(_, s)| s.as_slice());
        let (a, b) = (win.start_ns - plan.max_gap_ns, win.end_ns + plan.max_gap_ns);
        let chunk = ChunkData {
            ledger: slice(&data.ledger, win.start_ns, win.end_ns),
            raw: vec![(measurement, slice(raw, a, b))],
            meters: slice(&data.meters, a, b),
            host_gpus: slice(&data.host_gpus, a, b),
        };
        let mut seen = BTreeSet::new();
        let mut w = compute_chunk(plan, tariff, win, chunk, &market.at(win.end_ns), &mut seen);
        w.devices = seen.len();
        w
    }
}

fn fields_of(measurement: &str) -> Vec<String> {
    raw_fields(measurement).iter().map(|f| f.to_string()).collect()
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
        energy_by_basis: covered.map(|w| w.basis),
        energy_basis: covered.map(|w| w.basis.label()),
        efficiency_basis: covered.and_then(|w| w.basis.efficiency_label()),
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
