//! The make registry and the makes added through it: the README table is the registry's,
//! the generic cgminer-family and AxeOS-fork fallbacks read real captures whose identifying
//! keys are removed or changed (said at each test), models are read where the firmware
//! names them, and no credential goes to a host that did not identify itself.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wattledger::collect::miners::identify::{claim_cgminer, identify_axeos_fork, split_multi};
use wattledger::collect::miners::json::parse_lenient;
use wattledger::collect::miners::makes::{self, MAKES};
use wattledger::collect::miners::models::{nominal_label, rated};
use wattledger::collect::miners::{self, finish, identify_axeos, PowerSource, ReadOptions};
use wattledger::sim::miners::{FleetSpec, ManualClock, SimFleet, SimMake};

const T0: i64 = 1_764_000_000_000_000_000;

fn cap(p: &str) -> Value {
    let path = format!("{}/tests/data/miners/{p}", env!("CARGO_MANIFEST_DIR"));
    parse_lenient(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// A loopback block of our own (third octets 60+ are used by no other miner test).
fn block(third: u8) -> [u8; 4] {
    [127, 100 + (std::process::id() % 150) as u8, third, 1]
}

fn ro() -> ReadOptions {
    ReadOptions { timeout: Duration::from_secs(3), max_reply_bytes: 1 << 20 }
}

#[test]
fn the_readme_table_is_the_registry() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/collect/miners/README.md")).unwrap();
    let (begin, end) = ("<!-- makes:begin -->\n", "<!-- makes:end -->");
    let i = readme.find(begin).expect("README has the makes table markers") + begin.len();
    let j = readme[i..].find(end).unwrap() + i;
    assert_eq!(&readme[i..j], makes::readme_table(), "regenerate the table in src/collect/miners/README.md");
    let mut ids: Vec<&str> = MAKES.iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), MAKES.len(), "make ids are unique");
    assert_eq!(SimMake::ALL.len(), MAKES.iter().filter(|m| m.sim.is_some()).count());
    // Every simulated make's every moving field is one its field map reads or one it names.
    for m in SimMake::ALL {
        assert!(makes::by_id(m.name()).is_some());
    }
}

/// The S19 Pro capture's multi-command document.
fn antminer_doc() -> Value {
    let mut doc = serde_json::Map::new();
    for c in ["version", "summary", "stats", "pools"] {
        doc.insert(c.into(), cap(&format!("antminer-stock/{c}.json")));
    }
    Value::Object(doc)
}

#[test]
fn an_unknown_cgminer_reads_as_unknown_with_its_own_description() {
    // The real S19 Pro capture with the keys that say "Antminer" removed from its version block.
    let mut doc = antminer_doc();
    let ver = doc["version"]["VERSION"][0].as_object_mut().unwrap();
    ver.remove("Type");
    let (make, id) = claim_cgminer(&doc);
    assert_eq!(make.id, "cgminer-generic");
    assert_eq!(id.make.as_deref(), Some("unknown"));
    let desc = doc["version"]["STATUS"][0]["Description"].as_str().unwrap().to_owned();
    assert!(id.firmware.as_deref().unwrap().starts_with(&desc), "{:?} vs {desc}", id.firmware);
    let r = finish("h", 4028, &id, &doc);
    let stock = finish("h", 4028, &miners::identify_cgminer(&antminer_doc()), &antminer_doc());
    // The same numbers the make-specific map reads.
    assert_eq!(
        (r.hashrate_ths, r.diff_accepted, r.uptime_s),
        (stock.hashrate_ths, stock.diff_accepted, stock.uptime_s)
    );
    assert_eq!((r.temp_c_max, r.fan_rpm_avg), (stock.temp_c_max, stock.fan_rpm_avg));
    assert_eq!(r.power_source, None, "unrated and no power reported: no estimate");
}

#[test]
fn an_unknown_cgminer_reads_power_from_the_keys_such_firmwares_use() {
    // The real btminer v1 summary (it carries `Power` = 3417 W) under a version block that
    // names no make.
    let summary = cap("whatsminer-v1/summary.json");
    let version =
        json!({"STATUS":[{"STATUS":"S","Description":"cgminer 4.9.2"}],"VERSION":[{"CGMiner":"4.9.2","API":"3.7"}]});
    let doc = json!({"version": version, "summary": summary, "stats": {}, "pools": {}});
    let (make, id) = claim_cgminer(&doc);
    assert_eq!((make.id, id.make.as_deref()), ("cgminer-generic", Some("unknown")));
    assert_eq!(id.firmware.as_deref(), Some("cgminer 4.9.2"));
    let r = finish("h", 4028, &id, &doc);
    assert_eq!((r.power_w, r.power_source), (Some(3417.0), Some(PowerSource::Reported)));
    assert!((r.hashrate_ths.unwrap() - 70.66811452).abs() < 1e-6); // MHS 5s, MH/s
    for key in ["Power Realtime", "PSU Input Power", "total_power"] {
        let mut d = doc.clone();
        let s = d["summary"]["SUMMARY"][0].as_object_mut().unwrap();
        s.remove("Power");
        s.remove("Power_RT");
        s.insert(key.into(), json!(3300));
        let r = finish("h", 4028, &claim_cgminer(&d).1, &d);
        assert_eq!(r.power_w, Some(3300.0), "{key}");
    }
    // A power in milliwatts is no miner's: flagged, not stored.
    let mut d = doc.clone();
    d["summary"]["SUMMARY"][0]["Power"] = json!(3_417_000);
    let r = finish("h", 4028, &claim_cgminer(&d).1, &d);
    assert_eq!(r.power_w, None);
    assert!(r.error.as_deref().unwrap().contains("unit slip"), "{r:?}");
    // THS forms.
    let mut d = doc.clone();
    let s = d["summary"]["SUMMARY"][0].as_object_mut().unwrap();
    for k in ["MHS 5s", "MHS av", "MHS 1m", "MHS 5m", "MHS 15m", "HS RT"] {
        s.remove(k);
    }
    s.insert("THS 5s".into(), json!(70.5));
    assert_eq!(finish("h", 4028, &claim_cgminer(&d).1, &d).hashrate_ths, Some(70.5));
}

#[test]
fn an_axeos_fork_is_read_with_its_own_name() {
    // The real Bitaxe Supra capture, with a fork's `deviceModel` set.
    let mut info = cap("bitaxe-axeos/system_info.json");
    let bitaxe = finish(
        "h",
        80,
        &identify_axeos(&json!({ "system_info": info.clone() })),
        &json!({ "system_info": info.clone() }),
    );
    info["deviceModel"] = json!("NerdQAxe++");
    let doc = json!({ "system_info": info });
    assert!(!makes::axeos::is_bitaxe(&doc["system_info"]));
    let id = identify_axeos_fork(&doc);
    assert_eq!(id.make.as_deref(), Some("NerdQAxe++"));
    assert!(id.firmware.as_deref().unwrap().starts_with("AxeOS-compatible "));
    let r = finish("h", 80, &id, &doc);
    assert_eq!((r.hashrate_ths, r.power_w, r.uptime_s), (bitaxe.hashrate_ths, bitaxe.power_w, bitaxe.uptime_s));
}

#[test]
fn nominal_figures_and_unrated() {
    assert_eq!(rated(Some("ePIC"), Some("Antminer S19 XP")).unwrap().model, "S19 XP");
    for (make, model) in [
        ("Antminer", "S21"),
        ("Antminer", "S21 Pro"),
        ("Antminer", "S21 XP"),
        ("Antminer", "S21+ Hydro"),
        ("Antminer", "S23"),
        ("Whatsminer", "M60"),
        ("Whatsminer", "M66S_VK30"),
        ("Avalon", "A15"),
    ] {
        let s = rated(Some(make), Some(model)).unwrap_or_else(|| panic!("{make} {model}"));
        assert!(!s.source.is_empty() && s.j_per_th() > 5.0 && s.j_per_th() < 40.0, "{s:?}");
    }
    assert_eq!(nominal_label(Some("unknown"), Some("D10")), "unrated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_read_where_the_firmware_names_them() {
    let clock = Arc::new(ManualClock::new(T0));
    let makes = [SimMake::WhatsminerV2, SimMake::Epic];
    let spec = FleetSpec {
        count: makes.len(),
        bind: Ipv4Addr::from(block(60)),
        port: 4028,
        ports_layout: false,
        mix: makes.iter().map(|m| (*m, 1)).collect(),
        faults: Vec::new(),
        variation: false,
    };
    let fleet = SimFleet::start(spec, clock).await.unwrap();
    let a = fleet.addrs();
    let wm = miners::probe(&a[0].ip().to_string(), 4028, &ro()).await.unwrap();
    assert_eq!(wm.model.as_deref(), Some("M30S+_VE40")); // devdetails
    let epic = miners::probe(&a[1].ip().to_string(), 4028, &ro()).await.unwrap();
    assert_eq!((epic.make.as_deref(), epic.model.as_deref()), (Some("ePIC"), Some("Antminer S19 XP")));
    fleet.stop().await;
}

/// An HTTP server that is no miner and records every request it gets.
async fn recording_server(addr: (Ipv4Addr, u16)) -> (u16, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let h = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let log = l2.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while let Ok(k) =
                    tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf[n..])).await.unwrap_or(Ok(0))
                {
                    if k == 0 {
                        break;
                    }
                    n += k;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || buf[..n].starts_with(b"{") {
                        break;
                    }
                }
                log.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (port, log, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_to_a_host_that_is_no_braiins_and_http_is_probed_once_on_8080() {
    let ip = Ipv4Addr::from(block(61));
    for port in [0u16, 8080] {
        let (port, log, server) = recording_server((ip, port)).await;
        let e = miners::probe(&ip.to_string(), port, &ro()).await.unwrap_err();
        assert!(e.to_string().contains("not a miner API"), "{e}");
        let reqs = log.lock().unwrap().clone();
        for r in &reqs {
            assert!(!r.contains("password") && !r.contains("/auth/login"), "credentials sent on port {port}: {r}");
        }
        // Each HTTP request at most once (8080 used to run the whole HTTP sequence twice).
        let lines: Vec<&str> =
            reqs.iter().filter_map(|r| r.lines().next()).filter(|l| l.contains(" HTTP/1.1")).collect();
        let mut uniq = lines.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(lines.len(), uniq.len(), "port {port}: {lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("GET /api/system/info")), "{lines:?}");
        server.abort();
    }
}

#[test]
fn only_the_braiins_refusal_earns_the_login() {
    use wattledger::collect::miners::makes::braiins_rest::challenge;
    assert!(challenge(401, &json!({"code": 16, "message": "missing or invalid authorization token"})));
    assert!(!challenge(401, &json!({"code": 401, "message": "Unauthorized"})));
    assert!(!challenge(401, &json!({})));
    assert!(!challenge(200, &json!({"code": 16, "message": "x"})));
}

#[test]
fn split_multi_moves_the_parts() {
    let v = json!({"version":[{"STATUS":[{"STATUS":"S"}],"VERSION":[{}]}]});
    assert!(split_multi(v, &["version"]).unwrap().contains_key("version"));
}
