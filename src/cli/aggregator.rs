//! `wattledger aggregator`: the long-running service. Computes windows on
//! schedule and writes them back, serves the JSON API, and (with `[api] ingest =
//! true`) accepts InfluxDB-compatible writes into the configured store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::aggregate::config::AggregatorConfig;
use crate::aggregate::Aggregator;
use crate::alert::config::AlertsConfig;
use crate::alert::AlertEngine;
use crate::model::SystemClock;
use crate::web::{serve, AppState};

#[derive(Debug, clap::Args)]
pub struct AggregatorArgs {
    /// The aggregator's config file.
    #[arg(long)]
    pub config: PathBuf,
}

pub async fn run(args: AggregatorArgs) -> anyhow::Result<ExitCode> {
    // `systemctl stop` sends SIGTERM, a terminal Ctrl-C sends SIGINT: both drain.
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let cfg = AggregatorConfig::load(&args.config)?;
    if let Some(why) = cfg.unauthenticated_exposure()? {
        anyhow::bail!("refusing to start: {why} ({})", args.config.display());
    }
    let alerts_cfg = AlertsConfig::from_aggregator(&cfg, config_dir(&args.config))
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let store = crate::store::open_store(&cfg.store)
        .await
        .with_context(|| format!("opening the store named in {}", args.config.display()))?;
    let listen = cfg.api.listen.clone();
    let agg = Arc::new(Aggregator::new(cfg, store, Arc::new(SystemClock))?);
    let engine = Arc::new(AlertEngine::new(agg.clone(), alerts_cfg)?);
    let state = AppState::new(agg.clone())?.with_alerts(engine.view());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([api] listen); is another process using it?"))?;
    tracing::info!(listen = %listener.local_addr()?, "aggregator API listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(agg.clone().run({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    }));
    // Alerts run beside the windows, never inside them.
    let alerter = tokio::spawn(engine.run({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    }));
    let server = tokio::spawn(serve(listener, state, {
        let mut rx = stop_rx;
        async move {
            let _ = rx.changed().await;
        }
    }));
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "shutting down");
    let _ = stop_tx.send(true);
    let _ = runner.await;
    let _ = alerter.await;
    server.await.context("API server task")?.context("API server")?;
    Ok(ExitCode::SUCCESS)
}

/// The folder a config file's relative paths are relative to.
pub fn config_dir(config: &std::path::Path) -> &std::path::Path {
    config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."))
}
