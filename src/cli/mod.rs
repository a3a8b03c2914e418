//! The command line: one binary, one subcommand per job. Each subcommand lives in
//! its own file here and only wires library code together.

mod probe;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod agent;
pub mod aggregator;
pub mod alerts;
pub mod check;
pub mod demo;
pub mod gpus;
pub mod report;

/// The heading the flags every command takes are listed under, apart from each
/// command's own.
const GLOBAL: &str = "Global options";

#[derive(Debug, Parser)]
#[command(name = "wattledger", version = env!("WATTLEDGER_VERSION"), about = "Measures what each joule earns: GPU and ASIC miner telemetry, revenue per kWh per workload", long_about = None)]
pub struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `wattledger=debug`.
    #[arg(long, global = true, env = "WATTLEDGER_LOG", default_value = "info", help_heading = GLOBAL)]
    pub log: String,
    /// Logs as JSON lines instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole system in one process on loopback: simulated miners and GPUs, agents, store, aggregator, web UI.
    Demo(demo::DemoArgs),
    /// Read the local GPUs once through NVML.
    Gpus(gpus::GpusArgs),
    /// Read one miner (or scan a range) once: detect make/firmware, print the normalized reading.
    Probe(probe::ProbeArgs),
    /// Simulated devices on loopback (tests, demos, benchmarks).
    Sim(sim::SimArgs),
    /// Per-workload comparison over a time range: energy, revenue, cost, revenue per kWh, volatility.
    Report(report::ReportArgs),
    /// The central service: windows on schedule, write-back, JSON API, optional ingest.
    Aggregator(aggregator::AggregatorArgs),
    /// The aggregator's alerts (firing, pending, recently resolved) from its state file.
    Alerts(alerts::AlertsArgs),
    /// Validate a config file and try every endpoint it names.
    Check(check::CheckArgs),
    /// Run the per-host agent: collect, spool to disk, ship.
    Agent(agent::AgentArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's terminal is for its URL and table: only warnings, unless asked.
    let quiet_demo =
        matches!(cli.command, Command::Demo(_)) && cli.log == "info" && std::env::var_os("WATTLEDGER_LOG").is_none();
    init_logging(if quiet_demo { "warn" } else { &cli.log }, cli.log_json);
    // `probe` is I/O with a little parsing between: one thread reads a 5,000-miner sweep
    // with less CPU than a worker per core waking its peers for every reply
    // (docs/benchmarks.md, "Miner sweep"). The services keep a thread per core.
    let rt = if matches!(cli.command, Command::Probe(_)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(a) => demo::run(a).await,
        Command::Gpus(args) => gpus::run(args).await,
        Command::Probe(a) => probe::run(a).await,
        Command::Sim(a) => sim::run(a).await,
        Command::Report(args) => report::run(args).await,
        Command::Aggregator(args) => aggregator::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Alerts(args) => alerts::run(args).await,
        Command::Agent(args) => agent::run(args).await,
    }
}

fn init_logging(filter: &str, json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
