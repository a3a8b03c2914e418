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
}

#[derive(Debug, Args)]
pub struct MinersArgs {
    /// Number of miners (default: one of each simulated make).
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
    /// Faults by miner index: `slow=2s@3,hang@4,close@5,garbage@6,reboot=60s@7,off@8,degrade=5%@9`.
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
    }
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
