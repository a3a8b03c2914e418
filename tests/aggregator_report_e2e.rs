//! End to end: the scenario's line protocol written into the real InfluxDB
//! (`WATTLEDGER_TEST_INFLUXDB_URL`) and into the embedded store, then the
//! `wattledger report` binary on each: both give the same numbers, equal to the
//! hand-computed ones.

mod scenario;

use std::process::Command;

fn report(config: &std::path::Path, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["report", "--config"])
        .arg(config)
        .args(["--from", scenario::FROM, "--to", scenario::TO, "--format", format])
        .output()
        .unwrap();
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn embedded_config(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("wl.db");
    let store = wattledger::store::embedded::EmbeddedStore::open(&db).unwrap();
    let points =
        wattledger::ship::lineproto::parse(&scenario::line_protocol(), wattledger::ship::lineproto::Precision::S)
            .unwrap();
    store.write_blocking(&points).unwrap();
    let cfg = dir.join("embedded.toml");
    std::fs::write(&cfg, scenario::config(&format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()), ""))
        .unwrap();
    cfg
}

#[test]
fn report_from_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = embedded_config(dir.path());
    let json: serde_json::Value = serde_json::from_str(&report(&cfg, "json")).unwrap();
    scenario::assert_report(&json);
    assert_eq!(json["from"], scenario::FROM);
    assert_eq!(json["to"], scenario::TO);

    // The same CSV as GET /api/workloads.csv.
    let csv = report(&cfg, "csv");
    let mut lines = csv.split_terminator("\r\n");
    assert_eq!(lines.next().unwrap().split(',').collect::<Vec<_>>(), wattledger::aggregate::compare::CSV_COLUMNS);
    let h100: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| wattledger::aggregate::compare::CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    assert_eq!((h100[0], h100[1]), ("1", "h100"));
    assert_eq!((h100[col("from")], h100[col("to")]), (scenario::FROM, scenario::TO));
    assert_eq!(h100[col("revenue_usd")].parse::<f64>().unwrap(), 7.0);
    assert_eq!(h100[col("j_per_th")], "", "j_per_th is empty for a GPU contract");
    assert_eq!(h100.len(), wattledger::aggregate::compare::CSV_COLUMNS.len());

    let table = report(&cfg, "table");
    // The demo's table: `$`, its columns and rounding.
    let h100 = table.lines().find(|l| l.starts_with("h100 ")).unwrap_or_else(|| panic!("{table}"));
    for cell in ["ai_contract", "$2.857", "$2.802", "88 %", "$7.00"] {
        assert!(h100.contains(cell), "`{cell}` not in: {h100}\n{table}");
    }
    assert!(table.contains("15.0 J/TH") && table.contains("0.62 tok/J") && !table.contains("-$0.00"), "{table}");
}

#[tokio::test]
async fn report_from_influxdb_equals_the_embedded_store() {
    let url = std::env::var("WATTLEDGER_TEST_INFLUXDB_URL").unwrap_or_else(|_| {
        panic!("WATTLEDGER_TEST_INFLUXDB_URL is not set; start the test servers with: eval \"$(bash .ci/servers.sh start)\"")
    });
    let db = format!("wl_test_aggr_{}", rand::random::<u32>());
    let http = reqwest::Client::new();
    let query = |q: String| {
        let req = http.post(format!("{url}/query")).form(&[("q", q.clone())]);
        async move {
            let r = req.send().await.expect("InfluxDB answers /query");
            assert!(r.status().is_success(), "{q}: {}", r.status());
        }
    };
    query(format!("CREATE DATABASE {db}")).await;
    let r = http.post(format!("{url}/write?db={db}&precision=s")).body(scenario::line_protocol()).send().await.unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);

    let dir = tempfile::tempdir().unwrap();
    let influx_cfg = dir.path().join("influx.toml");
    std::fs::write(
        &influx_cfg,
        scenario::config(&format!("kind = \"influxdb\"\nurl = \"{url}\"\napi = \"v1\"\ndatabase = \"{db}\""), ""),
    )
    .unwrap();
    let from_influx: serde_json::Value = serde_json::from_str(&report(&influx_cfg, "json")).unwrap();
    let from_embedded: serde_json::Value = serde_json::from_str(&report(&embedded_config(dir.path()), "json")).unwrap();
    query(format!("DROP DATABASE {db}")).await;

    scenario::assert_report(&from_influx);
    let (a, b) = (from_influx["workloads"].as_array().unwrap(), from_embedded["workloads"].as_array().unwrap());
    for (x, y) in a.iter().zip(b) {
        for (k, v) in x.as_object().unwrap() {
            match (v.as_f64(), y[k].as_f64()) {
                (Some(p), Some(q)) => assert!((p - q).abs() <= 1e-9 * p.abs().max(1.0), "{k}: influx {p} embedded {q}"),
                _ => assert_eq!(v, &y[k], "{k}"),
            }
        }
    }
}
