//! docs/retention.md against a real influxd: its InfluxQL sets up the retention
//! policies it describes, and with `windows_retention_policy` the aggregator writes
//! its windows to the policy without expiry and serves them from there, while raw
//! samples land in the 14-day default.

mod common;
mod scenario;

use std::sync::Arc;

use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::{Aggregator, Windows};
use wattledger::model::{Clock, SystemClock};

const S: i64 = 1_000_000_000;

/// The statements of the page's ```influxql blocks, one per line.
fn documented_influxql() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/retention.md")).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        match line.trim() {
            "```influxql" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

struct FixedClock(i64);

impl Clock for FixedClock {
    fn now_ns(&self) -> i64 {
        self.0
    }
}

#[tokio::test]
async fn documented_retention_policies_work_on_influxd() {
    let db = common::TestDb::create().await;
    let statements = documented_influxql();
    assert!(statements.len() >= 3, "{statements:?}");
    let mut shown = serde_json::Value::Null;
    for q in &statements {
        let q = q.replace("\"wattledger\"", &format!("\"{}\"", db.name));
        if q.starts_with("SHOW") {
            shown = common::influxql_get(&db.url, &db.name, &q).await;
        } else {
            common::influxql_post(&db.url, &q).await;
        }
    }
    // name, duration, shardGroupDuration, replicaN, default
    let policies = shown["results"][0]["series"][0]["values"].as_array().cloned().unwrap_or_default();
    let policy = |name: &str| policies.iter().find(|p| p[0] == name).cloned().unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(policy("raw_14d")[1], "336h0m0s");
    assert_eq!(policy("raw_14d")[4], true, "raw_14d is the default");
    assert_eq!(policy("forever")[1], "0s", "no expiry");

    // Raw samples through the default policy (no rp=), windows to "forever".
    let store_toml = db.store_toml();
    let toml = scenario::config(&store_toml, "windows_retention_policy = \"forever\"\n");
    let cfg: AggregatorConfig = wattledger::config::from_str(&toml, std::path::Path::new("t.toml")).unwrap();
    let store = wattledger::store::open_store(&cfg.store).await.unwrap();
    let lines = scenario::line_protocol();
    let points = wattledger::ship::lineproto::parse(&lines, wattledger::ship::lineproto::Precision::S).unwrap();
    store.write(&points).await.unwrap();
    let now = (scenario::T0_S + scenario::MINUTES * 60 + 30) * S;
    let agg = Aggregator::new(cfg, store, Arc::new(FixedClock(now))).unwrap();
    let stats = agg.run_once(now).await.unwrap();
    assert!(stats.windows_written > 0, "{stats:?}");

    let count = |rp: &str, m: &str| {
        let q = format!("SELECT count(\"energy_j\") FROM \"{}\".\"{rp}\".\"{m}\"", db.name);
        let (url, name) = (db.url.clone(), db.name.clone());
        async move {
            let v = common::influxql_get(&url, &name, &q).await;
            v["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0)
        }
    };
    assert!(count("forever", "workload_efficiency").await > 0);
    assert_eq!(count("raw_14d", "workload_efficiency").await, 0, "no windows in the raw policy");
    assert!(count("raw_14d", "gpu").await > 0, "raw samples in the default policy");

    // The windows are served from "forever": the report from the store equals the
    // one recomputed from the raw samples.
    let (from, to) = (scenario::T0_S * S, (scenario::T0_S + 7200) * S);
    let stored = agg.report(from, to, Windows::Stored { write_back: false }).await.unwrap();
    let recomputed = agg.report(from, to, Windows::Recompute).await.unwrap();
    let json = serde_json::to_value(&stored).unwrap();
    scenario::assert_report(&json);
    // The same within rounding (the stored window sums its chunks in another order).
    let again = serde_json::to_value(&recomputed).unwrap();
    for (a, b) in json["workloads"].as_array().unwrap().iter().zip(again["workloads"].as_array().unwrap()) {
        for (key, va) in a.as_object().unwrap() {
            match (va.as_f64(), b[key].as_f64()) {
                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-12 * x.abs().max(1.0), "{key}: {x} vs {y}"),
                _ => assert_eq!(va, &b[key], "{key}"),
            }
        }
    }

    // The option is refused where it cannot work.
    let embedded = scenario::config("kind = \"embedded\"\npath = \"x.db\"", "windows_retention_policy = \"forever\"\n");
    let cfg: AggregatorConfig = wattledger::config::from_str(&embedded, std::path::Path::new("t.toml")).unwrap();
    let store = Arc::new(wattledger::store::embedded::EmbeddedStore::open_in_memory().unwrap());
    let err = Aggregator::new(cfg, store, Arc::new(SystemClock)).unwrap_err();
    assert!(err.to_string().contains("windows_retention_policy"), "{err}");
}
