//! Checks that need no server: provisioning, units, the name check itself.

#![allow(unused_imports)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{files::*, influx::*, names::*, read, root};

// static checks

#[test]
pub(crate) fn provisioning_files_are_consistent() {
    let schema = schema();
    let ds = datasource();
    let uid = ds["uid"].as_str().unwrap();
    assert_eq!(ds["type"], "influxdb");
    assert_eq!(ds["jsonData"]["version"], "InfluxQL");
    assert_eq!(ds["url"], "${INFLUX_URL}", "URL from the environment");
    for secret in ["password", "httpHeaderValue1"] {
        let v = ds["secureJsonData"][secret].as_str().unwrap_or_else(|| panic!("secureJsonData.{secret} missing"));
        assert!(v.contains("${INFLUX_"), "secureJsonData.{secret} must come from the environment, not the file");
    }
    assert!(ds["jsonData"].get("password").is_none() && ds.get("password").is_none(), "no plain-text password");

    let provider = load_yaml(&root().join("dashboards/grafana/provisioning/dashboards/wattledger.yaml"));
    assert_eq!(provider["providers"][0]["type"], "file");
    let provider_path = provider["providers"][0]["options"]["path"].as_str().unwrap().to_string();
    let compose = read(&root().join("deploy/compose.yaml"));
    assert!(
        compose.contains(&format!("../dashboards/grafana/dashboards:{provider_path}")),
        "deploy/compose.yaml must mount the dashboards where the provider reads them ({provider_path})"
    );

    let mut uids = BTreeSet::new();
    for (file, d) in dashboards() {
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()), "{file}: duplicate uid");
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                assert_eq!(v["datasource"]["uid"], uid, "{file}: variable {}", v["name"]);
                check_names(v["query"].as_str().unwrap(), &schema).unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
        for p in panels(&d) {
            let what = format!("{file}: panel {:?}", p["title"]);
            check_unit(&p["fieldConfig"]["defaults"]["unit"], &what);
            for o in p["fieldConfig"]["overrides"].as_array().unwrap() {
                for prop in o["properties"].as_array().unwrap() {
                    if prop["id"] == "unit" {
                        check_unit(&prop["value"], &what);
                    }
                }
            }
            assert_eq!(p["datasource"]["uid"], uid, "{what}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{what}: no query");
            for t in targets {
                assert_eq!(t["rawQuery"], true, "{what}");
                let q = t["query"].as_str().unwrap();
                check_names(q, &schema).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(q.contains("$timeFilter"), "{what}: no $timeFilter");
                if q.contains("GROUP BY time(") {
                    assert!(q.contains("time($__interval)"), "{what}: buckets must follow $__interval");
                }
            }
        }
    }

    let rules = alert_rules();
    let mut names = BTreeSet::new();
    for r in &rules {
        let what = format!("alert {}", r["uid"]);
        assert!(names.insert(r["uid"].as_str().unwrap().to_string()), "{what}: duplicate uid");
        assert!(r["for"].as_str().is_some_and(|f| f.ends_with('m')), "{what}: for");
        assert!(["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap()), "{what}: severity");
        assert!(r["annotations"]["summary"].is_string(), "{what}: summary");
        let refs: BTreeSet<&str> = r["data"].as_array().unwrap().iter().map(|d| d["refId"].as_str().unwrap()).collect();
        assert!(refs.contains(r["condition"].as_str().unwrap()), "{what}: condition names no query");
        for d in r["data"].as_array().unwrap() {
            if d["datasourceUid"] == "__expr__" {
                let m = &d["model"];
                let expr = m["expression"].as_str().unwrap();
                for id in &refs {
                    if expr == *id || expr.contains(&format!("${id}")) {
                        assert_ne!(*id, d["refId"].as_str().unwrap(), "{what}: refers to itself");
                    }
                }
                if m["type"] != "math" {
                    assert!(refs.contains(expr), "{what}: {expr} is no refId");
                }
            } else {
                assert_eq!(d["datasourceUid"], uid, "{what}");
                check_names(d["model"]["query"].as_str().unwrap(), &schema).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
    for wanted in [
        "unprofitable",
        "jth-high",
        "gpu-idle-burn",
        "hashrate-drop",
        "miner-offline",
        "gpu-lost",
        "device-silent",
        "agent-silent",
        "coverage-low",
        "meter-gap",
    ] {
        assert!(names.contains(&format!("wattledger-{wanted}")), "alert rule {wanted} missing");
    }
}

/// The name check is what catches a renamed field; it must refuse what is not in the schema.
#[test]
pub(crate) fn name_check_refuses_unknown_names() {
    let schema = schema();
    let good = r#"SELECT mean("power_w") FROM "gpu" WHERE "host" =~ /^$host$/ AND $timeFilter GROUP BY time($__interval), "gpu""#;
    check_names(good, &schema).unwrap();
    for bad in [
        good.replace("\"power_w\"", "\"power_watts\""),
        good.replace("GROUP BY time($__interval), \"gpu\"", "GROUP BY time($__interval), \"power_w\""),
        good.replace("FROM \"gpu\"", "FROM \"gpus\""),
        good.replace("\"host\" =~", "\"hostname\" =~"),
        good.replace("FROM \"gpu\"", "FROM \"asic\""),
        good.replace("\"power_w\"", "power_w"),
    ] {
        assert!(check_names(&bad, &schema).is_err(), "accepted: {bad}");
    }
}

/// The main dashboard's `$window` defaults to the aggregator's default short window
/// (the finest written, there from the first minutes on) and falls back to whatever
/// window the store has when that one is not written (`short_window` changed).
#[test]
fn main_dashboard_defaults_to_the_finest_window_or_falls_back() {
    let (_, d) = dashboards().into_iter().find(|(f, _)| f.contains("where-each-joule-earns")).unwrap();
    let var = d["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == "window").unwrap().clone();
    let cfg: wattledger::aggregate::config::WindowsConfig = toml::from_str("").unwrap();
    let short = format!("{}m", cfg.short_window.as_secs() / 60);
    assert_eq!(var["current"]["value"].as_str(), Some(short.as_str()), "{var}");
    let both = ["1h".to_string(), short.clone()];
    assert_eq!(grafana_selection(&var, &both), short);
    assert_eq!(grafana_selection(&var, &["1h".to_string()]), "1h", "falls back to the window written");
}
