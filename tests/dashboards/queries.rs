//! Every panel, variable and alert query against the real InfluxDB.

#![allow(unused_imports)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{common, files::*, influx::*, names::*, read, root};

#[tokio::test]
pub(crate) async fn every_query_runs_against_influxdb() {
    let url = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    let influx = Influx { http: reqwest::Client::new(), url, db: common::unique_name("wl_test_dash") };
    influx.raw(&format!("CREATE DATABASE \"{}\"", influx.db), false).await.unwrap();
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 60 * 60;
    influx.write(&data_set(now_s)).await;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;

    let min_interval_s: i64 =
        datasource()["jsonData"]["timeInterval"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    let mut failures = Vec::new();

    for (file, d) in dashboards() {
        // The dashboard's default range, `now-24h` style.
        let from = d["time"]["from"].as_str().unwrap();
        let hours: i64 = from.trim_start_matches("now-").trim_end_matches('h').parse().unwrap();
        let from_ms = now_ms - hours * 3_600_000;
        let mut vars = vec![
            ("timeFilter".to_string(), time_filter(from_ms, now_ms)),
            ("__interval".to_string(), interval(now_ms - from_ms, min_interval_s)),
        ];
        // Template variables in order, each as Grafana's "All" (multi) or first value.
        for v in d["templating"]["list"].as_array().unwrap() {
            let name = v["name"].as_str().unwrap().to_string();
            let value = if v["type"] == "query" {
                let q = substitute(v["query"].as_str().unwrap(), &vars);
                let res = influx.query(&q).await.unwrap_or_else(|e| panic!("{file}: variable {name}: {e}\n{q}"));
                let values: Vec<String> = res["series"][0]["values"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{file}: variable {name} has no values: {q}"))
                    .iter()
                    .map(|r| r[1].as_str().unwrap().to_string())
                    .collect();
                if v["multi"] == true || v["includeAll"] == true {
                    format!("({})", values.iter().map(|s| regex_escape(s)).collect::<Vec<_>>().join("|"))
                } else {
                    grafana_selection(v, &values).to_string()
                }
            } else {
                v["current"]["value"].as_str().unwrap().to_string()
            };
            if file.contains("where-each-joule-earns") && name == "window" {
                // The finest window written, not 1h: the dashboard has data in its first hour.
                assert_eq!(value, "5m", "{file}: $window defaults to {value}");
            }
            vars.push((name, value));
        }
        for p in panels(&d) {
            for t in p["targets"].as_array().unwrap() {
                let q = substitute(t["query"].as_str().unwrap(), &vars);
                match influx.query(&q).await {
                    Err(e) => failures.push(format!("{file}: panel {}: {e}\n  {q}", p["title"])),
                    Ok(res) => {
                        let s = series(&res);
                        let has_value = s.iter().any(|(_, v)| v.iter().any(Option::is_some))
                            || res["series"].as_array().is_some_and(|a| !a.is_empty()) && p["type"] == "table";
                        if !has_value {
                            failures.push(format!("{file}: panel {} returned no data\n  {q}", p["title"]));
                        }
                    }
                }
            }
        }
    }

    let expected = expected_firing();
    for r in alert_rules() {
        let uid = r["uid"].as_str().unwrap();
        let mut frames: BTreeMap<String, Frames> = BTreeMap::new();
        let mut raw = BTreeMap::new();
        for d in r["data"].as_array().unwrap() {
            let id = d["refId"].as_str().unwrap().to_string();
            let m = &d["model"];
            if d["datasourceUid"] != "__expr__" {
                let from = d["relativeTimeRange"]["from"].as_i64().unwrap();
                let to = d["relativeTimeRange"]["to"].as_i64().unwrap();
                let tf = time_filter(now_ms - from * 1000, now_ms - to * 1000);
                let iv = format!("{}ms", m["intervalMs"].as_i64().unwrap());
                let q =
                    substitute(m["query"].as_str().unwrap(), &[("timeFilter".into(), tf), ("__interval".into(), iv)]);
                match influx.query(&q).await {
                    Ok(res) => {
                        raw.insert(id, series(&res));
                    }
                    Err(e) => {
                        failures.push(format!("alert {uid} query {id}: {e}\n  {q}"));
                        break;
                    }
                }
                continue;
            }
            let expr = m["expression"].as_str().unwrap();
            let f = match m["type"].as_str().unwrap() {
                "reduce" => reduce(&raw[expr], m["reducer"].as_str().unwrap()),
                "threshold" => {
                    let ev = &m["conditions"][0]["evaluator"];
                    threshold(&frames[expr], ev["type"].as_str().unwrap(), ev["params"][0].as_f64().unwrap())
                }
                "math" => math(expr, &frames),
                other => panic!("alert {uid}: expression type {other} not known to this test"),
            };
            frames.insert(id, f);
        }
        let Some(cond) = frames.get(r["condition"].as_str().unwrap()) else { continue };
        let (key, want) = &expected[uid];
        let firing: BTreeSet<String> = cond.iter().filter(|(_, v)| **v != 0.0).map(|(l, _)| culprit(l, key)).collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        if firing != want {
            failures.push(format!(
                "alert {uid}: firing for {firing:?}, expected {want:?} (evaluated {} series)",
                cond.len()
            ));
        }
    }

    influx.raw(&format!("DROP DATABASE \"{}\"", influx.db), false).await.unwrap();
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}
