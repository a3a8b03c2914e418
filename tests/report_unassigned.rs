//! Devices whose `workload` tag names no configured workload are not dropped: the
//! report (table and JSON, which the API serves as is) shows them as one
//! "unassigned" row with their measured energy, and warns with the close names.

mod scenario;

use std::fmt::Write as _;
use std::process::Command;

#[test]
fn devices_in_no_workload_are_an_unassigned_row_with_their_energy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wl.db");
    let mut lp = scenario::line_protocol();
    for i in 0..=scenario::MINUTES {
        let t = scenario::T0_S + i * 60;
        // `btcc`: a typo for `btc`. 1000 W for 2 h is 2 kWh.
        writeln!(lp, "asic,site=s1,host=rig9,miner=m9,workload=btcc power_w=1000,hashrate_ths=50,online=true {t}")
            .unwrap();
        // No workload tag at all: 500 W for 2 h is 1 kWh.
        writeln!(lp, "gpu,site=s1,host=rig9,gpu=0,uuid=GPU-9 power_w=500,status=\"ok\" {t}").unwrap();
    }
    let points = wattledger::ship::lineproto::parse(&lp, wattledger::ship::lineproto::Precision::S).unwrap();
    wattledger::store::embedded::EmbeddedStore::open(&db).unwrap().write_blocking(&points).unwrap();
    let cfg = dir.path().join("aggregator.toml");
    std::fs::write(&cfg, scenario::config(&format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()), ""))
        .unwrap();
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_wattledger"))
            .args(["report", "--config"])
            .arg(&cfg)
            .args(["--from", scenario::FROM, "--to", scenario::TO, "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (json, stderr) = run("json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let u = &v["unassigned"];
    assert_eq!(u["devices"], 2, "{json}");
    assert!((u["energy_j"].as_f64().unwrap() - 3.0 * 3.6e6).abs() < 1.0, "{u}");
    let tags = u["tags"].as_array().unwrap();
    assert_eq!((tags[0]["workload"].as_str(), tags[0]["devices"].as_u64()), (Some(""), Some(1)), "{u}");
    assert_eq!(tags[1]["workload"], "btcc");
    assert_eq!(tags[1]["close"], serde_json::json!(["btc"]));
    assert!((tags[1]["energy_j"].as_f64().unwrap() - 2.0 * 3.6e6).abs() < 1.0, "{u}");
    let warnings: Vec<&str> = v["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(
        warnings.contains(
            &"1 device with workload = \"btcc\", which no [[workloads]] entry names (2.000 kWh) is shown as unassigned; did you mean btc?"
        ),
        "{warnings:?}"
    );
    assert!(stderr.contains("did you mean btc?"), "{stderr}");
    // The configured workloads are unchanged by the extra devices: btc still has 2 miners' energy.
    let btc = v["workloads"].as_array().unwrap().iter().find(|w| w["workload"] == "btc").unwrap();
    assert!((btc["energy_j"].as_f64().unwrap() - 9.0 * 3.6e6).abs() < 1.0, "{btc}");
    let (table, _) = run("table");
    assert!(table.contains("unassigned: 2 devices, 3.0 kWh, in no workload (workload tags: (no tag), btcc"), "{table}");
}
