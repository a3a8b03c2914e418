//! Shipping: line protocol and the writers that send it to InfluxDB-compatible
//! servers. Writers never know where points came from.

pub mod influx;
pub mod lineproto;
pub mod route;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::ConfigError;

/// One entry of the agent's `[[sinks]]`, told apart by `type`. Each backend's
/// config struct lives beside its writer and builds it; adding a sink is one
/// module, one variant here and one arm in each `match` below.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum SinkConfig {
    /// InfluxDB 1.x `/write` (also 2.x/3.x's v1 compatibility API).
    #[serde(rename = "influxdb_v1")]
    InfluxdbV1(influx::InfluxSinkConfig),
    /// `/api/v2/write`: InfluxDB 1.8+, 2.x, 3.x, Cloud, VictoriaMetrics, and the
    /// aggregator's ingest (which feeds its embedded store).
    #[serde(rename = "influxdb_v2")]
    InfluxdbV2(influx::InfluxSinkConfig),
}

impl SinkConfig {
    /// The sink's name: `name`, or its type when absent.
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::InfluxdbV1(c) => c.name.as_deref().unwrap_or("influxdb_v1"),
            SinkConfig::InfluxdbV2(c) => c.name.as_deref().unwrap_or("influxdb_v2"),
        }
    }

    /// `[[sinks]] name`, for error messages.
    pub fn section(&self) -> String {
        format!("[[sinks]] {}:", self.name())
    }

    /// Checks the keys without reading secret files or contacting anything.
    pub fn validate(&self) -> Result<(), crate::config::KeyError> {
        let section = self.section();
        match self {
            SinkConfig::InfluxdbV1(c) => c.validate(&section, influx::WriteApi::V1),
            SinkConfig::InfluxdbV2(c) => c.validate(&section, influx::WriteApi::V2),
        }
    }

    /// Builds the writer; secrets are resolved here, nothing is contacted yet.
    pub fn build(&self) -> Result<Arc<dyn Writer>, ConfigError> {
        let section = self.section();
        match self {
            SinkConfig::InfluxdbV1(c) => c.writer(&section, influx::WriteApi::V1),
            SinkConfig::InfluxdbV2(c) => c.writer(&section, influx::WriteApi::V2),
        }
    }
    /// Contacts the server once and says what answered (used by `check`).
    pub async fn healthcheck(&self) -> Result<String, String> {
        match self {
            SinkConfig::InfluxdbV1(c) | SinkConfig::InfluxdbV2(c) => c.healthcheck().await,
        }
    }
}

/// Sends one batch of line protocol (newline-separated, nanosecond precision) to a
/// server. Implementations retry what InfluxDB says is retryable (429, 503, network
/// errors) and split batches on 413; what comes back as `Err` is final for this batch.
#[async_trait]
pub trait Writer: Send + Sync {
    async fn write_lines(&self, body: &str) -> Result<(), WriteError>;

    /// A human name for logs: `influxdb v1 http://127.0.0.1:8086 db=wattledger`.
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The server rejected some lines (HTTP 400). Not retried: resending the same
    /// bytes gives the same answer.
    #[error("{server} rejected the batch: {message}")]
    Rejected { server: String, message: String },
    /// 401/403: the token or password is wrong. Not retried.
    #[error("{server} refused the credentials ({status}): {message}; check the token or username/password in the [[sinks]] entry (or the [store] section) that names this server")]
    Auth { server: String, status: u16, message: String },
    /// The database, bucket or endpoint does not exist (404).
    #[error("{server}: {message}")]
    NotFound { server: String, message: String },
    /// Retries exhausted, or a failure that is worth trying later (network, 5xx, 429).
    #[error("{server} is unavailable: {message}")]
    Unavailable { server: String, message: String },
}

impl WriteError {
    /// True when the same batch may succeed later (the spool keeps it).
    pub fn is_retryable(&self) -> bool {
        matches!(self, WriteError::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    /// Shipping sits below the stores: the embedded store and the InfluxDB store use
    /// its writers and line protocol, never the other way round.
    #[test]
    fn ship_does_not_use_store() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ship");
        let mut stack = vec![dir];
        let mut checked = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    // Spelled in two pieces so that this file does not match itself.
                    let bad = [concat!("crate::", "store"), concat!("super::super::", "store")];
                    assert!(!bad.iter().any(|b| text.contains(b)), "{} uses the store module", p.display());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 3, "only {checked} files checked");
    }
}
