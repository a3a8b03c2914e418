//! How a window decides between the ledger's grouped sums, ledger rows and raw
//! samples, on both stores: a device fully covered by the ledger (its raw samples
//! are not read), a device with ledger points for only part of the window, a
//! raw-only device next to them, and a bucket that straddles a price change.
//! Whatever the path, `auto` must give what `raw` gives. Whole hours come from
//! the agents' hourly roll-up where they wrote it. A store wrapper counts what
//! each read hands over; the numbers come from the real stores.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wattledger::aggregate::compare::WindowResult;
use wattledger::aggregate::market::MarketHistory;
use wattledger::aggregate::tariff::Tariff;
use wattledger::aggregate::windows::{aligned_windows, compute_window, LedgerCache, WorkloadPlan};
use wattledger::ledger::accumulator::sums_over;
use wattledger::ledger::point::{hourly_point, ledger_point};
use wattledger::ledger::{EnergyFrom, Sample, Sums};
use wattledger::model::{FieldValue, Point};
use wattledger::revenue::ai_contract::AiContract;
use wattledger::signal::Window;
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{GroupedQuery, RowVisitor, Series, SeriesQuery, Store, StoreError};

const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;
/// An hour boundary: 2023-11-14T22:00:00Z.
const T0: i64 = 1_700_000_000 / 3600 * 3600 * S;
/// The price changes 20 s into a minute, inside a ledger interval.
const PRICE_CHANGE: i64 = T0 + 1820 * S;

/// Forwards to a real store and counts what it hands over: reads of ledger sums
/// (grouped reads, with what they asked for, and reads of the hourly roll-up), and raw `gpu`, `energy_ledger` and `energy_ledger_hourly`
/// rows per host.
#[derive(Default)]
struct Counting {
    inner: Option<Arc<dyn Store>>,
    grouped: AtomicUsize,
    grouped_asked: Mutex<Vec<(String, i64, i64)>>,
    gpu_rows: Mutex<BTreeMap<String, usize>>,
    ledger_rows: Mutex<BTreeMap<String, usize>>,
    hourly_rows: Mutex<BTreeMap<String, usize>>,
}

struct CountRows<'a> {
    hosts: Vec<String>,
    counts: &'a Mutex<BTreeMap<String, usize>>,
    out: &'a mut dyn RowVisitor,
}

impl RowVisitor for CountRows<'_> {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.hosts.len() <= series {
            self.hosts.resize(series + 1, String::new());
        }
        self.hosts[series] = tags.get("host").cloned().unwrap_or_default();
        self.out.series(series, tags);
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        *self.counts.lock().unwrap().entry(self.hosts[series].clone()).or_default() += 1;
        self.out.row(series, time_ns, values);
    }
}

impl Counting {
    fn take_gpu_rows(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut self.gpu_rows.lock().unwrap())
    }

    fn new(inner: Arc<dyn Store>) -> Arc<Counting> {
        Arc::new(Counting { inner: Some(inner), ..Counting::default() })
    }

    fn inner(&self) -> &dyn Store {
        self.inner.as_deref().expect("a store")
    }

    fn counted<'a>(&'a self, q: &SeriesQuery, out: &'a mut dyn RowVisitor) -> Option<CountRows<'a>> {
        let counts = match q.measurement.as_str() {
            "gpu" => &self.gpu_rows,
            "energy_ledger" => &self.ledger_rows,
            "energy_ledger_hourly" => &self.hourly_rows,
            _ => return None,
        };
        Some(CountRows { hosts: Vec::new(), counts, out })
    }
}

#[async_trait]
impl Store for Counting {
    async fn write(&self, points: &[Point]) -> Result<(), StoreError> {
        self.inner().write(points).await
    }
    async fn read(&self, query: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        self.inner().read(query).await
    }
    async fn read_each(&self, query: &SeriesQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        if query.measurement == "energy_ledger_hourly" {
            self.grouped.fetch_add(1, Ordering::SeqCst);
        }
        match self.counted(query, visitor) {
            Some(mut c) => self.inner().read_each(query, &mut c).await,
            None => self.inner().read_each(query, visitor).await,
        }
    }
    async fn read_each_any(
        &self,
        query: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        match self.counted(query, visitor) {
            Some(mut c) => self.inner().read_each_any(query, any_of, &mut c).await,
            None => self.inner().read_each_any(query, any_of, visitor).await,
        }
    }
    async fn read_grouped(&self, query: &GroupedQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.grouped.fetch_add(1, Ordering::SeqCst);
        self.grouped_asked.lock().unwrap().push((query.measurement.clone(), query.start_ns, query.end_ns));
        self.inner().read_grouped(query, visitor).await
    }
    async fn series_keys(&self, query: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        self.inner().series_keys(query).await
    }
    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        self.inner().tag_values(measurement, tag).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner().ping().await
    }
}

fn plan(tariff: Tariff) -> WorkloadPlan {
    WorkloadPlan {
        name: "h100".into(),
        site: "a".into(),
        revenue_model: Arc::new(AiContract { usd_per_gpu_hour: 2.0 }),
        pue: 1.2,
        tariff,
        max_gap_ns: 90 * S,
    }
}

/// A GPU sampled every 10 s over two hours: power varies, the counter follows
/// it, and the GPU is `lost` for a minute so health is not trivial.
fn samples(host_k: i64) -> Vec<(Sample, &'static str)> {
    let mut counter = 1e6 * host_k as f64;
    (0..=720)
        .map(|i| {
            let power = 300.0 + 50.0 * host_k as f64 + 40.0 * ((i % 37) as f64 / 37.0);
            counter += power * 10.0;
            let status = if (300..306).contains(&i) { "lost" } else { "ok" };
            let s = Sample {
                time_ns: T0 + i * 10 * S,
                power_w: Some(power),
                energy_j: Some(counter),
                healthy: status == "ok",
                ..Default::default()
            };
            (s, status)
        })
        .collect()
}

/// Raw `gpu` points of a host, and its ledger points over `[from, to)` as the
/// agent writes them (per 60 s interval, from the same rules).
fn device_points(host: &str, k: i64, ledger: std::ops::Range<i64>, plan: &WorkloadPlan) -> Vec<Point> {
    let s = samples(k);
    let tags = [("host", host), ("uuid", "GPU-1"), ("workload", "h100")];
    let mut out: Vec<Point> = s
        .iter()
        .map(|(x, status)| {
            let mut p = Point::new("gpu", x.time_ns);
            for (k, v) in tags {
                p.set_tag(k, v);
            }
            p.field("power_w", x.power_w.unwrap()).field("energy_j", x.energy_j.unwrap()).field("status", *status)
        })
        .collect();
    let only: Vec<Sample> = s.iter().map(|x| x.0).collect();
    let rules = plan.rules();
    let mut t = ledger.start;
    while t < ledger.end {
        let sums = sums_over(&only, &rules, t, t + 60 * S);
        out.push(ledger_point("gpu", tags, t, 60 * S, &sums, &rules));
        t += 60 * S;
    }
    out
}

/// A host's `energy_ledger_hourly` points for the hours starting in `hours`, as
/// the agent rolls up its interval points.
fn hourly_points(host: &str, k: i64, hours: std::ops::Range<i64>, plan: &WorkloadPlan) -> Vec<Point> {
    let only: Vec<Sample> = samples(k).iter().map(|x| x.0).collect();
    let rules = plan.rules();
    let tags = [("host", host), ("uuid", "GPU-1"), ("workload", "h100")];
    (hours.start..hours.end)
        .step_by(H as usize)
        .map(|h| {
            let mut sums = Sums::default();
            for t in (h..h + H).step_by(60 * S as usize) {
                sums.absorb(&sums_over(&only, &rules, t, t + 60 * S));
            }
            hourly_point("gpu", tags, h, 60, &sums, &rules)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_same(a: &WindowResult, b: &WindowResult) {
    let at = (a.window.start_ns - T0) / S;
    assert!(close(a.energy_j, b.energy_j), "window {at}: energy {} vs {}", a.energy_j, b.energy_j);
    assert!(
        close(a.energy_cost_usd, b.energy_cost_usd),
        "window {at}: cost {} vs {}",
        a.energy_cost_usd,
        b.energy_cost_usd
    );
    assert!(close(a.revenue_usd, b.revenue_usd), "window {at}: revenue {} vs {}", a.revenue_usd, b.revenue_usd);
    assert_eq!(a.covered_ns, b.covered_ns, "window {at}: covered");
    assert_eq!(a.devices, b.devices, "window {at}: devices");
}

async fn windows(store: &Arc<dyn Store>, plan: &WorkloadPlan, wins: &[Window], from: EnergyFrom) -> Vec<WindowResult> {
    let mut cache = LedgerCache::new(H, wins.to_vec());
    let mut out = Vec::new();
    for &w in wins {
        out.push(compute_window(store, plan, &plan.tariff, w, &MarketHistory::none(), from, &mut cache).await.unwrap());
    }
    out
}

async fn paths(inner: Arc<dyn Store>) {
    let counting = Counting::new(inner);
    let store: Arc<dyn Store> = counting.clone();
    let p = plan(Tariff::Measured { prices: vec![(T0 - H, 0.05), (PRICE_CHANGE, 0.11)] });
    // full: ledger for both hours. half: ledger for the first 30 minutes only.
    // third: raw samples only (an older agent or another tool).
    let mut pts = device_points("full", 1, T0..T0 + 2 * H, &p);
    pts.extend(device_points("half", 2, T0..T0 + 1800 * S, &p));
    pts.extend(device_points("third", 3, 0..0, &p));
    store.write(&pts).await.unwrap();
    let wins = aligned_windows(T0, T0 + 2 * H, H);

    let raw = windows(&store, &p, &wins, EnergyFrom::Raw).await;
    let raw_rows = counting.take_gpu_rows();
    assert_eq!(counting.grouped.load(Ordering::SeqCst), 0, "raw reads no ledger");
    let auto = windows(&store, &p, &wins, EnergyFrom::Auto).await;
    let auto_rows = counting.take_gpu_rows();
    for (a, r) in auto.iter().zip(&raw) {
        assert_same(a, r);
        assert_eq!(a.devices, 3);
    }
    assert!(raw.iter().all(|w| w.ledger_energy_j == 0.0));

    // Hour 1: the price changes at 30:20, inside a minute, so the second half
    // hour's bucket is not used whole: `full` comes from its ledger rows there,
    // except the interval [30:00, 31:00) that straddles the change, which comes
    // from raw samples. `half` has its ledger for the first half hour only.
    // Hour 2: one price; `full` is covered by one bucket and not read raw at all.
    let share = |w: &WindowResult| w.ledger_share().unwrap();
    // Ledger time in hour 1: 59 min of `full`, 30 of `half`, of 3 × 60 min covered.
    assert!((share(&auto[0]) - 89.0 / 180.0).abs() < 0.01, "hour 1 ledger share {}", share(&auto[0]));
    assert!((share(&auto[1]) - 1.0 / 3.0).abs() < 0.01, "hour 2 ledger share {}", share(&auto[1]));
    // Raw reads cover the edges (± max_gap): `third` is read as in `raw`, `full`
    // only in hour 1 (it needs one minute there) and `half` in both hours.
    assert_eq!(auto_rows.get("third"), raw_rows.get("third"));
    assert!(auto_rows["full"] < raw_rows["full"] / 2 + 20, "{auto_rows:?} vs {raw_rows:?}");
    assert!(auto_rows["half"] >= raw_rows["half"] - 10, "{auto_rows:?} vs {raw_rows:?}");

    // The price change cut the first hour in two buckets (30 min); the second
    // hour has its own length (1 h), read from the roll-up: two reads of sums.
    assert_eq!(counting.grouped.swap(0, Ordering::SeqCst), 2);

    // `ledger` alone: hour 2 holds `full` whole and `half` not at all.
    let ledger = windows(&store, &p, &wins, EnergyFrom::Ledger).await;
    assert!(counting.take_gpu_rows().is_empty(), "ledger reads no raw sample");
    assert!(close(ledger[1].energy_j, auto[1].ledger_energy_j));
    assert_eq!(ledger[1].devices, 1);
    counting.grouped.store(0, Ordering::SeqCst);

    // A day of 1 h windows at one price: one read of sums for all 24 (of the
    // roll-up, which `full` lacks: its interval rows are read by name).
    let flat = plan(Tariff::Flat { usd_per_kwh: 0.05 });
    let day = aligned_windows(T0, T0 + 24 * H, H);
    let day_auto = windows(&store, &flat, &day, EnergyFrom::Auto).await;
    assert_eq!(counting.grouped.load(Ordering::SeqCst), 1);
    let day_raw = windows(&store, &flat, &day, EnergyFrom::Raw).await;
    for (a, r) in day_auto.iter().zip(&day_raw) {
        assert_same(a, r);
    }
}

/// Two hours of 70 GPUs whose agents rolled up the second hour only (the first
/// lacks the roll-up for all of them, as after the agents started), a GPU of an
/// older agent without any roll-up, and a raw-only GPU.
async fn roll_up(inner: Arc<dyn Store>) {
    let counting = Counting::new(inner);
    let store: Arc<dyn Store> = counting.clone();
    let p = plan(Tariff::Flat { usd_per_kwh: 0.05 });
    let mut pts = Vec::new();
    for k in 0..70 {
        let host = format!("g{k:02}");
        pts.extend(device_points(&host, k % 5, T0..T0 + 2 * H, &p));
        pts.extend(hourly_points(&host, k % 5, T0 + H..T0 + 2 * H, &p));
    }
    pts.extend(device_points("old", 2, T0..T0 + 2 * H, &p));
    pts.extend(device_points("raw", 3, 0..0, &p));
    store.write(&pts).await.unwrap();
    let wins = aligned_windows(T0, T0 + 2 * H, H);
    let raw = windows(&store, &p, &wins, EnergyFrom::Raw).await;
    counting.take_gpu_rows();
    let auto = windows(&store, &p, &wins, EnergyFrom::Auto).await;
    for (a, r) in auto.iter().zip(&raw) {
        assert_same(a, r);
        assert_eq!(a.devices, 72);
    }
    // The roll-up's rows over both hours (one per GPU that has it); the first
    // hour, which more than 64 devices lack, from the interval points in one
    // grouped read.
    let hourly = std::mem::take(&mut *counting.hourly_rows.lock().unwrap());
    assert_eq!((hourly.len(), hourly.values().all(|&n| n == 1)), (70, true), "{hourly:?}");
    let asked = std::mem::take(&mut *counting.grouped_asked.lock().unwrap());
    assert_eq!(asked, [("energy_ledger".to_string(), T0, T0 + H)]);
    // Interval rows are read only for the old agent's GPU in the second hour
    // (by name), raw rows only for the raw-only GPU.
    assert_eq!(*counting.ledger_rows.lock().unwrap(), BTreeMap::from([("old".to_string(), 60)]));
    assert_eq!(counting.take_gpu_rows().keys().collect::<Vec<_>>(), ["raw"]);
    assert!((auto[1].ledger_share().unwrap() - 71.0 / 72.0).abs() < 1e-9, "{:?}", auto[1].ledger_share());
}

/// A window still going on (30 min 10 s of it so far): the ledger holds its
/// first 30 minutes, and only the time after them (± max_gap) is read raw.
async fn current_window(inner: Arc<dyn Store>) {
    let counting = Counting::new(inner);
    let store: Arc<dyn Store> = counting.clone();
    let p = plan(Tariff::Flat { usd_per_kwh: 0.05 });
    store.write(&device_points("full", 1, T0..T0 + 2 * H, &p)).await.unwrap();
    let win = [Window::new(T0 + H, T0 + H + 1810 * S)];
    let auto = windows(&store, &p, &win, EnergyFrom::Auto).await;
    // Samples every 10 s in [1 h 28 min 30 s, 1 h 31 min 40 s).
    assert_eq!(counting.take_gpu_rows().get("full"), Some(&19));
    let raw = windows(&store, &p, &win, EnergyFrom::Raw).await;
    assert_same(&auto[0], &raw[0]);
    assert!((auto[0].ledger_share().unwrap() - 1800.0 / 1810.0).abs() < 1e-9);
}

#[tokio::test]
async fn embedded_store_takes_each_span_from_one_path() {
    paths(Arc::new(EmbeddedStore::open_in_memory().unwrap())).await;
}

#[tokio::test]
async fn embedded_store_takes_whole_hours_from_the_roll_up() {
    roll_up(Arc::new(EmbeddedStore::open_in_memory().unwrap())).await;
}

#[tokio::test]
async fn influxdb_store_takes_whole_hours_from_the_roll_up() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    roll_up(store).await;
}

#[tokio::test]
async fn embedded_store_reads_only_the_uncovered_end_of_the_current_window() {
    current_window(Arc::new(EmbeddedStore::open_in_memory().unwrap())).await;
}

#[tokio::test]
async fn influxdb_store_reads_only_the_uncovered_end_of_the_current_window() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    current_window(store).await;
}

#[tokio::test]
async fn influxdb_store_takes_each_span_from_one_path() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    paths(store).await;
}
