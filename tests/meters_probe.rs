//! `wattledger probe METER-URL` against simulated meters speaking the real protocols
//! (`wattledger sim meters`: SNMP v2c PDU, Redfish BMC, Shelly/Tasmota plug).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wattledger")
}

struct Sim(std::process::Child);
impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `wattledger sim meters` and returns its pdu, bmc and plug addresses.
fn start_sim() -> (Sim, String, String, String) {
    let mut child = Command::new(bin())
        .args(["sim", "meters", "--outlets", "3250,2990", "--chassis", "6500,7100"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (mut pdu, mut bmc, mut plug) = (String::new(), String::new(), String::new());
    for line in out.lines() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("pdu ") {
            pdu = u.to_owned();
        } else if let Some(u) = line.strip_prefix("bmc ") {
            bmc = u.to_owned();
        } else if let Some(u) = line.strip_prefix("plug ") {
            plug = u.split(' ').next().unwrap().to_owned();
        } else if line.starts_with("ready:") {
            break;
        }
    }
    (Sim(child), pdu, bmc, plug)
}

fn probe_json(url: &str) -> Vec<serde_json::Value> {
    let out = Command::new(bin()).args(["probe", "--json", "--timeout", "3", url]).output().unwrap();
    assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn probe_reads_each_kind_of_meter_and_names_the_source() {
    let (_sim, pdu, bmc, plug) = start_sim();
    let rows = probe_json(&pdu);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["power_w"], 3250.0);
    assert_eq!(rows[1]["power_w"], 2990.0);
    assert_eq!(rows[0]["power_from"], ".1.3.6.1.4.1.318.1.1.26.9.4.3.1.7.1");
    assert_eq!(rows[0]["energy_from"], ".1.3.6.1.4.1.318.1.1.26.9.4.3.1.11.1");
    assert!(rows[0]["energy_j"].as_f64().unwrap() >= 0.0);

    let rows = probe_json(&bmc);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["channel"], "GPU2");
    assert_eq!(rows[1]["power_w"], 7100.0);
    assert_eq!(rows[1]["power_from"], "/redfish/v1/Chassis/GPU2/EnvironmentMetrics PowerWatts.Reading");
    assert_eq!(rows[1]["energy_from"], "/redfish/v1/Chassis/GPU2/EnvironmentMetrics EnergykWh.Reading");

    let rows = probe_json(&plug);
    assert_eq!(rows[0]["power_w"], 1200.0);
    assert_eq!(rows[0]["energy_from"], "Switch.GetStatus?id=0 aenergy.total");
    let rows = probe_json(&plug.replace("shelly://", "tasmota://"));
    assert_eq!(rows[0]["power_from"], "Status 8 ENERGY.Power[0]");

    // A meter that does not answer: a failing exit and a message that says what to check.
    let out = Command::new(bin()).args(["probe", "--timeout", "1", "snmp://public@127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no reading from snmp://public@127.0.0.1:9"), "{err}");
}
