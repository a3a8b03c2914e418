//! The energy ledger and the raw samples give the same energy, cost and revenue.
//!
//! The ledger is written by the real agent pipeline (scripted sources, stamping,
//! the ledger writer, the spool, the shipper; see `common/ledger_site.rs`) with a
//! GPU driver reload, a miner reboot, an inference server restart, a gap longer
//! than max_gap, a GPU that joins mid-interval, a GPU that reports `lost`, a
//! time-of-use price change mid-window and an agent restart mid-interval. Part
//! of what the agents shipped reaches the store late. Then every 7-minute window
//! of every workload is computed three ways: `auto` must equal `raw` everywhere,
//! and `ledger` must equal `raw` in every window the ledger covers completely.

mod common;
#[path = "common/ledger_site.rs"]
mod ledger_site;

use std::collections::BTreeMap;
use std::sync::Arc;

use ledger_site::{report, run_site, site_batches, S, T0_NS};
use wattledger::aggregate::compare::WindowResult;
use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::{Aggregator, Windows};
use wattledger::ledger::EnergyFrom;
use wattledger::model::{FieldValue, SystemClock};
use wattledger::ship::lineproto::{parse, Precision};
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{SeriesQuery, Store};

const FROM_S: i64 = 0;
const TO_S: i64 = 2700;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a - b).abs() < 1e-12
}

fn assert_same(what: &str, a: &WindowResult, b: &WindowResult) {
    let at = format!("{what}: {} window at {} s", a.workload, (a.window.start_ns - T0_NS) / S);
    assert!(close(a.energy_j, b.energy_j), "{at}: energy {} vs {}", a.energy_j, b.energy_j);
    assert!(close(a.revenue_usd, b.revenue_usd), "{at}: revenue {} vs {}", a.revenue_usd, b.revenue_usd);
    assert!(close(a.energy_cost_usd, b.energy_cost_usd), "{at}: cost {} vs {}", a.energy_cost_usd, b.energy_cost_usd);
    assert_eq!(a.covered_ns, b.covered_ns, "{at}: covered time");
    assert_eq!(a.devices, b.devices, "{at}: devices");
    for (x, y, name) in [(a.work_th, b.work_th, "work_th"), (a.tokens, b.tokens, "tokens")] {
        assert_eq!(x.is_some(), y.is_some(), "{at}: {name}");
        assert!(close(x.unwrap_or(0.0), y.unwrap_or(0.0)), "{at}: {name} {x:?} vs {y:?}");
    }
}

async fn windows(agg: Aggregator, from: EnergyFrom) -> Vec<WindowResult> {
    let agg = agg.with_energy_from(from);
    let mut out = Vec::new();
    agg.compute(T0_NS + FROM_S * S, T0_NS + TO_S * S, agg.window_ns(), None, Windows::Recompute, |w| out.push(w))
        .await
        .unwrap();
    out
}

fn aggregator(store: &Arc<dyn Store>) -> Aggregator {
    let toml = ledger_site::aggregator_config("kind = \"embedded\"\npath = \"unused.db\"");
    let cfg: AggregatorConfig = wattledger::config::from_str(&toml, std::path::Path::new("test.toml")).unwrap();
    Aggregator::new(cfg, store.clone(), Arc::new(SystemClock)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn raw_and_ledger_agree_on_the_agents_data() {
    let batches = run_site().await;
    let store = Arc::new(EmbeddedStore::open_in_memory().unwrap());
    // A third of the batches, from the middle, arrive late: after everything else.
    let n = batches.len();
    let late: Vec<usize> = (n / 3..2 * n / 3).collect();
    for (i, b) in batches.iter().enumerate() {
        if !late.contains(&i) {
            store.write_blocking(&parse(b, Precision::Ns).unwrap()).unwrap();
        }
    }
    let dyn_store: Arc<dyn Store> = store.clone();
    let before = windows(aggregator(&dyn_store), EnergyFrom::Raw).await;
    for i in &late {
        store.write_blocking(&parse(&batches[*i], Precision::Ns).unwrap()).unwrap();
    }

    // The ledger is there, made of every method, and the late data mattered.
    let q = SeriesQuery {
        measurement: "energy_ledger".into(),
        fields: vec!["method".into(), "energy_j".into()],
        tag_filters: vec![],
        start_ns: T0_NS,
        end_ns: T0_NS + 4000 * S,
    };
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    for s in dyn_store.read(&q).await.unwrap() {
        for row in &s.values {
            if let Some(FieldValue::Str(m)) = &row[0] {
                *methods.entry(m.clone()).or_default() += 1;
            }
        }
    }
    for m in ["counter", "power_integral", "reported", "estimated"] {
        assert!(methods.get(m).is_some_and(|&c| c > 10), "ledger methods: {methods:?}");
    }

    let raw = windows(aggregator(&dyn_store), EnergyFrom::Raw).await;
    let auto = windows(aggregator(&dyn_store), EnergyFrom::Auto).await;
    let ledger = windows(aggregator(&dyn_store), EnergyFrom::Ledger).await;
    assert_eq!((raw.len(), auto.len(), ledger.len()), (before.len(), raw.len(), raw.len()));
    let energy = |ws: &[WindowResult]| ws.iter().map(|w| w.energy_j).sum::<f64>();
    assert!(energy(&before) < energy(&raw) * 0.9, "the late third of the data is in the final numbers");

    // auto = raw in every window of every workload.
    for (a, r) in auto.iter().zip(&raw) {
        assert_same("auto vs raw", a, r);
    }
    // ledger = raw in every window the ledger covers completely (for every
    // workload, so that inference servers are covered too).
    let mut full_windows = BTreeMap::new();
    for w in &auto {
        let full = w.ledger_share() == Some(1.0);
        *full_windows.entry(w.window.start_ns).or_insert(true) &= full;
    }
    let mut compared = Vec::new();
    for (l, r) in ledger.iter().zip(&raw) {
        if full_windows[&r.window.start_ns] {
            assert_same("ledger vs raw", l, r);
            compared.push((r.window.start_ns - T0_NS) / S);
        }
    }
    compared.sort_unstable();
    compared.dedup();
    // The fully covered windows include the GPU driver reload (700.5 s), the
    // device joining (913 s), the miner reboot (1000 s), the price change (900 s),
    // the gap (1800–2000 s), the server restart (2100 s) and the `lost` GPU (2200 s).
    for event_s in [700, 913, 1000, 900, 1900, 2100, 2210] {
        assert!(
            compared.iter().any(|&start| start <= event_s && event_s < start + 420),
            "no fully-ledgered window holds {event_s} s; compared windows start at {compared:?}"
        );
    }
    // The windows around the agent restart (1430.5 s) come partly from raw samples.
    let around_restart = auto.iter().find(|w| {
        let s = (w.window.start_ns - T0_NS) / S;
        s <= 1430 && 1430 < s + 420
    });
    let share = around_restart.and_then(|w| w.ledger_share()).unwrap();
    assert!(share > 0.3 && share < 1.0, "ledger share around the restart: {share}");

    // The report says which path each workload came from.
    let report = aggregator(&dyn_store).report(T0_NS, T0_NS + TO_S * S, Windows::Recompute).await.unwrap();
    assert_eq!(report.energy_from, EnergyFrom::Auto);
    for w in &report.workloads {
        let share = w.ledger_share.unwrap();
        assert!(share > 0.8 && share < 1.0, "{}: ledger share {share}", w.workload);
        assert!(close(w.ledger_energy_j + w.raw_energy_j, w.energy_j), "{w:?}");
    }
}

fn assert_reports_agree(a: &serde_json::Value, b: &serde_json::Value) {
    let (a, b) = (a["workloads"].as_array().unwrap(), b["workloads"].as_array().unwrap());
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(b) {
        for k in
            ["energy_j", "facility_energy_j", "revenue_usd", "energy_cost_usd", "coverage", "j_per_th", "tokens_per_j"]
        {
            match (x[k].as_f64(), y[k].as_f64()) {
                (Some(p), Some(q)) => assert!(close(p, q), "{} {k}: {p} vs {q}", x["workload"]),
                _ => assert_eq!(x[k], y[k], "{} {k}", x["workload"]),
            }
        }
    }
}

#[tokio::test]
async fn report_energy_from_raw_and_ledger_agree_in_influxdb() {
    let db = common::TestDb::create().await;
    for batch in site_batches() {
        let r = reqwest::Client::new()
            .post(format!("{}/write?db={}&precision=ns", db.url, db.name))
            .body(batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{:?}", r.text().await);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("influx.toml");
    std::fs::write(&cfg, ledger_site::aggregator_config(&db.store_toml())).unwrap();

    // Over the range the ledger covers completely (driver reload, device joining,
    // miner reboot, price change), the ledger alone gives the raw numbers.
    let raw = report(&cfg, 540, 1380, "raw");
    let ledger = report(&cfg, 540, 1380, "ledger");
    assert_eq!((raw["energy_from"].as_str(), ledger["energy_from"].as_str()), (Some("raw"), Some("ledger")));
    assert_reports_agree(&raw, &ledger);
    for w in ledger["workloads"].as_array().unwrap() {
        assert_eq!(w["ledger_share"].as_f64(), Some(1.0), "{w}");
        assert!(w["energy_j"].as_f64().unwrap() > 0.0, "{w}");
    }
    // Over the whole run, with the agents' start and restart, auto fills in
    // from raw samples and still equals raw.
    let raw = report(&cfg, 0, 2700, "raw");
    let auto = report(&cfg, 0, 2700, "auto");
    assert_reports_agree(&raw, &auto);
    assert_eq!(raw["workloads"][0]["ledger_share"].as_f64(), Some(0.0));
    let share = auto["workloads"][0]["ledger_share"].as_f64().unwrap();
    assert!(share > 0.8 && share < 1.0, "{share}");
}
