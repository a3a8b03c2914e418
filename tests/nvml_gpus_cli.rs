//! `wattledger gpus` (the real binary, the real nvml-wrapper code path) against private
//! copies of the fake NVML library, with scripted scenarios and hand-computed values.

mod nvml_support;

use std::f64::consts::PI;

use nvml_support::{assert_close, data_scenario, fake, gpus_json, wattledger_gpus};
use serde_json::Value;

const KEYS: [&str; 13] = [
    "index",
    "uuid",
    "name",
    "power_w",
    "energy_j",
    "util_gpu_pct",
    "util_mem_pct",
    "mem_used_bytes",
    "mem_total_bytes",
    "temp_c",
    "sm_clock_mhz",
    "power_limit_w",
    "status",
];

fn assert_keys(gpu: &Value) {
    let keys: Vec<&str> = gpu.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = KEYS.to_vec();
    expected.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, expected, "JSON keys of {gpu}");
}

#[test]
fn step_profile_reads_hand_computed_values() {
    // t = 60.5 s: GPU 0 stepped from 100 W to 400 W at 60 s.
    let f = fake(&data_scenario("two-h100-steps.json", 60.5));
    let gpus = gpus_json(f.lib_path());
    assert_eq!(gpus.len(), 2);
    let g0 = &gpus[0];
    assert_keys(g0);
    assert_eq!(g0["index"], 0);
    assert_eq!(g0["uuid"], "GPU-0c1d2e3f-0000-4000-8000-000000000000");
    assert_eq!(g0["name"], "NVIDIA H100 80GB HBM3");
    // power_w is the one-second average: half a second at 100 W, half at 400 W.
    assert_close(&g0["power_w"], 250.0, "gpu0 power_w");
    // 5000 J at start + 60 s × 100 W + 0.5 s × 400 W.
    assert_close(&g0["energy_j"], 11_200.0, "gpu0 energy_j");
    assert_eq!(g0["util_gpu_pct"], 97);
    assert_eq!(g0["util_mem_pct"], 35);
    assert_eq!(g0["mem_used_bytes"], 42_949_672_960u64);
    assert_eq!(g0["mem_total_bytes"], 85_520_809_984u64);
    assert_eq!(g0["temp_c"], 61);
    assert_eq!(g0["sm_clock_mhz"], 1980);
    assert_close(&g0["power_limit_w"], 700.0, "gpu0 power_limit_w");
    assert_eq!(g0["status"], "ok");

    // GPU 1 has no power fields (falls back to nvmlDeviceGetPowerUsage) and no temperature.
    let g1 = &gpus[1];
    assert_keys(g1);
    assert_close(&g1["power_w"], 250.0, "gpu1 power_w");
    assert_close(&g1["energy_j"], 250.0 * 60.5, "gpu1 energy_j");
    assert_eq!(g1["temp_c"], Value::Null);
    assert_eq!(g1["sm_clock_mhz"], 1410);
    assert_eq!(g1["status"], "ok");
}

#[test]
fn sine_load_energy_is_the_integral_of_power() {
    let f = fake(&data_scenario("sine-and-old-driver.json", 15.0));
    let gpus = gpus_json(f.lib_path());
    assert_eq!(gpus.len(), 3, "a MIG-enabled GPU appears once, as its parent");

    // P(t) = 300 + 100 sin(2πt/60); ∫₀¹⁵ P = 300·15 + 100·60/(2π)·(1 − cos(π/2)).
    let w = 2.0 * PI / 60.0;
    let energy = 300.0 * 15.0 + 100.0 / w * (1.0 - (w * 15.0).cos());
    let avg = 300.0 + 100.0 / w * ((w * 14.0).cos() - (w * 15.0).cos());
    let g0 = &gpus[0];
    assert_close(&g0["energy_j"], (energy * 1000.0).round() / 1000.0, "gpu0 energy_j (mJ resolution)");
    assert_close(&g0["power_w"], (avg * 1000.0).round() / 1000.0, "gpu0 1 s average power");
    assert_eq!(g0["util_gpu_pct"], 100);
    assert_eq!(g0["temp_c"], 58);

    // Old driver: no field values, no utilization, no clocks; power from nvmlDeviceGetPowerUsage.
    let g1 = &gpus[1];
    assert_keys(g1);
    assert_close(&g1["power_w"], 290.0, "gpu1 power_w");
    assert_close(&g1["energy_j"], 80.0 * 10.0 + 290.0 * 5.0, "gpu1 energy_j");
    assert_eq!(g1["util_gpu_pct"], Value::Null);
    assert_eq!(g1["util_mem_pct"], Value::Null);
    assert_eq!(g1["sm_clock_mhz"], Value::Null);
    assert_eq!(g1["temp_c"], 40);
    assert_eq!(g1["status"], "ok");

    // The MIG parent carries the energy once.
    assert_close(&gpus[2]["energy_j"], 330.0 * 15.0, "MIG parent energy_j");
    assert_close(&gpus[2]["power_w"], 330.0, "MIG parent power_w");
}

#[test]
fn lost_gpu_has_null_values_and_the_others_are_read() {
    let f = fake(&data_scenario("lost-and-reload.json", 60.0));
    let gpus = gpus_json(f.lib_path());
    assert_eq!(gpus.len(), 2);
    let lost = &gpus[0];
    assert_keys(lost);
    assert_eq!(lost["status"], "lost");
    for k in &KEYS[3..12] {
        assert_eq!(lost[*k], Value::Null, "{k} of a lost GPU");
    }
    assert_eq!(gpus[1]["status"], "ok");
    assert_close(&gpus[1]["energy_j"], 200.0 * 60.0, "gpu1 energy_j");

    let table = wattledger_gpus(&["--nvml-lib", f.lib_path().to_str().unwrap()]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().nth(1).unwrap().ends_with("lost"), "{text}");
    assert!(text.contains("GPU-a0000000-0000-4000-8000-000000000001"), "{text}");
}

#[test]
fn counter_reset_after_driver_reload_is_reported_as_is() {
    let before = fake(&data_scenario("lost-and-reload.json", 90.0));
    let after = fake(&data_scenario("lost-and-reload.json", 110.0));
    let b = gpus_json(before.lib_path());
    let a = gpus_json(after.lib_path());
    assert_close(&b[0]["energy_j"], 1000.0 + 500.0 * 90.0, "before the reload");
    // The driver reloaded at 100 s: the counter restarted at 0.
    assert_close(&a[0]["energy_j"], 500.0 * 10.0, "after the reload");
    assert_close(&a[1]["energy_j"], 200.0 * 10.0, "after the reload, gpu1");
}

#[test]
fn init_failing_says_the_driver_is_not_loaded() {
    let f = fake(&data_scenario("init-driver-not-loaded.json", 0.0));
    let out = wattledger_gpus(&["--json", "--nvml-lib", f.lib_path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(err.contains("failed to initialise") && err.contains("driver is not loaded"), "{err}");
    assert!(err.contains("nvidia-smi"), "says what to check: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_library_says_what_to_do() {
    let out = wattledger_gpus(&["--json", "--nvml-lib", "/nonexistent/libnvidia-ml.so.1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("NVML not found"), "{err}");
    assert!(err.contains("install the NVIDIA driver, or pass --nvml-lib PATH"), "{err}");
}

#[test]
fn a_file_that_is_not_nvml_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libnvidia-ml.so.1");
    std::fs::write(&text, "this is a text file, not a shared library\n".repeat(20)).unwrap();
    let out = wattledger_gpus(&["--nvml-lib", text.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not an NVML library") && err.contains("invalid ELF header"), "{err}");

    // A real shared library that is not NVML: a copy of the libm this process runs with.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libm = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libm.so") || p.contains("/libm-"))
        .expect("libm is mapped into the test process");
    let copy = dir.path().join("libm-copy.so");
    std::fs::copy(libm, &copy).unwrap();
    let out = wattledger_gpus(&["--nvml-lib", copy.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not an NVML library") && err.contains("nvmlInit_v2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn default_library_name_is_found_through_the_loader_path() {
    // No --nvml-lib: `libnvidia-ml.so.1` through LD_LIBRARY_PATH, as the driver installs it.
    let f = fake(&data_scenario("two-h100-steps.json", 100.0));
    let dir = f.lib_path().parent().unwrap();
    std::os::unix::fs::symlink(f.lib_path(), dir.join("libnvidia-ml.so.1")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["gpus", "--json"])
        .env_remove("FAKE_NVML_SCENARIO")
        .env("LD_LIBRARY_PATH", dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gpus: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(gpus.len(), 2);
    assert_close(&gpus[0]["energy_j"], 5000.0 + 6000.0 + 40.0 * 400.0, "gpu0 energy_j at t=100 s");
}
