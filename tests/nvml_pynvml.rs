//! Cross-check of the fake NVML library with NVIDIA's own Python binding
//! (`nvidia-ml-py`): pynvml and `wattledger gpus --json` read the same fake at the same
//! pinned simulated times and must report the same values.
//!
//! The Python interpreter is `WATTLEDGER_TEST_PYTHON`, default `.ci/venv/bin/python`
//! (created by `.ci/run`).

mod nvml_support;

use std::path::PathBuf;
use std::process::Command;

use nvml_support::{at, data_scenario, fake, gpus_json};
use serde_json::Value;

fn python() -> PathBuf {
    let p = std::env::var_os("WATTLEDGER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with nvidia-ml-py at {}: run .ci/run, or `python3 -m venv .ci/venv && .ci/venv/bin/pip install nvidia-ml-py`, \
         or set WATTLEDGER_TEST_PYTHON",
        p.display()
    );
    p
}

fn pynvml_reads(lib: &std::path::Path, times: &[i64]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/nvml/pynvml_check.py");
    let out = Command::new(python())
        .arg(script)
        .arg(lib)
        .args(times.iter().map(i64::to_string))
        .env_remove("FAKE_NVML_SCENARIO")
        .output()
        .expect("running python");
    assert!(out.status.success(), "pynvml_check.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("pynvml_check.py prints JSON")
}

/// Same keys, same values (numbers to 1e-9; a lost GPU: status only, every value null).
fn assert_same(ours: &Value, theirs: &Value, when: &str) {
    let (ours, theirs) = (ours.as_array().unwrap(), theirs.as_array().unwrap());
    assert_eq!(ours.len(), theirs.len(), "{when}: GPU count");
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o["status"], t["status"], "{when}: status of {o}");
        for (key, ov) in o.as_object().unwrap() {
            if t["status"] == "lost" && !matches!(key.as_str(), "index" | "status" | "uuid" | "name") {
                assert_eq!(*ov, Value::Null, "{when}: {key} of a lost GPU");
                continue;
            }
            if t["status"] == "lost" {
                continue;
            }
            let tv = &t[key.as_str()];
            match (ov.as_f64(), tv.as_f64()) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() < 1e-9, "{when}: GPU {} {key}: wattledger {a}, pynvml {b}", o["index"])
                }
                _ => assert_eq!(ov, tv, "{when}: GPU {} {key}", o["index"]),
            }
        }
    }
}

fn cross_check(file: &str, times_s: &[f64]) -> Value {
    let f = fake(&data_scenario(file, 0.0));
    let times: Vec<i64> = times_s.iter().map(|t| at(*t)).collect();
    let theirs = pynvml_reads(f.lib_path(), &times);
    for (t_s, t_ns) in times_s.iter().zip(&times) {
        f.write_scenario(&data_scenario(file, *t_s).to_string()).unwrap();
        let ours = Value::Array(gpus_json(f.lib_path()));
        assert_same(&ours, &theirs[t_ns.to_string()], &format!("{file} at t={t_s}s"));
    }
    theirs
}

#[test]
fn pynvml_reads_the_same_values_as_wattledger() {
    let theirs = cross_check("sine-and-old-driver.json", &[15.0, 47.25, 3601.5]);
    assert_eq!(theirs["driver_version"], "470.239.06");
    // Sanity: the values really move with simulated time, so equality means something.
    let a = &theirs[at(15.0).to_string()][0]["energy_j"];
    let b = &theirs[at(47.25).to_string()][0]["energy_j"];
    assert_ne!(a, b);
}

#[test]
fn pynvml_sees_the_same_lost_gpu_and_counter_reset() {
    let theirs = cross_check("lost-and-reload.json", &[40.0, 60.0, 104.0]);
    assert_eq!(theirs[at(60.0).to_string()][0]["status"], "lost");
    assert_eq!(theirs[at(104.0).to_string()][0]["energy_j"], 2000.0);
    // pynvml formats errors with the library's nvmlErrorString.
    assert_eq!(theirs["lost_error"], "GPU is lost");
}

#[test]
fn pynvml_reads_a_step_scenario_like_wattledger() {
    cross_check("two-h100-steps.json", &[0.0, 59.9, 60.5, 100.0]);
}
