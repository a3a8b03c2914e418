//! `wattledger demo`: the whole system in one process on loopback (see
//! [`crate::demo`]). Prints the page's URL and the comparison, runs until Ctrl-C,
//! and leaves its data in `--data` for the next start.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::demo::{site, table, Demo, DemoError, DemoOptions, STORE_FILE};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the web UI, the JSON API and the ingest listen.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: String,
    /// Folder for the embedded store, the agents' spools and the API token; kept
    /// after exit, and picked up again by the next start.
    #[arg(long, default_value = "wattledger-demo-data")]
    pub data: PathBuf,
    /// Simulated seconds per real second once the last 24 hours are replayed
    /// (60: an hour a minute; 1440: a day a minute).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Seed of the simulated market (BTC price and fees).
    #[arg(long, default_value_t = 21)]
    pub seed: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let listen = resolve(&args.listen)?;
    let mut opts = DemoOptions::new(listen, args.data.clone(), args.speed);
    opts.seed = args.seed;
    let demo = match Demo::start(opts).await {
        Ok(d) => d,
        Err(e @ (DemoError::PortTaken { .. } | DemoError::Speed(_))) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e).context("starting the demo"),
    };
    let data = demo.data_dir().display().to_string();
    println!("wattledger demo: a simulated site on loopback, measured end to end");
    println!();
    println!(
        "  {:<14} {} simulated miners ({}), FPPS pool, {:.0} % fee",
        site::MINING,
        demo.miner_count(),
        demo.miner_summary(),
        site::POOL_FEE * 100.0
    );
    println!(
        "  {:<14} 8× H100 through NVML (fake library), reserved at ${:.2} per GPU-hour",
        site::CONTRACT,
        site::CONTRACT_USD_PER_GPU_HOUR
    );
    println!(
        "  {:<14} 4× H100 + vLLM /metrics (simulated), paid ${:.2}/${:.2} per million prompt/generation tokens",
        site::INFERENCE,
        site::USD_PER_MTOK_PROMPT,
        site::USD_PER_MTOK_GENERATION
    );
    println!("  {:<14} simulated BTC price and fees; time-of-use energy price; PUE {:.2}", "market", site::PUE);
    println!("  {:<14} {}/{STORE_FILE} (embedded, kept after exit)", "store", data);
    println!();
    println!("Open the comparison in a browser:");
    println!();
    println!("    {}", demo.url());
    println!();
    let replay_h = (demo.clock().live_from_ns() - demo.clock().start_ns()) as f64 / 3.6e12;
    if replay_h > 0.01 {
        let what = if demo.resumed() { "since the previous run's data ends" } else { "of the last day" };
        println!(
            "Replaying {replay_h:.1} hours {what} through the agents (about {} s)…",
            demo.clock().backfill_remaining().as_secs().max(1)
        );
    } else {
        println!("Resuming where the previous run's simulated time ended.");
    }

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => {
            return stop(demo, &data).await;
        }
        c = async { demo.wait_for_replay().await; demo.wait_for_comparison(Duration::from_secs(45)).await } => match c {
            Ok(c) => {
                println!();
                println!("Last 24 hours, ranked by revenue per kWh ({} to {}):", short_time(&c.from), short_time(&c.to));
                println!();
                print!("{}", table::render(&c));
                println!();
                println!(
                    "Energy and revenue inputs come from the agents' energy ledger (one point per device per 5 simulated \
                     minutes); \"from ledger\" is its share, the rest was computed from raw samples (the agents' first \
                     minutes, where they wrote no ledger point)."
                );
            }
            Err(e) => eprintln!("warning: no comparison yet: {e}"),
        }
    }
    println!();
    println!("The page, with every workload, power, energy and fleet health: {}", demo.url());
    println!(
        "Simulated time now runs at {}× real time. Ctrl-C stops; the data stays in {data}.",
        demo.clock().live_rate()
    );
    (&mut shutdown).await;
    stop(demo, &data).await
}

async fn stop(demo: Demo, data: &str) -> anyhow::Result<ExitCode> {
    println!();
    println!("Stopping: the agents ship what they have, then the store is closed…");
    demo.stop().await;
    println!("Stopped. The data is in {data}; `wattledger demo --data {data}` starts again with it.");
    Ok(ExitCode::SUCCESS)
}

/// `2026-11-26T14:13:11.698215325Z` → `2026-11-26 14:13 UTC`.
fn short_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}: not an address like 127.0.0.1:8787"))?
        .next()
        .with_context(|| format!("--listen {listen}: resolves to no address"))
}

/// Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
