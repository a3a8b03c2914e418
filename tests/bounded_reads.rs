//! The fleet view, the alert rules that read raw readings, and the device
//! drill-down read bounded: through a store that refuses a whole-series `read` of
//! any measurement agents write, they still answer, from streaming reads. The
//! drill-down's streaming reads each cover at most one piece of its range.
//!
//! Two days of one site `s1`: miner `r1/192.0.2.30:4028` (Antminer S19 Pro,
//! reporting 3000 W at 100 TH/s every 60 s) behind PDU outlet `pdu-1/1` reading
//! 3300 W; GPU `r2/GPU-1` idle at 200 W and 2 % in an `ai_on_demand` workload; the
//! agent on `r1` reporting its own telemetry.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::device::CHUNK_NS;
use wattledger::aggregate::fleet::IDLE_GPU;
use wattledger::aggregate::Aggregator;
use wattledger::alert::config::{Expected, Kind, Rule};
use wattledger::model::{Point, SystemClock};
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{GroupedQuery, RowVisitor, Series, SeriesQuery, Store, StoreError};

/// 2026-11-20T00:00:00Z.
const T0_NS: i64 = 1_795_132_800_000_000_000;
const S: i64 = 1_000_000_000;
const DAYS_S: i64 = 2 * 86_400;

/// Measurements whose series grow with the range and the fleet.
const RAW: [&str; 6] = ["asic", "gpu", "meter", "energy_ledger", "agent", "inference"];

/// Every call: the method, the measurement and the range.
type Calls = Mutex<Vec<(&'static str, String, i64, i64)>>;

/// The embedded store, refusing `read` of [`RAW`] measurements and recording
/// every call.
struct Bounded {
    inner: Arc<EmbeddedStore>,
    calls: Calls,
}

impl Bounded {
    fn note(&self, method: &'static str, q: &SeriesQuery) {
        self.calls.lock().unwrap().push((method, q.measurement.clone(), q.start_ns, q.end_ns));
    }
}

#[async_trait]
impl Store for Bounded {
    async fn write(&self, points: &[Point]) -> Result<(), StoreError> {
        self.inner.write(points).await
    }
    async fn read(&self, q: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        self.note("read", q);
        if RAW.contains(&q.measurement.as_str()) {
            return Err(StoreError::Query(format!("whole series of {} asked for", q.measurement)));
        }
        self.inner.read(q).await
    }
    async fn read_each(&self, q: &SeriesQuery, v: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.note("read_each", q);
        self.inner.read_each(q, v).await
    }
    async fn read_each_any(
        &self,
        q: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        v: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        self.note("read_each_any", q);
        self.inner.read_each_any(q, any_of, v).await
    }
    async fn read_grouped(&self, q: &GroupedQuery, v: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.note("read_grouped", &q.rows_query());
        self.inner.read_grouped(q, v).await
    }
    async fn series_keys(&self, q: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        self.note("series_keys", q);
        self.inner.series_keys(q).await
    }
    async fn count(&self, q: &SeriesQuery) -> Result<u64, StoreError> {
        self.note("count", q);
        self.inner.count(q).await
    }
    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        self.inner.tag_values(measurement, tag).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

const CONFIG: &str = r#"[store]
kind = "embedded"
path = "unused.db"
[sites.s1]
pue = 1.2
energy_usd_per_kwh = 0.05
[market]
source = "static"
btc_usd = 100000.0
difficulty = 1e14
block_subsidy_btc = 3.125
fees_btc_per_block = 0.125
[[workloads]]
name = "btc"
model = "bitcoin_fpps"
pool_fee = 0.0
[[workloads]]
name = "infer"
model = "ai_on_demand"
usd_per_gpu_hour = 2.0
util_threshold_pct = 10
[aggregator]
max_gap = "90s"
fleet_lookback = "1h"
"#;

fn site() -> Arc<EmbeddedStore> {
    let store = Arc::new(EmbeddedStore::open_in_memory().unwrap());
    let mut points = Vec::new();
    for i in 0..DAYS_S / 60 {
        let t = T0_NS + i * 60 * S;
        let secs = (i * 60) as f64;
        points.push(
            Point::new("asic", t)
                .tag("site", "s1")
                .tag("host", "r1")
                .tag("miner", "192.0.2.30:4028")
                .tag("make", "Antminer")
                .tag("model", "S19 Pro")
                .tag("power_source", "reported")
                .tag("workload", "btc")
                .field("power_w", 3000.0)
                .field("hashrate_ths", 100.0)
                .field("diff_accepted", 1e9 + 20_000.0 * secs)
                .field("online", true),
        );
        points.push(
            Point::new("meter", t)
                .tag("site", "s1")
                .tag("host", "r1")
                .tag("meter", "pdu-1")
                .tag("channel", "1")
                .tag("kind", "snmp")
                .tag("basis", "meter")
                .tag("covers_kind", "miner")
                .tag("covers", "192.0.2.30")
                .field("power_w", 3300.0)
                .field("energy_j", 5e6 + 3300.0 * secs)
                .field("online", true)
                .field("status", "ok"),
        );
        points.push(
            Point::new("gpu", t)
                .tag("site", "s1")
                .tag("host", "r2")
                .tag("gpu", "0")
                .tag("uuid", "GPU-1")
                .tag("model", "H100")
                .tag("workload", "infer")
                .field("power_w", 200.0)
                .field("energy_j", 1e6 + 200.0 * secs)
                .field("util_gpu_pct", 2.0)
                .field("status", "ok"),
        );
        points.push(Point::new("agent", t).tag("site", "s1").tag("host", "r1").field("points_collected", i));
    }
    store.write_blocking(&points).unwrap();
    store
}

fn aggregator(store: &Arc<Bounded>) -> Aggregator {
    let cfg: AggregatorConfig = wattledger::config::from_str(CONFIG, std::path::Path::new("test.toml")).unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    Aggregator::new(cfg, dyn_store, Arc::new(SystemClock)).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[tokio::test]
async fn fleet_alerts_and_drill_down_answer_without_whole_series_reads() {
    let store = Arc::new(Bounded { inner: site(), calls: Mutex::new(Vec::new()) });
    let agg = aggregator(&store);
    let end_ns = T0_NS + DAYS_S * S;

    // The fleet: the latest readings, measured J/TH beside nominal.
    let fleet = agg.fleet(end_ns, IDLE_GPU).await.unwrap();
    let dev = |id: &str| fleet.devices.iter().find(|d| d.device == id).unwrap_or_else(|| panic!("{id}: {fleet:?}"));
    let m = dev("r1/192.0.2.30:4028");
    assert_eq!((m.status, m.power_w, m.j_per_th, m.hashrate_ths), ("online", Some(3000.0), Some(30.0), Some(100.0)));
    // 30 J/TH is within 10 % of the S19 Pro's 29.545.
    assert_eq!(m.below_nominal, Some(false));
    let g = dev("r2/GPU-1");
    assert_eq!((g.status, g.idle, g.util_gpu_pct), ("online", Some(true), Some(2.0)));

    // The rules that read raw readings.
    let eval = |kind: Kind, window_s: f64| {
        let mut rule = Rule::from_default(kind.default_rule());
        rule.window_s = window_s;
        let agg = &agg;
        async move { wattledger::alert::eval::evaluate(agg, &rule, end_ns, &mut Default::default()).await.unwrap() }
    };
    // The outlet's 3300 W over 100 TH/s: 33 J/TH, 11.7 % over nominal; the miner's
    // own baseline is the same, so the nominal figure is the worse.
    let found = eval(Kind::MinerEfficiency, 3600.0).await;
    assert_eq!(found.observations.len(), 1, "{:?}", found.observations);
    assert!(close(found.observations[0].value, (33.0 / (3250.0 / 110.0) - 1.0) * 100.0, 1e-9));
    // Against its own baseline the miner is steady; against the rated 110 TH/s it
    // is 9.1 % short.
    let found = eval(Kind::HashrateLow, 3600.0).await;
    assert_eq!(found.observations[0].value, 0.0, "{:?}", found.observations);
    let mut rule = Rule::from_default(Kind::HashrateLow.default_rule());
    (rule.window_s, rule.expected) = (3600.0, Some(Expected::Rated));
    let found = wattledger::alert::eval::evaluate(&agg, &rule, end_ns, &mut Default::default()).await.unwrap();
    assert!(close(found.observations[0].value, (1.0 - 100.0 / 110.0) * 100.0, 1e-9), "{:?}", found.observations);
    // Idle at 2 %: the 200 W it draws.
    let found = eval(Kind::GpuIdleBurn, 600.0).await;
    assert_eq!(found.observations.len(), 1);
    assert!(close(found.observations[0].value, 200.0, 1e-12));
    // Last healthy 60 s before the end: 60 / 90 intervals of max_gap.
    let found = eval(Kind::DeviceOffline, 600.0).await;
    assert_eq!(found.observations.len(), 2, "{:?}", found.observations);
    assert!(found.observations.iter().all(|o| close(o.value, 60.0 / 90.0, 1e-12)), "{:?}", found.observations);
    let found = eval(Kind::AgentSilent, 600.0).await;
    assert_eq!(found.observations.len(), 1);
    assert!(close(found.observations[0].value, 60.0, 1e-12));

    // The drill-down over the two days, in 10-minute buckets: the outlet's energy
    // in every bucket, read a piece at a time.
    let h = agg.device_history("r1/192.0.2.30:4028", T0_NS, end_ns).await.unwrap();
    assert_eq!((h.bucket_s, h.points.len()), (600, 288));
    let energy: f64 = h.points.iter().filter_map(|p| p.energy_j).sum();
    // The last sample is 60 s before the end: that minute is not covered.
    assert!(close(energy, 3300.0 * (DAYS_S - 60) as f64, 1e-9), "{energy}");
    assert!(h.points.iter().all(|p| p.energy_basis.as_deref() == Some("100 % meter")), "{:?}", h.points[0]);
    assert!(h.points.iter().all(|p| p.efficiency_basis == Some("measured")));
    assert!(close(h.points[5].j_per_th.unwrap(), 33.0, 1e-9), "{:?}", h.points[5]);
    assert!(h.notes.iter().any(|n| n.contains("pdu-1")), "{:?}", h.notes);

    let calls = store.calls.lock().unwrap();
    let whole: Vec<_> = calls.iter().filter(|c| c.0 == "read" && RAW.contains(&c.1.as_str())).collect();
    assert!(whole.is_empty(), "whole-series reads: {whole:?}");
    // Each row read of the drill-down covers one piece (6 h) and the margins.
    let margin_ns = 90 * S;
    let pieces: Vec<_> = calls
        .iter()
        .filter(|c| c.0 == "read_each_any" && c.2 >= T0_NS - margin_ns && c.3 <= end_ns + margin_ns)
        .collect();
    assert!(pieces.len() >= 8 * 3, "{pieces:?}");
    assert!(pieces.iter().all(|c| c.3 - c.2 <= CHUNK_NS + 2 * margin_ns), "{pieces:?}");
}
