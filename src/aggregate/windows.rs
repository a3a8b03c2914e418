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

use super::basis::{normalise, Basis, BasisEnergy, Span, Target};
use super::compare::WindowResult;
use super::energy::facility_energy_j;
use super::market::{MarketAt, MarketHistory};
use super::metered::{self, TAG_GROUP};
use super::reconcile::{decode_groups, encode_groups, FacilityBasis};
use super::tariff::Tariff;
use crate::ledger::point::{ledger_fields, LedgerColumns};
use crate::ledger::{
    raw_fields, series_device_id, Columns, Cuts, DeviceAccumulator, DeviceSums, EnergyFrom, Part, Rules, Sums,
};
use crate::model::schema::{self, asic, energy_ledger as el, gpu, meter, workload_efficiency as we};
use crate::model::{FieldValue, Point};
use crate::revenue::{DeviceTracks, RevenueInput, RevenueModel};
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

impl WorkloadPlan {
    /// The integration rules for this workload's devices: its `max_gap`, and the
    /// busy-time threshold its model reads.
    pub fn rules(&self) -> Rules {
        Rules {
            max_gap_ns: self.max_gap_ns,
            util_thresholds_pct: self.revenue_model.util_threshold_pct().into_iter().collect(),
        }
    }
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
        // Near the end of the i64 range the last window ends at `to_ns`.
        let end = start.checked_add(len_ns).unwrap_or(to_ns);
        out.push(Window::new(start.max(from_ns), end.min(to_ns)));
        start = end;
    }
    out
}

/// A device id such as `rig-1/GPU-1234…`: the identity tags present, joined.
pub fn device_id(measurement: &str, tags: &BTreeMap<String, String>) -> String {
    series_device_id(measurement, tags)
}

/// Samples of one device, merged from every series that names it, as tracks (the
/// fleet view's latest readings).
#[derive(Debug, Default)]
pub struct DeviceSamples {
    pub tracks: DeviceTracks,
    pub tags: BTreeMap<String, String>,
}

/// Turns series into devices, column by column. A device's rows from several
/// series (its tags changed, e.g. a firmware upgrade) are merged in time order.
pub fn devices_from_series(measurement: &str, series: Vec<Series>) -> Vec<DeviceSamples> {
    let mut by_id: BTreeMap<String, (DeviceSamples, usize)> = BTreeMap::new();
    for s in series {
        let id = device_id(measurement, &s.tags);
        let (dev, parts) = by_id.entry(id.clone()).or_insert_with(|| {
            let mut d = DeviceSamples { tags: s.tags.clone(), ..Default::default() };
            d.tracks.id = id;
            (d, 0)
        });
        *parts += 1;
        let cols = Columns::new(measurement, &s.fields);
        let status = s.fields.iter().position(|f| f == gpu::STATUS);
        dev.tracks.healthy.reserve(s.times_ns.len());
        for (&t, row) in s.times_ns.iter().zip(&s.values) {
            // A row without the rules' fields (an inference server's `requests`) is
            // healthy when it has anything at all.
            let healthy = cols.row_sample(t, row).map_or_else(|| row.iter().any(Option::is_some), |s| s.healthy);
            dev.tracks.healthy.push((t, healthy));
        }
        for (j, field) in s.fields.iter().enumerate() {
            if Some(j) == status {
                continue;
            }
            let num = |row: &[Option<FieldValue>]| {
                row.get(j).and_then(Option::as_ref).and_then(FieldValue::as_f64).filter(|v| v.is_finite())
            };
            let values = s.times_ns.iter().zip(&s.values).filter_map(|(&t, row)| num(row).map(|v| (t, v)));
            dev.tracks.tracks.entry(field.clone()).or_default().extend(values);
        }
    }
    by_id
        .into_values()
        .map(|(mut dev, parts)| {
            if parts > 1 {
                dev.tracks.healthy.sort_by_key(|h| h.0);
                for track in dev.tracks.tracks.values_mut() {
                    track.sort_by_key(|v| v.0);
                }
            }
            dev
        })
        .collect()
}

/// The raw measurements a workload reads: where its energy is measured, and
/// where its revenue inputs are when that differs (inference servers).
fn raw_measurements(plan: &WorkloadPlan) -> Vec<&'static str> {
    let inputs = &plan.revenue_model.info().inputs;
    let (e, r) = (inputs.energy_measurement, inputs.revenue_measurement);
    if e == r {
        vec![e]
    } else {
        vec![e, r]
    }
}

fn raw_query(plan: &WorkloadPlan, measurement: &str, win: Window) -> SeriesQuery {
    SeriesQuery {
        measurement: measurement.to_string(),
        fields: raw_fields(measurement).iter().map(|f| f.to_string()).collect(),
        tag_filters: vec![(schema::TAG_WORKLOAD.to_string(), plan.name.clone())],
        start_ns: win.start_ns - plan.max_gap_ns,
        end_ns: win.end_ns + plan.max_gap_ns,
    }
}

fn ledger_query(plan: &WorkloadPlan, win: Window) -> SeriesQuery {
    SeriesQuery {
        measurement: el::MEASUREMENT.to_string(),
        fields: ledger_fields(&plan.rules().util_thresholds_pct),
        tag_filters: vec![(schema::TAG_WORKLOAD.to_string(), plan.name.clone())],
        start_ns: win.start_ns,
        end_ns: win.end_ns,
    }
}

/// The site's `meter` points, read raw whatever [`EnergyFrom`] says (meters have
/// no ledger points), when the workload's energy is a miner's or a GPU's.
fn meter_query(plan: &WorkloadPlan, win: Window) -> Option<SeriesQuery> {
    let energy_m = plan.revenue_model.info().inputs.energy_measurement;
    (energy_m == gpu::MEASUREMENT || energy_m == asic::MEASUREMENT).then(|| SeriesQuery {
        measurement: meter::MEASUREMENT.to_string(),
        fields: raw_fields(meter::MEASUREMENT).iter().map(|f| f.to_string()).collect(),
        tag_filters: vec![(schema::TAG_SITE.to_string(), plan.site.clone())],
        start_ns: win.start_ns - plan.max_gap_ns,
        end_ns: win.end_ns + plan.max_gap_ns,
    })
}

/// What one chunk's reads return: the ledger's series (unless reading raw only),
/// each raw measurement's series (unless reading the ledger only), the site's
/// meter channels, and the GPUs (of every workload) of hosts a meter covers.
#[derive(Debug, Default)]
pub struct ChunkData {
    pub ledger: Vec<Series>,
    pub raw: Vec<(&'static str, Vec<Series>)>,
    pub meters: Vec<Series>,
    pub host_gpus: Vec<Series>,
}

type ChunkRead = tokio::task::JoinHandle<Result<ChunkData, StoreError>>;

/// Starts reading one chunk on its own task, so the next chunk loads while this
/// one is computed.
fn start_read(store: &Arc<dyn Store>, plan: &WorkloadPlan, chunk: Window, from: EnergyFrom) -> ChunkRead {
    let store = store.clone();
    let ledger_q = (from != EnergyFrom::Raw).then(|| ledger_query(plan, chunk));
    let raw_q: Vec<(&'static str, SeriesQuery)> = if from == EnergyFrom::Ledger {
        Vec::new()
    } else {
        raw_measurements(plan).into_iter().map(|m| (m, raw_query(plan, m, chunk))).collect()
    };
    let meter_q = meter_query(plan, chunk);
    let gpu_energy = plan.revenue_model.info().inputs.energy_measurement == gpu::MEASUREMENT;
    tokio::spawn(async move {
        let mut out = ChunkData::default();
        if let Some(q) = ledger_q {
            out.ledger = store.read(&q).await?;
        }
        for (m, q) in raw_q {
            out.raw.push((m, store.read(&q).await?));
        }
        if let Some(q) = meter_q {
            out.meters = store.read(&q).await?;
            // A host meter is split over all the host's GPUs, whatever their workload.
            let hosts: BTreeSet<String> = out
                .meters
                .iter()
                .filter_map(|s| Target::of_channel(&s.tags))
                .filter_map(|t| if let Target::GpuHost(h) = t { Some(h) } else { None })
                .collect();
            for host in hosts.into_iter().filter(|_| gpu_energy) {
                let hq = SeriesQuery {
                    measurement: gpu::MEASUREMENT.to_string(),
                    fields: raw_fields(gpu::MEASUREMENT).iter().map(|f| f.to_string()).collect(),
                    tag_filters: vec![
                        (schema::TAG_SITE.to_string(), q.tag_filters[0].1.clone()),
                        (schema::TAG_HOST.to_string(), host),
                    ],
                    start_ns: q.start_ns,
                    end_ns: q.end_ns,
                };
                out.host_gpus.extend(store.read(&hq).await?);
            }
        }
        Ok(out)
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
    from: EnergyFrom,
) -> Result<WindowResult, StoreError> {
    let market_at = market.at(win.end_ns);
    let mut seen = BTreeSet::new();
    let mut out: Option<WindowResult> = None;
    let chunks = aligned_windows(win.start_ns, win.end_ns, read_chunk_ns.max(1));
    let mut next = chunks.first().map(|&c| start_read(store, plan, c, from));
    for (i, &chunk) in chunks.iter().enumerate() {
        let read = next.take().expect("a read is started for every chunk");
        let data = read.await.map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))??;
        next = chunks.get(i + 1).map(|&c| start_read(store, plan, c, from));
        let part = compute_chunk(plan, tariff, chunk, data, &market_at, &mut seen);
        match &mut out {
            None => out = Some(part),
            Some(acc) => acc.absorb(part),
        }
    }
    let mut out = out.unwrap_or_else(|| compute_chunk(plan, tariff, win, ChunkData::default(), &market_at, &mut seen));
    out.window = win;
    out.devices = seen.len();
    out.no_power_devices = seen.len().saturating_sub(out.powered.len());
    // The ids were needed only for that count; a long range holds many windows.
    out.powered = BTreeSet::new();
    Ok(out)
}

/// One device in one chunk: its sums from both paths, and the spans its ledger
/// points cover (sorted), which the raw path leaves out. A device a meter channel
/// covers keeps its own energy as spans until the meter is applied.
#[derive(Debug, Default)]
struct ChunkDevice {
    sums: Sums,
    spans: Vec<(i64, i64)>,
    noted: bool,
    target: Option<Target>,
    group: Option<String>,
    own_j: Vec<Span>,
}

impl ChunkDevice {
    /// Remembers, from the device's first series, the meter target covering it and its group.
    fn note(&mut self, measurement: &str, tags: &BTreeMap<String, String>, meters: &metered::ChunkMeters) {
        if !self.noted {
            self.noted = true;
            self.target = Target::of_device(measurement, tags, meters.devices.keys());
            self.group = tags.get(TAG_GROUP).cloned();
        }
    }
}

/// A device's own basis: the ledger's `basis` tag, else what its raw tags say;
/// a miner with power but no `power_source` (older agents) reported it.
fn own_basis(measurement: &str, tags: &BTreeMap<String, String>) -> Option<Basis> {
    tags.get(el::TAG_BASIS)
        .and_then(|b| Basis::parse(b))
        .or_else(|| Basis::of_device(measurement, tags))
        .or_else(|| (measurement == asic::MEASUREMENT).then_some(Basis::Reported))
}

impl ChunkDevice {
    fn in_ledger(&self, t: i64) -> bool {
        let i = self.spans.partition_point(|s| s.0 <= t);
        i > 0 && t < self.spans[i - 1].1
    }
}

/// Where a chunk's energy came from.
#[derive(Debug, Default, Clone, Copy)]
struct Provenance {
    ledger_energy_j: f64,
    ledger_covered_ns: i64,
}

/// The pure part of [`compute_window`]: energy, coverage, cost and revenue of one
/// chunk from what was read. Per device and ledger interval: the ledger point when
/// there is a usable one (inside the chunk and one tariff segment, written with the
/// workload's `max_gap` and busy-time threshold), else the raw samples of that
/// time, folded through the same [`DeviceAccumulator`] the agent uses; never both.
pub fn compute_chunk(
    plan: &WorkloadPlan,
    tariff: &Tariff,
    win: Window,
    data: ChunkData,
    market_at: &MarketAt,
    seen: &mut BTreeSet<String>,
) -> WindowResult {
    let mut warnings = Vec::new();
    let mut segments = tariff.segments(win).unwrap_or_else(|e| {
        warnings.push(format!("site {}: {e}", plan.site));
        vec![(win, 0.0)]
    });
    if segments.is_empty() {
        segments.push((win, 0.0));
    }
    let mut edges: Vec<i64> = segments.iter().map(|(w, _)| w.start_ns).collect();
    edges.push(win.end_ns);
    edges.push(win.start_ns);
    edges.sort_unstable();
    edges.dedup();
    let segment_of = |t: i64| segments.partition_point(|(w, _)| w.end_ns <= t).min(segments.len() - 1);
    let rules = plan.rules();
    let inputs = &plan.revenue_model.info().inputs;
    let (energy_m, revenue_m) = (inputs.energy_measurement, inputs.revenue_measurement);
    let mut devices: BTreeMap<(&str, String), ChunkDevice> = BTreeMap::new();
    let mut seg_energy_j = vec![0.0; segments.len()];
    let mut prov = Provenance::default();
    let meters = metered::chunk_meters(&data.meters, &rules, &Cuts { grid_ns: 0, list: edges.clone() }, win);
    let raw_read = data.raw.iter().any(|(m, _)| *m == energy_m);
    let mut by_basis = BasisEnergy::default();

    // 1. Ledger points.
    let mut mismatched_gap = None;
    for s in &data.ledger {
        let Some(source) = s.tags.get(el::TAG_SOURCE).map(String::as_str) else { continue };
        let source = match source {
            m if m == energy_m => energy_m,
            m if m == revenue_m => revenue_m,
            _ => continue,
        };
        let id = series_device_id(source, &s.tags);
        let basis = own_basis(source, &s.tags);
        let cols = LedgerColumns::new(&s.fields, &rules.util_thresholds_pct);
        for (&t, row) in s.times_ns.iter().zip(&s.values) {
            let Some(r) = cols.row(t, row) else { continue };
            let end = r.start_ns + r.expected_ns;
            if r.expected_ns <= 0 || r.start_ns < win.start_ns || end > win.end_ns || !r.busy_known {
                continue;
            }
            if r.max_gap_ns != Some(rules.max_gap_ns) {
                mismatched_gap = r.max_gap_ns;
                continue;
            }
            let k = segment_of(r.start_ns);
            if end > segments[k].0.end_ns {
                continue;
            }
            let dev = devices.entry((source, id.clone())).or_default();
            if dev.in_ledger(r.start_ns) || dev.in_ledger(end - 1) {
                continue; // the same interval from another series of the device
            }
            let at = dev.spans.partition_point(|sp| sp.0 < r.start_ns);
            dev.spans.insert(at, (r.start_ns, end));
            dev.sums.absorb(&r.sums);
            if source == energy_m {
                dev.note(source, &s.tags, &meters);
                // The interval came from the ledger (revenue inputs, and the device's
                // own energy where no meter covers it).
                prov.ledger_covered_ns += r.sums.covered_ns;
                if dev.target.is_some() {
                    // A metered device's own energy is taken from its raw samples when
                    // they are read (exact where the meter is not); from the ledger's
                    // intervals (constant power inside each) only when they are not.
                    if let (Some(b), false) = (basis, raw_read) {
                        let covered_ns = r.sums.covered_ns;
                        dev.own_j.push(Span { a: r.start_ns, b: end, joules: r.sums.energy_j, covered_ns, basis: b });
                    }
                } else {
                    seg_energy_j[k] += r.sums.energy_j;
                    prov.ledger_energy_j += r.sums.energy_j;
                    if let Some(b) = basis {
                        by_basis.add(b, r.sums.energy_j);
                    }
                }
            }
        }
    }
    if let Some(g) = mismatched_gap {
        warnings.push(format!(
            "workload {}: ledger points written with max_gap {}s, the workload uses {}s; those intervals come from raw samples (set [ledger] max_gap on the agents to match)",
            plan.name,
            g as f64 / 1e9,
            rules.max_gap_ns as f64 / 1e9
        ));
    }

    // 2. Raw samples, for every device and time without a ledger point.
    for (measurement, series) in &data.raw {
        let mut by_id: BTreeMap<String, Vec<&Series>> = BTreeMap::new();
        for s in series {
            by_id.entry(series_device_id(measurement, &s.tags)).or_default().push(s);
        }
        for (id, parts) in by_id {
            let dev = devices.entry((*measurement, id)).or_default();
            if *measurement == energy_m {
                dev.note(measurement, &parts[0].tags, &meters);
            }
            let mut list = edges.clone();
            list.extend(dev.spans.iter().flat_map(|&(a, b)| [a, b]));
            list.sort_unstable();
            list.dedup();
            let cuts = Cuts { grid_ns: 0, list };
            let mut acc = DeviceAccumulator::default();
            let is_energy = *measurement == energy_m;
            let mut fold = |t: i64,
                            cols: &Columns,
                            basis: Option<Basis>,
                            row: &[Option<FieldValue>],
                            dev: &mut ChunkDevice| {
                let Some(sample) = cols.row_sample(t, row) else { return };
                acc.push(&sample, &rules, &cuts, |a, b, part| {
                    let inside =
                        if a == b { a >= win.start_ns && a < win.end_ns } else { a >= win.start_ns && b <= win.end_ns };
                    if !inside {
                        return;
                    }
                    if let (Part::Energy { joules, .. }, true, Some(_)) = (part, is_energy, &dev.target) {
                        // Also inside ledger intervals: see the ledger loop above.
                        if let Some(basis) = basis {
                            dev.own_j.push(Span { a, b, joules, covered_ns: b - a, basis });
                        }
                        if !dev.in_ledger(a) {
                            dev.sums.add_part(a, b, part);
                        }
                        return;
                    }
                    if dev.in_ledger(a) {
                        return;
                    }
                    if let (Part::Energy { joules, .. }, true) = (part, is_energy) {
                        match (&dev.target, basis) {
                            (Some(_), _) => {}
                            (None, basis) => {
                                seg_energy_j[segment_of(a)] += joules;
                                if let Some(basis) = basis {
                                    by_basis.add(basis, joules);
                                }
                            }
                        }
                    }
                    dev.sums.add_part(a, b, part);
                });
            };
            if let [s] = parts.as_slice() {
                let cols = Columns::new(measurement, &s.fields);
                let basis = own_basis(measurement, &s.tags);
                for (&t, row) in s.times_ns.iter().zip(&s.values) {
                    fold(t, &cols, basis, row, dev);
                }
            } else {
                // Several series of one device (its tags changed): merge in time order.
                let cols: Vec<Columns> = parts.iter().map(|s| Columns::new(measurement, &s.fields)).collect();
                let bases: Vec<Option<Basis>> = parts.iter().map(|s| own_basis(measurement, &s.tags)).collect();
                let mut rows: Vec<(i64, usize, usize)> = parts
                    .iter()
                    .enumerate()
                    .flat_map(|(k, s)| s.times_ns.iter().enumerate().map(move |(i, &t)| (t, k, i)))
                    .collect();
                rows.sort_unstable();
                for (t, k, i) in rows {
                    fold(t, &cols[k], bases[k], &parts[k].values[i], dev);
                }
            }
        }
    }

    // 3. Devices a meter channel covers: the meter's energy where it has some,
    // their own elsewhere (`basis`).
    apply_meters(&mut devices, energy_m, &meters, &data.host_gpus, &rules, &edges, win, |a, p| {
        seg_energy_j[segment_of(a)] += p.joules;
        by_basis.add(p.basis, p.joules);
    });

    // 4. Totals: energy, coverage and cost from the energy devices, revenue from
    // the revenue devices.
    let mut covered_ns = 0;
    let mut revenue_devices = Vec::new();
    let mut powered = BTreeSet::new();
    let mut unpowered_work_th = 0.0;
    let mut group_energy_j: BTreeMap<String, f64> = BTreeMap::new();
    for ((m, id), dev) in devices {
        if m == energy_m {
            covered_ns += dev.sums.covered_ns;
            if dev.sums.seen() {
                seen.insert(id.clone());
            }
            if dev.sums.covered_ns > 0 {
                powered.insert(id.clone());
            } else {
                unpowered_work_th += dev.sums.work_th;
            }
            // Every device is in its site's group, and in its own when it has one.
            for g in std::iter::once(&plan.site).chain(dev.group.as_ref().filter(|g| **g != plan.site)) {
                *group_energy_j.entry(g.clone()).or_default() += dev.sums.energy_j;
            }
        }
        if m == revenue_m {
            revenue_devices.push(DeviceSums { id, sums: dev.sums });
        }
    }
    let energy_j: f64 = seg_energy_j.iter().sum();
    let energy_cost_usd: f64 = segments
        .iter()
        .zip(&seg_energy_j)
        .map(|((_, usd_per_kwh), &e)| facility_energy_j(e, plan.pue) / schema::J_PER_KWH * usd_per_kwh)
        .sum();
    let at = market_at;
    if plan.revenue_model.info().inputs.market {
        if let Some(w) = &at.warning {
            warnings.push(w.clone());
        }
    }
    let input = RevenueInput { devices: &revenue_devices, window: win, market: at.market.as_ref() };
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
        energy_j,
        facility_energy_j: facility_energy_j(energy_j, plan.pue),
        revenue_usd: revenue.revenue_usd,
        energy_cost_usd,
        covered_ns,
        devices: seen.len(),
        work_th: revenue.work_th,
        tokens: revenue.tokens,
        ledger_energy_j: prov.ledger_energy_j,
        ledger_covered_ns: prov.ledger_covered_ns,
        basis: by_basis,
        no_power_devices: 0,
        powered,
        unpowered_work_th,
        group_energy_j,
        group_meter: meters.groups,
        facility_basis: FacilityBasis::Pue,
        warnings,
    }
}

/// Applies [`super::basis::resolve`] to every metered target of the workload's
/// energy devices, handing each energy piece (and the tariff-segment time it
/// starts at) to `add`, and setting the devices' energy and covered time.
#[allow(clippy::too_many_arguments)]
fn apply_meters<'m>(
    devices: &mut BTreeMap<(&'m str, String), ChunkDevice>,
    energy_m: &'m str,
    meters: &metered::ChunkMeters,
    host_gpus: &[Series],
    rules: &Rules,
    edges: &[i64],
    win: Window,
    mut add: impl FnMut(i64, &Span),
) {
    let mut by_target: BTreeMap<Target, Vec<String>> = BTreeMap::new();
    for ((m, id), dev) in devices.iter() {
        if let (true, Some(t)) = (*m == energy_m, &dev.target) {
            by_target.entry(t.clone()).or_default().push(id.clone());
        }
    }
    if by_target.is_empty() {
        return;
    }
    let cuts = Cuts { grid_ns: 0, list: edges.to_vec() };
    let boards = metered::energy_spans(gpu::MEASUREMENT, host_gpus, rules, &cuts, win, |_| Some(Basis::Board));
    for (target, ids) in by_target {
        let Some(channels) = meters.devices.get(&target) else { continue };
        let mine: Vec<(String, Vec<Span>)> = ids
            .iter()
            .map(|id| {
                let dev = devices.get_mut(&(energy_m, id.clone())).expect("listed above");
                let mut own = std::mem::take(&mut dev.own_j);
                normalise(&mut own);
                (id.clone(), own)
            })
            .collect();
        let host: BTreeMap<String, Vec<Span>> = match &target {
            Target::GpuHost(h) => boards
                .iter()
                .filter(|(_, (tags, _))| tags.get(schema::TAG_HOST) == Some(h))
                .map(|(id, (_, spans))| (id.clone(), spans.clone()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let members = metered::members(&target, mine, &host);
        let resolved = super::basis::resolve(channels, &members, win.start_ns, win.end_ns);
        for (id, r) in ids.iter().zip(resolved) {
            let Some(r) = r else { continue };
            let dev = devices.get_mut(&(energy_m, id.clone())).expect("listed above");
            dev.sums.energy_j = r.pieces.iter().map(|p| p.joules).sum();
            dev.sums.covered_ns = r.covered_ns;
            dev.sums.counter_ns = dev.sums.counter_ns.min(r.covered_ns);
            for p in &r.pieces {
                add(p.a, p);
            }
        }
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
    let mut n = store.count(&raw_query(plan, energy_m, win)).await?;
    if inputs.revenue_measurement != energy_m {
        n += store.count(&raw_query(plan, inputs.revenue_measurement, win)).await?;
    }
    // The site's meter channels replace device energy (none: no change to the count).
    if let Some(q) = meter_query(plan, win) {
        n += store.count(&q).await?;
    }
    Ok(n)
}

/// The `workload_efficiency` point for a window, stamped at the window start,
/// with what produced it (the form written back to the store).
pub fn efficiency_point(w: &WindowResult, len_ns: i64, stamp: &WindowStamp) -> Point {
    window_point(w, len_ns)
        .field(we::CONFIG_HASH, stamp.config_hash.as_str())
        .field(we::SOURCE_VALUES, stamp.source_values as i64)
}

/// A window's figures as a `workload_efficiency` point, without the stamp that
/// only a stored window carries (the aggregator's `/metrics` serves these).
pub fn window_point(w: &WindowResult, len_ns: i64) -> Point {
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
        .field(we::LEDGER_ENERGY_J, w.ledger_energy_j)
        .field_opt(we::LEDGER_SHARE, w.ledger_share())
        .field(we::COVERED_S, w.covered_ns as f64 / 1e9)
        .field(we::ENERGY_METER_J, w.basis.meter_j)
        .field(we::ENERGY_REPORTED_J, w.basis.reported_j)
        .field(we::ENERGY_BOARD_J, w.basis.board_j)
        .field(we::ENERGY_ESTIMATED_J, w.basis.estimated_j)
        .field(we::ENERGY_BASIS, w.basis.label())
        .field(we::NO_POWER_DEVICES, w.no_power_devices as i64)
        .field(we::UNPOWERED_WORK_TH, w.unpowered_work_th)
        .field(we::FACILITY_BASIS, w.facility_basis.as_str())
        .field_opt(we::GROUP_ENERGY_J, encode_groups(&w.group_energy_j))
        .field_opt(we::GROUP_METER_J, encode_groups(&w.group_meter.iter().map(|(g, m)| (g.clone(), m.0)).collect()))
        .field_opt(
            we::GROUP_METER_S,
            encode_groups(&w.group_meter.iter().map(|(g, m)| (g.clone(), m.1 as f64 / 1e9)).collect()),
        )
        .field_opt(we::WARNINGS, warnings)
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
    // The ledger's part (rows stored before it existed read as none from it).
    fields.push(we::LEDGER_ENERGY_J.into());
    fields.push(we::LEDGER_SHARE.into());
    // The basis and reconciliation figures (likewise absent from older rows).
    fields.extend(BASIS_FIELDS.iter().map(|f| f.to_string()));
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

/// The basis and reconciliation fields a stored window is rebuilt from, read
/// after [`STORED_FIELDS`], the source values and the ledger's two.
const BASIS_FIELDS: [&str; 10] = [
    we::ENERGY_METER_J,
    we::ENERGY_REPORTED_J,
    we::ENERGY_BOARD_J,
    we::ENERGY_ESTIMATED_J,
    we::NO_POWER_DEVICES,
    we::UNPOWERED_WORK_TH,
    we::FACILITY_BASIS,
    we::GROUP_ENERGY_J,
    we::GROUP_METER_J,
    we::GROUP_METER_S,
];

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
        ledger_energy_j: num(12).unwrap_or(0.0),
        ledger_covered_ns: (num(13).unwrap_or(0.0) * num(8)? * 1e9).round() as i64,
        covered_ns: (num(8)? * 1e9).round() as i64,
        basis: BasisEnergy {
            meter_j: num(14).unwrap_or(0.0),
            reported_j: num(15).unwrap_or(0.0),
            board_j: num(16).unwrap_or(0.0),
            estimated_j: num(17).unwrap_or(0.0),
        },
        no_power_devices: num(18).unwrap_or(0.0) as usize,
        powered: BTreeSet::new(),
        unpowered_work_th: num(19).unwrap_or(0.0),
        facility_basis: text(20).map_or(FacilityBasis::Pue, FacilityBasis::parse),
        group_energy_j: text(21).map(decode_groups).unwrap_or_default(),
        group_meter: {
            let (j, s) =
                (text(22).map(decode_groups).unwrap_or_default(), text(23).map(decode_groups).unwrap_or_default());
            j.into_iter()
                .map(|(g, e)| (g.clone(), (e, (s.get(&g).copied().unwrap_or(0.0) * 1e9).round() as i64)))
                .collect()
        },
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
        let plan = WorkloadPlan {
            name: "h100".into(),
            site: "a".into(),
            revenue_model: Arc::new(AiContract { usd_per_gpu_hour: 2.0 }),
            pue: 1.2,
            tariff: Tariff::Flat { usd_per_kwh: 0.05 },
            max_gap_ns: 90 * S,
        };
        let data = ChunkData { raw: vec![("gpu", vec![gpu_series("GPU-1", &rows)])], ..Default::default() };
        let w = compute_chunk(
            &plan,
            &plan.tariff,
            Window::new(0, H),
            data,
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
