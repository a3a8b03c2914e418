//! Windows computed from the store.
//!
//! Windows are aligned to wall-clock boundaries (multiples of the window length
//! since the Unix epoch, so 1 h windows start on the hour UTC). Each window of each
//! workload is summed from the ledger's grouped sums ([`LedgerCache`]), the ledger
//! rows of devices whose buckets are not usable, and the raw samples of only the
//! devices and time the ledger leaves uncovered (± `max_gap`, so that the
//! intervals crossing the edges are seen), streamed into per-device accumulators.
//! The site's meter channels (their ledger points where those stand for their
//! interval, raw samples elsewhere) replace the energy of the devices they cover
//! ([`super::basis`]). See [`compute_window`] and `docs/aggregator.md`. The results
//! are written back as `workload_efficiency`, one point per workload, window length
//! and window start: recomputing a window overwrites it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::basis::{normalise, Basis, BasisEnergy, Span, Target};
use super::compare::WindowResult;
use super::energy::facility_energy_j;
use super::ledger_sums::{read_ledger_sums, LedgerSums, NAMED_DEVICES};
use super::market::{MarketAt, MarketHistory};
use super::metered::{self, TAG_GROUP};
use super::reconcile::{decode_groups, encode_groups, FacilityBasis};
use super::tariff::Tariff;
use crate::ledger::point::{ledger_fields, LedgerColumns, LedgerRow};
use crate::ledger::{
    identity_filter, raw_fields, series_device_id, Columns, Cuts, DeviceAccumulator, DeviceSums, EnergyFrom, Part,
    Rules, Sample, Sums,
};
use crate::model::schema::{self, asic, energy_ledger as el, gpu, meter, workload_efficiency as we};
use crate::model::{FieldValue, Point};
use crate::revenue::{RevenueInput, RevenueModel};
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

/// The site's raw `meter` points, when the workload's energy is a miner's or a
/// GPU's (the channels' ledger points are read by their own query).
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

/// Ledger buckets one grouped read holds at most (devices × buckets, a few
/// hundred bytes each), so memory stays bounded however long the range.
const MAX_CELLS: usize = 250_000;
/// Window edges and tariff changes are rounded down to this for the bucket
/// length, so that an odd start sends one short span, not the whole window, to
/// the detail path.
const BUCKET_GRAIN_NS: i64 = 60_000_000_000;

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a.rem_euclid(b));
    }
    a.abs()
}

/// The bucket length of a window's grouped ledger read: the longest that divides
/// the window length and puts the window's edges and its tariff changes (rounded
/// down to whole minutes) on bucket edges. A bucket is then inside one window and
/// one tariff segment unless an edge falls inside a minute; such a bucket is
/// not usable and goes to the detail path.
pub fn bucket_len(win: Window, len_ns: i64, tariff: &Tariff) -> i64 {
    let mut edges = vec![win.start_ns, win.end_ns];
    if let Ok(segments) = tariff.segments(win) {
        edges.extend(segments.iter().map(|(w, _)| w.start_ns));
    }
    edges.into_iter().fold(len_ns.max(1), |b, e| gcd(b, (e - e.rem_euclid(BUCKET_GRAIN_NS)).rem_euclid(b)))
}

/// One workload's ledger sums over the windows it computes, read a piece at a
/// time: consecutive windows with the same bucket length share one grouped
/// read, as many as [`MAX_CELLS`] allows for the devices seen.
#[derive(Debug)]
pub struct LedgerCache {
    len_ns: i64,
    /// The windows to be computed, in time order.
    windows: Vec<Window>,
    piece: Option<LedgerSums>,
    devices_hint: Option<usize>,
}

impl LedgerCache {
    /// For the windows of `len_ns` that are going to be computed, in time order.
    pub fn new(len_ns: i64, windows: Vec<Window>) -> Self {
        LedgerCache { len_ns, windows, piece: None, devices_hint: None }
    }

    async fn sums_for(
        &mut self,
        store: &dyn Store,
        plan: &WorkloadPlan,
        tariff: &Tariff,
        win: Window,
    ) -> Result<&LedgerSums, StoreError> {
        let b = bucket_len(win, self.len_ns, tariff);
        let hit = self
            .piece
            .as_ref()
            .is_some_and(|p| p.bucket_ns == b && p.start_ns <= win.start_ns && win.end_ns <= p.end_ns);
        if !hit {
            let next = self.windows.partition_point(|w| w.start_ns <= win.start_ns);
            let devices = match self.devices_hint {
                Some(d) => d,
                None => {
                    let end = self.windows.last().map_or(win.end_ns, |w| w.end_ns.max(win.end_ns));
                    let q = SeriesQuery { start_ns: win.start_ns, end_ns: end, ..ledger_query(plan, win) };
                    store.series_keys(&q).await?.len()
                }
            };
            let per_window = (win.len_ns().max(1) / b).max(1) as usize;
            let max_windows = (MAX_CELLS / devices.max(1).saturating_mul(per_window)).max(1);
            let mut end = win.end_ns;
            for (n, w) in self.windows[next..].iter().enumerate() {
                if n + 1 >= max_windows || w.start_ns != end || bucket_len(*w, self.len_ns, tariff) != b {
                    break;
                }
                end = w.end_ns;
            }
            // The piece before is done with: at a site it is tens of MB, not to be
            // held while the next one is read.
            self.piece = None;
            let piece = read_ledger_sums(store, plan, win.start_ns, end, b).await?;
            self.devices_hint = Some(piece.devices.len());
            self.piece = Some(piece);
        }
        Ok(self.piece.as_ref().expect("read above"))
    }
}

/// Computes one workload's window from the store.
///
/// 1. Unless reading raw only, the ledger's usable buckets ([`LedgerCache`], one
///    grouped read for many windows): their sums stand for whole buckets.
/// 2. Devices with other ledger points in the window: those rows, each usable
///    point (inside the window and one tariff segment, written with the workload's
///    `max_gap` and busy-time thresholds) for its interval.
/// 3. Unless reading the ledger only, raw samples of every device whose time is not
///    all covered by 1–2: the devices come from [`Store::series_keys`], their rows
///    from one streaming read per measurement, folded per device through the same
///    [`DeviceAccumulator`] the agent uses and cut at the ledger's spans, so no
///    interval counts twice. A device fully covered by the ledger is not read,
///    unless a meter channel covers it: its own energy (where the meter has none)
///    then comes from its raw samples over the whole window, as with `raw`.
/// 4. The site's meter channels ([`read_meters`]), applied per interval to the
///    devices they cover when the window is finished.
pub async fn compute_window(
    store: &Arc<dyn Store>,
    plan: &WorkloadPlan,
    tariff: &Tariff,
    win: Window,
    market: &MarketHistory,
    from: EnergyFrom,
    ledger: &mut LedgerCache,
) -> Result<WindowResult, StoreError> {
    let store = store.as_ref();
    let mut site = read_site_channels(store, plan, win, from).await?;
    let host_gpus = std::mem::take(&mut site.host_gpus);
    let mut acc = WindowAcc::new(plan, tariff, win, site.targets(), host_gpus, from != EnergyFrom::Ledger);
    acc.set_meter_ledger(&site);
    if from != EnergyFrom::Raw {
        let sums = ledger.sums_for(store, plan, tariff, win).await?;
        let mut detail = Vec::new();
        for ((source, id), dev) in &sums.devices {
            acc.note(source, id, &dev.tags);
            let mut whole = true;
            for (&start, s) in dev.usable.range(win.start_ns..win.end_ns) {
                whole &= acc.add_span(source, id, start, start + sums.bucket_ns, s);
            }
            let partial = dev.partial.iter().any(|&p| p < win.end_ns && p + sums.bucket_ns > win.start_ns);
            if partial || !whole {
                detail.push(dev.filter.clone());
            }
        }
        if !detail.is_empty() {
            // Past a few devices, every ledger row of the window is read; the spans
            // already taken refuse the rows they hold.
            let q = ledger_query(plan, win);
            let cols = LedgerColumns::new(&q.fields, &acc.rules.util_thresholds_pct);
            let mut rows = LedgerRows { acc: &mut acc, cols, series: Vec::new() };
            if detail.len() <= NAMED_DEVICES {
                store.read_each_any(&q, &detail, &mut rows).await?;
            } else {
                store.read_each(&q, &mut rows).await?;
            }
        }
    }
    acc.ledger_done();
    if from != EnergyFrom::Ledger {
        for m in raw_measurements(plan) {
            let mut q = raw_query(plan, m, win);
            let mut wanted = WantedDevices::new();
            let mut hull: Option<(i64, i64)> = None;
            for tags in store.series_keys(&q).await? {
                let id = series_device_id(m, &tags);
                if let Some((a, b)) = acc.uncovered(m, &id) {
                    hull = Some(hull.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                    wanted.entry(id).or_insert_with(|| (identity_filter(m, &tags), 0)).1 += 1;
                }
            }
            // Only the uncovered time (± max_gap, so its edge intervals are seen)
            // is read: the current window's last minutes, an odd window start.
            if let Some((a, b)) = hull {
                q.start_ns = q.start_ns.max(a - plan.max_gap_ns);
                q.end_ns = q.end_ns.min(b + plan.max_gap_ns);
            }
            read_devices(store, &q, m, wanted, WindowRaw { acc: &mut acc, measurement: m }).await?;
        }
    }
    acc.meters = site_meters(store, plan, &acc, site, from).await?;
    let mut out = acc.finish(&market.at(win.end_ns));
    // The ids were needed only for the no-power count; a long range holds many windows.
    out.powered = BTreeSet::new();
    Ok(out)
}

/// The site's meter channels over a window, before its devices are read: every
/// channel (from its raw series and its ledger points), its ledger rows and, for a
/// GPU workload, the GPUs (of every workload) of the hosts a channel covers, which
/// weigh a host meter's split (read raw: their board energy per interval).
#[derive(Debug, Default)]
struct SiteChannels {
    /// Channel id → its tags.
    tags: BTreeMap<String, BTreeMap<String, String>>,
    /// Channel id → its `energy_ledger` rows in the window.
    ledger: BTreeMap<String, Vec<LedgerRow>>,
    host_gpus: Vec<Series>,
}

impl SiteChannels {
    /// The device-level targets (miners, GPU hosts) the channels cover.
    fn targets(&self) -> Vec<Target> {
        let mut t: Vec<Target> =
            self.tags.values().filter_map(Target::of_channel).filter(|t| !matches!(t, Target::Group(_))).collect();
        t.sort();
        t.dedup();
        t
    }
}

/// The ledger points of the site's meter channels in a window.
fn meter_ledger_query(plan: &WorkloadPlan, win: Window) -> SeriesQuery {
    SeriesQuery {
        measurement: el::MEASUREMENT.to_string(),
        fields: ledger_fields(&[]),
        tag_filters: vec![
            (schema::TAG_SITE.to_string(), plan.site.clone()),
            (el::TAG_SOURCE.to_string(), meter::MEASUREMENT.to_string()),
        ],
        start_ns: win.start_ns,
        end_ns: win.end_ns,
    }
}

async fn read_site_channels(
    store: &dyn Store,
    plan: &WorkloadPlan,
    win: Window,
    from: EnergyFrom,
) -> Result<SiteChannels, StoreError> {
    let mut out = SiteChannels::default();
    let Some(q) = meter_query(plan, win) else { return Ok(out) };
    if from != EnergyFrom::Raw {
        let lq = meter_ledger_query(plan, win);
        let cols = LedgerColumns::new(&lq.fields, &[]);
        for s in store.read(&lq).await? {
            let id = series_device_id(meter::MEASUREMENT, &s.tags);
            let rows = out.ledger.entry(id.clone()).or_default();
            rows.extend(s.times_ns.iter().zip(&s.values).filter_map(|(&t, row)| cols.row(t, row)));
            out.tags.entry(id).or_insert(s.tags);
        }
    }
    if from != EnergyFrom::Ledger {
        for tags in store.series_keys(&q).await? {
            out.tags.entry(series_device_id(meter::MEASUREMENT, &tags)).or_insert(tags);
        }
    }
    if plan.revenue_model.info().inputs.energy_measurement != gpu::MEASUREMENT {
        return Ok(out);
    }
    let hosts: BTreeSet<String> =
        out.targets().into_iter().filter_map(|t| if let Target::GpuHost(h) = t { Some(h) } else { None }).collect();
    for host in hosts {
        let hq = SeriesQuery {
            measurement: gpu::MEASUREMENT.to_string(),
            fields: raw_fields(gpu::MEASUREMENT).iter().map(|f| f.to_string()).collect(),
            tag_filters: vec![(schema::TAG_SITE.to_string(), plan.site.clone()), (schema::TAG_HOST.to_string(), host)],
            start_ns: q.start_ns,
            end_ns: q.end_ns,
        };
        out.host_gpus.extend(store.read(&hq).await?);
    }
    Ok(out)
}

/// The first and last instant of `win` that `spans` (sorted, not overlapping)
/// leave uncovered; `None` when they cover it all.
fn uncovered_hull(spans: &[(i64, i64)], win: Window) -> Option<(i64, i64)> {
    let mut a = win.start_ns;
    for sp in spans {
        if sp.0 > a {
            break;
        }
        a = a.max(sp.1);
    }
    let mut b = win.end_ns;
    for sp in spans.iter().rev() {
        if sp.1 < b {
            break;
        }
        b = b.min(sp.0);
    }
    (a < b).then_some((a, b))
}

/// Whether `spans` (sorted by start) hold all of `[a, b)`.
fn holds(spans: &[(i64, i64)], a: i64, b: i64) -> bool {
    let mut reach = a;
    for &(x, y) in spans {
        if x > reach {
            break;
        }
        reach = reach.max(y);
        if reach >= b {
            return true;
        }
    }
    false
}

/// The site's meter channels as energy spans, once the window's devices are
/// read: each channel's ledger point where it stands for its interval
/// ([`WindowAcc::meter_interval_stands`]), its raw samples everywhere else (read
/// only over the time some channel's ledger leaves uncovered, ± `max_gap`; not
/// with `--energy-from ledger`), cut at the ledger's intervals so that no interval
/// counts twice.
async fn site_meters(
    store: &dyn Store,
    plan: &WorkloadPlan,
    acc: &WindowAcc<'_>,
    site: SiteChannels,
    from: EnergyFrom,
) -> Result<metered::ChunkMeters, StoreError> {
    let win = acc.win;
    let ledger = acc.standing_meter_ledger();
    let mut raw = Vec::new();
    if from != EnergyFrom::Ledger {
        let mut hull: Option<(i64, i64)> = None;
        let mut wanted = BTreeSet::new();
        for id in site.tags.keys() {
            let spans: Vec<(i64, i64)> =
                ledger.get(id).map(|(_, s)| s.iter().map(|s| (s.a, s.b)).collect()).unwrap_or_default();
            if let Some((a, b)) = uncovered_hull(&spans, win) {
                hull = Some(hull.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                wanted.insert(id.clone());
            }
        }
        if let (Some((a, b)), Some(mut q)) = (hull, meter_query(plan, win)) {
            q.start_ns = q.start_ns.max(a - plan.max_gap_ns);
            q.end_ns = q.end_ns.min(b + plan.max_gap_ns);
            let mut collect = CollectSeries { fields: q.fields.clone(), wanted, out: Vec::new() };
            if collect.wanted.len() <= NAMED_DEVICES {
                let filters: Vec<Vec<(String, String)>> = collect
                    .wanted
                    .iter()
                    .filter_map(|id| site.tags.get(id))
                    .map(|tags| identity_filter(meter::MEASUREMENT, tags))
                    .collect();
                store.read_each_any(&q, &filters, &mut collect).await?;
            } else {
                store.read_each(&q, &mut collect).await?;
            }
            raw = collect.out.into_iter().flatten().collect();
        }
    }
    Ok(metered::site_meters(ledger, &raw, &acc.rules, &acc.edges, win))
}

/// Collects a streaming read's series of the `wanted` devices (meter channels:
/// few rows each).
struct CollectSeries {
    fields: Vec<String>,
    wanted: BTreeSet<String>,
    out: Vec<Option<Series>>,
}

impl RowVisitor for CollectSeries {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.out.len() <= series {
            self.out.resize(series + 1, None);
        }
        if self.wanted.contains(&series_device_id(meter::MEASUREMENT, tags)) {
            self.out[series] = Some(Series { tags: tags.clone(), fields: self.fields.clone(), ..Default::default() });
        }
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        if let Some(Some(s)) = self.out.get_mut(series) {
            s.times_ns.push(time_ns);
            s.values.push(values.to_vec());
        }
    }
}

/// The devices to read raw: id -> (the tags that select its series, how many
/// series it has).
pub type WantedDevices = BTreeMap<String, (Vec<(String, String)>, usize)>;

/// Streams the raw rows of the `wanted` devices of `q` into `target`, naming each
/// device up to [`NAMED_DEVICES`], else reading all of `q` and dropping the others
/// as they arrive.
pub async fn read_devices<T: RawTarget + Send>(
    store: &dyn Store,
    q: &SeriesQuery,
    measurement: &'static str,
    wanted: WantedDevices,
    target: T,
) -> Result<T, StoreError> {
    if wanted.is_empty() {
        return Ok(target);
    }
    let filters: Vec<Vec<(String, String)>> =
        if wanted.len() <= NAMED_DEVICES { wanted.values().map(|w| w.0.clone()).collect() } else { Vec::new() };
    let several = wanted.into_iter().map(|(id, w)| (id, w.1 > 1)).collect();
    let mut fold = RawFold::new(target, measurement, &q.fields, several);
    if filters.is_empty() {
        store.read_each(q, &mut fold).await?;
    } else {
        store.read_each_any(q, &filters, &mut fold).await?;
    }
    Ok(fold.finish())
}

/// Series already read for one window: the ledger's, each raw measurement's, the
/// site's meter channels and the GPUs (of every workload) of hosts a meter covers.
#[derive(Debug, Default)]
pub struct ChunkData {
    pub ledger: Vec<Series>,
    pub raw: Vec<(&'static str, Vec<Series>)>,
    pub meters: Vec<Series>,
    pub host_gpus: Vec<Series>,
}

/// A window from series already read (the device drill-down reads one device's
/// series once for many buckets), through the same accumulation as
/// [`compute_window`]: each usable ledger point for its interval, raw samples for
/// every other time. The energy devices seen are added to `seen`.
pub fn compute_chunk(
    plan: &WorkloadPlan,
    tariff: &Tariff,
    win: Window,
    data: ChunkData,
    market_at: &MarketAt,
    seen: &mut BTreeSet<String>,
) -> WindowResult {
    let energy_m = plan.revenue_model.info().inputs.energy_measurement;
    let own_from_raw = data.raw.iter().any(|(m, _)| *m == energy_m);
    let mut acc = WindowAcc::new(plan, tariff, win, Vec::new(), data.host_gpus, own_from_raw);
    acc.meters = metered::chunk_meters(&data.meters, &acc.rules, &Cuts { grid_ns: 0, list: acc.edges.clone() }, win);
    acc.targets = acc.meters.devices.keys().cloned().collect();
    for (i, s) in data.ledger.iter().enumerate() {
        let cols = LedgerColumns::new(&s.fields, &acc.rules.util_thresholds_pct);
        let mut rows = LedgerRows { acc: &mut acc, cols, series: Vec::new() };
        rows.series(i, &s.tags);
        for (&t, row) in s.times_ns.iter().zip(&s.values) {
            rows.row(i, t, row);
        }
    }
    acc.ledger_done();
    for (m, series) in &data.raw {
        let mut wanted: BTreeMap<String, bool> = BTreeMap::new();
        for s in series {
            let id = series_device_id(m, &s.tags);
            if acc.uncovered(m, &id).is_some() {
                wanted.entry(id).and_modify(|several| *several = true).or_insert(false);
            }
        }
        let fields = series.first().map(|s| s.fields.clone()).unwrap_or_default();
        let mut fold = RawFold::new(WindowRaw { acc: &mut acc, measurement: m }, m, &fields, wanted);
        for (i, s) in series.iter().enumerate() {
            fold.series(i, &s.tags);
            for (&t, row) in s.times_ns.iter().zip(&s.values) {
                fold.row(i, t, row);
            }
        }
        fold.finish();
    }
    for ((m, id), dev) in &acc.devices {
        if *m == acc.energy_m && dev.sums.seen() {
            seen.insert(id.clone());
        }
    }
    acc.finish(market_at)
}

/// One device in one window: its sums from both paths, and the spans its ledger
/// points cover (sorted), which the raw path leaves out. An energy device a meter
/// channel covers keeps its own energy as spans until the meter is applied.
#[derive(Debug, Default)]
struct WindowDevice {
    sums: Sums,
    spans: Vec<(i64, i64)>,
    noted: bool,
    basis: Option<Basis>,
    target: Option<Target>,
    group: Option<String>,
    own_j: Vec<Span>,
}

/// A device's own basis: the ledger's `basis` tag, else what its raw tags say;
/// a miner with power but no `power_source` (older agents) reported it.
fn own_basis(measurement: &str, tags: &BTreeMap<String, String>) -> Option<Basis> {
    tags.get(el::TAG_BASIS)
        .and_then(|b| Basis::parse(b))
        .or_else(|| Basis::of_device(measurement, tags))
        .or_else(|| (measurement == asic::MEASUREMENT).then_some(Basis::Reported))
}

impl WindowDevice {
    fn in_ledger(&self, t: i64) -> bool {
        let i = self.spans.partition_point(|s| s.0 <= t);
        i > 0 && t < self.spans[i - 1].1
    }
}

/// Where a window's energy came from.
#[derive(Debug, Default, Clone, Copy)]
struct Provenance {
    ledger_energy_j: f64,
    ledger_covered_ns: i64,
}

fn segment_of(segments: &[(Window, f64)], t: i64) -> usize {
    segments.partition_point(|(w, _)| w.end_ns <= t).min(segments.len() - 1)
}

/// A window being summed: per device, per tariff segment, and where it came from.
struct WindowAcc<'p> {
    plan: &'p WorkloadPlan,
    win: Window,
    rules: Rules,
    energy_m: &'static str,
    revenue_m: &'static str,
    segments: Vec<(Window, f64)>,
    /// Segment and window edges: where raw intervals are cut.
    edges: Vec<i64>,
    /// measurement -> device id -> position in `devices`.
    index: HashMap<&'static str, HashMap<String, usize>>,
    devices: Vec<((&'static str, String), WindowDevice)>,
    seg_energy_j: Vec<f64>,
    prov: Provenance,
    warnings: Vec<String>,
    mismatched_gap: Option<i64>,
    /// The device-level targets of the site's meter channels (known before the
    /// devices are read), the channels' spans (set once they are), and the GPUs of
    /// the hosts they cover.
    targets: Vec<Target>,
    meters: metered::ChunkMeters,
    /// Per channel id, its meter ledger points that can stand for their interval,
    /// and per miner or GPU host the time all its channels have one
    /// ([`Self::set_meter_ledger`]).
    meter_ledger: metered::LedgerChannels,
    meter_standing: BTreeMap<Target, Vec<(i64, i64)>>,
    host_gpus: Vec<Series>,
    /// Whether a metered device's own energy comes from its raw samples (read
    /// for the whole window) rather than its ledger intervals.
    own_from_raw: bool,
    by_basis: BasisEnergy,
}

impl<'p> WindowAcc<'p> {
    fn new(
        plan: &'p WorkloadPlan,
        tariff: &Tariff,
        win: Window,
        targets: Vec<Target>,
        host_gpus: Vec<Series>,
        own_from_raw: bool,
    ) -> Self {
        let mut warnings = Vec::new();
        let mut segments = tariff.segments(win).unwrap_or_else(|e| {
            warnings.push(format!("site {}: {e}", plan.site));
            vec![(win, 0.0)]
        });
        if segments.is_empty() {
            segments.push((win, 0.0));
        }
        let mut edges: Vec<i64> = segments.iter().map(|(w, _)| w.start_ns).collect();
        edges.extend([win.start_ns, win.end_ns]);
        edges.sort_unstable();
        edges.dedup();
        let inputs = &plan.revenue_model.info().inputs;
        let rules = plan.rules();
        WindowAcc {
            targets,
            meters: metered::ChunkMeters::default(),
            meter_ledger: BTreeMap::new(),
            meter_standing: BTreeMap::new(),
            host_gpus,
            own_from_raw,
            by_basis: BasisEnergy::default(),
            plan,
            win,
            rules,
            energy_m: inputs.energy_measurement,
            revenue_m: inputs.revenue_measurement,
            seg_energy_j: vec![0.0; segments.len()],
            segments,
            edges,
            index: HashMap::new(),
            devices: Vec::new(),
            prov: Provenance::default(),
            warnings,
            mismatched_gap: None,
        }
    }

    /// The measurement a ledger `source` tag names, when the workload reads it.
    fn source(&self, source: &str) -> Option<&'static str> {
        [self.energy_m, self.revenue_m].into_iter().find(|m| *m == source)
    }

    fn device(&mut self, m: &'static str, id: &str) -> usize {
        if let Some(&i) = self.index.get(m).and_then(|ids| ids.get(id)) {
            return i;
        }
        let i = self.devices.len();
        self.devices.push(((m, id.to_string()), WindowDevice::default()));
        self.index.entry(m).or_default().insert(id.to_string(), i);
        i
    }

    /// The device's slot; from its first series' tags, an energy device's own
    /// basis, the meter target covering it and its group.
    fn note(&mut self, m: &'static str, id: &str, tags: &BTreeMap<String, String>) -> usize {
        let i = self.device(m, id);
        let dev = &mut self.devices[i].1;
        if !dev.noted && m == self.energy_m {
            dev.noted = true;
            dev.basis = own_basis(m, tags);
            dev.target = Target::of_device(m, tags, self.targets.iter());
            dev.group = tags.get(TAG_GROUP).cloned();
        }
        i
    }

    /// The time of the window the ledger does not cover for this device, from its
    /// first uncovered instant to its last; `None` when the ledger covers it all.
    fn uncovered(&self, m: &'static str, id: &str) -> Option<(i64, i64)> {
        let dev = self.index.get(m).and_then(|ids| ids.get(id)).map(|&i| &self.devices[i].1);
        // Spans are sorted and do not overlap.
        uncovered_hull(dev.map_or(&[][..], |d| d.spans.as_slice()), self.win)
    }

    /// Whether the split of a GPU host's meter involves GPUs of other workloads
    /// (their board energy weighs it).
    fn shared_host(&self, t: &Target) -> bool {
        let Target::GpuHost(h) = t else { return false };
        self.host_gpus
            .iter()
            .filter(|s| s.tags.get(schema::TAG_HOST) == Some(h))
            .any(|s| s.tags.get(schema::TAG_WORKLOAD) != Some(&self.plan.name))
    }

    /// Takes the site's meter ledger points that can stand for their interval: each
    /// covers all of it, was written with the workload's `max_gap`, and lies inside
    /// the window and one tariff segment; and notes, per miner or GPU host, the
    /// time every channel covering it has such a point ([`Self::add_span`] takes a
    /// metered device's own ledger intervals only there).
    fn set_meter_ledger(&mut self, site: &SiteChannels) {
        for (id, rows) in &site.ledger {
            let Some(tags) = site.tags.get(id) else { continue };
            let mut spans: Vec<Span> = rows
                .iter()
                .filter(|r| {
                    let (a, b) = (r.start_ns, r.start_ns + r.expected_ns);
                    r.expected_ns > 0
                        && r.sums.covered_ns == r.expected_ns
                        && r.max_gap_ns == Some(self.rules.max_gap_ns)
                        && a >= self.win.start_ns
                        && b <= self.win.end_ns
                        && b <= self.segments[segment_of(&self.segments, a)].0.end_ns
                })
                .map(|r| Span {
                    a: r.start_ns,
                    b: r.start_ns + r.expected_ns,
                    joules: r.sums.energy_j,
                    covered_ns: r.sums.covered_ns,
                    basis: Basis::Meter,
                })
                .collect();
            normalise(&mut spans);
            if !spans.is_empty() {
                self.meter_ledger.insert(id.clone(), (tags.clone(), spans));
            }
        }
        let mut channels: BTreeMap<Target, Vec<Vec<(i64, i64)>>> = BTreeMap::new();
        for (id, tags) in &site.tags {
            if let Some(t) = Target::of_channel(tags).filter(|t| !matches!(t, Target::Group(_))) {
                let spans = self.meter_ledger.get(id).map(|(_, s)| s.iter().map(|s| (s.a, s.b)).collect());
                channels.entry(t).or_default().push(spans.unwrap_or_default());
            }
        }
        for (t, chans) in channels {
            if self.shared_host(&t) {
                continue;
            }
            let both: Vec<(i64, i64)> =
                chans[0].iter().copied().filter(|&(a, b)| chans.iter().all(|c| holds(c, a, b))).collect();
            self.meter_standing.insert(t, both);
        }
    }

    /// The meter ledger points that stand for their interval once the window's
    /// devices are read: where raw samples are read, a point's energy (taken as
    /// spread evenly over its interval) must give what the channel's raw samples
    /// give, which holds when every device of the workload under the channel has
    /// energy of its own throughout the interval and the split is the workload's
    /// alone (not a GPU host shared with other workloads); elsewhere the channel's
    /// raw samples count. Reading the ledger only, every point stands (and counts
    /// for the covered share of each device's interval, see [`super::basis`]).
    fn standing_meter_ledger(&self) -> metered::LedgerChannels {
        if !self.own_from_raw {
            return self.meter_ledger.clone();
        }
        // Per target, each of the workload's devices' own energy time, merged.
        let mut own: BTreeMap<&Target, Vec<Vec<(i64, i64)>>> = BTreeMap::new();
        for ((m, _), d) in &self.devices {
            let Some(t) = d.target.as_ref().filter(|_| *m == self.energy_m) else { continue };
            let mut cov: Vec<(i64, i64)> =
                d.own_j.iter().filter(|s| s.covered_ns == s.b - s.a).map(|s| (s.a, s.b)).collect();
            cov.sort_unstable();
            own.entry(t).or_default().push(cov);
        }
        let mut out = metered::LedgerChannels::new();
        for (id, (tags, spans)) in &self.meter_ledger {
            let target = Target::of_channel(tags);
            let keep: Vec<Span> = spans
                .iter()
                .filter(|s| match &target {
                    None | Some(Target::Group(_)) => true,
                    Some(t) if self.shared_host(t) => false,
                    Some(t) => own.get(t).is_none_or(|devs| devs.iter().all(|cov| holds(cov, s.a, s.b))),
                })
                .copied()
                .collect();
            if !keep.is_empty() {
                out.insert(id.clone(), (tags.clone(), keep));
            }
        }
        out
    }

    /// Takes a device's ledger sums for `[start, end)`, unless the span leaves the
    /// window or a tariff segment or overlaps what the device already has.
    fn add_span(&mut self, m: &'static str, id: &str, start: i64, end: i64, sums: &Sums) -> bool {
        if end <= start || start < self.win.start_ns || end > self.win.end_ns {
            return false;
        }
        let k = segment_of(&self.segments, start);
        if end > self.segments[k].0.end_ns {
            return false;
        }
        let i = self.device(m, id);
        let dev = &mut self.devices[i].1;
        let at = dev.spans.partition_point(|sp| sp.0 < start);
        let overlaps = dev.in_ledger(start) || dev.spans.get(at).is_some_and(|sp| sp.0 < end);
        if overlaps {
            return false; // the same interval from another series of the device
        }
        // A metered device's own ledger interval, where raw samples are read, is
        // taken only when it is fully covered and every channel covering the device
        // has a ledger point standing for the same time: the meter then gives the
        // same energy as from raw samples. Elsewhere the device's raw samples are
        // read, exact where the meter's energy is not.
        if let (Some(t), true, true) = (&dev.target, self.own_from_raw, m == self.energy_m) {
            let standing = self.meter_standing.get(t).is_some_and(|s| holds(s, start, end));
            if !standing || sums.covered_ns != end - start {
                return false;
            }
        }
        dev.spans.insert(at, (start, end));
        dev.sums.absorb(sums);
        if m == self.energy_m {
            // The interval came from the ledger (revenue inputs, and the device's
            // own energy where no meter covers it).
            self.prov.ledger_covered_ns += sums.covered_ns;
            match (&dev.target, dev.basis) {
                // A metered device's own energy, where the meter does not count.
                (Some(_), Some(basis)) => {
                    let (joules, covered_ns) = (sums.energy_j, sums.covered_ns);
                    dev.own_j.push(Span { a: start, b: end, joules, covered_ns, basis });
                }
                (Some(_), _) => {}
                (None, basis) => {
                    self.seg_energy_j[k] += sums.energy_j;
                    self.prov.ledger_energy_j += sums.energy_j;
                    if let Some(b) = basis {
                        self.by_basis.add(b, sums.energy_j);
                    }
                }
            }
        }
        true
    }

    /// One ledger point read in detail: taken for its interval when usable.
    fn add_ledger_row(&mut self, m: &'static str, id: &str, r: &LedgerRow) {
        if r.expected_ns <= 0 || !r.busy_known {
            return;
        }
        if r.max_gap_ns != Some(self.rules.max_gap_ns) {
            self.mismatched_gap = r.max_gap_ns;
            return;
        }
        self.add_span(m, id, r.start_ns, r.start_ns + r.expected_ns, &r.sums);
    }

    /// After the ledger's part: says when points were left out for their `max_gap`.
    fn ledger_done(&mut self) {
        if let Some(g) = self.mismatched_gap.take() {
            self.warnings.push(format!(
                "workload {}: ledger points written with max_gap {}s, the workload uses {}s; those intervals come from raw samples (set [ledger] max_gap on the agents to match)",
                self.plan.name,
                g as f64 / 1e9,
                self.rules.max_gap_ns as f64 / 1e9
            ));
        }
    }

    /// Folds one raw sample of device `i` (its accumulator and cuts beside it).
    fn fold(&mut self, i: usize, acc: &mut DeviceAccumulator, cuts: &Cuts, sample: &Sample) {
        let WindowAcc { win, rules, segments, devices, seg_energy_j, energy_m, by_basis, .. } = self;
        let ((m, _), dev) = &mut devices[i];
        let is_energy = *m == *energy_m;
        acc.push(sample, rules, cuts, |a, b, part| {
            let inside =
                if a == b { a >= win.start_ns && a < win.end_ns } else { a >= win.start_ns && b <= win.end_ns };
            if !inside {
                return;
            }
            if dev.in_ledger(a) {
                return;
            }
            if let (Part::Energy { joules, .. }, true, Some(_)) = (part, is_energy, &dev.target) {
                if let Some(basis) = dev.basis {
                    dev.own_j.push(Span { a, b, joules, covered_ns: b - a, basis });
                }
                dev.sums.add_part(a, b, part);
                return;
            }
            if let (Part::Energy { joules, .. }, true) = (part, is_energy) {
                seg_energy_j[segment_of(segments, a)] += joules;
                if let Some(basis) = dev.basis {
                    by_basis.add(basis, joules);
                }
            }
            dev.sums.add_part(a, b, part);
        });
    }

    /// Applies [`super::basis::resolve`] to every metered target of the
    /// workload's energy devices: the meter's energy where it has some, their own
    /// elsewhere, setting the devices' energy and covered time.
    fn apply_meters(&mut self) {
        let mut by_target: BTreeMap<Target, Vec<usize>> = BTreeMap::new();
        for (i, ((m, _), dev)) in self.devices.iter().enumerate() {
            if let (true, Some(t)) = (*m == self.energy_m, &dev.target) {
                by_target.entry(t.clone()).or_default().push(i);
            }
        }
        if by_target.is_empty() {
            return;
        }
        let cuts = Cuts { grid_ns: 0, list: self.edges.clone() };
        let boards = metered::energy_spans(gpu::MEASUREMENT, &self.host_gpus, &self.rules, &cuts, self.win, |_| {
            Some(Basis::Board)
        });
        for (target, slots) in by_target {
            let Some(channels) = self.meters.devices.get(&target) else { continue };
            let mine: Vec<(String, Vec<Span>)> = slots
                .iter()
                .map(|&i| {
                    let ((_, id), dev) = &mut self.devices[i];
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
            let resolved = super::basis::resolve(channels, &members, self.win.start_ns, self.win.end_ns);
            for (&i, r) in slots.iter().zip(resolved) {
                let Some(r) = r else { continue };
                let dev = &mut self.devices[i].1;
                dev.sums.energy_j = r.pieces.iter().map(|p| p.joules).sum();
                dev.sums.covered_ns = r.covered_ns;
                dev.sums.counter_ns = dev.sums.counter_ns.min(r.covered_ns);
                for p in &r.pieces {
                    self.seg_energy_j[segment_of(&self.segments, p.a)] += p.joules;
                    self.by_basis.add(p.basis, p.joules);
                }
            }
        }
    }

    /// Energy, coverage and cost from the energy devices (a meter's where one
    /// covers them), revenue from the revenue devices.
    fn finish(mut self, market_at: &MarketAt) -> WindowResult {
        self.apply_meters();
        let WindowAcc {
            plan,
            win,
            energy_m,
            revenue_m,
            segments,
            devices,
            seg_energy_j,
            prov,
            mut warnings,
            meters,
            by_basis,
            ..
        } = self;
        let mut covered_ns = 0;
        let mut seen = 0;
        let mut revenue_devices = Vec::new();
        let mut powered = BTreeSet::new();
        let mut unpowered_work_th = 0.0;
        let mut group_energy_j: BTreeMap<String, f64> = BTreeMap::new();
        for ((m, id), dev) in devices {
            if m == energy_m {
                covered_ns += dev.sums.covered_ns;
                seen += usize::from(dev.sums.seen());
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
        revenue_devices.sort_by(|a, b| a.id.cmp(&b.id));
        let energy_j: f64 = seg_energy_j.iter().sum();
        let energy_cost_usd: f64 = segments
            .iter()
            .zip(&seg_energy_j)
            .map(|((_, usd_per_kwh), &e)| facility_energy_j(e, plan.pue) / schema::J_PER_KWH * usd_per_kwh)
            .sum();
        if plan.revenue_model.info().inputs.market {
            if let Some(w) = &market_at.warning {
                warnings.push(w.clone());
            }
        }
        let input = RevenueInput { devices: &revenue_devices, window: win, market: market_at.market.as_ref() };
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
            devices: seen,
            work_th: revenue.work_th,
            tokens: revenue.tokens,
            ledger_energy_j: prov.ledger_energy_j,
            ledger_covered_ns: prov.ledger_covered_ns,
            basis: by_basis,
            no_power_devices: seen.saturating_sub(powered.len()),
            powered,
            unpowered_work_th,
            group_energy_j,
            group_meter: meters.groups,
            facility_basis: FacilityBasis::Pue,
            warnings,
        }
    }
}

/// Hands ledger rows read in detail to a [`WindowAcc`].
struct LedgerRows<'a, 'p> {
    acc: &'a mut WindowAcc<'p>,
    cols: LedgerColumns,
    /// Series number -> its source measurement and device.
    series: Vec<Option<(&'static str, String)>>,
}

impl RowVisitor for LedgerRows<'_, '_> {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.series.len() <= series {
            self.series.resize(series + 1, None);
        }
        self.series[series] =
            tags.get(el::TAG_SOURCE).and_then(|s| self.acc.source(s)).map(|m| (m, series_device_id(m, tags)));
        if let Some(Some((m, id))) = self.series.get(series) {
            let (m, id) = (*m, id.clone());
            self.acc.note(m, &id, tags);
        }
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        let Some(Some((m, id))) = self.series.get(series) else { return };
        if let Some(r) = self.cols.row(time_ns, values) {
            let (m, id) = (*m, id.clone());
            self.acc.add_ledger_row(m, &id, &r);
        }
    }
}

/// Where a streaming raw read's samples go, device by device.
pub trait RawTarget {
    /// Whether the rows of a series are wanted at all (beyond its device).
    fn accepts(&self, _tags: &BTreeMap<String, String>) -> bool {
        true
    }
    /// The slot of a device, opened on its first series, and where its
    /// intervals are cut.
    fn open(&mut self, id: &str, tags: &BTreeMap<String, String>) -> (usize, Cuts);
    /// One sample of the device in `slot`, in time order, with its accumulator.
    fn sample(&mut self, slot: usize, acc: &mut DeviceAccumulator, cuts: &Cuts, sample: &Sample);
}

/// One device's raw fold: its accumulator, where its intervals are cut, and its
/// samples held back when its rows come in several series that a store may hand
/// over one after the other (they are sorted and folded at the end).
struct RawDevice {
    slot: usize,
    acc: DeviceAccumulator,
    cuts: Cuts,
    held: Option<Vec<Sample>>,
}

/// Folds a streaming raw read into a [`RawTarget`], device by device, keeping
/// only the devices asked for: no row is kept unless its device's series are
/// several (then that device's samples are, until the read ends).
pub struct RawFold<T> {
    pub target: T,
    measurement: &'static str,
    cols: Columns,
    /// Device id -> whether it has several series.
    wanted: BTreeMap<String, bool>,
    by_id: HashMap<String, usize>,
    series: Vec<Option<usize>>,
    raw: Vec<RawDevice>,
}

impl<T: RawTarget> RawFold<T> {
    /// For rows of `measurement` read with `fields`; `wanted` maps each device id
    /// to read to whether its rows come in several series.
    pub fn new(target: T, measurement: &'static str, fields: &[String], wanted: BTreeMap<String, bool>) -> Self {
        RawFold {
            target,
            measurement,
            cols: Columns::new(measurement, fields),
            wanted,
            by_id: HashMap::new(),
            series: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// Folds the held samples; hands the target back.
    pub fn finish(mut self) -> T {
        for r in &mut self.raw {
            if let Some(mut held) = r.held.take() {
                held.sort_by_key(|s| s.time_ns);
                for s in &held {
                    self.target.sample(r.slot, &mut r.acc, &r.cuts, s);
                }
            }
        }
        self.target
    }
}

impl<T: RawTarget + Send> RowVisitor for RawFold<T> {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.series.len() <= series {
            self.series.resize(series + 1, None);
        }
        let id = series_device_id(self.measurement, tags);
        let Some(&several) = self.wanted.get(&id) else { return };
        if !self.target.accepts(tags) {
            return;
        }
        let k = match self.by_id.get(&id) {
            Some(&k) => k,
            None => {
                let (slot, cuts) = self.target.open(&id, tags);
                self.raw.push(RawDevice {
                    slot,
                    acc: DeviceAccumulator::default(),
                    cuts,
                    held: several.then(Vec::new),
                });
                self.by_id.insert(id, self.raw.len() - 1);
                self.raw.len() - 1
            }
        };
        self.series[series] = Some(k);
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        let Some(&Some(k)) = self.series.get(series) else { return };
        let Some(sample) = self.cols.row_sample(time_ns, values) else { return };
        let r = &mut self.raw[k];
        match &mut r.held {
            Some(held) => held.push(sample),
            None => self.target.sample(r.slot, &mut r.acc, &r.cuts, &sample),
        }
    }
}

/// A window's raw samples of one measurement, cut at the ledger's spans.
struct WindowRaw<'a, 'p> {
    acc: &'a mut WindowAcc<'p>,
    measurement: &'static str,
}

impl RawTarget for WindowRaw<'_, '_> {
    fn open(&mut self, id: &str, tags: &BTreeMap<String, String>) -> (usize, Cuts) {
        let slot = self.acc.note(self.measurement, id, tags);
        let mut list = self.acc.edges.clone();
        list.extend(self.acc.devices[slot].1.spans.iter().flat_map(|&(a, b)| [a, b]));
        list.sort_unstable();
        list.dedup();
        (slot, Cuts { grid_ns: 0, list })
    }

    fn sample(&mut self, slot: usize, acc: &mut DeviceAccumulator, cuts: &Cuts, sample: &Sample) {
        self.acc.fold(slot, acc, cuts, sample);
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

/// The values the windows of `plan` inside `[from_ns, to_ns)` could read: raw
/// samples of its measurements and its site's meter points from `from_ns −
/// max_gap` (an interval crossing `from_ns` starts there), and its ledger points,
/// up to `to_ns`. Samples at or after `to_ns` add nothing to a window that ends by
/// then (an interval starts at a sample), so zero means each of those windows
/// computes empty, whatever lies after `to_ns`. One count per measurement for the
/// whole span: cheap where it is empty, which is what it is asked for (the hours
/// before a workload's first data, see `Aggregator::compute`).
pub async fn values_in(store: &dyn Store, plan: &WorkloadPlan, from_ns: i64, to_ns: i64) -> Result<u64, StoreError> {
    let span = Window { start_ns: from_ns, end_ns: to_ns };
    let raw_from = |mut q: SeriesQuery| {
        q.end_ns = to_ns;
        q
    };
    let mut n = 0;
    for m in raw_measurements(plan) {
        n += store.count(&raw_from(raw_query(plan, m, span))).await?;
    }
    if let Some(q) = meter_query(plan, span) {
        n += store.count(&raw_from(q)).await?;
    }
    Ok(n + store.count(&ledger_query(plan, span)).await?)
}

/// The window a computation from a store without any of the values it reads gives
/// (what [`compute_window`] returns there): no devices, no energy, the tariff's and
/// the market's warnings.
pub fn empty_window(plan: &WorkloadPlan, tariff: &Tariff, win: Window, market: &MarketHistory) -> WindowResult {
    let mut out = WindowAcc::new(plan, tariff, win, Vec::new(), Vec::new(), true).finish(&market.at(win.end_ns));
    out.powered = BTreeSet::new();
    out
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
        let mut seen = BTreeSet::new();
        let w = compute_chunk(&plan, &plan.tariff, Window::new(0, H), data, &MarketHistory::none().at(H), &mut seen);
        assert_eq!(seen.len(), 1);
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
