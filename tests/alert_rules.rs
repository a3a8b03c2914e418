//! The Grafana rule file and the alert engine's defaults say the same thing, from
//! one list (`wattledger::alert::config::DEFAULTS`): every Grafana rule names the
//! engine kind it stands for (label `kind`) with the same severity, and where both
//! measure the same quantity (unprofitable, gpu_idle_burn, hashrate_low,
//! low_coverage) the threshold and `for` (and for hashrate_low the window and the
//! baseline) are equal too. Also: the dashboards' alert annotation query
//! runs against a real InfluxDB on `alert` points the engine writes.

mod common;

use std::collections::BTreeMap;

use wattledger::alert::config::{Expected, Kind, DEFAULTS};
use wattledger::alert::eval::BASELINE_NS;
use yaml_rust2::{Yaml, YamlLoader};

const RULES: &str = "dashboards/grafana/provisioning/alerting/wattledger-rules.yaml";

fn rules() -> Vec<Yaml> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES)).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    doc["groups"][0]["rules"].as_vec().unwrap().clone()
}

fn kind_of(r: &Yaml) -> Kind {
    let k = r["labels"]["kind"].as_str().unwrap_or_else(|| panic!("{:?} has no `kind` label", r["uid"]));
    serde_json::from_value(serde_json::Value::String(k.into())).unwrap_or_else(|_| panic!("kind {k} is no engine kind"))
}

fn seconds(s: &str) -> u64 {
    wattledger::config::parse_duration(s).unwrap().as_secs()
}

/// The numbers a rule compares against: a threshold's parameter, or the
/// constants of a math expression (`$C > 150 && $D < 10`).
fn thresholds(r: &Yaml) -> Vec<f64> {
    let mut out = Vec::new();
    for d in r["data"].as_vec().unwrap() {
        let m = &d["model"];
        match m["type"].as_str() {
            Some("threshold") => {
                let p = &m["conditions"][0]["evaluator"]["params"][0];
                out.push(p.as_f64().or_else(|| p.as_i64().map(|i| i as f64)).unwrap());
            }
            Some("math") => {
                let e = m["expression"].as_str().unwrap();
                for tok in e.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
                    if !tok.is_empty() && !e.contains(&format!("${tok}")) {
                        out.push(tok.parse().unwrap());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn grafana_rules_and_engine_defaults_agree() {
    let mut covered: BTreeMap<Kind, usize> = BTreeMap::new();
    for r in rules() {
        let kind = kind_of(&r);
        let d = kind.default_rule();
        let uid = r["uid"].as_str().unwrap();
        *covered.entry(kind).or_default() += 1;
        assert_eq!(r["labels"]["severity"].as_str(), Some(d.severity), "{uid}: severity of {kind}");
        match kind {
            Kind::Unprofitable | Kind::LowCoverage => {
                assert_eq!(thresholds(&r), vec![d.threshold], "{uid}: threshold of {kind}");
                assert_eq!(seconds(r["for"].as_str().unwrap()), d.for_s, "{uid}: for of {kind}");
            }
            Kind::GpuIdleBurn => {
                assert_eq!(thresholds(&r), vec![d.threshold, d.util_below_pct], "{uid}: power and utilisation");
                assert_eq!(seconds(r["for"].as_str().unwrap()), d.for_s, "{uid}: for of {kind}");
            }
            // The mean hashrate of the window (query A) against the miner's own mean
            // over the baseline before it (query B), which is what the engine's
            // default (`expected = "baseline"`) compares: `$C < (1 - threshold %) * $D`.
            Kind::HashrateLow => {
                assert_eq!(d.expected, Some(Expected::Baseline), "{uid}: Grafana has no rated hashrate");
                let fraction = thresholds(&r);
                assert_eq!(fraction.len(), 1, "{uid}: {fraction:?}");
                assert!((fraction[0] - (1.0 - d.threshold / 100.0)).abs() < 1e-9, "{uid}: {fraction:?} against {d:?}");
                assert_eq!(seconds(r["for"].as_str().unwrap()), d.for_s, "{uid}: for of {kind}");
                let range = |ref_id: &str| {
                    let q = r["data"].as_vec().unwrap().iter().find(|q| q["refId"].as_str() == Some(ref_id)).unwrap();
                    let t = &q["relativeTimeRange"];
                    (t["from"].as_i64().unwrap() as u64, t["to"].as_i64().unwrap() as u64)
                };
                assert_eq!(range("A"), (d.window_s, 0), "{uid}: the window");
                let baseline_s = (BASELINE_NS / 1_000_000_000) as u64;
                assert_eq!(range("B"), (d.window_s + baseline_s, d.window_s), "{uid}: the baseline before the window");
            }
            // The |gap %| of the latest 1h window of `meter_reconciliation`, which is
            // what the engine compares (its default window is the hour).
            Kind::MeterGap => {
                assert_eq!(thresholds(&r), vec![d.threshold], "{uid}: threshold of {kind}");
                assert_eq!(seconds(r["for"].as_str().unwrap()), d.for_s, "{uid}: for of {kind}");
                let query = r["data"][0]["model"]["query"].as_str().unwrap();
                assert!(query.contains("abs(\"gap_pct\")"), "{uid}: the gap counts either way: {query}");
                assert_eq!(d.window_s, 3600, "{uid}: the rule reads 1h windows");
                assert!(query.contains("\"window\" = '1h'"), "{uid}: {query}");
            }
            // Measured in other units in InfluxQL (absolute J/TH, readings per
            // minute): the kind and severity must agree.
            _ => {}
        }
    }
    // Every kind has a Grafana counterpart but market_stale: the age of the latest
    // point cannot be told from a query that returns no rows (`noDataState: OK`).
    for d in DEFAULTS {
        let expected = !matches!(d.kind, Kind::MarketStale);
        assert_eq!(covered.contains_key(&d.kind), expected, "{}: Grafana rule", d.kind);
    }
}

#[tokio::test]
async fn the_dashboards_alert_annotation_reads_alert_points() {
    let db = common::TestDb::create().await;
    let store = wattledger::store::open_store(&common::store_config(&db.store_toml())).await.unwrap();
    let now = wattledger::model::now_ns();
    let alert = wattledger::alert::state::Alert {
        alertname: "gpu_idle_burn".into(),
        kind: "gpu_idle_burn".into(),
        severity: "warning".into(),
        labels: [("site".to_string(), "a".to_string()), ("device".to_string(), "rig/GPU-1".to_string())].into(),
        state: wattledger::alert::state::State::Firing,
        active_since_ns: now,
        firing_since_ns: Some(now),
        resolved_ns: None,
        clear_since_ns: None,
        value: 210.0,
        threshold: 150.0,
        unit: "W".into(),
        window: "10m".into(),
        summary: "GPU rig/GPU-1 idle: 210 W".into(),
        am_sent_ns: None,
        am_resolved_sent: false,
        webhook_sent: None,
    };
    let p = wattledger::alert::alert_point(&alert, wattledger::alert::state::State::Firing, now);
    store.write(&[p]).await.unwrap();
    for name in ["where-each-joule-earns", "gpu-fleet", "miner-fleet"] {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dashboards/grafana/dashboards/{name}.json"));
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let a = &d["annotations"]["list"][0];
        let q = a["query"].as_str().unwrap().replace("$timeFilter", &format!("time > {}", now - 3_600_000_000_000));
        let v = common::influxql_get(&db.url, &db.name, &q).await;
        let s = &v["results"][0]["series"][0];
        let cols: Vec<&str> = s["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let text = a["textColumn"].as_str().unwrap();
        let at = cols.iter().position(|c| *c == text).unwrap_or_else(|| panic!("{name}: no column {text} in {cols:?}"));
        assert_eq!(s["values"][0][at], "GPU rig/GPU-1 idle: 210 W", "{name}: {v}");
        assert!(cols.contains(&a["tagsColumn"].as_str().unwrap()), "{name}: {cols:?}");
    }
}
