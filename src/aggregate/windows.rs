//! Windows computed from the store.
//!
//! Windows are aligned to wall-clock boundaries (multiples of the window length
//! since the Unix epoch, so 1 h windows start on the hour UTC). Each window of each
//! workload is computed from one read of its devices' series, `[start − max_gap,
//! end + max_gap)`, so that the intervals crossing the edges are seen and memory
//! holds one window of samples at a time, however long the range. The results
//! are written back as `workload_efficiency`, one point per workload, window
//! length and window start: recomputing a window overwrites it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::compare::WindowResult;
use super::energy::{device_energy, facility_energy_j, DeviceEnergy, EnergySample};
use super::market::{MarketAt, MarketHistory};
use super::tariff::Tariff;
use crate::model::schema::{self, asic, gpu, inference, workload_efficiency as we};
use crate::model::{FieldValue, Point};
use crate::revenue::{DeviceTracks, Inputs, RevenueInput, RevenueModel};
use crate::signal::Window;
use crate::store::{RowVisitor, Series, SeriesQuery, Store, StoreError};

/// A workload ready to compute: its model with terms, site, PUE and tariff (a
/// measured tariff's prices are loaded per range and passed beside the plan).
#[derive(Debug)]
pub struct WorkloadPlan {
    pub name: String,
    pub site: String,
    pub revenue_model: Arc<dyn RevenueModel>,
    pub pue: f64,
    pub tariff: Tariff,
    pub max_gap_ns: i64,
}

/// Wall-clock-aligned windows of `len_ns` covering `[from_ns, to_ns)`; the first
/// and last are clipped to the range.
pub fn aligned_windows(from_ns: i64, to_ns: i64, len_ns: i64) -> Vec<Window> {
    let mut out = Vec::new();
    if len_ns <= 0 || to_ns <= from_ns {
        return out;
    }
    let mut start = from_ns.div_euclid(len_ns) * len_ns;
    while start < to_ns {
        let end = start + len_ns;
        out.push(Window::new(start.max(from_ns), end.min(to_ns)));
        start = end;
    }
    out
}

/// The tags that identify one device in each measurement.
fn identity_tags(measurement: &str) -> &'static [&'static str] {
    match measurement {
        m if m == gpu::MEASUREMENT => &[schema::TAG_HOST, gpu::TAG_UUID, gpu::TAG_GPU],
        m if m == asic::MEASUREMENT => &[schema::TAG_HOST, asic::TAG_MINER],
        m if m == inference::MEASUREMENT => &[schema::TAG_HOST, inference::TAG_SERVER],
        _ => &[schema::TAG_HOST],
    }
}

/// A device id such as `rig-1/GPU-1234…`: the identity tags present, joined.
pub fn device_id(measurement: &str, tags: &BTreeMap<String, String>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for key in identity_tags(measurement) {
        if let Some(v) = tags.get(*key) {
            // A GPU with a UUID is named by it; the index is only a fallback.
            if *key == gpu::TAG_GPU && tags.contains_key(gpu::TAG_UUID) {
                continue;
            }
            parts.push(v);
        }
    }
    if parts.is_empty() {
        tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    } else {
        parts.join("/")
    }
}

/// Samples of one device, merged from every series that names it.
#[derive(Debug, Default)]
pub struct DeviceSamples {
    pub tracks: DeviceTracks,
    pub energy: Vec<EnergySample>,
    pub tags: BTreeMap<String, String>,
}

fn cell(row: &[Option<FieldValue>], j: Option<usize>) -> Option<&FieldValue> {
    j.and_then(|j| row.get(j)).and_then(Option::as_ref)
}

/// Folds the rows of one measurement into devices as they are read (a
/// [`RowVisitor`] for [`Store::read_each`]), so no [`Series`] is built on the way.
/// A device's rows from several series (its tags changed, e.g. a firmware upgrade)
/// are merged in time order at [`DeviceFolder::finish`].
pub struct DeviceFolder {
    measurement: String,
    fields: Vec<String>,
    power: Option<usize>,
    energy: Option<usize>,
    status: Option<usize>,
    online: Option<usize>,
    /// Series number -> device slot.
    series_device: Vec<usize>,
    slots: HashMap<String, usize>,
    devices: Vec<FoldedDevice>,
    rows: u64,
}

struct FoldedDevice {
    samples: DeviceSamples,
    /// Numeric values per read field (by column), moved into tracks at the end.
    columns: Vec<Vec<(i64, f64)>>,
    parts: usize,
}

impl DeviceFolder {
    pub fn new(measurement: &str, fields: &[String]) -> Self {
        let col = |name: &str| fields.iter().position(|f| f == name);
        DeviceFolder {
            measurement: measurement.to_string(),
            fields: fields.to_vec(),
            power: col(gpu::POWER_W),
            energy: if measurement == gpu::MEASUREMENT { col(gpu::ENERGY_J) } else { None },
            status: col(gpu::STATUS),
            online: col(asic::ONLINE),
            series_device: Vec::new(),
            slots: HashMap::new(),
            devices: Vec::new(),
            rows: 0,
        }
    }

    /// Rows folded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The devices, by id.
    pub fn finish(self) -> Vec<DeviceSamples> {
        let status = self.status;
        let mut out: Vec<DeviceSamples> = self
            .devices
            .into_iter()
            .map(|d| {
                let mut dev = d.samples;
                for (j, values) in d.columns.into_iter().enumerate() {
                    if Some(j) == status {
                        continue;
                    }
                    dev.tracks.tracks.entry(self.fields[j].clone()).or_default().extend(values);
                }
                if d.parts > 1 {
                    dev.energy.sort_by_key(|e| e.time_ns);
                    dev.tracks.healthy.sort_by_key(|h| h.0);
                    for track in dev.tracks.tracks.values_mut() {
                        track.sort_by_key(|v| v.0);
                    }
                }
                dev
            })
            .collect();
        out.sort_by(|a, b| a.tracks.id.cmp(&b.tracks.id));
        out
    }
}

impl RowVisitor for DeviceFolder {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        let id = device_id(&self.measurement, tags);
        let slot = match self.slots.get(&id) {
            Some(&slot) => slot,
            None => {
                let mut samples = DeviceSamples { tags: tags.clone(), ..Default::default() };
                samples.tracks.id = id.clone();
                self.devices.push(FoldedDevice { samples, columns: vec![Vec::new(); self.fields.len()], parts: 0 });
                self.slots.insert(id, self.devices.len() - 1);
                self.devices.len() - 1
            }
        };
        self.devices[slot].parts += 1;
        if self.series_device.len() <= series {
            self.series_device.resize(series + 1, usize::MAX);
        }
        self.series_device[series] = slot;
    }

    fn row(&mut self, series: usize, t: i64, row: &[Option<FieldValue>]) {
        let Some(dev) = self.series_device.get(series).and_then(|&slot| self.devices.get_mut(slot)) else { return };
        self.rows += 1;
        let num = |j: Option<usize>| cell(row, j).and_then(FieldValue::as_f64).filter(|v| v.is_finite());
        let power_w = num(self.power);
        dev.samples.energy.push(EnergySample { time_ns: t, power_w, energy_j: num(self.energy) });
        let healthy = match (cell(row, self.status), cell(row, self.online)) {
            (Some(st), _) => st.as_str() == Some("ok"),
            (None, Some(on)) => on.as_f64().is_some_and(|x| x != 0.0),
            (None, None) => power_w.is_some() || row.iter().any(Option::is_some),
        };
        dev.samples.tracks.healthy.push((t, healthy));
        for (j, column) in dev.columns.iter_mut().enumerate() {
            if let Some(v) = num(Some(j)) {
                column.push((t, v));
            }
        }
    }
}

/// Turns series into devices (the [`DeviceFolder`] fed from series already read).
pub fn devices_from_series(measurement: &str, series: Vec<Series>) -> Vec<DeviceSamples> {
    let Some(first) = series.first() else { return Vec::new() };
    let fields = first.fields.clone();
    let mut folder = DeviceFolder::new(measurement, &fields);
    for (i, s) in series.iter().enumerate() {
        folder.series(i, &s.tags);
        if s.fields == fields {
            for (&t, row) in s.times_ns.iter().zip(&s.values) {
                folder.row(i, t, row);
            }
        } else {
            // Series read separately may name other columns: map them by name.
            let cols: Vec<Option<usize>> = fields.iter().map(|f| s.fields.iter().position(|g| g == f)).collect();
            for (&t, row) in s.times_ns.iter().zip(&s.values) {
                let mapped: Vec<Option<FieldValue>> =
                    cols.iter().map(|c| c.and_then(|c| row.get(c).cloned().flatten())).collect();
                folder.row(i, t, &mapped);
            }
        }
    }
    folder.finish()
}

/// Fields read for a measurement: the energy inputs, the health flags and the
/// model's revenue inputs.
fn fields_for(measurement: &str, inputs: &Inputs) -> Vec<String> {
    let mut fields: Vec<&str> = match measurement {
        m if m == gpu::MEASUREMENT => vec![gpu::POWER_W, gpu::ENERGY_J, gpu::STATUS],
        m if m == asic::MEASUREMENT => vec![asic::POWER_W, asic::ONLINE],
        _ => vec![],
    };
    if inputs.revenue_measurement == measurement {
        for f in inputs.revenue_fields {
            if !fields.contains(f) {
                fields.push(f);
            }
        }
    }
    fields.into_iter().map(String::from).collect()
}

fn chunk_query(plan: &WorkloadPlan, measurement: &str, win: Window) -> SeriesQuery {
    SeriesQuery {
        measurement: measurement.to_string(),
        fields: fields_for(measurement, &plan.revenue_model.info().inputs),
        tag_filters: vec![(schema::TAG_WORKLOAD.to_string(), plan.name.clone())],
        start_ns: win.start_ns - plan.max_gap_ns,
        end_ns: win.end_ns + plan.max_gap_ns,
    }
}

type ChunkRead = tokio::task::JoinHandle<Result<(Vec<DeviceSamples>, Option<Vec<DeviceSamples>>), StoreError>>;

/// Streams one query into devices.
async fn fold(store: &dyn Store, q: &SeriesQuery) -> Result<Vec<DeviceSamples>, StoreError> {
    let mut folder = DeviceFolder::new(&q.measurement, &q.fields);
    store.read_each(q, &mut folder).await?;
    Ok(folder.finish())
}

/// Starts reading one chunk (the energy measurement, and the revenue measurement
/// when it differs) on its own task, so the next chunk loads while this one is
/// computed. Rows are folded into devices as they stream in.
fn start_read(store: &Arc<dyn Store>, plan: &WorkloadPlan, chunk: Window) -> ChunkRead {
    let store = store.clone();
    let inputs = &plan.revenue_model.info().inputs;
    let energy_m = inputs.energy_measurement;
    let energy_q = chunk_query(plan, energy_m, chunk);
    let revenue_q =
        (inputs.revenue_measurement != energy_m).then(|| chunk_query(plan, inputs.revenue_measurement, chunk));
    tokio::spawn(async move {
        let energy = fold(store.as_ref(), &energy_q).await?;
        let revenue = match revenue_q {
            Some(q) => Some(fold(store.as_ref(), &q).await?),
            None => None,
        };
        Ok((energy, revenue))
    })
}

/// Computes one workload's window from the store, reading it in chunks of at
/// most `read_chunk_ns` so that memory holds a bounded slice of samples (two
/// chunks: the one computed and the one loading) however large the fleet; every
/// quantity is additive over time, so the chunks sum to the window.
pub async fn compute_window(
    store: &Arc<dyn Store>,
    plan: &WorkloadPlan,
    tariff: &Tariff,
    win: Window,
    market: &MarketHistory,
    read_chunk_ns: i64,
) -> Result<WindowResult, StoreError> {
    let market_at = market.at(win.end_ns);
    let mut seen = BTreeSet::new();
    let mut out: Option<WindowResult> = None;
    let chunks = aligned_windows(win.start_ns, win.end_ns, read_chunk_ns.max(1));
    let mut next = chunks.first().map(|&c| start_read(store, plan, c));
    for (i, &chunk) in chunks.iter().enumerate() {
        let read = next.take().expect("a read is started for every chunk");
        let (devices, revenue_devices) =
            read.await.map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))??;
        next = chunks.get(i + 1).map(|&c| start_read(store, plan, c));
        let part = compute_from_devices(plan, tariff, chunk, devices, revenue_devices, &market_at, &mut seen);
        match &mut out {
            None => out = Some(part),
            Some(acc) => acc.absorb(part),
        }
    }
    let mut out =
        out.unwrap_or_else(|| compute_from_devices(plan, tariff, win, Vec::new(), None, &market_at, &mut seen));
    out.window = win;
    out.devices = seen.len();
    Ok(out)
}

/// The pure part of [`compute_window`]: energy, coverage, cost and revenue from
/// devices already read. `revenue_devices` are the model's own devices when its
/// inputs live in another measurement than the energy (inference servers).
pub fn compute_from_devices(
    plan: &WorkloadPlan,
    tariff: &Tariff,
    win: Window,
    devices: Vec<DeviceSamples>,
    revenue_devices: Option<Vec<DeviceSamples>>,
    market_at: &MarketAt,
    seen: &mut BTreeSet<String>,
) -> WindowResult {
    let mut warnings = Vec::new();
    let segments = tariff.segments(win).unwrap_or_else(|e| {
        warnings.push(format!("site {}: {e}", plan.site));
        vec![(win, 0.0)]
    });
    // Energy per tariff segment (energy is additive over time, so the segments
    // sum to the window), charged at each segment's price on facility energy.
    let mut seg_energy_j = vec![0.0; segments.len()];
    let mut total = DeviceEnergy::default();
    for dev in &devices {
        let mut covered_ns = 0;
        for (k, (seg, _)) in segments.iter().enumerate() {
            let e = device_energy(&dev.energy, *seg, plan.max_gap_ns);
            seg_energy_j[k] += e.energy_j;
            covered_ns += e.covered_ns;
        }
        total.covered_ns += covered_ns;
        if covered_ns > 0 || dev.energy.iter().any(|s| s.time_ns >= win.start_ns && s.time_ns < win.end_ns) {
            seen.insert(dev.tracks.id.clone());
        }
    }
    total.energy_j = seg_energy_j.iter().sum();
    let energy_cost_usd: f64 = segments
        .iter()
        .zip(&seg_energy_j)
        .map(|((_, usd_per_kwh), &e)| facility_energy_j(e, plan.pue) / schema::J_PER_KWH * usd_per_kwh)
        .sum();
    let tracks: Vec<DeviceTracks> = revenue_devices.unwrap_or(devices).into_iter().map(|d| d.tracks).collect();
    let at = market_at;
    if plan.revenue_model.info().inputs.market {
        if let Some(w) = &at.warning {
            warnings.push(w.clone());
        }
    }
    let input = RevenueInput { devices: &tracks, window: win, max_gap_ns: plan.max_gap_ns, market: at.market.as_ref() };
    let revenue = match plan.revenue_model.revenue(&input) {
        Ok(r) => r,
        Err(e) => {
            warnings.push(format!("workload {}: {e}", plan.name));
            Default::default()
        }
    };
    WindowResult {
        workload: plan.name.clone(),
        site: plan.site.clone(),
        revenue_model: plan.revenue_model.info(),
        window: win,
        energy_j: total.energy_j,
        facility_energy_j: facility_energy_j(total.energy_j, plan.pue),
        revenue_usd: revenue.revenue_usd,
        energy_cost_usd,
        covered_ns: total.covered_ns,
        devices: seen.len(),
        work_th: revenue.work_th,
        tokens: revenue.tokens,
        warnings,
    }
}

/// `3600s` → `1h`: the `window` tag of written-back points.
pub fn window_label(len_ns: i64) -> String {
    let s = len_ns / 1_000_000_000;
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What produced a stored window: the workload's config and the source rows
/// it saw. A stored window is served while both still match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowStamp {
    pub config_hash: String,
    pub source_values: u64,
}

/// A stable hash (FNV-1a, 64 bits, hex) of everything in a workload's plan that
/// shapes its windows: model and terms, site, PUE, tariff and `max_gap`. Derived
/// from the plan's debug form, so any new term is covered without listing it
/// here (a wattledger upgrade that changes that form recomputes windows once).
pub fn config_hash(plan: &WorkloadPlan) -> String {
    let text = format!("{plan:?}");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The [`WindowStamp::source_values`] of a window now: the values of the fields
/// it reads, in every measurement it reads, over the same range a computation
/// reads (`[start − max_gap, end + max_gap)`, so late data at the edges counts).
pub async fn source_values(store: &dyn Store, plan: &WorkloadPlan, win: Window) -> Result<u64, StoreError> {
    let inputs = &plan.revenue_model.info().inputs;
    let energy_m = inputs.energy_measurement;
    let mut n = store.count(&chunk_query(plan, energy_m, win)).await?;
    if inputs.revenue_measurement != energy_m {
        n += store.count(&chunk_query(plan, inputs.revenue_measurement, win)).await?;
    }
    Ok(n)
}

/// The `workload_efficiency` point for a window, stamped at the window start.
pub fn efficiency_point(w: &WindowResult, len_ns: i64, stamp: &WindowStamp) -> Point {
    let warnings = (!w.warnings.is_empty()).then(|| w.warnings.join("\n"));
    Point::new(we::MEASUREMENT, w.window.start_ns)
        .tag(we::TAG_SITE, w.site.as_str())
        .tag(we::TAG_WORKLOAD, w.workload.as_str())
        .tag(we::TAG_KIND, w.revenue_model.name)
        .tag(we::TAG_WINDOW, window_label(len_ns))
        .field(we::WINDOW_S, w.window.len_s())
        .field(we::ENERGY_J, w.energy_j)
        .field(we::FACILITY_ENERGY_J, w.facility_energy_j)
        .field(we::REVENUE_USD, w.revenue_usd)
        .field(we::ENERGY_COST_USD, w.energy_cost_usd)
        .field(we::PROFIT_USD, w.profit_usd())
        .field_opt(we::REVENUE_USD_PER_KWH, w.revenue_usd_per_kwh())
        .field_opt(we::PROFIT_USD_PER_KWH, w.profit_usd_per_kwh())
        .field(we::COVERAGE, w.coverage())
        .field(we::AVG_POWER_W, w.avg_power_w())
        .field(we::DEVICES, w.devices as i64)
        .field_opt(we::WORK_TH, w.work_th)
        .field_opt(we::TOKENS, w.tokens)
        .field(we::COVERED_S, w.covered_ns as f64 / 1e9)
        .field_opt(we::WARNINGS, warnings)
        .field(we::CONFIG_HASH, stamp.config_hash.as_str())
        .field(we::SOURCE_VALUES, stamp.source_values as i64)
}

/// A window read back from `workload_efficiency`, with what produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    pub result: WindowResult,
    pub stamp: WindowStamp,
}

/// The fields a stored window is rebuilt from.
const STORED_FIELDS: [&str; 11] = [
    we::WINDOW_S,
    we::ENERGY_J,
    we::FACILITY_ENERGY_J,
    we::REVENUE_USD,
    we::ENERGY_COST_USD,
    we::DEVICES,
    we::WORK_TH,
    we::TOKENS,
    we::COVERED_S,
    we::WARNINGS,
    we::CONFIG_HASH,
];

/// The windows of `len_ns` stored for `plan` that start in `[from_ns, to_ns)`,
/// by start. Rows written before windows carried a config hash, or without the
/// fields a window is rebuilt from, are left out (they are recomputed).
pub async fn stored_windows(
    store: &dyn Store,
    plan: &WorkloadPlan,
    from_ns: i64,
    to_ns: i64,
    len_ns: i64,
) -> Result<BTreeMap<i64, StoredWindow>, StoreError> {
    let mut fields: Vec<String> = STORED_FIELDS.iter().map(|f| f.to_string()).collect();
    fields.push(we::SOURCE_VALUES.into());
    let q = SeriesQuery {
        measurement: we::MEASUREMENT.into(),
        fields,
        tag_filters: vec![(we::TAG_WORKLOAD.into(), plan.name.clone()), (we::TAG_WINDOW.into(), window_label(len_ns))],
        start_ns: from_ns,
        end_ns: to_ns,
    };
    let mut out = BTreeMap::new();
    for s in store.read(&q).await? {
        for (&t, row) in s.times_ns.iter().zip(&s.values) {
            if let Some(w) = stored_window(plan, t, row) {
                out.insert(t, w);
            }
        }
    }
    Ok(out)
}

fn stored_window(plan: &WorkloadPlan, start_ns: i64, row: &[Option<FieldValue>]) -> Option<StoredWindow> {
    let num = |j: usize| row.get(j).and_then(Option::as_ref).and_then(FieldValue::as_f64);
    let text = |j: usize| row.get(j).and_then(Option::as_ref).and_then(FieldValue::as_str);
    let len_ns = (num(0)? * 1e9).round() as i64;
    let result = WindowResult {
        workload: plan.name.clone(),
        site: plan.site.clone(),
        revenue_model: plan.revenue_model.info(),
        window: Window::new(start_ns, start_ns + len_ns),
        energy_j: num(1)?,
        facility_energy_j: num(2)?,
        revenue_usd: num(3)?,
        energy_cost_usd: num(4)?,
        devices: num(5)? as usize,
        work_th: num(6),
        tokens: num(7),
        covered_ns: (num(8)? * 1e9).round() as i64,
        warnings: text(9).map(|w| w.lines().map(String::from).collect()).unwrap_or_default(),
    };
    let stamp = WindowStamp { config_hash: text(10)?.to_string(), source_values: num(11)? as u64 };
    Some(StoredWindow { result, stamp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revenue::ai_contract::AiContract;

    const H: i64 = 3_600_000_000_000;
    const S: i64 = 1_000_000_000;

    #[test]
    fn windows_align_to_the_hour() {
        let w = aligned_windows(H + 15 * 60 * S, 3 * H, H);
        assert_eq!(w, vec![Window::new(H + 15 * 60 * S, 2 * H), Window::new(2 * H, 3 * H)]);
        assert_eq!(window_label(H), "1h");
        assert_eq!(window_label(300 * S), "5m");
    }

    fn gpu_series(uuid: &str, rows: &[(i64, f64, f64, &str)]) -> Series {
        Series {
            tags: [("host", "rig1"), ("uuid", uuid), ("workload", "h100")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: vec!["power_w".into(), "energy_j".into(), "status".into()],
            times_ns: rows.iter().map(|r| r.0 * S).collect(),
            values: rows
                .iter()
                .map(|r| {
                    vec![Some(FieldValue::Float(r.1)), Some(FieldValue::Float(r.2)), Some(FieldValue::Str(r.3.into()))]
                })
                .collect(),
        }
    }

    #[test]
    fn contract_window_from_series() {
        // One H100 at 700 W rented at $2/GPU-hour on a site with PUE 1.2 and
        // $0.05/kWh, sampled every 60 s for the hour [0, 3600 s]; the energy
        // counter rises 42,000 J per minute (700 W × 60 s).
        //   energy   = 60 × 42,000 = 2,520,000 J = 0.7 kWh
        //   facility = 0.7 × 1.2 = 0.84 kWh; cost = 0.84 × 0.05 = $0.042
        //   revenue  = 1 GPU-hour × $2 = $2; per kWh = 2 / 0.7 = $2.857
        let rows: Vec<(i64, f64, f64, &str)> =
            (0..=60).map(|i| (i * 60, 700.0, 1e6 + i as f64 * 42_000.0, "ok")).collect();
        let devices = devices_from_series("gpu", vec![gpu_series("GPU-1", &rows)]);
        let plan = WorkloadPlan {
            name: "h100".into(),
            site: "a".into(),
            revenue_model: Arc::new(AiContract { usd_per_gpu_hour: 2.0 }),
            pue: 1.2,
            tariff: Tariff::Flat { usd_per_kwh: 0.05 },
            max_gap_ns: 90 * S,
        };
        let w = compute_from_devices(
            &plan,
            &plan.tariff,
            Window::new(0, H),
            devices,
            None,
            &MarketHistory::none().at(H),
            &mut BTreeSet::new(),
        );
        assert!((w.energy_j - 2.52e6).abs() < 1e-6, "{w:?}");
        assert!((w.energy_cost_usd - 0.042).abs() < 1e-12);
        assert!((w.revenue_usd - 2.0).abs() < 1e-12);
        assert!((w.revenue_usd_per_kwh().unwrap() - 2.0 / 0.7).abs() < 1e-9);
        assert_eq!(w.coverage(), 1.0);
        let stamp = WindowStamp { config_hash: config_hash(&plan), source_values: 183 };
        let p = efficiency_point(&w, H, &stamp);
        // Read back, the point rebuilds the same window.
        let names: Vec<&str> = STORED_FIELDS.iter().copied().chain([we::SOURCE_VALUES]).collect();
        let row: Vec<Option<FieldValue>> = names.iter().map(|f| p.field_value(f).cloned()).collect();
        let back = stored_window(&plan, 0, &row).unwrap();
        assert_eq!(back.stamp, stamp);
        assert_eq!(
            (back.result.energy_j, back.result.revenue_usd, back.result.covered_ns),
            (w.energy_j, w.revenue_usd, w.covered_ns)
        );
        assert_eq!(back.result.coverage(), 1.0);
        assert_eq!(p.tag_value("window"), Some("1h"));
        assert_eq!(p.field_value("revenue_usd"), Some(&FieldValue::Float(2.0)));
    }
}
