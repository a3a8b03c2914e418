//! The fleet view: every device seen recently with its latest reading, its status
//! and, for miners, measured J/TH beside the maker's nominal figure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::windows;
use super::{rfc3339, AggregateError, Aggregator};
use crate::collect::miners::models;
use crate::ledger::Columns;
use crate::model::schema::{self, asic, gpu, inference};
use crate::model::FieldValue;
use crate::store::{fold_series, SeriesQuery};

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
    /// Miners: the pool of the latest reading (URL without credentials, worker name) and
    /// whether the miner says it is up; `None` where the firmware does not report it.
    pub pool_url: Option<String>,
    pub pool_user: Option<String>,
    pub pool_alive: Option<bool>,
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
    /// flagged `idle` by `idle_rule`. The rows are streamed and folded per series
    /// ([`latest_fold`]): what is held is one state per series, whatever the range.
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
            let series = fold_series(self.store.as_ref(), &q, latest_fold(measurement, &q.fields)).await?;
            let measured = if kind == "asic" {
                measured_j_per_th(series.iter().map(|(t, s)| (t, &s.efficiency)))
            } else {
                BTreeMap::new()
            };
            let pools = if kind == "asic" { self.latest_pools(start_ns, now_ns).await? } else { BTreeMap::new() };
            for dev in latest_per_device(measurement, &series) {
                let Some((last_ns, healthy)) = dev.latest.last else { continue };
                let last = |f: &str| dev.latest.latest(fields, f, last_ns);
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
                let below_nominal = match (nominal, measured.get(&dev.id)) {
                    (Some(n), Some(m)) => m.j_per_th().map(|j| below_nominal(j, n)),
                    _ => None,
                };
                let gpu_field = |f: &str| if kind == "gpu" { last(f) } else { None };
                let asic_field = |f: &str| if kind == "asic" { last(f) } else { None };
                let util_gpu_pct = gpu_field(gpu::UTIL_GPU_PCT);
                // The pool as of the latest reading only, like every other column.
                let pool = pools.get(&dev.id).filter(|p| p.time_ns == last_ns);
                let idle = match (power_w, util_gpu_pct) {
                    (Some(p), Some(u)) if kind == "gpu" => Some(idle_rule.is_idle(p, u)),
                    _ => None,
                };
                devices.push(FleetDevice {
                    kind,
                    workload: dev.tags.get(schema::TAG_WORKLOAD).cloned(),
                    host: dev.tags.get(schema::TAG_HOST).cloned(),
                    device: dev.id.clone(),
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
                    pool_url: pool.and_then(|p| p.url.clone()),
                    pool_user: pool.and_then(|p| p.user.clone()),
                    pool_alive: pool.and_then(|p| p.alive),
                    idle,
                });
            }
        }
        Ok(Fleet { devices, idle_rule })
    }

    /// Per miner (device id), its latest row with a pool. Strings are not kept by the
    /// numeric fold, so they are read here, streamed, keeping one row per miner.
    async fn latest_pools(&self, start_ns: i64, now_ns: i64) -> Result<BTreeMap<String, Pool>, AggregateError> {
        let q = SeriesQuery {
            measurement: asic::MEASUREMENT.into(),
            fields: [asic::POOL_URL, asic::POOL_USER, asic::POOL_ALIVE].iter().map(|f| f.to_string()).collect(),
            tag_filters: vec![],
            start_ns,
            end_ns: now_ns + 1,
        };
        let mut v = Pools::default();
        self.store.read_each(&q, &mut v).await?;
        Ok(v.latest)
    }
}

/// A miner's pool as of one reading.
#[derive(Debug, Clone, Default)]
struct Pool {
    time_ns: i64,
    url: Option<String>,
    user: Option<String>,
    alive: Option<bool>,
}

/// Keeps each miner's latest row with a pool URL or worker.
#[derive(Default)]
struct Pools {
    ids: Vec<String>,
    latest: BTreeMap<String, Pool>,
}

impl crate::store::RowVisitor for Pools {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.ids.len() <= series {
            self.ids.resize(series + 1, String::new());
        }
        self.ids[series] = windows::device_id(asic::MEASUREMENT, tags);
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        let text = |j: usize| values.get(j).and_then(Option::as_ref).and_then(FieldValue::as_str);
        let (url, user) = (text(0), text(1));
        if url.is_none() && user.is_none() {
            return;
        }
        let Some(id) = self.ids.get(series) else { return };
        // Strings are copied only for the row kept.
        if self.latest.get(id).is_some_and(|p| p.time_ns > time_ns) {
            return;
        }
        let alive = match values.get(2) {
            Some(Some(FieldValue::Bool(b))) => Some(*b),
            _ => None,
        };
        let (url, user) = (url.map(str::to_owned), user.map(str::to_owned));
        self.latest.insert(id.clone(), Pool { time_ns, url, user, alive });
    }
}

/// What one series' rows folded into ([`latest_fold`]): its last row and the
/// last healthy one, each field's latest number and the sums of its numbers, and
/// (for miners) the power and hashrate read together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latest {
    /// The last row's time, and whether the device was healthy in it (GPU
    /// `status == "ok"`, miner `online`, else any reading at all).
    pub last: Option<(i64, bool)>,
    /// The first row's time, and the last healthy row's.
    pub first_ns: Option<i64>,
    pub last_healthy_ns: Option<i64>,
    /// Per field of the query, its latest finite number and when it was read.
    pub values: Vec<Option<(i64, f64)>>,
    /// Per field of the query, Σ and count of its finite numbers.
    pub sums: Vec<(f64, usize)>,
    /// Rows with a power reading (≥ 0) and a hashrate (> 0).
    pub efficiency: EfficiencySums,
}

impl Latest {
    /// The number of field `name` (of the query's `fields`) read at `at_ns`.
    pub fn latest(&self, fields: &[&str], name: &str, at_ns: i64) -> Option<f64> {
        let j = fields.iter().position(|f| *f == name)?;
        self.values.get(j).copied().flatten().filter(|(t, _)| *t == at_ns).map(|(_, v)| v)
    }

    /// The mean of field `name`'s numbers.
    pub fn mean(&self, fields: &[&str], name: &str) -> Option<f64> {
        let j = fields.iter().position(|f| *f == name)?;
        self.sums.get(j).filter(|s| s.1 > 0).map(|s| s.0 / s.1 as f64)
    }

    /// Adds a later series of the same device (series taken in tag order, as
    /// their rows were merged in time order: on equal times the later series wins).
    fn merge(&mut self, o: &Latest) {
        let later = |a: Option<i64>, b: Option<i64>| a.max(b);
        if o.last.is_some_and(|(t, _)| self.last.is_none_or(|(s, _)| t >= s)) {
            self.last = o.last;
        }
        self.first_ns = match (self.first_ns, o.first_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_healthy_ns = later(self.last_healthy_ns, o.last_healthy_ns);
        if self.values.len() < o.values.len() {
            self.values.resize(o.values.len(), None);
            self.sums.resize(o.sums.len(), (0.0, 0));
        }
        for (j, v) in o.values.iter().enumerate() {
            if let Some((t, x)) = *v {
                if self.values[j].is_none_or(|(s, _)| t >= s) {
                    self.values[j] = Some((t, x));
                }
            }
        }
        for (j, s) in o.sums.iter().enumerate() {
            self.sums[j].0 += s.0;
            self.sums[j].1 += s.1;
        }
        self.efficiency.power_w += o.efficiency.power_w;
        self.efficiency.hashrate_ths += o.efficiency.hashrate_ths;
        self.efficiency.samples += o.efficiency.samples;
    }
}

/// The per-row fold behind [`Latest`] for rows of `measurement` read with `fields`
/// (for [`fold_series`]).
pub fn latest_fold(
    measurement: &str,
    fields: &[String],
) -> impl FnMut(&BTreeMap<String, String>, &mut Latest, i64, &[Option<FieldValue>]) + Send {
    let cols = Columns::new(measurement, fields);
    let status = fields.iter().position(|f| f == gpu::STATUS);
    let mut efficiency = efficiency_fold(fields);
    let n = fields.len();
    move |tags, s: &mut Latest, t, row| {
        if s.values.len() < n {
            s.values.resize(n, None);
            s.sums.resize(n, (0.0, 0));
        }
        // A row without the rules' fields (an inference server's `requests`) is
        // healthy when it has anything at all.
        let healthy = cols.row_sample(t, row).map_or_else(|| row.iter().any(Option::is_some), |x| x.healthy);
        s.last = Some((t, healthy));
        s.first_ns.get_or_insert(t);
        if healthy {
            s.last_healthy_ns = Some(t);
        }
        let num = |j: usize| row.get(j).and_then(Option::as_ref).and_then(FieldValue::as_f64).filter(|v| v.is_finite());
        for j in (0..n).filter(|&j| Some(j) != status) {
            if let Some(v) = num(j) {
                s.values[j] = Some((t, v));
                s.sums[j].0 += v;
                s.sums[j].1 += 1;
            }
        }
        efficiency(tags, &mut s.efficiency, t, row);
    }
}

/// Folds the rows with a power reading (finite, ≥ 0) and a hashrate (finite,
/// > 0) into [`EfficiencySums`]; `fields` are the query's.
pub fn efficiency_fold(
    fields: &[String],
) -> impl FnMut(&BTreeMap<String, String>, &mut EfficiencySums, i64, &[Option<FieldValue>]) + Send {
    let col = |name: &str| fields.iter().position(|f| f == name);
    let (power, hashrate) = (col(asic::POWER_W), col(asic::HASHRATE_THS));
    move |_, s, _, row| {
        let num = |j: usize| row.get(j).and_then(Option::as_ref).and_then(FieldValue::as_f64).filter(|v| v.is_finite());
        if let (Some(p), Some(h)) = (power.and_then(num), hashrate.and_then(num)) {
            if p >= 0.0 && h > 0.0 {
                s.power_w += p;
                s.hashrate_ths += h;
                s.samples += 1;
            }
        }
    }
}

/// One device's [`Latest`], merged over the series that name it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceLatest {
    pub id: String,
    /// The tags of its first series (in tag order).
    pub tags: BTreeMap<String, String>,
    pub latest: Latest,
}

/// Devices by id from folded series (sorted by tags, as [`fold_series`] gives them).
/// A device's series (its tags changed, e.g. a firmware upgrade) are merged.
pub fn latest_per_device(measurement: &str, series: &[(BTreeMap<String, String>, Latest)]) -> Vec<DeviceLatest> {
    let mut by_id: BTreeMap<String, DeviceLatest> = BTreeMap::new();
    for (tags, s) in series {
        let id = windows::device_id(measurement, tags);
        by_id.entry(id.clone()).and_modify(|d| d.latest.merge(s)).or_insert_with(|| DeviceLatest {
            id,
            tags: tags.clone(),
            latest: s.clone(),
        });
    }
    by_id.into_values().collect()
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
/// an estimate, gets a measured efficiency. Both inputs are folded series: the
/// `asic` series' Σ and count of hashrate readings (≥ 0), the `meter` series' of
/// power readings (≥ 0).
pub fn metered_j_per_th<'a>(
    asic_series: impl IntoIterator<Item = (&'a BTreeMap<String, String>, (f64, usize))>,
    meter_series: impl IntoIterator<Item = (&'a BTreeMap<String, String>, (f64, usize))>,
) -> BTreeMap<String, EfficiencySums> {
    use super::basis::Target;
    // Per target: Σ power and samples over every channel covering it.
    let mut power: BTreeMap<Target, (f64, usize)> = BTreeMap::new();
    for (tags, (sum, n)) in meter_series {
        if let Some(t @ Target::Miner(_)) = Target::of_channel(tags) {
            let p = power.entry(t).or_default();
            p.0 += sum;
            p.1 += n;
        }
    }
    let mut out: BTreeMap<String, EfficiencySums> = BTreeMap::new();
    for (tags, (hashes, n_h)) in asic_series {
        let Some(t) = Target::of_device(asic::MEASUREMENT, tags, power.keys()) else { continue };
        let (sum_w, n_w) = power[&t];
        if n_w == 0 || n_h == 0 {
            continue;
        }
        let sums = out.entry(windows::device_id(asic::MEASUREMENT, tags)).or_default();
        // Mean meter power × the hashrate samples, so that Σ power ÷ Σ hashrate is
        // the mean power over the mean hashrate.
        sums.power_w += sum_w / n_w as f64 * n_h as f64;
        sums.hashrate_ths += hashes;
        sums.samples += n_h;
    }
    out
}

/// Folds one field's readings (finite, ≥ 0) into Σ and count, for
/// [`metered_j_per_th`]: `field` is found among `fields`, the query's.
pub fn sum_fold(
    fields: &[String],
    field: &str,
) -> impl FnMut(&BTreeMap<String, String>, &mut (f64, usize), i64, &[Option<FieldValue>]) + Send {
    let j = fields.iter().position(|f| f == field);
    move |_, s, _, row| {
        let v = j.and_then(|j| row.get(j)).and_then(Option::as_ref).and_then(FieldValue::as_f64);
        if let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) {
            s.0 += v;
            s.1 += 1;
        }
    }
}

/// Measured J/TH per miner (keyed by device id) from folded `asic` series, counting
/// only series whose `power_source` is `reported` or `meter`: an `estimated` power is
/// hashrate × nominal J/TH, so comparing it with the nominal figure would be circular.
pub fn measured_j_per_th<'a>(
    series: impl IntoIterator<Item = (&'a BTreeMap<String, String>, &'a EfficiencySums)>,
) -> BTreeMap<String, EfficiencySums> {
    let mut out: BTreeMap<String, EfficiencySums> = BTreeMap::new();
    for (tags, e) in series {
        // Measured: anything but the nominal estimate (see `basis`).
        let measured_power = super::basis::Basis::of_device(asic::MEASUREMENT, tags)
            .is_some_and(|b| b != super::basis::Basis::Estimated);
        if !measured_power {
            continue;
        }
        let sums = out.entry(windows::device_id(asic::MEASUREMENT, tags)).or_default();
        sums.power_w += e.power_w;
        sums.hashrate_ths += e.hashrate_ths;
        sums.samples += e.samples;
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
