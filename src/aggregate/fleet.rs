//! The fleet view: every device seen recently with its latest reading, its status
//! and, for miners, measured J/TH beside the maker's nominal figure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::windows::{self, devices_from_series};
use super::{rfc3339, AggregateError, Aggregator};
use crate::collect::miners::models;
use crate::model::schema::{self, asic, gpu, inference};
use crate::model::FieldValue;
use crate::store::SeriesQuery;

/// One device in the fleet view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetDevice {
    pub kind: &'static str,
    pub workload: Option<String>,
    pub host: Option<String>,
    pub device: String,
    pub model: Option<String>,
    pub status: &'static str,
    pub last_seen: String,
    pub power_w: Option<f64>,
    pub j_per_th: Option<f64>,
    pub nominal_j_per_th: Option<f64>,
    pub below_nominal: Option<bool>,
    /// The latest reading of each field, `None` where the device did not report it
    /// (the page shows "—", never 0). Miners: hashrate, hottest chip or board,
    /// mean fan speed, uptime; GPUs: temperature and utilisation.
    pub hashrate_ths: Option<f64>,
    pub temp_c: Option<f64>,
    pub fan_rpm: Option<f64>,
    pub uptime_s: Option<f64>,
    pub util_gpu_pct: Option<f64>,
    /// GPUs: drawing more than [`IDLE_GPU`]'s power at less than its utilisation in
    /// the latest reading; `None` without both readings, and for other devices.
    pub idle: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    pub devices: Vec<FleetDevice>,
    /// The thresholds behind each GPU's `idle` flag.
    pub idle_rule: IdleRule,
}

/// When a GPU counts as idle yet burning power: above `power_above_w` while its
/// utilisation is below `util_below_pct`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdleRule {
    pub power_above_w: f64,
    pub util_below_pct: f64,
}

/// The `gpu_idle_burn` alert's defaults, which the alert rule reads from here; a
/// service running the alert engine hands the page its configured rule instead
/// (`alert::config::idle_rule`), so the page's flag and the alert agree: 150 W (well above an idle datacentre GPU's
/// 50-90 W, well below a busy one) at under 10 % utilisation.
pub const IDLE_GPU: IdleRule = IdleRule { power_above_w: 150.0, util_below_pct: 10.0 };

impl IdleRule {
    /// Whether a reading of `power_w` at `util_gpu_pct` is idle burn.
    pub fn is_idle(&self, power_w: f64, util_gpu_pct: f64) -> bool {
        power_w > self.power_above_w && util_gpu_pct < self.util_below_pct
    }
}

impl Aggregator {
    /// Every device seen in the last `fleet_lookback`, with its latest reading; GPUs
    /// flagged `idle` by `idle_rule`.
    pub async fn fleet(&self, now_ns: i64, idle_rule: IdleRule) -> Result<Fleet, AggregateError> {
        let a = &self.cfg.aggregator;
        let max_gap_ns = a.max_gap.as_nanos() as i64;
        let start_ns = now_ns - a.fleet_lookback.as_nanos() as i64;
        let specs: [(&'static str, &str, &[&str], &str); 3] = [
            ("gpu", gpu::MEASUREMENT, &[gpu::POWER_W, gpu::STATUS, gpu::UTIL_GPU_PCT, gpu::TEMP_C], gpu::TAG_MODEL),
            (
                "asic",
                asic::MEASUREMENT,
                &[asic::POWER_W, asic::HASHRATE_THS, asic::ONLINE, asic::TEMP_C_MAX, asic::FAN_RPM_AVG, asic::UPTIME_S],
                asic::TAG_MODEL,
            ),
            ("inference", inference::MEASUREMENT, &[inference::REQUESTS], inference::TAG_MODEL),
        ];
        let mut devices = Vec::new();
        for (kind, measurement, fields, model_tag) in specs {
            let q = SeriesQuery {
                measurement: measurement.into(),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                tag_filters: vec![],
                start_ns,
                end_ns: now_ns + 1,
            };
            let series = self.store.read(&q).await?;
            let measured = if kind == "asic" { measured_j_per_th(&series) } else { BTreeMap::new() };
            for dev in devices_from_series(measurement, series) {
                let Some(&(last_ns, healthy)) = dev.tracks.healthy.last() else { continue };
                let last = |f: &str| dev.tracks.track(f).last().filter(|(t, _)| *t == last_ns).map(|&(_, v)| v);
                let power_w = last(gpu::POWER_W);
                let age = now_ns - last_ns;
                let status = if age > 10 * max_gap_ns {
                    "offline"
                } else if !healthy {
                    if kind == "gpu" {
                        "lost"
                    } else {
                        "offline"
                    }
                } else if age > max_gap_ns {
                    "stale"
                } else {
                    "online"
                };
                let j_per_th = match (power_w, last(asic::HASHRATE_THS)) {
                    (Some(p), Some(h)) if kind == "asic" && h > 0.0 => Some(p / h),
                    _ => None,
                };
                let nominal = if kind == "asic" {
                    nominal_spec(
                        dev.tags.get(asic::TAG_MAKE).map(String::as_str),
                        dev.tags.get(asic::TAG_MODEL).map(String::as_str),
                    )
                    .map(|s| s.j_per_th())
                } else {
                    None
                };
                let below_nominal = match (nominal, measured.get(&dev.tracks.id)) {
                    (Some(n), Some(m)) => m.j_per_th().map(|j| below_nominal(j, n)),
                    _ => None,
                };
                let gpu_field = |f: &str| if kind == "gpu" { last(f) } else { None };
                let asic_field = |f: &str| if kind == "asic" { last(f) } else { None };
                let util_gpu_pct = gpu_field(gpu::UTIL_GPU_PCT);
                let idle = match (power_w, util_gpu_pct) {
                    (Some(p), Some(u)) if kind == "gpu" => Some(idle_rule.is_idle(p, u)),
                    _ => None,
                };
                devices.push(FleetDevice {
                    kind,
                    workload: dev.tags.get(schema::TAG_WORKLOAD).cloned(),
                    host: dev.tags.get(schema::TAG_HOST).cloned(),
                    device: dev.tracks.id.clone(),
                    model: dev.tags.get(model_tag).cloned(),
                    status,
                    last_seen: rfc3339(last_ns),
                    power_w,
                    j_per_th,
                    nominal_j_per_th: nominal,
                    below_nominal,
                    hashrate_ths: asic_field(asic::HASHRATE_THS),
                    temp_c: gpu_field(gpu::TEMP_C).or(asic_field(asic::TEMP_C_MAX)),
                    fan_rpm: asic_field(asic::FAN_RPM_AVG),
                    uptime_s: asic_field(asic::UPTIME_S),
                    util_gpu_pct,
                    idle,
                });
            }
        }
        Ok(Fleet { devices, idle_rule })
    }
}

/// How much worse than its nominal J/TH a miner may measure before the fleet view
/// flags it `below_nominal`: 10 %, the makers' own tolerance on their published figures
/// (±5–10 %), so a miner within spec is not flagged.
pub const NOMINAL_TOLERANCE: f64 = 0.10;

/// True when `measured_j_per_th` is worse (higher) than `nominal_j_per_th` by more than
/// [`NOMINAL_TOLERANCE`].
pub fn below_nominal(measured_j_per_th: f64, nominal_j_per_th: f64) -> bool {
    measured_j_per_th > nominal_j_per_th * (1.0 + NOMINAL_TOLERANCE)
}

/// The nominal figures of a miner from its `make` and `model` tags; without a `make`
/// tag, the model alone when exactly one make has it. A control board's model names the
/// hardware (ePIC `Antminer S19 XP`): [`models::rated`] tries that make too.
pub fn nominal_spec(make: Option<&str>, model: Option<&str>) -> Option<&'static models::ModelSpec> {
    let model = model?;
    match make {
        Some(make) => models::rated(Some(make), Some(model)),
        None => {
            let mut makes = models::MODELS.iter().map(|m| m.make).collect::<Vec<_>>();
            makes.dedup();
            let mut found = makes.into_iter().filter_map(|make| models::lookup(make, model));
            match (found.next(), found.next()) {
                (Some(spec), None) => Some(spec),
                _ => None,
            }
        }
    }
}

/// Sums of power and hashrate over the samples where both were read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EfficiencySums {
    pub power_w: f64,
    pub hashrate_ths: f64,
    pub samples: usize,
}

impl EfficiencySums {
    /// Σ power ÷ Σ hashrate (the mean power over the mean hashrate), `None` without hashrate.
    pub fn j_per_th(&self) -> Option<f64> {
        (self.samples > 0 && self.hashrate_ths > 0.0).then(|| self.power_w / self.hashrate_ths)
    }
}

/// J/TH per miner (keyed by device id) from the meter channels covering miners
/// (`covers_kind = miner`): the channel's mean power over the miner's mean hashrate,
/// for the miners a channel covers. This is how a stock miner, whose own power is
/// an estimate, gets a measured efficiency.
pub fn metered_j_per_th(
    asic_series: &[crate::store::Series],
    meter_series: &[crate::store::Series],
) -> BTreeMap<String, EfficiencySums> {
    use super::basis::Target;
    let num = |s: &crate::store::Series, name: &str| -> Vec<f64> {
        let Some(j) = s.fields.iter().position(|f| f == name) else { return Vec::new() };
        s.values
            .iter()
            .filter_map(|row| row.get(j).and_then(Option::as_ref).and_then(FieldValue::as_f64))
            .filter(|v| v.is_finite() && *v >= 0.0)
            .collect()
    };
    // Per target: Σ power and samples over every channel covering it.
    let mut power: BTreeMap<Target, (f64, usize)> = BTreeMap::new();
    for s in meter_series {
        if let Some(t @ Target::Miner(_)) = Target::of_channel(&s.tags) {
            let p = power.entry(t).or_default();
            for v in num(s, schema::meter::POWER_W) {
                p.0 += v;
                p.1 += 1;
            }
        }
    }
    let mut out: BTreeMap<String, EfficiencySums> = BTreeMap::new();
    for s in asic_series {
        let Some(t) = Target::of_device(asic::MEASUREMENT, &s.tags, power.keys()) else { continue };
        let (sum_w, n_w) = power[&t];
        let hashes = num(s, asic::HASHRATE_THS);
        if n_w == 0 || hashes.is_empty() {
            continue;
        }
        let sums = out.entry(windows::device_id(asic::MEASUREMENT, &s.tags)).or_default();
        // Mean meter power × the hashrate samples, so that Σ power ÷ Σ hashrate is
        // the mean power over the mean hashrate.
        sums.power_w += sum_w / n_w as f64 * hashes.len() as f64;
        sums.hashrate_ths += hashes.iter().sum::<f64>();
        sums.samples += hashes.len();
    }
    out
}

/// Measured J/TH per miner (keyed by device id) over the `asic` series read, counting
/// only series whose `power_source` is `reported` or `meter`: an `estimated` power is
/// hashrate × nominal J/TH, so comparing it with the nominal figure would be circular.
pub fn measured_j_per_th(series: &[crate::store::Series]) -> BTreeMap<String, EfficiencySums> {
    let mut out: BTreeMap<String, EfficiencySums> = BTreeMap::new();
    for s in series {
        // Measured: anything but the nominal estimate (see `basis`).
        let measured_power = super::basis::Basis::of_device(asic::MEASUREMENT, &s.tags)
            .is_some_and(|b| b != super::basis::Basis::Estimated);
        let col = |name: &str| s.fields.iter().position(|f| f == name);
        let (Some(p), Some(h)) = (col(asic::POWER_W), col(asic::HASHRATE_THS)) else { continue };
        if !measured_power {
            continue;
        }
        let num = |row: &[Option<FieldValue>], j: usize| {
            row.get(j).and_then(Option::as_ref).and_then(FieldValue::as_f64).filter(|v| v.is_finite())
        };
        let sums = out.entry(windows::device_id(asic::MEASUREMENT, &s.tags)).or_default();
        for row in &s.values {
            if let (Some(power_w), Some(hashrate_ths)) = (num(row, p), num(row, h)) {
                if power_w >= 0.0 && hashrate_ths > 0.0 {
                    sums.power_w += power_w;
                    sums.hashrate_ths += hashrate_ths;
                    sums.samples += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::config::AggregatorConfig;
    use crate::model::{Point, SystemClock};
    use crate::store::embedded::EmbeddedStore;
    use std::sync::Arc;

    const S: i64 = 1_000_000_000;

    fn miner(t_s: i64, id: &str, make: &str, model: &str, source: &str, power_w: f64, hashrate_ths: f64) -> Point {
        Point::new(asic::MEASUREMENT, t_s * S)
            .tag(schema::TAG_HOST, "site-a")
            .tag(asic::TAG_MINER, id)
            .tag(asic::TAG_MAKE, make)
            .tag(asic::TAG_MODEL, model)
            .tag(asic::TAG_POWER_SOURCE, source)
            .tag(schema::TAG_WORKLOAD, "btc")
            .field(asic::POWER_W, power_w)
            .field(asic::HASHRATE_THS, hashrate_ths)
            .field(asic::ONLINE, true)
    }

    #[tokio::test]
    async fn fleet_compares_measured_with_nominal_efficiency() {
        let store = Arc::new(EmbeddedStore::open_in_memory().unwrap());
        store
            .write_blocking(&[
                // S19 Pro nominal: 3250 W / 110 TH/s = 29.545 J/TH; flagged above 29.545 × 1.1 = 32.5.
                // a: (3300 + 3400) W / (100 + 100) TH/s = 33.5 J/TH > 32.5 → below nominal.
                miner(9_940, "a", "Antminer", "S19 Pro", "reported", 3300.0, 100.0),
                miner(9_970, "a", "Antminer", "S19 Pro", "reported", 3400.0, 100.0),
                // b: (3250 + 3250) / (108 + 112) = 29.545 J/TH, at nominal → not flagged.
                miner(9_940, "b", "Antminer", "S19 Pro", "meter", 3250.0, 108.0),
                miner(9_970, "b", "Antminer", "S19 Pro", "meter", 3250.0, 112.0),
                // c: (3500 + 3560) / (110 + 110) = 32.09 J/TH ≤ 32.5 → within tolerance.
                miner(9_940, "c", "Antminer", "S19 Pro", "reported", 3500.0, 110.0),
                miner(9_970, "c", "Antminer", "S19 Pro", "reported", 3560.0, 110.0),
                // d: estimated power (M60S nominal 3441 / 186 = 18.5 J/TH): no comparison.
                miner(9_970, "d", "Whatsminer", "M60S_VK40", "estimated", 150.0 * 18.5, 150.0),
                // e: a model not in the table.
                miner(9_970, "e", "Antminer", "S9", "reported", 1400.0, 14.0),
            ])
            .unwrap();
        let toml = "[store]\nkind = \"embedded\"\npath = \"x.db\"\n[sites.a]\npue = 1.2\nenergy_usd_per_kwh = 0.05\n\
                    [[workloads]]\nname = \"h\"\nmodel = \"ai_contract\"\nusd_per_gpu_hour = 2.0\n";
        let cfg: AggregatorConfig = crate::config::from_str(toml, std::path::Path::new("test.toml")).unwrap();
        let agg = Aggregator::new(cfg, store, Arc::new(SystemClock)).unwrap();
        let fleet = agg.fleet(10_000 * S, IDLE_GPU).await.unwrap();
        let by_id = |id: &str| fleet.devices.iter().find(|d| d.device == format!("site-a/{id}")).unwrap().clone();
        let s19 = 3250.0 / 110.0;
        for (id, nominal, below) in [
            ("a", Some(s19), Some(true)),
            ("b", Some(s19), Some(false)),
            ("c", Some(s19), Some(false)),
            ("d", Some(3441.0 / 186.0), None),
            ("e", None, None),
        ] {
            let d = by_id(id);
            assert_eq!(d.below_nominal, below, "{d:?}");
            match (d.nominal_j_per_th, nominal) {
                (Some(got), Some(want)) => assert!((got - want).abs() < 1e-9, "{d:?}"),
                (got, want) => assert_eq!(got, want, "{d:?}"),
            }
        }
        // The latest reading's J/TH: a at 3400 W / 100 TH/s.
        assert_eq!(by_id("a").j_per_th, Some(34.0));
        assert!(below_nominal(32.51, s19) && !below_nominal(32.49, s19));
        assert_eq!(nominal_spec(None, Some("M50S")).unwrap().make, "Whatsminer");
        assert!(nominal_spec(None, None).is_none());
    }
}
