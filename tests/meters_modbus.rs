//! Modbus TCP meters against a real Modbus server (PyPI pyModbusTCP,
//! `.ci/meters/modbus_server.py`, started by `.ci/servers.sh`).

use std::time::Duration;

use wattledger::collect::meters::modbus::ModbusMeter;
use wattledger::collect::meters::{MeterConfig, MeterDriver, MeterUrl, MetersConfig, MetersSource};
use wattledger::collect::Source;

fn addr() -> String {
    std::env::var("WATTLEDGER_TEST_MODBUS_ADDR").unwrap_or_else(|_| {
        panic!("WATTLEDGER_TEST_MODBUS_ADDR is not set: start the test servers with `eval \"$(bash .ci/servers.sh start)\"`")
    })
}

async fn read(url: &str) -> Result<Vec<wattledger::collect::meters::ChannelReading>, String> {
    let cfg: MeterConfig = toml::from_str(&format!("name = \"m\"\nurl = \"{url}\"\n")).unwrap();
    let m = ModbusMeter::new(&MeterUrl::parse(url).unwrap(), &cfg).map_err(|e| e.0)?;
    tokio::time::timeout(Duration::from_secs(3), m.read()).await.map_err(|_| "timeout".to_string())?.map_err(|e| e.0)
}

#[tokio::test]
async fn eastron_sdm630_float32_high_word_first() {
    let r = read(&format!("modbus://{}?map=eastron-sdm630", addr())).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].channel, "total");
    assert_eq!(r[0].power_w, Some(2500.0));
    let kwh = r[0].energy_j.unwrap() / 3.6e6;
    assert!(kwh >= 100.0, "{kwh}");
    assert!(r[0].energy_from.as_deref().unwrap().contains("input register 72"), "{:?}", r[0].energy_from);
}

#[tokio::test]
async fn carlo_gavazzi_em340_int32_low_word_first() {
    let r = read(&format!("modbus://{}?map=carlo-gavazzi-em340", addr())).await.unwrap();
    assert!((r[0].power_w.unwrap() - 1200.5).abs() < 1e-9, "{:?}", r[0]);
    assert!(r[0].energy_j.unwrap() >= 50.0 * 3.6e6, "{:?}", r[0]);
}

#[tokio::test]
async fn a_generic_map_file_and_its_u32_counter_wrapping() {
    let map = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/meters/modbus-generic.toml");
    let cfg: MetersConfig = toml::from_str(&format!(
        "timeout = \"2s\"\n[[devices]]\nname = \"feeder\"\nurl = \"modbus://{}\"\nmap = \"{map}\"\n[[devices.channels]]\nchannel = \"feeder-a\"\ngroup = \"container-1\"\nworkload = \"btc\"\n",
        addr()
    ))
    .unwrap();
    cfg.validate().unwrap();
    let mut src = MetersSource::new(&cfg).unwrap();
    let mut last = None;
    let mut wrapped = false;
    for _ in 0..40 {
        let points = src.collect(0).await.unwrap();
        let p = &points[0];
        assert_eq!((p.tag_value("covers_kind"), p.tag_value("covers")), (Some("group"), Some("container-1")));
        assert_eq!(p.tag_value("workload"), Some("btc"));
        assert_eq!(p.field_value("power_w").and_then(|v| v.as_f64()), Some(777.0));
        let e = p.field_value("energy_j").and_then(|v| v.as_f64()).unwrap();
        if let Some(l) = last {
            assert!(e >= l, "{l} → {e}");
        }
        if p.field_value("status").and_then(|v| v.as_str()).unwrap().contains("wrapped") {
            wrapped = true;
            break;
        }
        last = Some(e);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(wrapped, "the u32 energy register wraps every 8 s");
}

#[tokio::test]
async fn nothing_listening_is_offline() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let e = read(&format!("modbus://127.0.0.1:{port}?map=eastron-sdm630")).await.unwrap_err();
    assert!(e.contains("cannot connect"), "{e}");
}
