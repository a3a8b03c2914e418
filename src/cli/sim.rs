//! `wattledger sim ...`: simulated devices on loopback for tests, demos and benchmarks.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::model::SystemClock;
use crate::sim::miners::{parse_faults, parse_mix, FleetSpec, SimFleet, SimMake};

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    pub what: SimCommand,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Simulated ASIC miners speaking their real APIs, replies built from real captures.
    Miners(MinersArgs),
    /// Simulated meters on loopback: an SNMP v2c PDU (APC rPDU2 outlets), a Redfish BMC
    /// and a Shelly/Tasmota plug, with energy following the clock.
    Meters(crate::sim::meters::MetersArgs),
    /// Simulated GPUs for a live agent: a copy of the fake NVML library whose scenario follows the wall clock.
    Gpus(GpusArgs),
    /// A simulated vLLM server: `/metrics` in vLLM's layout with counters growing at the given rates.
    Inference(InferenceArgs),
}

#[derive(Debug, Args)]
pub struct GpusArgs {
    /// Number of simulated H100-class GPUs (a sine load, a train/idle step pattern, a steady load, in turn).
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Folder to put the library and its scenario in, kept after exit (default: a temporary
    /// folder, removed when the command stops).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct InferenceArgs {
    /// Address to serve `/metrics` and `/health` on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
    /// Model name (label `model_name`).
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    pub model: String,
    /// Data-parallel engines, each with its own series (the rates are split evenly).
    #[arg(long, default_value_t = 1)]
    pub engines: u32,
    /// Prompt (prefill) tokens per second.
    #[arg(long, default_value_t = 2000.0)]
    pub prompt_tokens_per_s: f64,
    /// Generated tokens per second.
    #[arg(long, default_value_t = 700.0)]
    pub generation_tokens_per_s: f64,
    /// Successful requests per second.
    #[arg(long, default_value_t = 1.5)]
    pub requests_per_s: f64,
}

#[derive(Debug, Args)]
pub struct MinersArgs {
    /// Number of miners: one of each simulated make unless given.
    #[arg(long, default_value_t = SimMake::ALL.len())]
    pub count: usize,
    /// First loopback address; miner i listens on this address + i (Whatsminer v3 miners on
    /// port 4433, the only port its framing is spoken on).
    #[arg(long, default_value = "127.0.1.1")]
    pub bind: Ipv4Addr,
    /// Port every miner listens on (or the first port with --distinct-ports).
    #[arg(long, default_value_t = 4028)]
    pub port: u16,
    /// All miners on --bind, on ports --port + i, instead of distinct addresses.
    #[arg(long)]
    pub distinct_ports: bool,
    /// Makes and weights, e.g. `antminer-stock=3,luxos=1` (default: every make once, in turn).
    #[arg(long)]
    pub mix: Option<String>,
    /// Faults by miner index, counted from 0 (the first miner is @0): `slow=2s@3,hang@4,close@5,garbage@6,reboot=60s@7,off@8,degrade=5%@9,hashdrop=33%@10` (hashdrop: that share of hashrate and its power gone, a hashboard down).
    #[arg(long)]
    pub faults: Option<String>,
    /// Every miner replays its capture's hashrate and power exactly (no ±3 % variation).
    #[arg(long)]
    pub no_variation: bool,
    /// Print only the ready line, not one line per miner.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        SimCommand::Miners(a) => miners(a).await,
        SimCommand::Meters(a) => {
            crate::sim::meters::run_cli(a).await?;
            wait_for_stop().await;
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Gpus(a) => gpus(a).await,
        SimCommand::Inference(a) => inference(a).await,
    }
}

async fn gpus(a: GpusArgs) -> anyhow::Result<ExitCode> {
    use crate::sim::gpus::{locate_fake_nvml, rig_scenario, FakeNvml, FAKE_LIB_FILE, SCENARIO_FILE};
    anyhow::ensure!(a.count > 0, "--count must be at least 1");
    // No fixed start and real speed: the fake's clock is the wall clock from the agent's
    // first NVML init, however long after this command that is.
    let scenario = rig_scenario(a.count, None, 1.0);
    let lib = locate_fake_nvml()?;
    let (lib_path, _temp) = match &a.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let dest = dir.join(FAKE_LIB_FILE);
            std::fs::copy(&lib, &dest)
                .with_context(|| format!("cannot copy {} to {}", lib.display(), dest.display()))?;
            let sc = dir.join(SCENARIO_FILE);
            std::fs::write(&sc, &scenario).with_context(|| format!("cannot write {}", sc.display()))?;
            (std::fs::canonicalize(&dest)?, None)
        }
        None => {
            let f = FakeNvml::install(&scenario)?;
            (f.lib_path().to_path_buf(), Some(f))
        }
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "nvml_lib = {:?}", lib_path.display().to_string())?;
        writeln!(
            out,
            "ready: {} simulated GPUs; put the line above in the agent's [gpus] section (or `wattledger gpus --nvml-lib PATH`)",
            a.count
        )?;
        out.flush()?;
    }
    if a.dir.is_some() {
        return Ok(ExitCode::SUCCESS);
    }
    wait_for_stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn inference(a: InferenceArgs) -> anyhow::Result<ExitCode> {
    use crate::sim::inference::{SimInferenceServer, SimInferenceSpec};
    let spec = SimInferenceSpec {
        model: a.model,
        engines: a.engines,
        prompt_tokens_per_s: a.prompt_tokens_per_s,
        generation_tokens_per_s: a.generation_tokens_per_s,
        requests_per_s: a.requests_per_s,
    };
    let server = SimInferenceServer::start_on(a.listen, spec, Arc::new(SystemClock)).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready: simulated vLLM server at {}", server.metrics_url())?;
        out.flush()?;
    }
    wait_for_stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn miners(a: MinersArgs) -> anyhow::Result<ExitCode> {
    let mut spec = FleetSpec {
        count: a.count,
        bind: a.bind,
        port: a.port,
        ports_layout: a.distinct_ports,
        variation: !a.no_variation,
        ..FleetSpec::default()
    };
    if let Some(m) = &a.mix {
        spec.mix = parse_mix(m)?;
    }
    if let Some(f) = &a.faults {
        spec.faults = parse_faults(f)?;
    }
    let fleet = SimFleet::start(spec, Arc::new(SystemClock)).await.context("cannot start the simulated fleet")?;
    {
        let mut out = std::io::stdout().lock();
        if !a.quiet {
            for m in fleet.miners() {
                writeln!(out, "{} {}", m.addr, m.make.name())?;
            }
        }
        writeln!(
            out,
            "ready: {} simulated miners (makes: {})",
            fleet.miners().len(),
            SimMake::ALL.map(|m| m.name()).join(", ")
        )?;
        out.flush()?;
    }
    wait_for_stop().await;
    let c = fleet.counters();
    eprintln!(
        "sim: {} connections, {} requests",
        c.connections.load(Ordering::Relaxed),
        c.requests.load(Ordering::Relaxed)
    );
    fleet.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
