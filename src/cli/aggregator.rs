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
    let state = AppState::new(agg.clone())?
        .with_alerts(engine.view())
        .with_idle_rule(crate::alert::config::idle_rule(engine.rules()));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ([api] listen); is another process using it?"))?;
    tracing::info!(listen = %listener.local_addr()?, "aggregator API listening");
    // The least the page needs: `read_token` when set (it is listed after `token`).
    println!("{}", page_line(listener.local_addr()?, state.read_tokens.last().map(|t| t.expose()), is_terminal()));
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

fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

/// The page's URL, printed at start the way the demo prints its own. The token is in
/// it only on a terminal: under a service manager stdout goes to the journal, which
/// more people can read than the token file.
pub fn page_line(addr: std::net::SocketAddr, token: Option<&str>, terminal: bool) -> String {
    // A wildcard listen address is not one a browser can open; show loopback.
    let host = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::SocketAddr::from(([127, 0, 0, 1], addr.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    match token {
        None => format!("The page: http://{host}/ (no [api] token: anyone who reaches this address can read it)"),
        Some(t) if terminal => format!("The page: http://{host}/?token={}", urlencode(t)),
        Some(_) => format!("The page: http://{host}/?token=TOKEN (TOKEN: [api] token or token_file)"),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_line_has_the_token_only_on_a_terminal() {
        let a: std::net::SocketAddr = "0.0.0.0:8787".parse().unwrap();
        assert_eq!(page_line(a, Some("a b"), true), "The page: http://127.0.0.1:8787/?token=a%20b");
        assert!(!page_line(a, Some("s3cret"), false).contains("s3cret"));
        assert!(page_line("[::1]:9".parse().unwrap(), None, false).starts_with("The page: http://[::1]:9/ (no"));
    }
}

/// The folder a config file's relative paths are relative to.
pub fn config_dir(config: &std::path::Path) -> &std::path::Path {
    config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."))
}
