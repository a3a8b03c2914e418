//! SNMP PDU meters against Debian's real `snmpd` (started by `.ci/servers.sh`), which
//! serves APC, Raritan and Sentry4 outlet tables through `.ci/meters/pdu_pass.py`.

use std::time::Duration;

use wattledger::collect::meters::snmp::SnmpMeter;
use wattledger::collect::meters::{MeterConfig, MeterDriver, MeterUrl, MetersConfig, MetersSource};
use wattledger::collect::Source;

fn addr() -> String {
    std::env::var("WATTLEDGER_TEST_SNMP_ADDR").unwrap_or_else(|_| {
        panic!(
            "WATTLEDGER_TEST_SNMP_ADDR is not set: start the test servers with `eval \"$(bash .ci/servers.sh start)\"`"
        )
    })
}

fn meter(url: &str, extra: &str) -> MeterConfig {
    toml::from_str(&format!("name = \"pdu\"\nurl = \"{url}\"\n{extra}")).unwrap()
}

async fn read(cfg: &MeterConfig) -> Result<Vec<wattledger::collect::meters::ChannelReading>, String> {
    let m = SnmpMeter::new(&MeterUrl::parse(&cfg.url).unwrap(), cfg, Duration::from_secs(3)).map_err(|e| e.0)?;
    m.read().await.map_err(|e| e.0)
}

#[tokio::test]
async fn apc_rpdu2_over_v2c() {
    let cfg = meter(&format!("snmp://public@{}", addr()), "profile = \"apc-rpdu2\"");
    let r = read(&cfg).await.unwrap();
    assert_eq!(r.iter().map(|c| c.channel.as_str()).collect::<Vec<_>>(), ["1", "2", "3", "4"]);
    for (i, c) in r.iter().enumerate() {
        let w = c.power_w.unwrap();
        assert!((1000.0 * (i + 1) as f64..1000.0 * (i + 1) as f64 + 100.0).contains(&w), "{c:?}");
        assert_eq!(c.power_from.as_deref(), Some(format!(".1.3.6.1.4.1.318.1.1.26.9.4.3.1.7.{}", i + 1).as_str()));
    }
    // 0.1 kWh units; outlet 1 starts at 10 (1 kWh).
    assert!(r[0].energy_j.unwrap() >= 3.6e6, "{:?}", r[0]);
    // Outlet 3's energy is the STRING "n/a": named, not a number, and its power stays.
    assert_eq!(r[2].energy_j, None);
    assert!(r[2].problems.iter().any(|p| p.contains("n/a") && p.contains(".11.3")), "{:?}", r[2].problems);
    assert!(r[2].power_w.is_some());
}

#[tokio::test]
async fn sentry4_over_v3_auth_priv() {
    let v3 = "profile = \"sentry4\"\n[snmp_v3]\nuser = \"wlv3\"\nauth_protocol = \"sha1\"\nauth_password = \"wattledger-auth\"\npriv_protocol = \"aes128\"\npriv_password = \"wattledger-priv\"\n";
    let cfg = meter(&format!("snmp://{}", addr()), v3);
    let r = read(&cfg).await.unwrap();
    let one = r.iter().find(|c| c.channel == "1.1.1").unwrap();
    assert_eq!(one.power_w, Some(750.0));
    assert!(one.energy_j.unwrap() >= 5000.0 * 3600.0);
    // -1 means "not available" on Sentry4: no reading, and the reason is given.
    let two = r.iter().find(|c| c.channel == "1.1.2").unwrap();
    assert_eq!((two.power_w, two.energy_j), (None, None));
    assert!(two.problems.iter().any(|p| p.contains("negative")), "{:?}", two.problems);

    // A wrong privacy password is a clear error, not a reading.
    let bad = meter(
        &format!("snmp://{}", addr()),
        &v3.replace("priv_password = \"wattledger-priv\"", "priv_password = \"wrong-password\""),
    );
    let e = read(&bad).await.unwrap_err();
    assert!(e.contains(&addr()), "{e}");
}

#[tokio::test]
async fn raritan_energy_counter_wraps_at_32_bits_and_continues() {
    let cfg: MetersConfig = toml::from_str(&format!(
        "interval = \"1s\"\ntimeout = \"3s\"\n[[devices]]\nname = \"rpdu\"\nurl = \"snmp://public@{}\"\nprofile = \"raritan-pdu2\"\n[[devices.channels]]\nchannel = \"1.2\"\nminer = \"192.0.2.22\"\n",
        addr()
    ))
    .unwrap();
    cfg.validate().unwrap();
    let mut src = MetersSource::new(&cfg).unwrap();
    let mut last: Option<f64> = None;
    let mut wrapped = false;
    // The simulated counter passes 2^32 Wh every 8 s; 12 s of polls see it at least once.
    for _ in 0..40 {
        let points = src.collect(0).await.unwrap();
        let p = points.iter().find(|p| p.tag_value("channel") == Some("1.2")).unwrap();
        assert_eq!(p.tag_value("covers_kind"), Some("miner"));
        assert_eq!(p.tag_value("basis"), Some("meter"));
        assert_eq!(p.field_value("power_w").and_then(|v| v.as_f64()), Some(1000.0));
        let e = p.field_value("energy_j").and_then(|v| v.as_f64()).unwrap();
        if let Some(l) = last {
            assert!(e >= l, "the continued counter never goes back: {l} → {e}");
        }
        if p.field_value("status").and_then(|v| v.as_str()).unwrap_or("").contains("wrapped") {
            wrapped = true;
            assert!(e > 4294967296.0 * 3600.0, "past the top of a 32-bit Wh counter: {e}");
            break;
        }
        last = Some(e);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(wrapped, "no wrap seen in 12 s");
}

#[tokio::test]
async fn a_silent_agent_is_offline_never_zero_watts() {
    // A UDP port nobody answers on.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let cfg: MetersConfig = toml::from_str(&format!(
        "timeout = \"500ms\"\n[[devices]]\nname = \"gone\"\nurl = \"snmp://public@127.0.0.1:{port}\"\n[[devices.channels]]\nchannel = \"1\"\ngroup = \"rack-a\"\n"
    ))
    .unwrap();
    let mut src = MetersSource::new(&cfg).unwrap();
    let points = src.collect(1).await.unwrap();
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(p.field_value("online").map(|v| v.to_string()), Some("true".replace("true", "false")));
    assert!(p.field_value("power_w").is_none() && p.field_value("energy_j").is_none(), "{p:?}");
    // The request's own timeout and the meter's deadline are both 500 ms: either may say so.
    let status = p.field_value("status").and_then(|v| v.as_str()).unwrap();
    assert!(status.contains("no SNMP reply") || status.contains("no answer within"), "{p:?}");
    drop(sock);
}

#[tokio::test]
async fn a_profile_the_agent_does_not_serve_says_so() {
    let cfg = meter(
        &format!("snmp://public@{}", addr()),
        "profile = \"generic\"\n[generic]\npower_oid = \".1.3.6.1.4.1.99999.1\"\n",
    );
    let e = read(&cfg).await.unwrap_err();
    assert!(e.contains("no rows") && e.contains("generic"), "{e}");
}

/// The fuzzer's hand-encoded SNMP seed (`tests/data/meters/snmp/`) is a message
/// `snmp2` decodes, with the numbers a meter reads from it, so the `meter` fuzz
/// target starts from replies that reach the value parsing.
#[test]
fn the_fuzzers_snmp_seed_decodes_to_its_numbers() {
    use wattledger::collect::meters::snmp::number_from_value;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/meters/snmp/apc-rpdu2-outlets.ber");
    let bytes = std::fs::read(path).unwrap();
    let pdu = snmp2::Pdu::from_bytes(&bytes).unwrap();
    let values: Vec<Result<f64, String>> =
        pdu.varbinds.map(|(_, v)| number_from_value(&v).map(|n| n.as_f64())).collect();
    assert_eq!(values, vec![Ok(374.0), Ok(123456.0), Ok(212.0)]);
}
