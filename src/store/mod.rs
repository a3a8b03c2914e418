//! The store boundary: where measurements are kept and read back. Two
//! implementations pass one contract suite: InfluxDB (line protocol writes,
//! InfluxQL reads) and an embedded SQLite store that needs no server.

pub mod embedded;
pub mod influx;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::Secret;
use crate::model::{FieldValue, Point};
use crate::ship::influx::InfluxConn;
pub use crate::ship::influx::WriteApi;
use crate::ship::Writer;

/// What to read: some fields of one measurement, for series whose tags match
/// every filter, with `start_ns <= time < end_ns`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    pub measurement: String,
    pub fields: Vec<String>,
    pub tag_filters: Vec<(String, String)>,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// One series (a distinct tag set) with its rows in time order. `values[i][j]` is
/// field `fields[j]` at `times_ns[i]`, `None` where that row lacks the field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub tags: BTreeMap<String, String>,
    pub fields: Vec<String>,
    pub times_ns: Vec<i64>,
    pub values: Vec<Vec<Option<FieldValue>>>,
}

/// Receives the rows of a streaming read ([`Store::read_each`]) one at a time, so
/// that a caller can fold them into its own per-device state without the store
/// materialising [`Series`] of the whole range.
///
/// Series are numbered within one read. [`RowVisitor::series`] is called once for
/// each series, before its first row. The rows of one series arrive in time order;
/// rows of different series may interleave (the embedded store walks the range in
/// time order) or come one series after the other (InfluxDB).
pub trait RowVisitor: Send {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>);
    /// One row: `values[j]` is field `query.fields[j]`; rows with none of the
    /// fields are left out, as InfluxQL does.
    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]);
}

/// Collects a streaming read back into [`Series`] sorted by tags (what
/// [`Store::read`] returns).
#[derive(Debug, Default)]
pub struct SeriesCollector {
    fields: Vec<String>,
    series: Vec<Series>,
}

impl SeriesCollector {
    pub fn new(fields: &[String]) -> Self {
        SeriesCollector { fields: fields.to_vec(), series: Vec::new() }
    }

    /// [`RowVisitor::row`] for an owned row (no copy).
    pub fn push_row(&mut self, series: usize, time_ns: i64, values: Vec<Option<FieldValue>>) {
        if let Some(s) = self.series.get_mut(series) {
            s.times_ns.push(time_ns);
            s.values.push(values);
        }
    }

    pub fn finish(self) -> Vec<Series> {
        let mut out: Vec<Series> = self.series.into_iter().filter(|s| !s.times_ns.is_empty()).collect();
        out.sort_by(|a, b| a.tags.cmp(&b.tags));
        out
    }
}

impl RowVisitor for SeriesCollector {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.series.len() <= series {
            self.series.resize_with(series + 1, Series::default);
        }
        self.series[series] = Series { tags: tags.clone(), fields: self.fields.clone(), ..Series::default() };
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        self.push_row(series, time_ns, values.to_vec());
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Writes points; a point with the same series and timestamp overwrites the old
    /// one (fields merge), as in InfluxDB, so replays are idempotent.
    async fn write(&self, points: &[Point]) -> Result<(), StoreError>;

    /// Reads matching series, each with rows sorted by time.
    async fn read(&self, query: &SeriesQuery) -> Result<Vec<Series>, StoreError>;

    /// Reads matching rows and hands them to `visitor` as they are read, holding
    /// a bounded number of rows at a time however long the range (see
    /// [`RowVisitor`] for the order). `query.fields` must name the fields.
    async fn read_each(&self, query: &SeriesQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError>;

    /// The number of values of the named fields in the matching rows (a row with
    /// two of the fields counts 2). The aggregator compares it with the count
    /// recorded with a stored window to notice late data. By default a streaming
    /// read that keeps nothing; a server that can count does it itself.
    async fn count(&self, query: &SeriesQuery) -> Result<u64, StoreError> {
        #[derive(Default)]
        struct Count(u64);
        impl RowVisitor for Count {
            fn series(&mut self, _: usize, _: &BTreeMap<String, String>) {}
            fn row(&mut self, _: usize, _: i64, values: &[Option<FieldValue>]) {
                self.0 += values.iter().filter(|v| v.is_some()).count() as u64;
            }
        }
        let mut n = Count::default();
        self.read_each(query, &mut n).await?;
        Ok(n.0)
    }

    /// Distinct values of one tag in one measurement, sorted.
    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError>;

    /// Checks that the store answers and the credentials work.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Write(#[from] crate::ship::WriteError),
    #[error("query failed: {0}")]
    Query(String),
    /// The server cannot be reached or answered 5xx; worth trying later.
    #[error("{0}")]
    Unavailable(String),
    /// 401/403, or a user without the needed privileges.
    #[error("{0}")]
    Auth(String),
    /// The database (or the query endpoint) does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("embedded store: {0}")]
    Embedded(String),
    /// A point that no store can keep (NaN, no fields, a name line protocol cannot
    /// carry). Nothing of its batch was written.
    #[error("invalid point: {0}")]
    Invalid(#[from] crate::ship::lineproto::EncodeError),
    /// A limit of the store (series count) refuses the batch; nothing was written.
    /// Retrying does not help until the limit is raised.
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Opens the store a `[store]` section names: [`influx::InfluxStore`] for
/// `kind = "influxdb"`, [`embedded::EmbeddedStore`] for `kind = "embedded"`. Secrets
/// are resolved here; nothing is contacted yet (call [`Store::ping`] for that).
pub async fn open_store(cfg: &StoreConfig) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match cfg.kind {
        StoreKind::Influxdb => Ok(std::sync::Arc::new(influx::InfluxStore::from_config(cfg)?)),
        StoreKind::Embedded => {
            let cfg = cfg.clone();
            let store = tokio::task::spawn_blocking(move || embedded::EmbeddedStore::from_config(&cfg))
                .await
                .map_err(|e| StoreError::Embedded(format!("opening the store failed: {e}")))??;
            Ok(std::sync::Arc::new(store))
        }
    }
}

/// The writer a `[store]` section names: an [`crate::ship::influx::InfluxWriter`]
/// for `kind = "influxdb"` (v1 or v2 API), or the embedded SQLite store itself for
/// `kind = "embedded"` (it parses the lines and stores the points).
pub fn writer_from_config(cfg: &StoreConfig) -> Result<std::sync::Arc<dyn Writer>, StoreError> {
    match cfg.kind {
        StoreKind::Influxdb => Ok(crate::ship::route::routed_writer(&cfg.influx_conn(), cfg.api, &cfg.routes())?),
        StoreKind::Embedded => Ok(std::sync::Arc::new(embedded::EmbeddedStore::from_config(cfg)?)),
    }
}

impl StoreConfig {
    /// The InfluxDB connection keys of this section.
    pub fn influx_conn(&self) -> InfluxConn {
        crate::ship::influx::influx_conn!(self, "[store]".into(), self.url.clone())
    }

    /// Measurements routed to their own retention policy (v1 only; `validate` refuses
    /// them on v2, where a bucket has one retention).
    pub fn routes(&self) -> std::collections::BTreeMap<String, String> {
        match self.api {
            WriteApi::V1 => self.retention_policies.clone(),
            WriteApi::V2 => Default::default(),
        }
    }
}

/// `[store]`: the aggregator's read side (and, deprecated, an agent's single
/// output; agents use `[[sinks]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// InfluxDB (or compatible) base URL, e.g. `http://127.0.0.1:8086`.
    pub url: Option<String>,
    /// Write API: `v1` (`/write`, InfluxDB 1.x) or `v2` (`/api/v2/write`, InfluxDB
    /// 1.8+, 2.x, 3.x, Cloud, and wattledger's own ingest).
    #[serde(default)]
    pub api: WriteApi,
    /// v1 database; also the database InfluxQL reads use (DBRP-mapped on 2.x).
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    /// v1: measurements kept in another retention policy than `retention_policy`,
    /// read from and written to there, e.g. `{ energy_ledger = "forever" }`
    /// (`docs/retention.md`).
    #[serde(default)]
    pub retention_policies: std::collections::BTreeMap<String, String>,
    /// v2 organisation and bucket; `bucket` defaults to `database`.
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// Embedded store: the SQLite file.
    pub path: Option<PathBuf>,
    /// Per-request timeout, e.g. `10s`.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: std::time::Duration,
    /// Gzip request bodies.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Retries of one batch after the first attempt (network errors, 429, 5xx).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Total time one batch may spend in retries, e.g. `30s`; after that it fails
    /// as retryable (the agent's spool keeps it).
    #[serde(default = "default_max_retry_time", with = "crate::config::duration")]
    pub max_retry_time: std::time::Duration,
    /// Embedded store: most series (measurement + tag set) it keeps; a batch that
    /// would add more is refused whole.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Influxdb,
    Embedded,
}

use crate::ship::influx::{default_max_retries, default_max_retry_time, default_timeout, default_true};

fn default_max_series() -> usize {
    embedded::DEFAULT_MAX_SERIES
}
