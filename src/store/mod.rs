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

/// Folds a streaming read into one state per series, row by row, so that a caller
/// holds one state per series (not its rows) whatever the range. `fold` gets the
/// series' tags, its state and one row. [`SeriesFold::finish`] gives the series
/// that had rows, with their tags and states, sorted by tags as [`Store::read`]
/// sorts its series.
pub struct SeriesFold<S, F> {
    series: Vec<Option<(BTreeMap<String, String>, S, bool)>>,
    fold: F,
}

impl<S, F> SeriesFold<S, F>
where
    S: Default + Send,
    F: FnMut(&BTreeMap<String, String>, &mut S, i64, &[Option<FieldValue>]) + Send,
{
    pub fn new(fold: F) -> Self {
        SeriesFold { series: Vec::new(), fold }
    }

    pub fn finish(self) -> Vec<(BTreeMap<String, String>, S)> {
        let mut out: Vec<_> =
            self.series.into_iter().flatten().filter(|(_, _, rows)| *rows).map(|(t, s, _)| (t, s)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl<S, F> RowVisitor for SeriesFold<S, F>
where
    S: Default + Send,
    F: FnMut(&BTreeMap<String, String>, &mut S, i64, &[Option<FieldValue>]) + Send,
{
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.series.len() <= series {
            self.series.resize_with(series + 1, || None);
        }
        self.series[series] = Some((tags.clone(), S::default(), false));
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        if let Some(Some((tags, state, rows))) = self.series.get_mut(series) {
            *rows = true;
            (self.fold)(tags, state, time_ns, values);
        }
    }
}

/// [`Store::read_each`] into a [`SeriesFold`]: one state per series that has rows,
/// sorted by tags.
pub async fn fold_series<S, F>(
    store: &dyn Store,
    query: &SeriesQuery,
    fold: F,
) -> Result<Vec<(BTreeMap<String, String>, S)>, StoreError>
where
    S: Default + Send,
    F: FnMut(&BTreeMap<String, String>, &mut S, i64, &[Option<FieldValue>]) + Send,
{
    let mut f = SeriesFold::new(fold);
    store.read_each(query, &mut f).await?;
    Ok(f.finish())
}

/// How [`Store::read_grouped`] combines a field's values in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Min,
    Max,
    /// Rows in the bucket that carry the field.
    Count,
}

impl Aggregate {
    /// Folds `v` into the aggregate so far (`a`): for a count, `v` is 1.
    pub fn combine(self, a: f64, v: f64) -> f64 {
        match self {
            Aggregate::Sum | Aggregate::Count => a + v,
            Aggregate::Min => a.min(v),
            Aggregate::Max => a.max(v),
        }
    }

    /// The InfluxQL function.
    pub fn influxql(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Count => "count",
        }
    }
}

/// What to aggregate: per series of `measurement` whose tags match every filter,
/// per bucket of `bucket_ns` (aligned to multiples of it since the Unix epoch) in
/// `start_ns <= time < end_ns`, each `(aggregate, field)` over the rows of the
/// bucket that carry the field.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedQuery {
    pub measurement: String,
    pub tag_filters: Vec<(String, String)>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub bucket_ns: i64,
    pub aggregates: Vec<(Aggregate, String)>,
}

impl GroupedQuery {
    /// The distinct fields the aggregates read, as a row query over the same range.
    pub fn rows_query(&self) -> SeriesQuery {
        let mut fields: Vec<String> = Vec::new();
        for (_, f) in &self.aggregates {
            if !fields.contains(f) {
                fields.push(f.clone());
            }
        }
        SeriesQuery {
            measurement: self.measurement.clone(),
            fields,
            tag_filters: self.tag_filters.clone(),
            start_ns: self.start_ns,
            end_ns: self.end_ns,
        }
    }
}

/// Folds rows (in time order per series) into [`GroupedQuery`] buckets and hands
/// each finished bucket on as a row: for stores that cannot aggregate themselves.
pub struct Grouper<'a> {
    bucket_ns: i64,
    /// Per aggregate, the column of its field among `rows_query().fields`.
    plan: Vec<(Aggregate, usize)>,
    /// Per series: the bucket being filled and its values.
    open: Vec<Option<(i64, Vec<Option<f64>>)>>,
    out: &'a mut dyn RowVisitor,
}

impl<'a> Grouper<'a> {
    pub fn new(q: &GroupedQuery, out: &'a mut dyn RowVisitor) -> Self {
        let fields = q.rows_query().fields;
        let plan = q
            .aggregates
            .iter()
            .map(|(a, f)| (*a, fields.iter().position(|x| x == f).expect("rows_query names every field")))
            .collect();
        Grouper { bucket_ns: q.bucket_ns.max(1), plan, open: Vec::new(), out }
    }

    fn flush(&mut self, series: usize) {
        if let Some((start, values)) = self.open.get_mut(series).and_then(Option::take) {
            let row: Vec<Option<FieldValue>> = values.into_iter().map(|v| v.map(FieldValue::Float)).collect();
            self.out.row(series, start, &row);
        }
    }

    /// Hands on every bucket still open.
    pub fn finish(mut self) {
        for i in 0..self.open.len() {
            self.flush(i);
        }
    }
}

impl RowVisitor for Grouper<'_> {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.open.len() <= series {
            self.open.resize_with(series + 1, || None);
        }
        self.out.series(series, tags);
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        let start = time_ns.div_euclid(self.bucket_ns) * self.bucket_ns;
        if self.open.get(series).and_then(Option::as_ref).is_some_and(|(b, _)| *b != start) {
            self.flush(series);
        }
        let Some(slot) = self.open.get_mut(series) else { return };
        let (_, acc) = slot.get_or_insert_with(|| (start, vec![None; self.plan.len()]));
        for (k, &(agg, col)) in self.plan.iter().enumerate() {
            let Some(v) = values.get(col).and_then(Option::as_ref) else { continue };
            let v = match agg {
                Aggregate::Count => 1.0,
                _ => match v.as_f64() {
                    Some(v) if v.is_finite() => v,
                    _ => continue,
                },
            };
            acc[k] = Some(acc[k].map_or(v, |a| agg.combine(a, v)));
        }
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

    /// Aggregates rows per series and bucket (see [`GroupedQuery`]) and hands each
    /// bucket to `visitor` as one row stamped at the bucket's start: `values[k]` is
    /// aggregate `k` as a float, `None` when no row of the bucket carries its field.
    /// Buckets without any such row are left out. The buckets of one series arrive
    /// in time order. InfluxDB aggregates on the server; by default the rows are
    /// streamed and folded here.
    async fn read_grouped(&self, query: &GroupedQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        let mut grouper = Grouper::new(query, visitor);
        self.read_each(&query.rows_query(), &mut grouper).await?;
        grouper.finish();
        Ok(())
    }

    /// The tag sets of the series of `query.measurement` matching the filters that
    /// may have rows in the range: every series with a row in it, and possibly
    /// others near it (a store that keeps a coarser index answers from it: the
    /// embedded store per hour, InfluxDB per shard). `query.fields` is not used.
    /// By default a streaming read that keeps only the series.
    async fn series_keys(&self, query: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        #[derive(Default)]
        struct Keys(Vec<BTreeMap<String, String>>);
        impl RowVisitor for Keys {
            fn series(&mut self, _: usize, tags: &BTreeMap<String, String>) {
                self.0.push(tags.clone());
            }
            fn row(&mut self, _: usize, _: i64, _: &[Option<FieldValue>]) {}
        }
        let mut keys = Keys::default();
        self.read_each(query, &mut keys).await?;
        keys.0.sort();
        Ok(keys.0)
    }

    /// [`Store::read_each`] of the series that match, besides `query.tag_filters`,
    /// at least one of `any_of` (each a list of tag values that must all match); an
    /// empty `any_of` matches nothing. By default the rows of other series are
    /// read and dropped here; a store that can filter on its side does.
    async fn read_each_any(
        &self,
        query: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        if any_of.is_empty() {
            return Ok(());
        }
        let mut only = AnyOf { any_of, keep: Vec::new(), out: visitor };
        self.read_each(query, &mut only).await
    }

    /// Distinct values of one tag in one measurement, sorted.
    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError>;

    /// Checks that the store answers and the credentials work.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Whether `tags` carry every `(key, value)` of `filter`.
pub fn tags_match<'a>(mut tags: impl FnMut(&str) -> Option<&'a str>, filter: &[(String, String)]) -> bool {
    filter.iter().all(|(k, v)| tags(k) == Some(v.as_str()))
}

/// Passes on the series that match one of `any_of` ([`Store::read_each_any`]).
struct AnyOf<'a, 'v> {
    any_of: &'a [Vec<(String, String)>],
    keep: Vec<bool>,
    out: &'v mut dyn RowVisitor,
}

impl RowVisitor for AnyOf<'_, '_> {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        if self.keep.len() <= series {
            self.keep.resize(series + 1, false);
        }
        let keep = self.any_of.iter().any(|f| tags_match(|k| tags.get(k).map(String::as_str), f));
        self.keep[series] = keep;
        if keep {
            self.out.series(series, tags);
        }
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        if self.keep.get(series).copied().unwrap_or(false) {
            self.out.row(series, time_ns, values);
        }
    }
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
