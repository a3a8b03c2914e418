//! Shared by the NVML integration tests: private copies of the fake NVML library with
//! a scenario, and running `wattledger gpus` against them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use wattledger::sim::gpus::FakeNvml;

/// Simulated second 0 of every test scenario.
pub const START_NS: i64 = 1_764_000_000_000_000_000;

/// Unix ns of simulated second `t`.
pub fn at(t: f64) -> i64 {
    START_NS + (t * 1e9).round() as i64
}

/// A scenario from `tests/data/nvml/`, with its clock pinned at simulated second `t`.
pub fn data_scenario(file: &str, t: f64) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nvml").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["start_unix_ns"] = START_NS.into();
    v["pin_unix_ns"] = at(t).into();
    v
}

/// A private fake library carrying `scenario`; fails loudly when the fake is not built.
pub fn fake(scenario: &serde_json::Value) -> FakeNvml {
    FakeNvml::install(&scenario.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the real binary: `wattledger gpus <args>`, with no ambient scenario variable.
pub fn wattledger_gpus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .arg("gpus")
        .args(args)
        .env_remove("FAKE_NVML_SCENARIO")
        .env("WATTLEDGER_LOG", "warn")
        .output()
        .expect("running wattledger")
}

/// `wattledger gpus --json --nvml-lib <lib>`, parsed; panics with stderr on failure.
pub fn gpus_json(lib: &Path) -> Vec<serde_json::Value> {
    let out = wattledger_gpus(&["--json", "--nvml-lib", lib.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wattledger gpus failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn assert_close(actual: &serde_json::Value, expected: f64, what: &str) {
    let a = actual.as_f64().unwrap_or_else(|| panic!("{what}: expected a number near {expected}, got {actual}"));
    assert!((a - expected).abs() < 1e-6, "{what}: got {a}, expected {expected}");
}
