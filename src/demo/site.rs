//! The demo's site: what runs on loopback and how the agents read it.
//!
//! - **btc-fleet** (`bitcoin_fpps`): simulated miners of several makes and
//!   firmwares ([`crate::sim::miners`]), each on its own loopback address, speaking
//!   their real APIs; one miner's efficiency degrades over the day, one reboots every
//!   few hours.
//! - **gpu-contract** (`ai_contract`): eight H100s rented at a fixed price per
//!   GPU-hour, read through a private copy of the fake NVML library.
//! - **llm-inference** (`ai_tokens`): four H100s serving a model, paid per token.
//!   Demand follows the day (busy afternoons, quiet nights, in UTC): the simulated
//!   vLLM `/metrics` counters and the GPUs' power follow the same load curve, so
//!   revenue per kWh is high by day and falls at night, when idle power still runs.
//!
//! Everything reads the demo's clock; the fake NVML library's clock is pinned to
//! the time of each collection, so energy counters match the points' timestamps
//! exactly however fast simulated time runs.

use std::f64::consts::PI;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::collect::miners::fleet::Target;
use crate::collect::nvml::NvmlSource;
use crate::collect::{Source, SourceError};
use crate::model::{Clock, Point};
use crate::sim::gpus::{FakeNvml, FakeNvmlError};
use crate::sim::inference::{SimInferenceServer, SimInferenceSpec};
use crate::sim::meters::{RedfishTree, SimPdu, SimPduSpec, SimRedfish};
use crate::sim::miners::{Fault, FleetSpec, SimFleet, SimMake};

pub const SITE: &str = "demo";
pub const MINING: &str = "btc-fleet";
pub const CONTRACT: &str = "gpu-contract";
pub const INFERENCE: &str = "llm-inference";

const DAY_S: f64 = 86_400.0;
/// Simulated second 0 of the fake GPUs: a fixed UTC midnight (2024-01-01), so
/// their energy counters continue across restarts of the demo and their daily
/// load curve lines up with the UTC day.
const SCENARIO_ORIGIN_NS: i64 = 1_704_067_200_000_000_000;

/// Inference demand as a fraction of full load at `t_s` (Unix seconds): a daily
/// sine peaking at 15:00 UTC (0.95) with its trough at 03:00 UTC (0.15).
pub fn inference_load(t_s: f64) -> f64 {
    LOAD_MEAN + LOAD_AMPLITUDE * (2.0 * PI * (t_s + LOAD_PHASE_S) / DAY_S).sin()
}
const LOAD_MEAN: f64 = 0.55;
const LOAD_AMPLITUDE: f64 = 0.40;
/// sin peaks where (t + phase) / day = 1/4, i.e. at 06:00 − phase = 15:00.
const LOAD_PHASE_S: f64 = -9.0 * 3600.0;

/// Integral of [`inference_load`] from 0 to `t_s`, in load-seconds.
fn inference_load_integral(t_s: f64) -> f64 {
    let k = 2.0 * PI / DAY_S;
    LOAD_MEAN * t_s - LOAD_AMPLITUDE / k * ((k * (t_s + LOAD_PHASE_S)).cos() - (k * LOAD_PHASE_S).cos())
}

/// A clock that runs at the speed of inference demand: it advances one second
/// per second of full load. A server whose counters grow at a constant rate with
/// this clock grows them at `rate × load(t)` in real terms.
pub struct LoadClock {
    inner: Arc<dyn Clock>,
}

impl Clock for LoadClock {
    fn now_ns(&self) -> i64 {
        let t_s = self.inner.now_ns() as f64 / 1e9;
        (inference_load_integral(t_s) * 1e9) as i64
    }
}

/// Token throughput of the inference cluster at full load (four H100s serving an
/// 8B model), and what it is paid.
pub const FULL_LOAD_PROMPT_TOKENS_PER_S: f64 = 8000.0;
pub const FULL_LOAD_GENERATION_TOKENS_PER_S: f64 = 3200.0;
pub const USD_PER_MTOK_PROMPT: f64 = 0.15;
pub const USD_PER_MTOK_GENERATION: f64 = 0.60;
pub const CONTRACT_USD_PER_GPU_HOUR: f64 = 2.10;
pub const POOL_FEE: f64 = 0.02;
pub const PUE: f64 = 1.10;

const INFERENCE_GPUS: usize = 4;
const CONTRACT_GPUS: usize = 8;
const GPU_IDLE_W: f64 = 120.0;
const GPU_FULL_W: f64 = 680.0;

/// The miners: (make, how many).
const MINER_MIX: [(SimMake, u32); 7] = [
    (SimMake::AntminerStock, 3),
    (SimMake::LuxOs, 2),
    (SimMake::WhatsminerV2, 2),
    (SimMake::Avalon, 2),
    (SimMake::WhatsminerV1, 1),
    (SimMake::Epic, 1),
    (SimMake::AxeOs, 1),
];

/// Scenario of the inference GPUs: power and utilization follow the load curve.
/// `origin_ns` is a UTC midnight, so the fake's seconds line up with the UTC day.
fn inference_scenario(origin_ns: i64, pin_ns: i64) -> String {
    let gpus: Vec<serde_json::Value> = (0..INFERENCE_GPUS)
        .map(|i| {
            let spread = 1.0 + 0.015 * i as f64;
            serde_json::json!({
                "name": "NVIDIA H100 80GB HBM3",
                "uuid": format!("GPU-1f3c9a{i:02x}-52d4-4e0b-8c6e-00000000a1{i:02x}"),
                "power_limit_w": 700.0,
                "mem_total_bytes": 85_520_809_984u64,
                "power_w": {"sine": {
                    "mean": (GPU_IDLE_W + (GPU_FULL_W - GPU_IDLE_W) * LOAD_MEAN) * spread,
                    "amplitude": (GPU_FULL_W - GPU_IDLE_W) * LOAD_AMPLITUDE * spread,
                    "period_s": DAY_S, "phase_s": LOAD_PHASE_S}},
                "util_gpu_pct": {"sine": {"mean": 100.0 * LOAD_MEAN, "amplitude": 100.0 * LOAD_AMPLITUDE, "period_s": DAY_S, "phase_s": LOAD_PHASE_S}},
                "util_mem_pct": {"sine": {"mean": 45.0, "amplitude": 30.0, "period_s": DAY_S, "phase_s": LOAD_PHASE_S}},
                "mem_used_bytes": 72_000_000_000u64,
                "temp_c": {"sine": {"mean": 58.0, "amplitude": 10.0, "period_s": DAY_S, "phase_s": LOAD_PHASE_S}},
                "sm_clock_mhz": 1980.0,
                "energy_start_j": 4.0e9 + 1.0e8 * i as f64,
            })
        })
        .collect();
    serde_json::json!({"start_unix_ns": origin_ns, "pin_unix_ns": pin_ns, "gpus": gpus}).to_string()
}

/// Scenario of the contract GPUs: a training job at steady high power with short
/// checkpoint pauses, slightly different per GPU.
fn contract_scenario(origin_ns: i64, pin_ns: i64) -> String {
    let gpus: Vec<serde_json::Value> = (0..CONTRACT_GPUS)
        .map(|i| {
            let busy = 640.0 + 6.0 * i as f64;
            let offset = 97.0 * i as f64;
            serde_json::json!({
                "name": "NVIDIA H100 80GB HBM3",
                "uuid": format!("GPU-5a1d0c{i:02x}-7e3b-4c2a-9f10-0000000000{i:02x}"),
                "power_limit_w": 700.0,
                "mem_total_bytes": 85_520_809_984u64,
                "power_w": {"steps": [[0.0, busy], [1680.0 + offset, 180.0]], "repeat_s": 1800.0 + offset},
                "util_gpu_pct": {"steps": [[0.0, 97.0], [1680.0 + offset, 5.0]], "repeat_s": 1800.0 + offset},
                "util_mem_pct": 55.0,
                "mem_used_bytes": 78_000_000_000u64,
                "temp_c": {"sine": {"mean": 66.0, "amplitude": 4.0, "period_s": 1800.0}},
                "sm_clock_mhz": 1980.0,
                "energy_start_j": 9.0e9 + 3.0e8 * i as f64,
            })
        })
        .collect();
    serde_json::json!({"start_unix_ns": origin_ns, "pin_unix_ns": pin_ns, "gpus": gpus}).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("simulated miners: {0}")]
    Miners(String),
    #[error("fake NVML: {0}")]
    Nvml(String),
    #[error("simulated inference server: {0}")]
    Inference(String),
}

/// Wall power of a simulated stock Antminer (S19 Pro nominal) behind the simulated PDU.
const STOCK_ANTMINER_WALL_W: f64 = 3250.0;
/// Wall power of the contract GPU node (8 GPUs plus CPUs, memory, fans, PSU losses).
const CONTRACT_NODE_WALL_W: f64 = 6500.0;

/// The running simulated site.
pub struct Site {
    pub fleet: SimFleet,
    pub vllm: SimInferenceServer,
    /// A metered PDU (SNMP v2c, APC rPDU2) with one outlet per stock Antminer, which
    /// report no power of their own: the demo measures them at the wall.
    pub pdu: SimPdu,
    /// The contract GPU node's BMC (Redfish): wall power, GPUs and the rest of the host.
    pub bmc: SimRedfish,
    /// Stock Antminer address → PDU outlet number.
    pub pdu_outlets: Vec<(SocketAddr, usize)>,
    contract_nvml: Option<FakeNvml>,
    inference_nvml: Option<FakeNvml>,
}

impl Site {
    /// Starts the miners and the inference server, and installs the fake NVML
    /// libraries. `seed` picks the loopback block the miners live in, so that two
    /// demos (or a demo and the tests) on one machine do not collide.
    pub async fn start(clock: Arc<dyn Clock>, seed: u64) -> Result<Site, SiteError> {
        let fleet = start_fleet(clock.clone(), seed).await?;
        let now = clock.now_ns();
        let origin = SCENARIO_ORIGIN_NS;
        let contract_nvml = FakeNvml::install(&contract_scenario(origin, now)).map_err(nvml_error)?;
        let inference_nvml = FakeNvml::install(&inference_scenario(origin, now)).map_err(nvml_error)?;
        let spec = SimInferenceSpec {
            model: "meta-llama/Llama-3.1-8B-Instruct".into(),
            engines: INFERENCE_GPUS as u32,
            prompt_tokens_per_s: FULL_LOAD_PROMPT_TOKENS_PER_S,
            generation_tokens_per_s: FULL_LOAD_GENERATION_TOKENS_PER_S,
            requests_per_s: 12.0,
        };
        let vllm = SimInferenceServer::start(spec, Arc::new(LoadClock { inner: clock.clone() }))
            .await
            .map_err(|e| SiteError::Inference(e.to_string()))?;
        // Stock Antminers at their nominal wall power (S19 Pro, 3250 W): at the wall a
        // degrading miner keeps drawing it while its hashrate falls.
        let stock: Vec<SocketAddr> =
            fleet.miners().iter().filter(|m| m.make == SimMake::AntminerStock).map(|m| m.addr).collect();
        let pdu = SimPdu::start(
            "127.0.0.1:0".parse().expect("address"),
            SimPduSpec {
                community: "public".into(),
                outlet_watts: vec![STOCK_ANTMINER_WALL_W; stock.len()],
                clock: clock.clone(),
                start_ns: now,
            },
        )
        .await
        .map_err(|e| SiteError::Miners(format!("simulated PDU: {e}")))?;
        let pdu_outlets = stock.into_iter().enumerate().map(|(i, a)| (a, i + 1)).collect();
        let bmc = SimRedfish::start(
            "127.0.0.1:0".parse().expect("address"),
            RedfishTree::Bmc { chassis: vec![("1".into(), CONTRACT_NODE_WALL_W)], clock: clock.clone(), start_ns: now },
            None,
            Duration::ZERO,
        )
        .await
        .map_err(|e| SiteError::Nvml(format!("simulated BMC: {e}")))?;
        Ok(Site {
            fleet,
            vllm,
            pdu,
            bmc,
            pdu_outlets,
            contract_nvml: Some(contract_nvml),
            inference_nvml: Some(inference_nvml),
        })
    }

    /// Miner addresses as agent targets (`ip:port`).
    pub fn miner_targets(&self) -> Vec<Target> {
        self.fleet.addrs().iter().map(|a| Target::Host { host: a.ip().to_string(), port: Some(a.port()) }).collect()
    }

    /// How the miners are spread over makes, for the banner: `antminer-stock ×3, …`.
    pub fn miner_summary(&self) -> String {
        let mut counts: Vec<(SimMake, usize)> = Vec::new();
        for m in self.fleet.miners() {
            match counts.iter_mut().find(|(k, _)| *k == m.make) {
                Some((_, n)) => *n += 1,
                None => counts.push((m.make, 1)),
            }
        }
        counts.iter().map(|(m, n)| format!("{} ×{n}", m.name())).collect::<Vec<_>>().join(", ")
    }

    /// The NVML source of the contract cluster (takes the library copy; call once).
    pub fn contract_gpus(&mut self) -> Result<PinnedNvml, SiteError> {
        PinnedNvml::open(
            self.contract_nvml.take().ok_or_else(|| SiteError::Nvml("contract GPUs already taken".into()))?,
        )
    }

    /// The NVML source of the inference cluster (call once).
    pub fn inference_gpus(&mut self) -> Result<PinnedNvml, SiteError> {
        PinnedNvml::open(
            self.inference_nvml.take().ok_or_else(|| SiteError::Nvml("inference GPUs already taken".into()))?,
        )
    }

    pub async fn stop(self) {
        self.fleet.stop().await;
    }
}

/// The demo's GPUs need the fake library built beside the binary, which a plain
/// `cargo run` does not do: say how, for debug and release builds alike.
fn nvml_error(e: FakeNvmlError) -> SiteError {
    match e {
        FakeNvmlError::NotBuilt { .. } => SiteError::Nvml(format!(
            "{e}. The demo's GPUs are read through the fake NVML library of this workspace: build everything \
             with `cargo build --release --workspace` (or `cargo build --workspace` for a debug binary), \
             or point WATTLEDGER_FAKE_NVML at a built libnvidia_ml.so"
        )),
        e => SiteError::Nvml(e.to_string()),
    }
}

async fn start_fleet(clock: Arc<dyn Clock>, seed: u64) -> Result<SimFleet, SiteError> {
    let count: u32 = MINER_MIX.iter().map(|(_, n)| n).sum();
    let spec = |bind: Ipv4Addr, port: u16, ports_layout: bool| FleetSpec {
        count: count as usize,
        bind,
        port,
        ports_layout,
        mix: MINER_MIX.to_vec(),
        faults: vec![(4, Fault::Degrade { per_hour: 0.004 }), (8, Fault::RebootEvery(Duration::from_secs(7 * 3600)))],
        variation: true,
    };
    // Each miner on its own address and the standard port, as on a real LAN: a
    // block 127.a.b.0/24 picked from the seed; then a few other blocks.
    let mut last = String::new();
    for attempt in 0..4u64 {
        let x = seed.wrapping_mul(6364136223846793005).wrapping_add(attempt.wrapping_mul(1442695040888963407));
        let bind = Ipv4Addr::new(127, 100 + (x >> 56) as u8 % 100, (x >> 40) as u8, 1);
        match SimFleet::start(spec(bind, 4028, false), clock.clone()).await {
            Ok(f) => return Ok(f),
            Err(e) => last = e.to_string(),
        }
    }
    // Systems whose loopback is only 127.0.0.1: one address, a port per miner.
    tracing::info!(error = %last, "falling back to one loopback address with a port per miner");
    let base = 20_000 + (seed % 20_000) as u16;
    SimFleet::start(spec(Ipv4Addr::LOCALHOST, base, true), clock).await.map_err(|e| SiteError::Miners(e.to_string()))
}

/// An NVML source on a private fake library whose clock is pinned to the time of
/// each collection.
pub struct PinnedNvml {
    fake: FakeNvml,
    inner: NvmlSource,
}

impl PinnedNvml {
    fn open(fake: FakeNvml) -> Result<Self, SiteError> {
        let inner = NvmlSource::open(Some(fake.lib_path())).map_err(|e| SiteError::Nvml(e.to_string()))?;
        Ok(PinnedNvml { fake, inner })
    }
}

#[async_trait]
impl Source for PinnedNvml {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn collect(&mut self, time_ns: i64) -> Result<Vec<Point>, SourceError> {
        self.fake.set_sim_time_ns(time_ns).map_err(|e| SourceError::new("nvml", e.to_string()))?;
        self.inner.collect(time_ns).await
    }
}

/// Reads a source only once `spacing` of simulated time has passed since its last
/// reading, however often the agent ticks. The agent ticks in real time; this
/// keeps one reading per `spacing` of simulated time whether the clock replays the
/// past at thousands of times real speed or runs live.
pub struct Paced {
    inner: Box<dyn Source>,
    name: String,
    clock: Arc<super::clock::DemoClock>,
    backfill_spacing_ns: i64,
    live_spacing_ns: i64,
    last_ns: Option<i64>,
}

impl Paced {
    pub fn new(
        inner: Box<dyn Source>,
        clock: Arc<super::clock::DemoClock>,
        backfill_spacing: Duration,
        live_spacing: Duration,
    ) -> Self {
        let name = inner.name().to_string();
        Paced {
            inner,
            name,
            clock,
            backfill_spacing_ns: backfill_spacing.as_nanos() as i64,
            live_spacing_ns: live_spacing.as_nanos() as i64,
            last_ns: None,
        }
    }
}

#[async_trait]
impl Source for Paced {
    fn name(&self) -> &str {
        &self.name
    }

    async fn collect(&mut self, time_ns: i64) -> Result<Vec<Point>, SourceError> {
        let spacing = if time_ns < self.clock.live_from_ns() { self.backfill_spacing_ns } else { self.live_spacing_ns };
        if self.last_ns.is_some_and(|last| time_ns - last < spacing) {
            return Ok(Vec::new());
        }
        self.last_ns = Some(time_ns);
        self.inner.collect(time_ns).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_curve_peaks_in_the_afternoon_and_integrates_exactly() {
        let h = 3600.0;
        assert!((inference_load(15.0 * h) - 0.95).abs() < 1e-9);
        assert!((inference_load(3.0 * h) - 0.15).abs() < 1e-9);
        // Over whole days the integral is the mean load × time.
        assert!((inference_load_integral(DAY_S * 3.0) - LOAD_MEAN * DAY_S * 3.0).abs() < 1e-6);
        // And its derivative is the load.
        for t in [0.0, 5.0 * h, 11.0 * h, 20.0 * h] {
            let d = (inference_load_integral(t + 1.0) - inference_load_integral(t - 1.0)) / 2.0;
            assert!((d - inference_load(t)).abs() < 1e-6, "at {t}: {d} vs {}", inference_load(t));
        }
    }

    #[test]
    fn load_clock_never_goes_back() {
        let manual = Arc::new(crate::model::ManualClock::new(1_700_000_000_000_000_000));
        let lc = LoadClock { inner: manual.clone() };
        let mut last = lc.now_ns();
        for _ in 0..2000 {
            manual.advance(Duration::from_secs(97));
            let t = lc.now_ns();
            assert!(t > last);
            last = t;
        }
    }

    #[test]
    fn scenarios_parse_as_json() {
        for s in [inference_scenario(0, 1), contract_scenario(0, 1)] {
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            assert!(v["gpus"].as_array().unwrap().len() >= 4);
        }
    }
}
