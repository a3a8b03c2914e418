//! Redfish BMCs: DMTF's published mockups (tests/data/meters/redfish, BSD-3) served
//! over HTTP by the simulated Redfish service, with basic and session auth.

use std::path::PathBuf;
use std::time::Duration;

use wattledger::collect::meters::redfish::RedfishMeter;
use wattledger::collect::meters::{MeterConfig, MeterDriver, MeterUrl, MetersConfig, MetersSource};
use wattledger::collect::Source;
use wattledger::sim::meters::{RedfishTree, SimRedfish};

fn mockup(name: &str) -> RedfishTree {
    RedfishTree::Mockup(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/meters/redfish").join(name))
}

async fn serve(tree: RedfishTree, creds: bool, delay_ms: u64) -> SimRedfish {
    let creds = creds.then(|| ("admin".to_string(), "s3cret-pass".to_string()));
    SimRedfish::start("127.0.0.1:0".parse().unwrap(), tree, creds, Duration::from_millis(delay_ms)).await.unwrap()
}

fn cfg(url: &str, extra: &str) -> MeterConfig {
    toml::from_str(&format!("name = \"bmc\"\nurl = \"{url}\"\n{extra}")).unwrap()
}

async fn read(c: &MeterConfig) -> Result<Vec<wattledger::collect::meters::ChannelReading>, String> {
    let m = RedfishMeter::new(&MeterUrl::parse(&c.url).unwrap(), c, Duration::from_secs(3)).map_err(|e| e.0)?;
    m.read().await.map_err(|e| e.0)
}

#[tokio::test]
async fn rackmount1_environment_metrics_first_then_the_chassis_energy_sensor() {
    let s = serve(mockup("public-rackmount1"), false, 0).await;
    let r = read(&cfg(&s.url(), "")).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].channel, "1U");
    // EnvironmentMetrics says 374 W; the deprecated Power resource says 344 W.
    assert_eq!(r[0].power_w, Some(374.0));
    assert_eq!(r[0].power_from.as_deref(), Some("/redfish/v1/Chassis/1U/EnvironmentMetrics PowerWatts.Reading"));
    // No EnergykWh in EnvironmentMetrics: the chassis's own EnergykWh sensor.
    let from = r[0].energy_from.clone().unwrap();
    assert_eq!(from, "/redfish/v1/Chassis/1U/Sensors/TotalEnergy Reading");
    let ps = |n: &str| -> f64 {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/data/meters/redfish/public-rackmount1/Chassis/1U/Sensors/{n}/index.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["Reading"].as_f64().unwrap()
    };
    assert_eq!(r[0].energy_j, Some(ps("TotalEnergy") * 3.6e6));
}

#[tokio::test]
async fn localstorage_falls_back_to_the_deprecated_power_resource() {
    let s = serve(mockup("public-localstorage"), false, 0).await;
    let r = read(&cfg(&s.url(), "")).await.unwrap();
    assert_eq!(r[0].power_w, Some(344.0));
    assert_eq!(r[0].power_from.as_deref(), Some("/redfish/v1/Chassis/1U/Power PowerControl[0].PowerConsumedWatts"));
    assert_eq!(r[0].energy_j, None, "the Power resource has no energy counter");
}

#[tokio::test]
async fn session_and_basic_auth_and_wrong_passwords() {
    let s = serve(mockup("public-rackmount1"), true, 0).await;
    let with = |auth: &str, pw: &str| {
        cfg(&s.url(), &format!("username = \"admin\"\npassword = \"{pw}\"\nauth = \"{auth}\"\n"))
    };
    assert_eq!(read(&with("session", "s3cret-pass")).await.unwrap()[0].power_w, Some(374.0));
    assert_eq!(read(&with("basic", "s3cret-pass")).await.unwrap()[0].power_w, Some(374.0));
    let e = read(&with("session", "nope")).await.unwrap_err();
    assert!(e.contains("session") && e.contains("401"), "{e}");
    let e = read(&with("basic", "nope")).await.unwrap_err();
    assert!(e.contains("check username and password"), "{e}");
    let e = read(&cfg(&s.url(), "")).await.unwrap_err();
    assert!(e.contains("401"), "{e}");
}

#[tokio::test]
async fn a_slow_bmc_times_out_alone_and_is_offline_while_the_others_are_read() {
    let slow = serve(mockup("public-rackmount1"), false, 3000).await;
    let fast = serve(mockup("public-localstorage"), false, 0).await;
    let c: MetersConfig = toml::from_str(&format!(
        "timeout = \"500ms\"\nconcurrency = 2\n[[devices]]\nname = \"slow\"\nurl = \"{}\"\n[[devices.channels]]\nchannel = \"1U\"\ngpu_host = \"gpu-node-1\"\n[[devices]]\nname = \"fast\"\nurl = \"{}\"\n",
        slow.url(),
        fast.url()
    ))
    .unwrap();
    c.validate().unwrap();
    let mut src = MetersSource::new(&c).unwrap();
    let started = std::time::Instant::now();
    let points = src.collect(7).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(2000), "{:?}", started.elapsed());
    let slow_p = points.iter().find(|p| p.tag_value("meter") == Some("slow")).unwrap();
    assert_eq!(slow_p.tag_value("covers"), Some("gpu-node-1"));
    assert!(slow_p.field_value("power_w").is_none(), "offline is never 0 W: {slow_p:?}");
    assert!(slow_p.field_value("status").and_then(|v| v.as_str()).unwrap().contains("no answer within"), "{slow_p:?}");
    let fast_p = points.iter().find(|p| p.tag_value("meter") == Some("fast")).unwrap();
    assert_eq!(fast_p.field_value("power_w").and_then(|v| v.as_f64()), Some(344.0));
}

#[tokio::test]
async fn a_simulated_bmc_counts_energy_with_its_clock() {
    use std::sync::Arc;
    use wattledger::model::{Clock, SystemClock};
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let start_ns = clock.now_ns() - 3_600_000_000_000; // one hour ago
    let s = serve(RedfishTree::Bmc { chassis: vec![("GPU1".into(), 7200.0)], clock, start_ns }, false, 0).await;
    let r = read(&cfg(&s.url(), "")).await.unwrap();
    assert_eq!(r[0].power_w, Some(7200.0));
    let kwh = r[0].energy_j.unwrap() / 3.6e6;
    assert!((7.2..7.3).contains(&kwh), "{kwh}");
}

#[test]
fn tls_options_need_tls_and_one_of_them() {
    let e = RedfishMeter::new(
        &MeterUrl::parse("redfish+http://127.0.0.1:1").unwrap(),
        &cfg("redfish+http://127.0.0.1:1", "cert_sha256 = \"00\""),
        Duration::from_secs(1),
    )
    .err()
    .unwrap();
    assert!(e.0.contains("need TLS"), "{e}");
    let fp = "AB".repeat(32);
    let both = cfg("redfish://127.0.0.1", &format!("cert_sha256 = \"{fp}\"\nca_file = \"/nonexistent\"\n"));
    assert!(RedfishMeter::new(&MeterUrl::parse(&both.url).unwrap(), &both, Duration::from_secs(1))
        .err()
        .unwrap()
        .0
        .contains("not both"));
}
