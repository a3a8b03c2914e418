//! Shipping: line protocol and the writers that send it to InfluxDB-compatible
//! servers. Writers never know where points came from.

pub mod influx;
pub mod lineproto;

use std::sync::Arc;

use async_trait::async_trait;

use crate::store::{StoreConfig, StoreError, StoreKind};

/// The writer a `[store]` section names: an [`influx::InfluxWriter`] for
/// `kind = "influxdb"` (v1 or v2 API), or the embedded SQLite store itself for
/// `kind = "embedded"` (it parses the lines and stores the points).
pub fn writer_from_config(cfg: &StoreConfig) -> Result<Arc<dyn Writer>, StoreError> {
    match cfg.kind {
        StoreKind::Influxdb => Ok(Arc::new(influx::InfluxWriter::from_config(cfg)?)),
        StoreKind::Embedded => Ok(Arc::new(crate::store::embedded::EmbeddedStore::from_config(cfg)?)),
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
    #[error("{server} refused the credentials ({status}): {message}; check the token or username/password in the [store] config")]
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
