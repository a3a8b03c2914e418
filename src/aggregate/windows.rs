//! Windows computed from the store.
//!
//! Windows are aligned to wall-clock boundaries (multiples of the window length
//! since the Unix epoch, so 1 h windows start on the hour UTC). Each window of each
//! workload is computed from one read of its devices' series, `[start − max_gap,
//! end + max_gap)`, so that the intervals crossing the edges are seen and memory
//! holds one window of samples at a time, however long the range. The results
//! are written back as `workload_efficiency`, one point per workload, window
//! length and window start: recomputing a window overwrites it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::compare::WindowResult;
use super::energy::{device_energy, facility_energy_j, DeviceEnergy, EnergySample};
use super::market::{MarketAt, MarketHistory};
use super::tariff::Tariff;
use crate::model::schema::{self, asic, gpu, inference, workload_efficiency as we};
use crate::model::{FieldValue, Point};
use crate::revenue::{DeviceTracks, Inputs, RevenueInput, RevenueModel};
use crate::signal::Window;
use crate::store::{Series, SeriesQuery, Store, StoreError};

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

/// Turns series into devices, column by column. A device's rows from several
/// series (its tags changed, e.g. a firmware upgrade) are merged in time order.
pub fn devices_from_series(measurement: &str, series: Vec<Series>) -> Vec<DeviceSamples> {
    let is_gpu = measurement == gpu::MEASUREMENT;
    let mut by_id: BTreeMap<String, (DeviceSamples, usize)> = BTreeMap::new();
    for s in series {
        let id = device_id(measurement, &s.tags);
        let (dev, parts) = by_id.entry(id.clone()).or_insert_with(|| {
            let mut d = DeviceSamples { tags: s.tags.clone(), ..Default::default() };
            d.tracks.id = id;
            (d, 0)
        });
        *parts += 1;
        let col = |name: &str| s.fields.iter().position(|f| f == name);
        let (power, energy, status, online) =
            (col(gpu::POWER_W), if is_gpu { col(gpu::ENERGY_J) } else { None }, col(gpu::STATUS), col(asic::ONLINE));
        let num = |row: &[Option<FieldValue>], j: Option<usize>| {
            cell(row, j).and_then(FieldValue::as_f64).filter(|v| v.is_finite())
        };
        dev.energy.reserve(s.times_ns.len());
        dev.tracks.healthy.reserve(s.times_ns.len());
        for (&t, row) in s.times_ns.iter().zip(&s.values) {
            let power_w = num(row, power);
            dev.energy.push(EnergySample { time_ns: t, power_w, energy_j: num(row, energy) });
            let healthy = match (cell(row, status), cell(row, online)) {
                (Some(st), _) => st.as_str() == Some("ok"),
                (None, Some(on)) => on.as_f64().is_some_and(|x| x != 0.0),
                (None, None) => power_w.is_some() || row.iter().any(Option::is_some),
            };
            dev.tracks.healthy.push((t, healthy));
        }
        for (j, field) in s.fields.iter().enumerate() {
            if Some(j) == status {
                continue;
            }
            let values = s.times_ns.iter().zip(&s.values).filter_map(|(&t, row)| num(row, Some(j)).map(|v| (t, v)));
            let track = dev.tracks.tracks.entry(field.clone()).or_default();
            track.extend(values);
        }
    }
    by_id
        .into_values()
        .map(|(mut dev, parts)| {
            if parts > 1 {
                dev.energy.sort_by_key(|e| e.time_ns);
                dev.tracks.healthy.sort_by_key(|h| h.0);
                for track in dev.tracks.tracks.values_mut() {
                    track.sort_by_key(|v| v.0);
                }
            }
            dev
        })
        .collect()
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

type ChunkRead = tokio::task::JoinHandle<Result<(Vec<Series>, Option<Vec<Series>>), StoreError>>;

/// Starts reading one chunk (the energy measurement, and the revenue measurement
/// when it differs) on its own task, so the next chunk loads while this one is
/// computed.
fn start_read(store: &Arc<dyn Store>, plan: &WorkloadPlan, chunk: Window) -> ChunkRead {
    let store = store.clone();
    let inputs = &plan.revenue_model.info().inputs;
    let energy_m = inputs.energy_measurement;
    let energy_q = chunk_query(plan, energy_m, chunk);
    let revenue_q =
        (inputs.revenue_measurement != energy_m).then(|| chunk_query(plan, inputs.revenue_measurement, chunk));
    tokio::spawn(async move {
        let energy = store.read(&energy_q).await?;
        let revenue = match revenue_q {
            Some(q) => Some(store.read(&q).await?),
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
    let inputs = &plan.revenue_model.info().inputs;
    let (energy_m, revenue_m) = (inputs.energy_measurement, inputs.revenue_measurement);
    let market_at = market.at(win.end_ns);
    let mut seen = BTreeSet::new();
    let mut out: Option<WindowResult> = None;
    let chunks = aligned_windows(win.start_ns, win.end_ns, read_chunk_ns.max(1));
    let mut next = chunks.first().map(|&c| start_read(store, plan, c));
    for (i, &chunk) in chunks.iter().enumerate() {
        let read = next.take().expect("a read is started for every chunk");
        let (energy, revenue) =
            read.await.map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))??;
        next = chunks.get(i + 1).map(|&c| start_read(store, plan, c));
        let devices = devices_from_series(energy_m, energy);
        let revenue_devices = revenue.map(|r| devices_from_series(revenue_m, r));
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

/// The `workload_efficiency` point for a window, stamped at the window start.
pub fn efficiency_point(w: &WindowResult, len_ns: i64) -> Point {
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
        let p = efficiency_point(&w, H);
        assert_eq!(p.tag_value("window"), Some("1h"));
        assert_eq!(p.field_value("revenue_usd"), Some(&FieldValue::Float(2.0)));
    }
}
