//! The hours of a range before a workload's first data, on both stores: once the
//! store was found to hold none of their values, a request answers them empty
//! without reading them again (a wrapper store records every read), a restarted
//! aggregator finds that out with counts only, and late data there (a backfill)
//! is picked up by the next scheduled pass.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::{Aggregator, QuietSpan, Windows};
use wattledger::model::{Clock, Point};
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{GroupedQuery, RowVisitor, Series, SeriesQuery, Store, StoreError};

const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;
/// An hour boundary: 2023-11-14T22:00:00Z.
const T0: i64 = 1_700_000_000 / 3600 * 3600 * S;
/// Half-way through the hour after the last complete one of a day from T0.
const NOW: i64 = T0 + 24 * H + 1800 * S;
/// The workload's data starts here: the 22 hours before it are empty.
const FIRST_DATA: i64 = T0 + 22 * H;
const MAX_GAP: i64 = 90 * S;

/// One read: the method, the measurement, its `workload` filter and range.
#[derive(Debug, Clone)]
struct Read {
    method: &'static str,
    measurement: String,
    workload: Option<String>,
    start_ns: i64,
    end_ns: i64,
}

/// Forwards to a real store and records every read.
struct Recording {
    inner: Arc<dyn Store>,
    reads: Mutex<Vec<Read>>,
}

impl Recording {
    fn note(&self, method: &'static str, q: &SeriesQuery) {
        let workload = q.tag_filters.iter().find(|(k, _)| k == "workload").map(|(_, v)| v.clone());
        let (measurement, start_ns, end_ns) = (q.measurement.clone(), q.start_ns, q.end_ns);
        self.reads.lock().unwrap().push(Read { method, measurement, workload, start_ns, end_ns });
    }

    fn take(&self) -> Vec<Read> {
        std::mem::take(&mut self.reads.lock().unwrap())
    }
}

#[async_trait]
impl Store for Recording {
    async fn write(&self, points: &[Point]) -> Result<(), StoreError> {
        self.inner.write(points).await
    }
    async fn read(&self, q: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        self.note("read", q);
        self.inner.read(q).await
    }
    async fn read_each(&self, q: &SeriesQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.note("read_each", q);
        self.inner.read_each(q, visitor).await
    }
    async fn count(&self, q: &SeriesQuery) -> Result<u64, StoreError> {
        self.note("count", q);
        self.inner.count(q).await
    }
    async fn read_grouped(&self, q: &GroupedQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.note("read_grouped", &q.rows_query());
        self.inner.read_grouped(q, visitor).await
    }
    async fn series_keys(&self, q: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        self.note("series_keys", q);
        self.inner.series_keys(q).await
    }
    async fn read_each_any(
        &self,
        q: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        self.note("read_each_any", q);
        self.inner.read_each_any(q, any_of, visitor).await
    }
    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        self.inner.tag_values(measurement, tag).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

struct FixedClock(i64);

impl Clock for FixedClock {
    fn now_ns(&self) -> i64 {
        self.0
    }
}

fn config() -> AggregatorConfig {
    let toml = r#"
[store]
kind = "embedded"
path = "unused.db"

[sites.s1]
energy_usd_per_kwh = 0.1

[[workloads]]
name = "h100"
model = "ai_contract"
usd_per_gpu_hour = 2.0

[aggregator]
window = "1h"
max_gap = "90s"
"#;
    wattledger::config::from_str(toml, std::path::Path::new("test.toml")).unwrap()
}

fn gpu_point(uuid: &str, t: i64, power_w: f64) -> Point {
    Point::new("gpu", t)
        .tag("site", "s1")
        .tag("host", "rig1")
        .tag("uuid", uuid)
        .tag("workload", "h100")
        .field("power_w", power_w)
        .field("status", "ok")
}

/// GPU-1 at 700 W every 10 s from [`FIRST_DATA`] to [`NOW`].
fn day_points() -> Vec<Point> {
    (0..=((NOW - FIRST_DATA) / (10 * S))).map(|i| gpu_point("GPU-1", FIRST_DATA + i * 10 * S, 700.0)).collect()
}

/// Reads of the workload's measurements (not its stored windows) that touch the
/// empty hours (before `FIRST_DATA − max_gap`, where no window with data reads).
fn into_empty_hours(reads: &[Read]) -> Vec<Read> {
    reads
        .iter()
        .filter(|r| r.workload.as_deref() == Some("h100") && r.measurement != "workload_efficiency")
        .filter(|r| r.start_ns < FIRST_DATA - MAX_GAP && r.end_ns > T0)
        .cloned()
        .collect()
}

fn energy(r: &wattledger::aggregate::compare::Report) -> f64 {
    r.workloads.iter().map(|w| w.energy_j).sum()
}

fn same(a: &wattledger::aggregate::compare::Report, b: &wattledger::aggregate::compare::Report) {
    let (x, y) = (serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
    for (wa, wb) in x["workloads"].as_array().unwrap().iter().zip(y["workloads"].as_array().unwrap()) {
        for key in ["energy_j", "revenue_usd", "energy_cost_usd", "coverage"] {
            let (va, vb) = (wa[key].as_f64().unwrap(), wb[key].as_f64().unwrap());
            assert!((va - vb).abs() <= 1e-9 * va.abs().max(1.0), "{key}: {va} vs {vb}\n{x}\n{y}");
        }
    }
    assert_eq!(x["warnings"], y["warnings"]);
}

async fn quiet_hours(inner: Arc<dyn Store>) {
    let rec = Arc::new(Recording { inner, reads: Mutex::default() });
    let store: Arc<dyn Store> = rec.clone();
    store.write(&day_points()).await.unwrap();
    let clock = Arc::new(FixedClock(NOW));
    let agg = Aggregator::new(config(), store.clone(), clock.clone()).unwrap();
    // The scheduled pass (3 h lookback) stores the two hours with data.
    agg.run_once(NOW).await.unwrap();
    let serve = Windows::Stored { write_back: true };
    let recompute = agg.report(T0, NOW, Windows::Recompute).await.unwrap();
    assert!((energy(&recompute) - 700.0 * 2.5 * 3600.0).abs() < 1e-6, "{}", energy(&recompute));

    // First request: the 22 empty hours are counted once, not computed.
    rec.take();
    let first = agg.report(T0, NOW, serve).await.unwrap();
    same(&first, &recompute);
    let reads = into_empty_hours(&rec.take());
    assert!(!reads.is_empty() && reads.iter().all(|r| r.method == "count"), "{reads:#?}");
    assert_eq!(agg.quiet_span_of("h100"), Some(QuietSpan { from_ns: T0, to_ns: FIRST_DATA }));

    // Every later request: the empty hours are not read at all.
    for _ in 0..3 {
        let again = agg.report(T0, NOW, serve).await.unwrap();
        same(&again, &recompute);
        let reads = into_empty_hours(&rec.take());
        assert!(reads.is_empty(), "the empty hours were read again: {reads:#?}");
    }
    // One workload's windows (the windows endpoint) too.
    let (_, wins) = agg.workload_windows("h100", T0, NOW, serve).await.unwrap();
    assert_eq!(wins.len(), 25);
    assert!(wins[..22].iter().all(|w| w.devices == 0 && w.energy_j == 0.0));
    assert!(into_empty_hours(&rec.take()).is_empty());

    // A restarted aggregator knows nothing yet: counts only, then nothing.
    let restarted = Aggregator::new(config(), store.clone(), clock.clone()).unwrap();
    same(&restarted.report(T0, NOW, serve).await.unwrap(), &recompute);
    let reads = into_empty_hours(&rec.take());
    assert!(!reads.is_empty() && reads.iter().all(|r| r.method == "count"), "{reads:#?}");
    same(&restarted.report(T0, NOW, serve).await.unwrap(), &recompute);
    assert!(into_empty_hours(&rec.take()).is_empty());

    // A range starting earlier widens the span (counting only the new part's span).
    restarted.report(T0 - 2 * H, NOW, serve).await.unwrap();
    assert_eq!(restarted.quiet_span_of("h100"), Some(QuietSpan { from_ns: T0 - 2 * H, to_ns: FIRST_DATA }));

    // A backfill into the empty hours: GPU-2 for ten minutes at hour 5. Until the
    // next pass the hours are still answered empty; that pass drops the span, and
    // the request after it computes hour 5 (and writes it back).
    let late: Vec<Point> = (0..=60).map(|i| gpu_point("GPU-2", T0 + 5 * H + i * 10 * S, 500.0)).collect();
    store.write(&late).await.unwrap();
    assert!((energy(&restarted.report(T0, NOW, serve).await.unwrap()) - energy(&recompute)).abs() < 1e-6);
    restarted.run_once(NOW).await.unwrap();
    assert_eq!(restarted.quiet_span_of("h100"), None, "the pass drops a span that holds values");
    let with_late = restarted.report(T0, NOW, serve).await.unwrap();
    assert!((energy(&with_late) - energy(&recompute) - 500.0 * 600.0).abs() < 1e-6, "{}", energy(&with_late));
    same(&with_late, &restarted.report(T0, NOW, Windows::Recompute).await.unwrap());
    // Hour 5 is stored now; the hours before it are quiet again.
    restarted.report(T0, NOW, serve).await.unwrap();
    assert_eq!(restarted.quiet_span_of("h100"), Some(QuietSpan { from_ns: T0, to_ns: T0 + 5 * H }));
    rec.take();
    same(&restarted.report(T0, NOW, serve).await.unwrap(), &with_late);
    let reads: Vec<Read> = into_empty_hours(&rec.take()).into_iter().filter(|r| r.end_ns <= T0 + 5 * H).collect();
    assert!(reads.is_empty(), "{reads:#?}");
}

#[tokio::test]
async fn embedded_store_answers_the_hours_before_the_first_data_without_reading_them() {
    quiet_hours(Arc::new(EmbeddedStore::open_in_memory().unwrap())).await;
}

#[tokio::test]
async fn influxdb_store_answers_the_hours_before_the_first_data_without_reading_them() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    quiet_hours(store).await;
}
