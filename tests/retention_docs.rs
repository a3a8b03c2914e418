//! docs/retention.md against a real influxd: its InfluxQL sets up the retention
//! policies it describes, and with `windows_retention_policy` the aggregator writes
//! its windows to the policy without expiry and serves them from there, while raw
//! samples land in the 14-day default. With `retention_policies` on the agent's
//! sink and on the aggregator's `[store]`, the energy ledger is written to and read
//! from the policy without expiry too.

mod common;
#[allow(dead_code)]
#[path = "common/ledger_site.rs"]
mod ledger_site;
mod scenario;

use std::sync::Arc;

use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::{Aggregator, Windows};
use wattledger::model::{Clock, SystemClock};

const S: i64 = 1_000_000_000;

/// Runs the page's ```influxql statements on `db`; returns `SHOW RETENTION POLICIES`.
async fn create_documented_policies(db: &common::TestDb) -> serde_json::Value {
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
    shown
}

/// Points of `measurement` in one retention policy of `db`.
async fn count_in(db: &common::TestDb, rp: &str, measurement: &str, field: &str) -> u64 {
    let q = format!("SELECT count(\"{field}\") FROM \"{}\".\"{rp}\".\"{measurement}\"", db.name);
    let v = common::influxql_get(&db.url, &db.name, &q).await;
    v["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0)
}

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

/// How far to move a fixed-date scenario starting at `t0_ns` and lasting `span_ns`:
/// the documented raw policy keeps 14 days and influxd refuses older points, so
/// the scenario is moved by whole weeks (hours and weekdays kept) to end an hour
/// or more before now.
fn weeks_to_now(t0_ns: i64, span_ns: i64) -> i64 {
    const WEEK_NS: i64 = 7 * 86_400 * S;
    let now = wattledger::model::now_ns();
    ((now - 3600 * S - span_ns - t0_ns) / WEEK_NS).max(0) * WEEK_NS
}

impl Clock for FixedClock {
    fn now_ns(&self) -> i64 {
        self.0
    }
}

#[tokio::test]
async fn documented_retention_policies_work_on_influxd() {
    let db = common::TestDb::create().await;
    let shown = create_documented_policies(&db).await;
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
    let mut points = wattledger::ship::lineproto::parse(&lines, wattledger::ship::lineproto::Precision::S).unwrap();
    let shift = weeks_to_now(scenario::T0_S * S, (scenario::MINUTES * 60 + 30) * S);
    points.iter_mut().for_each(|p| p.time_ns += shift);
    store.write(&points).await.unwrap();
    let now = (scenario::T0_S + scenario::MINUTES * 60 + 30) * S + shift;
    let agg = Aggregator::new(cfg, store, Arc::new(FixedClock(now))).unwrap();
    let stats = agg.run_once(now).await.unwrap();
    assert!(stats.windows_written > 0, "{stats:?}");

    assert!(count_in(&db, "forever", "workload_efficiency", "energy_j").await > 0);
    assert_eq!(count_in(&db, "raw_14d", "workload_efficiency", "energy_j").await, 0, "no windows in the raw policy");
    assert!(count_in(&db, "raw_14d", "gpu", "energy_j").await > 0, "raw samples in the default policy");

    // The windows are served from "forever": the report from the store equals the
    // one recomputed from the raw samples.
    let (from, to) = (scenario::T0_S * S + shift, (scenario::T0_S + 7200) * S + shift);
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

/// "Keeping the ledger forever": an agent sink with `retention_policies = {
/// energy_ledger = "forever" }` sends the ledger there and its raw samples to the
/// 14-day default; an aggregator whose `[store]` names the same route reads the
/// ledger from there and gets the raw samples' energy.
#[tokio::test]
async fn the_ledger_is_routed_to_the_policy_without_expiry() {
    let db = common::TestDb::create().await;
    create_documented_policies(&db).await;
    let route = "retention_policies = { energy_ledger = \"forever\" }";
    let sink: wattledger::ship::SinkConfig =
        toml::from_str(&format!("type = \"influxdb_v1\"\nurl = \"{}\"\ndatabase = \"{}\"\n{route}\n", db.url, db.name))
            .unwrap();
    sink.validate().unwrap();
    let writer = sink.build().unwrap();
    assert!(writer.describe().contains("energy_ledger to influxdb v1"), "{}", writer.describe());
    // The real agent pipeline's batches (virtual time, a runtime of its own).
    let shift = weeks_to_now(ledger_site::T0_NS, ledger_site::END_S as i64 * S);
    for b in ledger_site::site_batches() {
        let mut points = wattledger::ship::lineproto::parse(&b, wattledger::ship::lineproto::Precision::Ns).unwrap();
        points.iter_mut().for_each(|p| p.time_ns += shift);
        writer.write_lines(&wattledger::ship::lineproto::encode_batch(&points).unwrap()).await.unwrap();
    }
    assert!(count_in(&db, "forever", "energy_ledger", "energy_j").await > 0, "the ledger in forever");
    assert_eq!(count_in(&db, "raw_14d", "energy_ledger", "energy_j").await, 0, "no ledger in raw_14d");
    assert!(count_in(&db, "raw_14d", "gpu", "energy_j").await > 0, "raw samples in raw_14d");
    assert_eq!(count_in(&db, "forever", "gpu", "energy_j").await, 0, "no raw samples in forever");

    let dir = tempfile::tempdir().unwrap();
    let routed = dir.path().join("routed.toml");
    std::fs::write(&routed, ledger_site::aggregator_config(&format!("{}{route}\n", db.store_toml()))).unwrap();
    let unrouted = dir.path().join("unrouted.toml");
    std::fs::write(&unrouted, ledger_site::aggregator_config(&db.store_toml())).unwrap();
    // Over a range the ledger covers completely, it gives the raw samples' energy.
    let t0 = ledger_site::T0_NS + shift;
    let raw = ledger_site::report_at(&routed, t0, 540, 1380, "raw");
    let ledger = ledger_site::report_at(&routed, t0, 540, 1380, "ledger");
    let missed = ledger_site::report_at(&unrouted, t0, 540, 1380, "ledger");
    let (raw, ledger, missed) = (&raw["workloads"], &ledger["workloads"], &missed["workloads"]);
    for i in 0..raw.as_array().unwrap().len() {
        let (r, l) = (raw[i]["energy_j"].as_f64().unwrap(), ledger[i]["energy_j"].as_f64().unwrap());
        assert!(r > 0.0 && (r - l).abs() <= 1e-9 * r, "{}: raw {r} J, ledger {l} J", raw[i]["workload"]);
        assert_eq!(ledger[i]["ledger_share"].as_f64(), Some(1.0), "{}", ledger[i]);
        // Without the route the ledger is not where the aggregator looks.
        assert_eq!(missed[i]["energy_j"].as_f64(), Some(0.0), "{}", missed[i]);
    }

    // Refused where it cannot work: a v2 sink, and an aggregator on the embedded store.
    let v2: wattledger::ship::SinkConfig =
        toml::from_str(&format!("type = \"influxdb_v2\"\nurl = \"{}\"\nbucket = \"b\"\n{route}\n", db.url)).unwrap();
    let err = v2.validate().unwrap_err();
    assert_eq!(err.at, "retention_policies", "{err}");
    assert!(err.problem.contains("`buckets`"), "names the v2 key: {err}");
    let embedded = ledger_site::aggregator_config(&format!("kind = \"embedded\"\npath = \"x.db\"\n{route}\n"));
    let cfg: AggregatorConfig = wattledger::config::from_str(&embedded, std::path::Path::new("t.toml")).unwrap();
    let err = cfg.validate().unwrap_err();
    assert!(err.to_string().contains("store.retention_policies"), "{err}");
}
