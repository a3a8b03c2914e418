//! Sources: where readings come from. Each source is its own module and knows
//! nothing of where its points go (the agent ships them).
//!
//! - [`nvml`]: GPUs through NVML.
//! - [`miners`]: ASIC miners through their own APIs.
//! - [`inference`]: token counters from inference servers' Prometheus `/metrics`.
//! - [`meters`]: power at the wall: SNMP PDUs, Redfish BMCs, Modbus meters, smart plugs.
//!
//! A source emits points with its device-identifying tags (GPU UUID, miner address,
//! server name); the agent adds `site`, `host` and `workload` afterwards, so that
//! workload mapping lives in one place.

pub mod inference;
pub mod meters;
pub mod miners;
pub mod nvml;

use async_trait::async_trait;

use crate::model::Point;

/// One polled source. `collect` is called on the source's own interval; a failing
/// device is reported inside the points (a status field, `online = false`) and
/// never stops the others. An `Err` means the whole source could not be read.
#[async_trait]
pub trait Source: Send {
    /// A short name for logs and the agent's self-telemetry (`nvml`, `miners`, `inference:vllm-a`).
    fn name(&self) -> &str;

    /// Reads every device once, stamping points with `time_ns`.
    async fn collect(&mut self, time_ns: i64) -> Result<Vec<Point>, SourceError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub message: String,
}

impl SourceError {
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        SourceError { source_name: source_name.into(), message: message.into() }
    }
}
