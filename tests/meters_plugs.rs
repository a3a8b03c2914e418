//! Shelly Gen2 and Tasmota plugs, read from the simulated plug over HTTP.

use std::sync::Arc;

use wattledger::collect::meters::{MetersConfig, MetersSource};
use wattledger::collect::Source;
use wattledger::model::{Clock, SystemClock};
use wattledger::sim::meters::{SimPlug, SimPlugSpec};

#[tokio::test]
async fn shelly_and_tasmota_power_and_energy() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let start_ns = clock.now_ns() - 7_200_000_000_000; // two hours of 150 W
    let plug = SimPlug::start(
        "127.0.0.1:0".parse().unwrap(),
        SimPlugSpec { watts: 150.0, clock, start_ns, shelly_password: None },
    )
    .await
    .unwrap();
    let cfg: MetersConfig = toml::from_str(&format!(
        "[[devices]]\nname = \"shelly\"\nurl = \"shelly://{0}\"\n[[devices.channels]]\nchannel = \"0\"\nminer = \"192.0.2.30\"\n\
         [[devices]]\nname = \"tasmota\"\nurl = \"tasmota://{0}\"\n",
        plug.addr
    ))
    .unwrap();
    cfg.validate().unwrap();
    let mut src = MetersSource::new(&cfg).unwrap();
    let points = src.collect(5).await.unwrap();
    assert_eq!(points.len(), 2, "{points:?}");
    for p in &points {
        assert_eq!(p.field_value("power_w").and_then(|v| v.as_f64()), Some(150.0), "{p:?}");
        let kwh = p.field_value("energy_j").and_then(|v| v.as_f64()).unwrap() / 3.6e6;
        assert!((0.3..0.31).contains(&kwh), "{kwh}");
        assert_eq!(p.field_value("status").and_then(|v| v.as_str()), Some("ok"));
    }
    let shelly = points.iter().find(|p| p.tag_value("meter") == Some("shelly")).unwrap();
    assert_eq!(shelly.tag_value("covers"), Some("192.0.2.30"));

    // A switch id the plug lacks: an error naming the request, reported offline.
    let cfg: MetersConfig = toml::from_str(&format!(
        "timeout = \"1s\"\n[[devices]]\nname = \"s\"\nurl = \"shelly://{}?channels=1\"\n",
        plug.addr
    ))
    .unwrap();
    let points = MetersSource::new(&cfg).unwrap().collect(5).await.unwrap();
    assert_eq!(points[0].field_value("online").map(|v| v.to_string()).as_deref(), Some("false"));
    assert!(points[0].field_value("status").and_then(|v| v.as_str()).unwrap().contains("404"));
}

/// A Shelly with a password: HTTP Digest (SHA-256) with user `admin`. The right
/// password reads; a wrong one, or none, is reported offline with the 401.
#[tokio::test]
async fn shelly_digest_auth() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let start_ns = clock.now_ns();
    let spec = SimPlugSpec { watts: 90.0, clock, start_ns, shelly_password: Some("pl\"ug-secret".into()) };
    let plug = SimPlug::start("127.0.0.1:0".parse().unwrap(), spec).await.unwrap();
    let read = |auth: &str| {
        let cfg: MetersConfig = toml::from_str(&format!(
            "timeout = \"2s\"\n[[devices]]\nname = \"s\"\nurl = \"shelly://{}\"\n{auth}\n",
            plug.addr
        ))
        .unwrap();
        cfg.validate().unwrap();
        MetersSource::new(&cfg).unwrap()
    };
    let mut good = read("username = \"admin\"\npassword = 'pl\"ug-secret'");
    // Several polls: the first answers a fresh challenge, the later ones reuse it.
    for t in 1..=3 {
        let points = good.collect(t).await.unwrap();
        assert_eq!(points[0].field_value("power_w").and_then(|v| v.as_f64()), Some(90.0), "{points:?}");
    }
    for auth in ["username = \"admin\"\npassword = \"wrong\"", ""] {
        let points = read(auth).collect(5).await.unwrap();
        assert_eq!(points[0].field_value("online").map(|v| v.to_string()).as_deref(), Some("false"), "{auth}");
        let status = points[0].field_value("status").and_then(|v| v.as_str()).unwrap().to_string();
        assert!(status.contains("401"), "{auth}: {status}");
    }
}
