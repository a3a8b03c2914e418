//! A small site run through the real agent pipeline (sources → stamping → ledger
//! → spool → writer) in virtual time, for the ledger equivalence tests.
//!
//! The sources are scripted test doubles of NVML, a miner fleet and an inference
//! server: deterministic functions of time with every case the integration rules
//! know, placed at known times (seconds after the start):
//! - GPU `GPU-a` (`ondemand`): power and the NVML energy counter; the driver
//!   reloads at 700.5 s (the counter restarts); utilisation swings across 50 %;
//!   `lost` from 2200 s to 2230 s.
//! - GPU `GPU-b` (`contract`): joins at 913 s, mid-interval; silent from 1800 s to
//!   2000 s (longer than max_gap).
//! - GPU `GPU-c` (`tokens`): power only, no energy counter.
//! - Miner `192.0.2.10:4028` (`btc`, reported power): accepted difficulty; reboots at
//!   1000 s (silent 30 s, counter restarts).
//! - Miner `192.0.2.11:4028` (`btc`, estimated power): no accepted difficulty,
//!   paid by hashrate.
//! - Server `vllm` (`tokens`): token counters; restarts at 2100 s.
//!
//! The agent is stopped at 1430.5 s (mid-interval) and a new one is started on
//! the same spool: the reboot case.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{scripted, secs};
pub use crate::common::{Batches, VirtualClock, S, T0_NS};
use wattledger::agent::config::AgentConfig;
use wattledger::agent::pipeline::ScheduledSource;
use wattledger::agent::Agent;
use wattledger::model::{Clock, Point};

/// When the first agent stops (mid-interval) and the second starts.
pub const RESTART_S: f64 = 1430.5;
/// When the second agent stops.
pub const END_S: f64 = 3000.0;

/// ∫₀ᵗ (a + b sin(u / p)) du.
fn energy(t: f64, a: f64, b: f64, p: f64) -> f64 {
    a * t + b * p * (1.0 - (t / p).cos())
}

fn gpu_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    let mut out = Vec::new();
    let gpu = |i: &str, uuid: &str| Point::new("gpu", time_ns).tag("gpu", i).tag("uuid", uuid).tag("model", "H100");
    // GPU-a: the driver reloads at 700.5 s; the counter then counts from there.
    let reload = 700.5;
    let counter = if t < reload {
        5e6 + energy(t, 400.0, 200.0, 97.0)
    } else {
        energy(t, 400.0, 200.0, 97.0) - energy(reload, 400.0, 200.0, 97.0)
    };
    let status = if (2200.0..2230.0).contains(&t) { "lost" } else { "ok" };
    out.push(
        gpu("0", "GPU-a")
            .field("power_w", 400.0 + 200.0 * (t / 97.0).sin())
            .field("energy_j", counter)
            .field("util_gpu_pct", 50.0 + 45.0 * (t / 53.0).sin())
            .field("status", status),
    );
    if t >= 913.0 && !(1800.0..2000.0).contains(&t) {
        out.push(
            gpu("1", "GPU-b")
                .field("power_w", 250.0 + 10.0 * (t / 7.0).sin())
                .field("energy_j", 1e6 + energy(t, 250.0, 10.0, 7.0))
                .field("util_gpu_pct", 80.0)
                .field("status", "ok"),
        );
    }
    out.push(gpu("2", "GPU-c").field("power_w", 300.0 + 50.0 * (t / 31.0).cos()).field("status", "ok"));
    out
}

fn miner_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    let miner = |addr: &str, source: &str| {
        Point::new("asic", time_ns)
            .tag("miner", addr)
            .tag("make", "Antminer")
            .tag("model", "S19 Pro")
            .tag("power_source", source)
    };
    let mut out = Vec::new();
    // 192.0.2.10 reboots at 1000 s: silent for 30 s, then its counter restarts.
    if !(1000.0..1030.0).contains(&t) {
        let diff = if t < 1000.0 { 7e8 + 23_000.0 * t } else { 23_000.0 * (t - 1030.0) + 5_000.0 };
        out.push(
            miner("192.0.2.10:4028", "reported")
                .field("power_w", 3250.0 + 30.0 * (t / 41.0).sin())
                .field("hashrate_ths", 100.0 + 5.0 * (t / 29.0).sin())
                .field("diff_accepted", diff)
                .field("online", true),
        );
    }
    out.push(
        miner("192.0.2.11:4028", "estimated")
            .field("power_w", 3000.0)
            .field("hashrate_ths", 95.0 + 3.0 * (t / 13.0).cos())
            .field("online", true),
    );
    out
}

fn inference_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    // The server restarts at 2100 s: both counters start again from 0.
    let since = if t < 2100.0 { t + 10_000.0 } else { t - 2100.0 };
    vec![Point::new("inference", time_ns)
        .tag("server", "vllm")
        .tag("model", "llama")
        .field("prompt_tokens", 900.0 * since)
        .field("generation_tokens", 300.0 * since + 0.01 * since * since)
        .field("requests", since / 3.0)]
}

fn agent_config(spool: &std::path::Path) -> AgentConfig {
    crate::common::virtual_agent_config(
        spool,
        "",
        r#"[gpus]
[ledger]
util_thresholds_pct = [50.0]
[workloads]
gpus = { "GPU-a" = "ondemand", "GPU-b" = "contract", "GPU-c" = "tokens" }
miners = { "192.0.2.10:4028" = "btc", "192.0.2.11:4028" = "btc" }
inference = { "vllm" = "tokens" }
"#,
    )
}

fn sources() -> Vec<ScheduledSource> {
    vec![
        scripted("nvml", 2, gpu_points),
        scripted("miners", 10, miner_points),
        scripted("inference:vllm", 5, inference_points),
    ]
}

/// Runs the two agents one after the other in virtual time (call from a
/// `start_paused` runtime) and returns every batch they shipped, in order.
pub async fn run_site() -> Vec<String> {
    let spool = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::starting_at(T0_NS));
    let writer = Arc::new(Batches::default());
    let first = Agent::with_parts(agent_config(spool.path()), clock.clone(), sources(), writer.clone()).unwrap();
    first.run(tokio::time::sleep(Duration::from_secs_f64(RESTART_S))).await.unwrap();
    let second = Agent::with_parts(agent_config(spool.path()), clock.clone(), sources(), writer.clone()).unwrap();
    let left = END_S - secs(clock.now_ns());
    second.run(tokio::time::sleep(Duration::from_secs_f64(left))).await.unwrap();
    let batches = writer.0.lock().unwrap().clone();
    batches
}

/// The aggregator config for the site's workloads on `store` (a `[store]` body).
pub fn aggregator_config(store: &str) -> String {
    format!(
        r#"[store]
{store}

[sites.s1]
pue = 1.2
[sites.s1.tariff]
kind = "time_of_use"
utc_offset = "-00:15"
default_usd_per_kwh = 0.07
periods = [{{ from_hour = 0, to_hour = 1, usd_per_kwh = 0.2 }}]

[market]
source = "static"
btc_usd = 100000.0
difficulty = 1e14
block_subsidy_btc = 3.125
fees_btc_per_block = 0.125

[[workloads]]
name = "btc"
model = "bitcoin_fpps"
pool_fee = 0.02

[[workloads]]
name = "contract"
model = "ai_contract"
usd_per_gpu_hour = 2.0

[[workloads]]
name = "ondemand"
model = "ai_on_demand"
usd_per_gpu_hour = 3.0
util_threshold_pct = 50.0

[[workloads]]
name = "tokens"
model = "ai_tokens"
usd_per_mtok_prompt = 0.5
usd_per_mtok_generation = 1.5

[aggregator]
window = "7m"
max_gap = "90s"
"#
    )
}

/// The site's batches, from a runtime of its own with paused time (the test's
/// runtime talks to a real server, whose answers must not race virtual time).
pub fn site_batches() -> Vec<String> {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(run_site())
    })
    .join()
    .unwrap()
}

/// `wattledger report --format json` of `config` over `[from_s, to_s)` seconds after
/// the site's start.
pub fn report(config: &std::path::Path, from_s: i64, to_s: i64, energy_from: &str) -> serde_json::Value {
    report_at(config, T0_NS, from_s, to_s, energy_from)
}

/// [`report`] of the site moved to start at `t0_ns`.
#[allow(dead_code)]
pub fn report_at(config: &std::path::Path, t0_ns: i64, from_s: i64, to_s: i64, energy_from: &str) -> serde_json::Value {
    let at = |s: i64| wattledger::aggregate::rfc3339(t0_ns + s * S);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["report", "--format", "json", "--energy-from", energy_from, "--config"])
        .arg(config)
        .args(["--from", &at(from_s), "--to", &at(to_s)])
        .output()
        .unwrap();
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
