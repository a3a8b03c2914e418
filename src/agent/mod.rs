//! The per-host agent: runs the configured sources on their own intervals, appends
//! every point to a disk spool before it counts as collected, and ships the spool
//! to the configured store in order, removing points only once the store confirmed
//! them. See `docs/config.md` (`## Agent`) and `agents/README.md`.
//!
//! ```no_run
//! # async fn demo(cfg: wattledger::agent::config::AgentConfig) -> Result<(), wattledger::agent::AgentError> {
//! use std::sync::Arc;
//! let agent = wattledger::agent::Agent::new(cfg, Arc::new(wattledger::model::SystemClock))?;
//! let stats = agent.stats();
//! agent.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! println!("{:?}", stats.snapshot());
//! # Ok(()) }
//! ```

pub mod config;
pub mod pipeline;
pub mod prometheus;
pub mod spool;
pub mod telemetry;
pub mod workloads;

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::agent::config::AgentConfig;
use crate::agent::pipeline::{ScheduledSource, Shared, Stamp};
use crate::agent::spool::Spool;
use crate::agent::telemetry::AgentStats;
use crate::agent::workloads::WorkloadMap;
use crate::collect::inference::InferenceSource;
use crate::collect::nvml::NvmlSource;
use crate::model::Clock;
use crate::ship::Writer;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent config: {0}")]
    Config(String),
    #[error("cannot set up source {name}: {message}")]
    Source { name: String, message: String },
    #[error(
        "cannot open the spool in {dir}: {source}; check that the directory exists and is writable by the agent's user"
    )]
    Spool { dir: String, source: std::io::Error },
}

/// One configured agent, ready to run.
pub struct Agent {
    cfg: AgentConfig,
    clock: Arc<dyn Clock>,
    sources: Vec<ScheduledSource>,
    /// One writer per sink, each with the spool cursor of the same name.
    sinks: Vec<(String, Arc<dyn Writer>)>,
    stats: Arc<AgentStats>,
    /// `[workloads]`, built once.
    workloads: WorkloadMap,
}

impl Agent {
    /// Builds the sources and the writer the config names.
    pub fn new(cfg: AgentConfig, clock: Arc<dyn Clock>) -> Result<Agent, AgentError> {
        let sinks = sinks_from_config(&cfg)?;
        let sources = sources_from_config(&cfg)?;
        Agent::with_sinks(cfg, clock, sources, sinks)
    }

    /// An agent with sources and a writer built by the caller (the demo, tests).
    /// `[gpus]`, `[miners]` and `[[inference]]` of `cfg` are ignored; `[agent]` and
    /// `[workloads]` apply.
    pub fn with_parts(
        cfg: AgentConfig,
        clock: Arc<dyn Clock>,
        sources: Vec<ScheduledSource>,
        writer: Arc<dyn Writer>,
    ) -> Result<Agent, AgentError> {
        Agent::with_sinks(cfg, clock, sources, vec![(String::new(), writer)])
    }

    /// Like [`Agent::with_parts`] with several named sinks; a name selects the
    /// sink's spool cursor (`""` is the cursor of a single `[store]` output).
    pub fn with_sinks(
        cfg: AgentConfig,
        clock: Arc<dyn Clock>,
        sources: Vec<ScheduledSource>,
        sinks: Vec<(String, Arc<dyn Writer>)>,
    ) -> Result<Agent, AgentError> {
        let workloads =
            WorkloadMap::new(&cfg.workloads).map_err(|e| AgentError::Config(e.within("workloads").to_string()))?;
        if sinks.is_empty() {
            return Err(AgentError::Config("no sinks; add a [[sinks]] section (see docs/config.md)".into()));
        }
        Ok(Agent { cfg, clock, sources, sinks, stats: Arc::new(AgentStats::default()), workloads })
    }

    /// Live counters; valid while and after the agent runs.
    pub fn stats(&self) -> Arc<AgentStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` resolves, then ships what it can within
    /// `shutdown_timeout` and returns. Unshipped points stay in the spool.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let a = &self.cfg.agent;
        let dir = a.spool_dir.clone();
        let (max, fsync) = (a.spool_max_bytes, a.fsync);
        let names: Vec<String> = self.sinks.iter().map(|(n, _)| n.clone()).collect();
        let spool = tokio::task::spawn_blocking(move || Spool::open_cursors(&dir, max, fsync, &names))
            .await
            .expect("spool open panicked")
            .map_err(|source| AgentError::Spool { dir: a.spool_dir.display().to_string(), source })?;
        let pending = spool.pending_records();
        self.stats.spool_pending.store(pending, std::sync::atomic::Ordering::Relaxed);
        self.stats.spool_bytes.store(spool.disk_bytes(), std::sync::atomic::Ordering::Relaxed);
        tracing::info!(spool = %a.spool_dir.display(), pending_points = pending, sinks = %self.sinks.iter().map(|(_, w)| w.describe()).collect::<Vec<_>>().join(", "),
            sources = self.sources.len(), "agent started");
        let shared =
            Arc::new(Shared {
                spool: Arc::new(Mutex::new(spool)),
                ledger: self.cfg.ledger.enabled.then(|| {
                    Mutex::new(crate::ledger::writer::LedgerWriter::new(&self.cfg.ledger, self.clock.now_ns()))
                }),
                stats: self.stats.clone(),
                stamp: Stamp {
                    site: a.site.clone(),
                    host: self.cfg.host(),
                    group: a.group.clone().filter(|g| !g.is_empty()),
                    workloads: self.workloads,
                },
                clock: self.clock.clone(),
                ship_now: tokio::sync::Notify::new(),
                batch_size: a.batch_size as u64,
                sink_names: self
                    .sinks
                    .iter()
                    .map(|(n, _)| if n.is_empty() { "store".to_string() } else { n.clone() })
                    .collect(),
            });
        let writers = self.sinks.into_iter().map(|(_, w)| w).collect();
        pipeline::run(shared, self.sources, writers, a, shutdown).await;
        let s = self.stats.snapshot();
        tracing::info!(
            collected = s.collected,
            shipped = s.shipped,
            left_in_spool = s.spool_pending,
            dropped = s.dropped,
            rejected = s.rejected,
            "agent stopped"
        );
        Ok(())
    }
}

/// The writers the config names, each with its spool cursor's name: every
/// `[[sinks]]` entry, or the single deprecated `[store]` output (cursor `""`).
pub fn sinks_from_config(cfg: &AgentConfig) -> Result<Vec<(String, Arc<dyn Writer>)>, AgentError> {
    if let Some(store) = &cfg.store {
        let w = crate::store::writer_from_config(store).map_err(|e| AgentError::Config(format!("[store]: {e}")))?;
        return Ok(vec![(String::new(), w)]);
    }
    cfg.sinks
        .iter()
        .map(|s| Ok((s.name().to_string(), s.build().map_err(|e| AgentError::Config(e.to_string()))?)))
        .collect()
}

/// The sources `[gpus]`, `[miners]`, `[meters]` and `[[inference]]` name.
pub fn sources_from_config(cfg: &AgentConfig) -> Result<Vec<ScheduledSource>, AgentError> {
    let mut out = Vec::new();
    if let Some(g) = cfg.gpus.as_ref().filter(|g| g.enabled) {
        let src = NvmlSource::open(g.nvml_lib.as_deref())
            .map_err(|e| AgentError::Source { name: "nvml".into(), message: e.to_string() })?;
        out.push(ScheduledSource { source: Box::new(src), interval: g.interval });
    }
    if let Some(m) = &cfg.miners {
        let source = m.build().map_err(|e| AgentError::Config(e.to_string()))?;
        out.push(ScheduledSource { source: Box::new(source), interval: m.interval });
    }
    if let Some(m) = &cfg.meters {
        let src = crate::collect::meters::MetersSource::new(m).map_err(|e| AgentError::Config(e.0))?;
        out.push(ScheduledSource { source: Box::new(src), interval: m.interval });
    }
    for s in &cfg.inference {
        let src = InferenceSource::new(s.clone())
            .map_err(|e| AgentError::Source { name: s.name.clone(), message: e.message })?;
        out.push(ScheduledSource { source: Box::new(src), interval: s.interval });
    }
    Ok(out)
}
