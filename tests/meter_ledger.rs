//! Meter channels through the energy ledger: the real agent pipeline (sources →
//! stamping → ledger → spool → writer) in virtual time writes `energy_ledger`
//! points for every meter channel; the aggregator takes a channel's energy from
//! those points where they stand for their interval and from its raw `meter`
//! points elsewhere, and `auto` and `ledger` give what `raw` gives.
//!
//! The site `s1`, one agent, 20 minutes, 10-minute windows:
//! - stock S19 Pro `192.0.2.10:4028` (estimated 3250 W) behind outlet `1`, whose
//!   power varies (3400 W ± 60 W) and whose energy comes from a 32-bit counter that
//!   wraps at 1,100 s (continued by the real `EnergyCounter`); the outlet is
//!   offline from 300 s to 420 s, the miner misses its polls from 100 s to 220 s;
//! - miner `192.0.2.12:4028` reporting 3000 W itself, behind outlet `2` (3100 W,
//!   energy counter, always answering);
//! - GPU host `rig1`: `GPU-a` (workload `train`, 600 W ± 50 W) and `GPU-b`
//!   (`infer`, 200 W), behind a BMC (1000 W ± 30 W, power only);
//! - a site meter (group `s1`, 7000 W ± 100 W, energy counter).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{scripted, secs, Batches, VirtualClock, S, T0_NS};
use wattledger::agent::config::AgentConfig;
use wattledger::agent::Agent;
use wattledger::aggregate::compare::WindowResult;
use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::{Aggregator, Windows};
use wattledger::collect::meters::EnergyCounter;
use wattledger::ledger::EnergyFrom;
use wattledger::model::{Clock, FieldValue, Point, SystemClock};
use wattledger::ship::lineproto::{parse, Precision};
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{GroupedQuery, RowVisitor, Series, SeriesQuery, Store, StoreError};

const END_S: f64 = 1260.0;
/// A 32-bit counter of joules.
const WRAP_J: f64 = 4_294_967_296.0;

fn miner_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    let stock = Point::new("asic", time_ns)
        .tag("miner", "192.0.2.10:4028")
        .tag("model", "S19 Pro")
        .tag("power_source", "estimated")
        .field("power_w", 3250.0)
        .field("hashrate_ths", 110.0)
        .field("diff_accepted", 1e9 + 25_000.0 * t)
        .field("online", true);
    let reporting = Point::new("asic", time_ns)
        .tag("miner", "192.0.2.12:4028")
        .tag("model", "S21")
        .tag("power_source", "reported")
        .field("power_w", 3000.0)
        .field("hashrate_ths", 200.0)
        .field("diff_accepted", 1e9 + 45_000.0 * t)
        .field("online", true);
    if (100.0..220.0).contains(&t) {
        vec![reporting]
    } else {
        vec![stock, reporting]
    }
}

fn gpu_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    let gpu = |i: &str, uuid: &str, w: f64, e: f64| {
        Point::new("gpu", time_ns)
            .tag("gpu", i)
            .tag("uuid", uuid)
            .field("power_w", w)
            .field("energy_j", e)
            .field("util_gpu_pct", 90.0)
            .field("status", "ok")
    };
    let wa = 600.0 + 50.0 * (t / 41.0).sin();
    let ea = 1e6 + 600.0 * t - 50.0 * 41.0 * (t / 41.0).cos();
    vec![gpu("0", "GPU-a", wa, ea), gpu("1", "GPU-b", 200.0, 2e6 + 200.0 * t)]
}

fn channel(time_ns: i64, meter: &str, ch: &str, covers: (&str, &str)) -> Point {
    Point::new("meter", time_ns)
        .tag("meter", meter)
        .tag("channel", ch)
        .tag("basis", "meter")
        .tag("covers_kind", covers.0)
        .tag("covers", covers.1)
}

/// The meter source's points, as `collect::meters` writes them, with the outlet's
/// 32-bit counter continued past its wrap by the real [`EnergyCounter`].
fn meter_points() -> impl FnMut(i64) -> Vec<Point> + Send {
    let mut outlet_1_counter = EnergyCounter::default();
    move |time_ns| {
        let t = secs(time_ns);
        let outlet_1 = channel(time_ns, "pdu-1", "1", ("miner", "192.0.2.10"));
        let outlet_1 = if (300.0..420.0).contains(&t) {
            outlet_1.field("online", false).field("status", "timeout after 5s")
        } else {
            // ∫ (3400 + 60 sin(t/37)) dt from a start 3.74 MJ below the top: wraps at ~1,100 s.
            let e = WRAP_J - 3.74e6 + 3400.0 * t - 60.0 * 37.0 * ((t / 37.0).cos() - 1.0);
            let (j, _) = outlet_1_counter.update(e % WRAP_J, Some(WRAP_J));
            outlet_1.field("power_w", 3400.0 + 60.0 * (t / 37.0).sin()).field("energy_j", j).field("online", true)
        };
        let outlet_2 = channel(time_ns, "pdu-1", "2", ("miner", "192.0.2.12"))
            .field("power_w", 3100.0)
            .field("energy_j", 7e6 + 3100.0 * t)
            .field("online", true);
        let bmc = channel(time_ns, "bmc-rig1", "1U", ("gpu_host", "rig1"))
            .field("power_w", 1000.0 + 30.0 * (t / 23.0).sin())
            .field("online", true);
        let site = channel(time_ns, "site", "total", ("group", "s1"))
            .field("power_w", 7000.0 + 100.0 * (t / 53.0).sin())
            .field("energy_j", 9e6 + 7000.0 * t - 100.0 * 53.0 * (t / 53.0).cos())
            .field("online", true);
        vec![outlet_1, outlet_2, bmc, site]
    }
}

fn agent_config(spool: &std::path::Path) -> AgentConfig {
    common::virtual_agent_config(
        spool,
        "",
        r#"[gpus]
[workloads]
gpus = { "GPU-a" = "train", "GPU-b" = "infer" }
miners = { "192.0.2.0/24" = "btc" }
"#,
    )
}

async fn site_store() -> Arc<EmbeddedStore> {
    let spool = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::starting_at(T0_NS));
    let writer = Arc::new(Batches::default());
    let sources = vec![
        scripted("miners", 10, miner_points),
        scripted("nvml", 5, gpu_points),
        scripted("meters", 7, meter_points()),
    ];
    let agent = Agent::with_parts(agent_config(spool.path()), clock, sources, writer.clone()).unwrap();
    agent.run(tokio::time::sleep(Duration::from_secs_f64(END_S))).await.unwrap();
    let store = Arc::new(EmbeddedStore::open_in_memory().unwrap());
    for b in writer.0.lock().unwrap().iter() {
        store.write_blocking(&parse(b, Precision::Ns).unwrap()).unwrap();
    }
    store
}

/// Forwards to a real store and counts the raw rows it hands over, per measurement.
struct Counting {
    inner: Arc<dyn Store>,
    rows: Mutex<BTreeMap<String, usize>>,
    reads: AtomicUsize,
}

struct CountRows<'a> {
    measurement: &'a str,
    counts: &'a Mutex<BTreeMap<String, usize>>,
    out: &'a mut dyn RowVisitor,
}

impl RowVisitor for CountRows<'_> {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        self.out.series(series, tags);
    }
    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        *self.counts.lock().unwrap().entry(self.measurement.to_string()).or_default() += 1;
        self.out.row(series, time_ns, values);
    }
}

impl Counting {
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut self.rows.lock().unwrap())
    }
    fn add(&self, m: &str, n: usize) {
        *self.rows.lock().unwrap().entry(m.to_string()).or_default() += n;
    }
}

#[async_trait]
impl Store for Counting {
    async fn write(&self, points: &[Point]) -> Result<(), StoreError> {
        self.inner.write(points).await
    }
    async fn read(&self, query: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let out = self.inner.read(query).await?;
        self.add(&query.measurement, out.iter().map(|s| s.times_ns.len()).sum());
        Ok(out)
    }
    async fn read_each(&self, query: &SeriesQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        let mut c = CountRows { measurement: &query.measurement, counts: &self.rows, out: visitor };
        self.inner.read_each(query, &mut c).await
    }
    async fn read_each_any(
        &self,
        query: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        let mut c = CountRows { measurement: &query.measurement, counts: &self.rows, out: visitor };
        self.inner.read_each_any(query, any_of, &mut c).await
    }
    async fn read_grouped(&self, query: &GroupedQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.inner.read_grouped(query, visitor).await
    }
    async fn series_keys(&self, query: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        self.inner.series_keys(query).await
    }
    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        self.inner.tag_values(measurement, tag).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

const AGGREGATOR: &str = r#"[store]
kind = "embedded"
path = "unused.db"

[sites.s1]
pue = 1.5
[sites.s1.tariff]
kind = "flat"
usd_per_kwh = 0.05

[market]
source = "static"
btc_usd = 100000.0
difficulty = 1e14
block_subsidy_btc = 3.125
fees_btc_per_block = 0.125

[[workloads]]
name = "btc"
model = "bitcoin_fpps"
pool_fee = 0.02

[[workloads]]
name = "train"
model = "ai_contract"
usd_per_gpu_hour = 2.0

[[workloads]]
name = "infer"
model = "ai_contract"
usd_per_gpu_hour = 2.0

[aggregator]
window = "10m"
max_gap = "90s"
"#;

fn aggregator(store: Arc<dyn Store>, from: EnergyFrom) -> Aggregator {
    aggregator_of(store, from, AGGREGATOR)
}

/// The aggregator with one workload only (the others' blocks left out).
fn aggregator_for(store: Arc<dyn Store>, from: EnergyFrom, workload: &str) -> Aggregator {
    let blocks: Vec<&str> = AGGREGATOR.split("[[workloads]]").collect();
    let (head, tail) = blocks.last().unwrap().split_once("[aggregator]").unwrap();
    let mut text = blocks[0].to_string();
    for b in blocks[1..blocks.len() - 1].iter().copied().chain([head]) {
        if b.contains(&format!("name = \"{workload}\"")) {
            text.push_str("[[workloads]]");
            text.push_str(b);
        }
    }
    text.push_str("[aggregator]");
    text.push_str(tail);
    aggregator_of(store, from, &text)
}

fn aggregator_of(store: Arc<dyn Store>, from: EnergyFrom, text: &str) -> Aggregator {
    let cfg: AggregatorConfig = wattledger::config::from_str(text, std::path::Path::new("test.toml")).unwrap();
    Aggregator::new(cfg, store, Arc::new(SystemClock)).unwrap().with_energy_from(from)
}

async fn windows(agg: &Aggregator, from_s: i64, to_s: i64) -> Vec<WindowResult> {
    let mut out = Vec::new();
    let (a, b) = (T0_NS + from_s * S, T0_NS + to_s * S);
    agg.compute(a, b, agg.window_ns(), None, Windows::Recompute, |w| out.push(w)).await.unwrap();
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a - b).abs() < 1e-9
}

fn assert_same(what: &str, a: &WindowResult, b: &WindowResult) {
    let at = format!("{what}: {} at {} s", a.workload, (a.window.start_ns - T0_NS) / S);
    assert!(close(a.energy_j, b.energy_j), "{at}: energy {} vs {}", a.energy_j, b.energy_j);
    for (x, y, name) in [
        (a.basis.meter_j, b.basis.meter_j, "meter"),
        (a.basis.reported_j, b.basis.reported_j, "reported"),
        (a.basis.board_j, b.basis.board_j, "board"),
        (a.basis.estimated_j, b.basis.estimated_j, "estimated"),
        (a.facility_energy_j, b.facility_energy_j, "facility"),
        (a.energy_cost_usd, b.energy_cost_usd, "cost"),
        (a.revenue_usd, b.revenue_usd, "revenue"),
    ] {
        assert!(close(x, y), "{at}: {name} {x} vs {y}");
    }
    assert_eq!(a.covered_ns, b.covered_ns, "{at}: covered");
    assert_eq!(a.group_meter.keys().collect::<Vec<_>>(), b.group_meter.keys().collect::<Vec<_>>(), "{at}");
    for (g, (j, s)) in &a.group_meter {
        let (rj, rs) = b.group_meter[g];
        assert!(close(*j, rj) && *s == rs, "{at}: group {g}: {j} J / {s} ns vs {rj} J / {rs} ns");
    }
}

#[tokio::test(start_paused = true)]
async fn meter_channels_come_from_the_ledger_and_equal_raw_samples() {
    let store = site_store().await;
    // Every channel has ledger points; outlet 1's from its counter, across the wrap.
    let q = SeriesQuery {
        measurement: "energy_ledger".into(),
        fields: vec!["energy_j".into(), "covered_s".into(), "method".into()],
        tag_filters: vec![("source".into(), "meter".into())],
        start_ns: T0_NS,
        end_ns: T0_NS + 1300 * S,
    };
    let ledger = store.read(&q).await.unwrap();
    let by_meter = |m: &str, ch: &str| {
        ledger.iter().find(|s| s.tags["meter"] == m && s.tags["channel"] == ch).unwrap_or_else(|| panic!("{m}/{ch}"))
    };
    let outlet_1 = by_meter("pdu-1", "1");
    let method = |s: &Series, t_s: i64| {
        let i = s.times_ns.iter().position(|&t| t == T0_NS + t_s * S).unwrap();
        (s.values[i][0].as_ref().and_then(FieldValue::as_f64).unwrap(), s.values[i][2].clone())
    };
    // [1080, 1140 s) holds the wrap: the counter went on, 3400 W ± 60 W × 60 s.
    let (j, m) = method(outlet_1, 1080);
    assert!((3340.0 * 60.0..3460.0 * 60.0).contains(&j), "{j}");
    assert_eq!(m, Some(FieldValue::Str("counter".into())));
    // Offline: [360, 420 s) has no energy (a gap, never 0 W).
    assert_eq!(method(outlet_1, 360).0, 0.0);
    assert_eq!(method(by_meter("bmc-rig1", "1U"), 600).1, Some(FieldValue::Str("power_integral".into())));
    by_meter("site", "total");
    by_meter("pdu-1", "2");

    let counting = Arc::new(Counting { inner: store.clone(), rows: Mutex::default(), reads: AtomicUsize::new(0) });
    let raw = windows(&aggregator(counting.clone(), EnergyFrom::Raw), 0, 1200).await;
    counting.take();
    let auto = windows(&aggregator(counting.clone(), EnergyFrom::Auto), 0, 1200).await;
    let only = windows(&aggregator(counting.clone(), EnergyFrom::Ledger), 0, 1200).await;
    assert_eq!(raw.len(), 6);
    let find = |ws: &[WindowResult], w: &WindowResult| {
        ws.iter().find(|x| x.workload == w.workload && x.window == w.window).cloned().unwrap()
    };
    for r in &raw {
        assert_same("auto", &find(&auto, r), r);
    }
    // The first window shows what each basis did: the outlet's outage and the
    // miner's missed polls (the outlet's energy is not attributed there).
    let btc0 = raw.iter().find(|w| w.workload == "btc" && w.window.start_ns == T0_NS).unwrap();
    assert!(btc0.basis.estimated_j > 0.0 && btc0.basis.meter_j > 0.0 && btc0.basis.reported_j == 0.0, "{btc0:?}");
    // The second window, which the ledger covers completely: the miners and the
    // site meter come from the ledger alone just as from raw samples (the GPU host is
    // shared by two workloads: its split needs the board energy of each interval).
    for r in raw.iter().filter(|w| w.window.start_ns == T0_NS + 600 * S && w.workload == "btc") {
        assert_same("ledger", &find(&only, r), r);
    }

    // `auto` over the second window reads no raw miner or meter row for the
    // miners' workload: the miners' intervals and their outlets' (and the site
    // meter's) stand in the ledger. `raw` reads them.
    // (An aggregator of `btc` alone: the site meter is reconciled against its
    // devices only, so its facility energy differs from the full site's above.)
    counting.take();
    let raw1 = windows(&aggregator_for(counting.clone(), EnergyFrom::Raw, "btc"), 600, 1200).await;
    let rows = counting.take();
    assert!(rows.get("asic").is_some_and(|&n| n > 100) && rows.get("meter").is_some_and(|&n| n > 100), "{rows:?}");
    let btc1 = windows(&aggregator_for(counting.clone(), EnergyFrom::Auto, "btc"), 600, 1200).await;
    let rows = counting.take();
    assert_eq!((rows.get("asic"), rows.get("meter")), (None, None), "{rows:?}");
    assert_eq!((btc1.len(), raw1.len()), (1, 1));
    let b = &btc1[0];
    assert_same("auto, second window", b, &raw1[0]);
    assert!(close(b.energy_j, find(&raw, b).energy_j));
    // Both outlets, all of it metered: 3100 W and 3400 W ± 60 W.
    assert!(close(b.basis.meter_j, b.energy_j) && (b.energy_j / 600.0 - 6500.0).abs() < 60.0, "{b:?}");
    // The GPU host shared by `train` and `infer`: its BMC is read raw, and the
    // split follows each interval's board energy as from raw samples.
    windows(&aggregator_for(counting.clone(), EnergyFrom::Auto, "train"), 600, 1200).await;
    assert!(counting.take().get("meter").is_some_and(|&n| n > 0));
}
