//! NVML poll benchmark: one poll of 8 GPUs through the fake NVML library by
//! wattledger's NVML source (nvml-wrapper), side by side with the same reads done by
//! NVIDIA's Python binding (nvidia-ml-py) against the same fake, in one run.
//! Run with `bench/nvml_poll.sh` (builds the fake in release first).
//!
//! CPU time is the process's own (`/proc/self/schedstat` here, `time.process_time_ns`
//! in Python); a "sample" is one GPU's reading, so CPU per sample = CPU per poll / 8.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use wattledger::collect::nvml::NvmlSource;
use wattledger::sim::gpus::FakeNvml;

const POLLS: u32 = 20_000;
const PY_POLLS: u32 = 2_000;

fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/self/schedstat").expect("/proc/self/schedstat (Linux)");
    s.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat's first field")
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scenario = std::fs::read_to_string(root.join("tests/data/nvml/eight-h100.json")).expect("scenario");
    let fake = FakeNvml::install(&scenario).unwrap_or_else(|e| panic!("{e}"));
    let mut src = NvmlSource::open(Some(fake.lib_path())).unwrap_or_else(|e| panic!("{e}"));
    let gpus = src.read_all().len();
    assert_eq!(gpus, 8);
    for _ in 0..1000 {
        std::hint::black_box(src.read_all());
    }
    let (wall0, cpu0) = (Instant::now(), cpu_ns());
    for _ in 0..POLLS {
        std::hint::black_box(src.read_all());
    }
    let ours_wall = wall0.elapsed().as_nanos() as f64 / f64::from(POLLS);
    let ours_cpu = (cpu_ns() - cpu0) as f64 / f64::from(POLLS);

    let python = std::env::var_os("WATTLEDGER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".ci/venv/bin/python"));
    let out = Command::new(&python)
        .arg(root.join("bench/nvml_poll_pynvml.py"))
        .arg(fake.lib_path())
        .arg(PY_POLLS.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!("running {}: {e} (create .ci/venv with nvidia-ml-py, see .ci/run)", python.display())
        });
    assert!(out.status.success(), "pynvml side failed: {}", String::from_utf8_lossy(&out.stderr));
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from the pynvml side");
    let py_wall = py["wall_ns_per_poll"].as_f64().unwrap();
    let py_cpu = py["cpu_ns_per_poll"].as_f64().unwrap();

    println!("NVML poll of {gpus} GPUs through the fake library ({})", fake.lib_path().display());
    println!("{:<34} {:>14} {:>14} {:>18}", "reader", "wall µs/poll", "CPU µs/poll", "CPU µs/sample");
    for (name, polls, wall, cpu) in [
        ("wattledger (nvml-wrapper 0.13)", POLLS, ours_wall, ours_cpu),
        ("nvidia-ml-py 13.615.71 (pynvml)", PY_POLLS, py_wall, py_cpu),
    ] {
        println!(
            "{:<34} {:>14.1} {:>14.1} {:>18.2}   ({polls} polls)",
            name,
            wall / 1e3,
            cpu / 1e3,
            cpu / 1e3 / gpus as f64
        );
    }
    println!("CPU per sample: pynvml / wattledger = {:.1}x", py_cpu / ours_cpu);
}
