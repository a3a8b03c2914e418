//! `wattledger agent --config F`: the per-host agent as a long-running service.
//!
//! Signals: SIGTERM and SIGINT stop collecting and ship what the spool holds for at
//! most `shutdown_timeout` (a second signal exits at once; the spool keeps the
//! rest). SIGHUP re-reads the config: if it is valid the agent stops (draining as
//! on SIGTERM) and starts again with the new config on the same spool; if it is
//! not, the error is logged and the running agent goes on unchanged. A config
//! error at start exits with status 2 and a message naming the file and key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::agent::config::AgentConfig;
use crate::agent::Agent;
use crate::model::SystemClock;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The agent's TOML config (see docs/config.md, `## Agent`).
    #[arg(long, short, value_name = "FILE", env = "WATTLEDGER_AGENT_CONFIG")]
    pub config: PathBuf,
}

enum Next {
    Exit,
    Reload(Box<AgentConfig>),
}

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match AgentConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    loop {
        let agent = match Agent::new(cfg.clone(), Arc::new(SystemClock)) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {}: {e}", args.config.display());
                return Ok(ExitCode::from(2));
            }
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut running = tokio::spawn(agent.run(async {
            let _ = stop_rx.await;
        }));
        let next = loop {
            tokio::select! {
                r = &mut running => {
                    r.context("the agent task failed")??;
                    return Ok(ExitCode::SUCCESS);
                }
                _ = term.recv() => break Next::Exit,
                _ = int.recv() => break Next::Exit,
                _ = hup.recv() => match AgentConfig::load(&args.config) {
                    Ok(new) => {
                        tracing::info!(config = %args.config.display(), "SIGHUP: config reloaded; restarting the agent");
                        break Next::Reload(Box::new(new));
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the new config is invalid; keeping the running one"),
                },
            }
        };
        let _ = stop_tx.send(());
        // The agent bounds its own drain; the margin covers a stuck spool write.
        let bound = cfg.agent.shutdown_timeout + Duration::from_secs(5);
        tokio::select! {
            r = tokio::time::timeout(bound, &mut running) => match r {
                Ok(joined) => joined.context("the agent task failed")??,
                Err(_) => {
                    tracing::error!(bound_s = bound.as_secs_f64(), "the agent did not stop in time; exiting, the spool keeps what was not shipped");
                    return Ok(ExitCode::FAILURE);
                }
            },
            _ = term.recv() => { tracing::warn!("second signal: exiting now; the spool keeps what was not shipped"); return Ok(ExitCode::SUCCESS) }
            _ = int.recv() => { tracing::warn!("second signal: exiting now; the spool keeps what was not shipped"); return Ok(ExitCode::SUCCESS) }
        }
        match next {
            Next::Exit => return Ok(ExitCode::SUCCESS),
            Next::Reload(new) => cfg = *new,
        }
    }
}
