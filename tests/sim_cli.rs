//! `wattledger sim gpus` and `wattledger sim inference` as processes: their help, what
//! they print, and that what they serve follows the wall clock; and the allocator every
//! command of the binary runs on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wattledger::collect::inference::parse_samples;
use wattledger::collect::nvml::NvmlSource;
use wattledger::collect::Source;
use wattledger::model::now_ns;

fn wattledger(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wattledger")).args(args).output().unwrap()
}

#[test]
fn help_names_the_options() {
    let out = wattledger(&["sim", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gpus") && text.contains("inference") && text.contains("miners"), "{text}");
    let text = String::from_utf8(wattledger(&["sim", "gpus", "--help"]).stdout).unwrap();
    assert!(text.contains("wall clock") && text.contains("--count") && text.contains("--dir"), "{text}");
    let text = String::from_utf8(wattledger(&["sim", "inference", "--help"]).stdout).unwrap();
    for opt in ["--listen", "--model", "--engines", "--prompt-tokens-per-s", "--generation-tokens-per-s"] {
        assert!(text.contains(opt), "{opt} missing from:\n{text}");
    }
    let bad = wattledger(&["sim", "gpus", "--count", "0", "--dir", "/nonexistent-never-created"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--count must be at least 1"));
}

#[tokio::test]
async fn sim_gpus_gives_an_nvml_library_on_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let out = wattledger(&["sim", "gpus", "--count", "3", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    let lib: String = first.strip_prefix("nvml_lib = ").and_then(|v| serde_json::from_str(v).ok()).unwrap();
    assert!(text.contains("ready: 3 simulated GPUs"), "{text}");

    // The real NVML code path on the library, as an agent would load it. The third GPU
    // draws a steady 520 W, so its energy grows by 520 J per wall-clock second.
    let mut src = NvmlSource::open(Some(std::path::Path::new(&lib))).unwrap();
    let read = |points: Vec<wattledger::model::Point>| {
        assert_eq!(points.len(), 3);
        points[2].field_value("energy_j").and_then(|v| v.as_f64()).unwrap()
    };
    let t0 = Instant::now();
    let e0 = read(src.collect(now_ns()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e1 = read(src.collect(now_ns()).await.unwrap());
    let wall_s = t0.elapsed().as_secs_f64();
    let rate_w = (e1 - e0) / wall_s;
    assert!((rate_w - 520.0).abs() < 520.0 * 0.05, "{rate_w} W over {wall_s} s");
}

#[tokio::test]
async fn sim_inference_serves_vllm_counters_at_the_given_rates() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["sim", "inference", "--listen", &listen, "--model", "m1", "--prompt-tokens-per-s", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("ready: simulated vLLM server at http://{listen}/metrics"));
    let scrape = || async {
        let page = reqwest::get(format!("http://{listen}/metrics")).await.unwrap().text().await.unwrap();
        let samples = parse_samples(&page).unwrap();
        let s = samples.iter().find(|s| s.name == "vllm:prompt_tokens_total").expect("vllm:prompt_tokens_total");
        assert!(s.labels.iter().any(|(k, v)| k == "model_name" && v == "m1"), "{:?}", s.labels);
        s.value
    };
    let t0 = Instant::now();
    let a = scrape().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let b = scrape().await;
    let rate = (b - a) / t0.elapsed().as_secs_f64();
    assert!((rate - 1000.0).abs() < 150.0, "{rate} tokens/s");
    // Taken: a second server on the same address fails with the address in the error.
    let taken = wattledger(&["sim", "inference", "--listen", &listen]);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains(&listen));
    let _ = child.kill();
    let _ = child.wait();
}

/// Every command runs on jemalloc with freed pages given back after 1 s (`src/main.rs`,
/// docs/benchmarks.md "Allocator"): jemalloc prints the options it read at exit.
#[test]
fn the_binary_runs_on_jemalloc_with_a_one_second_decay() {
    let out = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    assert!(stats.contains("opt.dirty_decay_ms: 1000"), "{stats}");
    assert!(stats.contains("opt.muzzy_decay_ms: 0"), "{stats}");
}
