//! The InfluxDB store: writes through [`InfluxWriter`] (v1 or v2 API) and reads with
//! InfluxQL over `/query`, which InfluxDB 1.x, 2.x (v1 compatibility API, through a
//! DBRP mapping) and 3.x all answer, so one reader serves every version.
//!
//! # Reads
//!
//! A [`SeriesQuery`] becomes
//! `SELECT "f1","f2" FROM "m" WHERE time >= a AND time < b AND "tag" = 'v' GROUP BY *`
//! with `epoch=ns` (integer nanosecond timestamps). Results are requested
//! `chunked=true`, so a large range is streamed in chunks of 10,000 rows instead of
//! being cut off by the server's `max-row-limit`. [`Store::read_each`] decodes each
//! chunk as it arrives and hands its rows on, so memory holds one chunk however
//! long the range; [`Store::read`] joins the chunks of one series again. A server
//! that ignores `chunked` answers one JSON document, which decodes the same way.
//! No answer grows without bound: one document is capped at 64 MiB and a joined
//! answer at 256 MiB, past which the read fails with an error saying so.
//!
//! # Field types
//!
//! InfluxQL's JSON has only "number": an integer field and a float field that holds
//! `3.0` both come back as `3`. So each read first asks `SHOW FIELD KEYS FROM "m"`
//! (in the same request) and decodes every column by its declared type: `integer`
//! as `i64` (exactly, never through `f64`), `unsigned` as `u64`, `float` as `f64`,
//! `boolean`, `string`. Where InfluxDB 1.x holds one field name with different types
//! in different shards, the value's own JSON form decides.
//!
//! # Unsigned integers
//!
//! InfluxDB 1.x refuses the `u` suffix ("invalid number"). With `api = "v1"` this
//! store therefore writes unsigned fields as integers (refusing values above
//! `i64::MAX`), and they read back as [`FieldValue::Int`]. With `api = "v2"` they are
//! written as `u` and read back as [`FieldValue::UInt`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;

use super::{GroupedQuery, RowVisitor, Series, SeriesCollector, SeriesQuery, Store, StoreConfig, StoreError, WriteApi};
use crate::config::ConfigError;
use crate::model::{FieldValue, Point};
use crate::ship::influx::{base_url, error_chain, server_message, Auth};
use crate::ship::lineproto::{self, EncodeError};
use crate::ship::route::routed_writer;
use crate::ship::{WriteError, Writer};

/// Points per write request; InfluxDB recommends batches of 5,000 to 10,000 lines.
const WRITE_BATCH: usize = 5_000;
const CHUNK_ROWS: &str = "10000";
/// The largest single JSON document read from `/query`: one chunk of a chunked
/// answer (10,000 rows are a few MB), or a whole answer from a server that
/// ignores `chunked`.
const MAX_DOC_BYTES: usize = 64 << 20;
/// The most answer [`InfluxQlReader::query`] joins in memory.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// InfluxQL reads against one database (and optional retention policy).
pub struct InfluxQlReader {
    client: reqwest::Client,
    base: String,
    auth: Auth,
    database: String,
    retention_policy: Option<String>,
    /// Measurements read from their own retention policy (`[store] retention_policies`).
    routes: BTreeMap<String, String>,
}

/// A field's type as `SHOW FIELD KEYS` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl FieldType {
    fn parse(s: &str) -> Option<FieldType> {
        Some(match s {
            "float" => FieldType::Float,
            "integer" => FieldType::Integer,
            "unsigned" => FieldType::Unsigned,
            "string" => FieldType::String,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }
}

/// One statement's answer, as InfluxQL's JSON has it.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct StatementResult {
    #[serde(default)]
    pub statement_id: usize,
    #[serde(default)]
    pub series: Vec<RawSeries>,
    pub error: Option<String>,
    #[serde(default)]
    pub partial: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct RawSeries {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
    #[serde(default)]
    pub partial: bool,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    results: Vec<StatementResult>,
    error: Option<String>,
}

/// `"name"` with InfluxQL's escapes.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `'value'` with InfluxQL's escapes.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl InfluxQlReader {
    pub fn new(
        url: &str,
        database: &str,
        retention_policy: Option<&str>,
        auth: Auth,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        // A long range streams for longer than one write takes: `timeout` bounds
        // connecting and each wait for data, not the whole answer.
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .read_timeout(timeout)
            .user_agent(concat!("wattledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(InfluxQlReader {
            client,
            base: base_url(url)?,
            auth,
            database: database.to_owned(),
            retention_policy: retention_policy.map(str::to_owned),
            routes: BTreeMap::new(),
        })
    }

    /// Reads these measurements from their own retention policy.
    pub fn with_routes(mut self, routes: BTreeMap<String, String>) -> Self {
        self.routes = routes;
        self
    }

    /// A measurement as InfluxQL's `FROM` names it: `"m"`, or `"rp"."m"` when it is
    /// routed to a retention policy of its own.
    fn from(&self, measurement: &str) -> String {
        match self.routes.get(measurement) {
            Some(rp) => format!("{}.{}", quote_ident(rp), quote_ident(measurement)),
            None => quote_ident(measurement),
        }
    }

    /// Sends a query and checks the answer's status.
    async fn send_query(&self, q: &str) -> Result<reqwest::Response, StoreError> {
        let mut params = vec![
            ("db", self.database.as_str()),
            ("q", q),
            ("epoch", "ns"),
            ("chunked", "true"),
            ("chunk_size", CHUNK_ROWS),
        ];
        if let Some(rp) = &self.retention_policy {
            params.push(("rp", rp.as_str()));
        }
        let req = self.client.get(format!("{}/query", self.base)).query(&params);
        let resp = self.auth.apply(req).send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let message = server_message(resp).await;
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => StoreError::Auth(format!(
                "InfluxDB at {} refused the credentials (HTTP {}): {message}; check `token` or `username`/`password` in [store]",
                self.base,
                status.as_u16()
            )),
            StatusCode::NOT_FOUND => StoreError::NotFound(format!(
                "{}/query answered 404 ({message}); is this an InfluxDB server with InfluxQL (1.x, 2.x with the v1 API, 3.x)?",
                self.base
            )),
            s if s.is_server_error() => StoreError::Unavailable(format!("InfluxDB at {} answered HTTP {}: {message}", self.base, s.as_u16())),
            s => StoreError::Query(format!("HTTP {}: {message} (query: {q})", s.as_u16())),
        })
    }

    /// Runs a query and hands each JSON document of the answer to `on_doc` as
    /// soon as it has arrived: a chunked answer is a sequence of documents of at
    /// most [`CHUNK_ROWS`] rows each, so only one is held at a time. One document
    /// larger than [`MAX_DOC_BYTES`], or an answer larger than `max_answer_bytes`
    /// in all, fails the query instead of growing without bound.
    async fn query_docs(
        &self,
        q: &str,
        max_answer_bytes: usize,
        mut on_doc: impl FnMut(Response) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut resp = self.send_query(q).await?;
        let mut buf: Vec<u8> = Vec::new();
        let mut total = 0usize;
        // A document cut off by a network chunk is parsed again only once a line
        // has ended (InfluxDB ends each chunk's document with one) or the buffer
        // has doubled: parsing it again at every network chunk made reading a
        // 1 MB document cost a hundred times its size.
        let mut retry_at = 0usize;
        let unreadable =
            |e: serde_json::Error| StoreError::Query(format!("unreadable answer from {}/query: {e}", self.base));
        loop {
            let chunk = resp.chunk().await.map_err(|e| self.unreachable(&e))?;
            let done = chunk.is_none();
            if let Some(bytes) = chunk {
                total += bytes.len();
                if total > max_answer_bytes {
                    return Err(StoreError::Query(format!(
                        "the answer from {}/query exceeds {} MiB; read a shorter range (query: {q})",
                        self.base,
                        max_answer_bytes >> 20
                    )));
                }
                let line_ended = bytes.contains(&b'\n');
                buf.extend_from_slice(&bytes);
                if !line_ended && buf.len() < retry_at {
                    continue;
                }
            }
            let mut docs = serde_json::Deserializer::from_slice(&buf).into_iter::<Response>();
            let mut consumed = 0;
            loop {
                match docs.next() {
                    None => {
                        consumed = buf.len();
                        break;
                    }
                    Some(Ok(doc)) => {
                        consumed = docs.byte_offset();
                        on_doc(doc)?;
                    }
                    // A document cut off by the end of this network chunk: wait for the rest.
                    Some(Err(e)) if e.is_eof() && !done => break,
                    Some(Err(e)) => return Err(unreadable(e)),
                }
            }
            buf.drain(..consumed);
            retry_at = if buf.is_empty() { 0 } else { (2 * buf.len()).max(64 << 10) };
            if buf.len() > MAX_DOC_BYTES {
                return Err(StoreError::Query(format!(
                    "one chunk of the answer from {}/query exceeds {} MiB; does the server honour chunked=true? (query: {q})",
                    self.base,
                    MAX_DOC_BYTES >> 20
                )));
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Runs InfluxQL statements (separated by `;`) and returns each statement's
    /// result, with the chunks of each series joined (at most [`MAX_ANSWER_BYTES`]
    /// of answer; [`Self::read_each`] streams instead). A statement's own error
    /// (for example "database not found") is returned as [`StoreError::Query`].
    pub async fn query(&self, q: &str) -> Result<Vec<StatementResult>, StoreError> {
        let mut merged: Vec<StatementResult> = Vec::new();
        self.query_docs(q, MAX_ANSWER_BYTES, |doc| {
            if let Some(e) = doc.error {
                return Err(StoreError::Query(format!("{e} (query: {q})")));
            }
            for r in doc.results {
                match merged.iter_mut().find(|m| m.statement_id == r.statement_id) {
                    Some(m) => {
                        for s in r.series {
                            match m.series.iter_mut().rev().find(|x| x.name == s.name && x.tags == s.tags) {
                                Some(x) => x.values.extend(s.values),
                                None => m.series.push(s),
                            }
                        }
                        m.partial = r.partial;
                        if r.error.is_some() {
                            m.error = r.error;
                        }
                    }
                    None => merged.push(r),
                }
            }
            Ok(())
        })
        .await?;
        for r in &merged {
            if let Some(e) = &r.error {
                return Err(self.statement_error(e, q));
            }
        }
        Ok(merged)
    }

    fn statement_error(&self, e: &str, q: &str) -> StoreError {
        if e.starts_with("database not found") {
            StoreError::NotFound(format!(
                "database `{}` does not exist on {}; create it with `influx -execute 'CREATE DATABASE \"{}\"'` \
                 (InfluxDB 1.x) or map a bucket to it with `influx v1 dbrp create` (InfluxDB 2.x)",
                self.database, self.base, self.database
            ))
        } else if e.contains("authorization") || e.contains("not authorized") {
            StoreError::Auth(format!(
                "InfluxDB at {}: {e}; check the credentials in [store] and the user's privileges",
                self.base
            ))
        } else {
            StoreError::Query(format!("{e} (query: {q})"))
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> StoreError {
        StoreError::Unavailable(format!("cannot reach InfluxDB at {}: {}; is it running?", self.base, error_chain(e)))
    }

    /// `/ping` (is the server there?), then a query on the database (do the
    /// credentials work, does the database exist?); InfluxDB 1.x answers `/ping`
    /// without checking credentials.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let resp = self.client.get(format!("{}/ping", self.base)).send().await.map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(StoreError::Unavailable(format!(
                "{}/ping answered HTTP {}; is this an InfluxDB server?",
                self.base,
                resp.status().as_u16()
            )));
        }
        // Unlike SHOW MEASUREMENTS, this fails for a database that does not exist.
        self.query(&format!("SHOW RETENTION POLICIES ON {}", quote_ident(&self.database))).await.map(|_| ())
    }

    /// Declared types of the fields of `measurement` (a name may have several in
    /// InfluxDB 1.x, one per shard).
    fn field_types(result: &StatementResult) -> HashMap<String, Vec<FieldType>> {
        let mut types: HashMap<String, Vec<FieldType>> = HashMap::new();
        for s in &result.series {
            for row in &s.values {
                if let (Some(name), Some(ty)) = (
                    row.first().and_then(|v| v.as_str()),
                    row.get(1).and_then(|v| v.as_str()).and_then(FieldType::parse),
                ) {
                    types.entry(name.to_owned()).or_default().push(ty);
                }
            }
        }
        types
    }

    /// `SELECT` of the query's fields, tag filters, range and an extra condition,
    /// grouped by series.
    fn select(&self, query: &SeriesQuery, condition: Option<&str>) -> String {
        let cols: Vec<String> = query.fields.iter().map(|f| quote_ident(f)).collect();
        let mut q = self.select_cols(&cols.join(","), query);
        if let Some(c) = condition {
            q.push_str(&format!(" AND ({c})"));
        }
        q + " GROUP BY *"
    }

    /// `SELECT cols FROM m WHERE <range and tag filters>`.
    fn select_cols(&self, cols: &str, query: &SeriesQuery) -> String {
        format!("SELECT {cols} {}", self.from_where(query))
    }

    /// `FROM m WHERE <range and tag filters>`, shared by every statement that reads
    /// one query's rows or series.
    fn from_where(&self, query: &SeriesQuery) -> String {
        let mut q = format!(
            "FROM {} WHERE time >= {} AND time < {}",
            self.from(&query.measurement),
            query.start_ns,
            query.end_ns
        );
        for (k, v) in &query.tag_filters {
            q.push_str(&format!(" AND {} = {}", quote_ident(k), quote_literal(v)));
        }
        q
    }

    pub async fn read(&self, query: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        let mut query = query.clone();
        if query.fields.is_empty() {
            // Without fields named, the field list must come first.
            let show = format!("SHOW FIELD KEYS FROM {}", self.from(&query.measurement));
            let types = self.query(&show).await?.first().map(Self::field_types).unwrap_or_default();
            query.fields = types.into_keys().collect();
            query.fields.sort();
            if query.fields.is_empty() {
                return Ok(Vec::new());
            }
        }
        let mut out = SeriesCollector::new(&query.fields);
        self.read_each(&query, &mut out).await?;
        Ok(out.finish())
    }

    /// Streams a read: the field types (`SHOW FIELD KEYS`) and the rows come in
    /// one chunked request, and each chunk's rows are decoded and handed to
    /// `visitor` before the next chunk is read.
    pub async fn read_each(&self, query: &SeriesQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.stream(query, None, visitor).await
    }

    /// [`Self::read_each`] with an extra InfluxQL condition (already quoted).
    async fn stream(
        &self,
        query: &SeriesQuery,
        condition: Option<&str>,
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        if query.fields.is_empty() {
            return Err(StoreError::Query("a streaming read must name the fields it reads".into()));
        }
        let q = format!("SHOW FIELD KEYS FROM {}; {}", self.from(&query.measurement), self.select(query, condition));
        let mut types: HashMap<String, Vec<FieldType>> = HashMap::new();
        let mut ids: HashMap<BTreeMap<String, String>, usize> = HashMap::new();
        self.query_docs(&q, usize::MAX, |doc| {
            if let Some(e) = doc.error {
                return Err(StoreError::Query(format!("{e} (query: {q})")));
            }
            for r in doc.results {
                if let Some(e) = &r.error {
                    return Err(self.statement_error(e, &q));
                }
                if r.statement_id == 0 {
                    for (name, t) in Self::field_types(&r) {
                        types.entry(name).or_default().extend(t);
                    }
                    continue;
                }
                for mut raw in r.series {
                    raw.tags.retain(|_, v| !v.is_empty());
                    let next = ids.len();
                    let mut id = ids.get(&raw.tags).copied();
                    decode_rows(&raw, &query.fields, &types, |t, values| {
                        let i = *id.get_or_insert_with(|| {
                            visitor.series(next, &raw.tags);
                            next
                        });
                        visitor.row(i, t, &values);
                    })?;
                    if let Some(i) = id {
                        ids.entry(raw.tags).or_insert(i);
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// See [`Store::count`]: `SELECT count("f1"),count("f2") …` without `GROUP BY`,
    /// counted by the server, summed here.
    pub async fn count(&self, query: &SeriesQuery) -> Result<u64, StoreError> {
        if query.fields.is_empty() {
            return Err(StoreError::Query("a count must name the fields it counts".into()));
        }
        let counts: Vec<String> = query.fields.iter().map(|f| format!("count({})", quote_ident(f))).collect();
        let q = self.select_cols(&counts.join(","), query);
        let mut total = 0u64;
        for r in self.query(&q).await? {
            for s in r.series {
                for row in s.values {
                    total += row.iter().skip(1).filter_map(|v| v.as_u64()).sum::<u64>();
                }
            }
        }
        Ok(total)
    }

    /// See [`Store::read_grouped`]: `SELECT sum("f") AS "a0", … GROUP BY
    /// time(<bucket>), * fill(none)`, aggregated by the server and streamed.
    pub async fn read_grouped(&self, query: &GroupedQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        if query.aggregates.is_empty() || query.bucket_ns <= 0 {
            return Err(StoreError::Query("a grouped read needs aggregates and a positive bucket".into()));
        }
        let cols: Vec<String> = query
            .aggregates
            .iter()
            .enumerate()
            .map(|(k, (agg, f))| format!("{}({}) AS \"a{k}\"", agg.influxql(), quote_ident(f)))
            .collect();
        let names: Vec<String> = (0..query.aggregates.len()).map(|k| format!("a{k}")).collect();
        let rows = query.rows_query();
        let q =
            self.select_cols(&cols.join(","), &rows) + &format!(" GROUP BY time({}ns), * fill(none)", query.bucket_ns);
        let mut ids: HashMap<BTreeMap<String, String>, usize> = HashMap::new();
        let types = HashMap::new();
        self.query_docs(&q, usize::MAX, |doc| {
            if let Some(e) = doc.error {
                return Err(StoreError::Query(format!("{e} (query: {q})")));
            }
            for r in doc.results {
                if let Some(e) = &r.error {
                    return Err(self.statement_error(e, &q));
                }
                for mut raw in r.series {
                    raw.tags.retain(|_, v| !v.is_empty());
                    let next = ids.len();
                    let i = *ids.entry(raw.tags.clone()).or_insert_with(|| {
                        visitor.series(next, &raw.tags);
                        next
                    });
                    // Every aggregate is a number; counts and integer sums read as floats.
                    decode_rows(&raw, &names, &types, |t, values| {
                        let values: Vec<Option<FieldValue>> =
                            values.into_iter().map(|v| v.and_then(|v| v.as_f64()).map(FieldValue::Float)).collect();
                        visitor.row(i, t, &values);
                    })?;
                }
            }
            Ok(())
        })
        .await
    }

    /// See [`Store::series_keys`]: `SHOW SERIES … WHERE time …`, which InfluxDB
    /// 1.x answers per shard (a superset of the series with rows in the range).
    pub async fn series_keys(&self, query: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        let q = format!("SHOW SERIES {}", self.from_where(query));
        let mut out = Vec::new();
        for r in self.query(&q).await? {
            for s in r.series {
                for row in s.values {
                    let Some(key) = row.first().and_then(|v| v.as_str()) else { continue };
                    let tags = parse_series_key(key).ok_or_else(|| {
                        StoreError::Query(format!("unexpected series key {key:?} in the answer to `{q}`"))
                    })?;
                    out.push(tags);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// See [`Store::read_each_any`]: the alternatives go into the `WHERE` clause,
    /// a few hundred per request.
    pub async fn read_each_any(
        &self,
        query: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        /// Alternatives per request: keeps a statement far below any URL or
        /// parser limit.
        const PER_REQUEST: usize = 200;
        let mut base = 0;
        for group in any_of.chunks(PER_REQUEST) {
            let alternatives: Vec<String> = group
                .iter()
                .filter(|f| !f.is_empty())
                .map(|f| {
                    let all: Vec<String> =
                        f.iter().map(|(k, v)| format!("{} = {}", quote_ident(k), quote_literal(v))).collect();
                    format!("({})", all.join(" AND "))
                })
                .collect();
            if alternatives.len() < group.len() {
                // An empty alternative matches every series.
                return self.read_each(query, visitor).await;
            }
            let condition = alternatives.join(" OR ");
            // Series numbers stay distinct across requests.
            let mut shifted = Shifted { base, seen: 0, out: visitor };
            self.stream(query, Some(&condition), &mut shifted).await?;
            base += shifted.seen;
        }
        Ok(())
    }

    pub async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        let q = format!("SHOW TAG VALUES FROM {} WITH KEY = {}", self.from(measurement), quote_ident(tag));
        let mut values: Vec<String> = self
            .query(&q)
            .await?
            .into_iter()
            .flat_map(|r| r.series)
            .flat_map(|s| s.values)
            .filter_map(|row| row.get(1).and_then(|v| v.as_str()).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// Renumbers the series of one of several requests of a read.
struct Shifted<'v> {
    base: usize,
    seen: usize,
    out: &'v mut dyn RowVisitor,
}

impl RowVisitor for Shifted<'_> {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        self.seen = self.seen.max(series + 1);
        self.out.series(self.base + series, tags);
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        self.out.row(self.base + series, time_ns, values);
    }
}

/// The tags of a series key as `SHOW SERIES` prints it (`m,k=v,k2=v\,2`, escaped
/// as in line protocol).
fn parse_series_key(key: &str) -> Option<BTreeMap<String, String>> {
    let raw: Vec<&str> = split_unescaped(key, ',');
    raw.iter()
        .skip(1)
        .map(|kv| {
            let at = unescaped_position(kv, '=')?;
            Some((unescape(&kv[..at]), unescape(&kv[at + 1..])))
        })
        .collect()
}

fn unescaped_position(s: &str, sep: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = unescaped_position(rest, sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len_utf8()..];
    }
    out.push(rest);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Decodes the rows of one answer series into `each(time, values)`, `values[j]`
/// being `fields[j]`; rows with none of the fields are left out.
fn decode_rows(
    raw: &RawSeries,
    fields: &[String],
    types: &HashMap<String, Vec<FieldType>>,
    mut each: impl FnMut(i64, Vec<Option<FieldValue>>),
) -> Result<(), StoreError> {
    let bad = |m: String| StoreError::Query(format!("unexpected InfluxQL answer for `{}`: {m}", raw.name));
    if raw.columns.first().map(String::as_str) != Some("time") {
        return Err(bad(format!("first column is not time: {:?}", raw.columns)));
    }
    // Column of each requested field in this answer.
    let cols: Vec<Option<usize>> =
        fields.iter().map(|f| raw.columns.iter().skip(1).position(|c| c == f).map(|i| i + 1)).collect();
    for row in &raw.values {
        let t = row
            .first()
            .and_then(|v| v.as_i64())
            .ok_or_else(|| bad(format!("time is not an integer (was epoch=ns honoured?): {:?}", row.first())))?;
        let mut values = Vec::with_capacity(fields.len());
        for (f, col) in fields.iter().zip(&cols) {
            let v = match col.and_then(|c| row.get(c)) {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(decode_value(v, types.get(f).map(Vec::as_slice).unwrap_or(&[])).ok_or_else(|| {
                    bad(format!("value {v} of field `{f}` does not match its type {:?}", types.get(f)))
                })?),
            };
            values.push(v);
        }
        if values.iter().any(Option::is_some) {
            each(t, values);
        }
    }
    Ok(())
}

#[cfg(test)]
fn decode_series(
    raw: RawSeries,
    fields: &[String],
    types: &HashMap<String, Vec<FieldType>>,
) -> Result<Series, StoreError> {
    let mut series = Series { tags: raw.tags.clone(), fields: fields.to_vec(), ..Series::default() };
    series.tags.retain(|_, v| !v.is_empty());
    decode_rows(&raw, fields, types, |t, values| {
        series.times_ns.push(t);
        series.values.push(values);
    })?;
    Ok(series)
}

fn decode_value(v: &serde_json::Value, types: &[FieldType]) -> Option<FieldValue> {
    use serde_json::Value;
    match v {
        Value::Bool(b) => Some(FieldValue::Bool(*b)),
        Value::String(s) => Some(FieldValue::Str(s.clone())),
        Value::Number(n) => {
            let integral = n.is_i64() || n.is_u64();
            let only = |t: FieldType| types.len() == 1 && types[0] == t;
            if only(FieldType::Float) || !integral {
                n.as_f64().map(FieldValue::Float)
            } else if types.contains(&FieldType::Unsigned) && !types.contains(&FieldType::Integer) {
                n.as_u64().map(FieldValue::UInt)
            } else if types.contains(&FieldType::Integer) {
                n.as_i64().map(FieldValue::Int)
            } else {
                n.as_f64().map(FieldValue::Float)
            }
        }
        _ => None,
    }
}

/// A [`Store`] on an InfluxDB server: writes through the v1 or v2 API, reads with
/// InfluxQL.
pub struct InfluxStore {
    writer: Arc<dyn Writer>,
    reader: InfluxQlReader,
    /// InfluxDB 1.x has no unsigned integers; see the module doc.
    unsigned: bool,
}

impl InfluxStore {
    pub fn new(writer: Arc<dyn Writer>, reader: InfluxQlReader, unsigned: bool) -> Self {
        InfluxStore { writer, reader, unsigned }
    }

    /// From the `[store]` section (`kind = "influxdb"`). InfluxQL reads use
    /// `database`, or `bucket` when no database is named.
    pub fn from_config(cfg: &StoreConfig) -> Result<Self, StoreError> {
        let writer = routed_writer(&cfg.influx_conn(), cfg.api, &cfg.routes())?;
        let url = cfg.url.as_deref().unwrap_or_default();
        let database = cfg.database.as_deref().or(cfg.bucket.as_deref()).ok_or_else(|| {
            ConfigError::Invalid("[store] `database` (or `bucket`) is required to read with InfluxQL".into())
        })?;
        let reader = InfluxQlReader::new(
            url,
            database,
            cfg.retention_policy.as_deref(),
            Auth::from_conn(&cfg.influx_conn())?,
            cfg.timeout,
        )?
        .with_routes(cfg.routes());
        Ok(InfluxStore::new(writer, reader, cfg.api == WriteApi::V2))
    }

    pub fn reader(&self) -> &InfluxQlReader {
        &self.reader
    }

    pub fn writer(&self) -> &dyn Writer {
        self.writer.as_ref()
    }

    fn signed_copy(&self, p: &Point) -> Result<Point, StoreError> {
        let mut p = p.clone();
        for (k, v) in &mut p.fields {
            if let FieldValue::UInt(u) = *v {
                *v = FieldValue::Int(i64::try_from(u).map_err(|_| {
                    StoreError::Write(WriteError::Rejected {
                        server: self.writer.describe(),
                        message: format!(
                            "field `{k}` of `{}` is {u}, above the largest integer InfluxDB 1.x can store; use api = \"v2\" with InfluxDB 2.x or newer",
                            p.measurement
                        ),
                    })
                })?);
            }
        }
        Ok(p)
    }
}

#[async_trait]
impl Store for InfluxStore {
    async fn write(&self, points: &[Point]) -> Result<(), StoreError> {
        // Encode everything first: one bad point refuses the batch before any is sent.
        let mut bodies = Vec::with_capacity(points.len() / WRITE_BATCH + 1);
        for chunk in points.chunks(WRITE_BATCH) {
            let mut body = String::with_capacity(chunk.len() * 200);
            for p in chunk {
                let has_unsigned = p.fields.iter().any(|(_, v)| matches!(v, FieldValue::UInt(_)));
                if has_unsigned && !self.unsigned {
                    lineproto::encode(&self.signed_copy(p)?, &mut body)?;
                } else {
                    lineproto::encode(p, &mut body).map_err(|e: EncodeError| StoreError::Invalid(e))?;
                }
            }
            bodies.push(body);
        }
        for body in bodies {
            self.writer.write_lines(&body).await?;
        }
        Ok(())
    }

    async fn read(&self, query: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        self.reader.read(query).await
    }

    async fn read_each(&self, query: &SeriesQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.reader.read_each(query, visitor).await
    }

    async fn count(&self, query: &SeriesQuery) -> Result<u64, StoreError> {
        self.reader.count(query).await
    }

    async fn read_grouped(&self, query: &GroupedQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.reader.read_grouped(query, visitor).await
    }

    async fn series_keys(&self, query: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        self.reader.series_keys(query).await
    }

    async fn read_each_any(
        &self,
        query: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        self.reader.read_each_any(query, any_of, visitor).await
    }

    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        self.reader.tag_values(measurement, tag).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.reader.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Serves one chunked `/query` answer, `body` written in pieces of `piece`
    /// bytes, each flushed on its own (so the client sees many network chunks).
    async fn serve_in_pieces(body: Vec<u8>, piece: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let _ = sock.read(&mut head).await.unwrap();
            let hdr = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            sock.write_all(hdr.as_bytes()).await.unwrap();
            for p in body.chunks(piece) {
                sock.write_all(format!("{:x}\r\n", p.len()).as_bytes()).await.unwrap();
                sock.write_all(p).await.unwrap();
                sock.write_all(b"\r\n").await.unwrap();
                sock.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            sock.write_all(b"0\r\n\r\n").await.unwrap();
        });
        url
    }

    #[tokio::test]
    async fn chunked_documents_cut_anywhere_read_the_same_with_or_without_line_ends() {
        let doc = |from: usize| {
            let keys: Vec<serde_json::Value> = (from..from + 300).map(|i| json!([format!("m,host=h{i}")])).collect();
            json!({"results": [{"statement_id": 0, "series": [{"columns": ["key"], "values": keys}], "partial": true}]})
                .to_string()
        };
        for sep in ["\n", ""] {
            let body = format!("{}{sep}{}{sep}{}{sep}", doc(0), doc(300), doc(600)).into_bytes();
            let url = serve_in_pieces(body, 97).await;
            let reader = InfluxQlReader::new(&url, "db", None, Auth::None, Duration::from_secs(5)).unwrap();
            let q =
                SeriesQuery { measurement: "m".into(), fields: vec![], tag_filters: vec![], start_ns: 0, end_ns: 1 };
            let keys = reader.series_keys(&q).await.unwrap();
            assert_eq!(keys.len(), 900, "separator {sep:?}");
            assert!(keys.iter().any(|k| k.get("host").map(String::as_str) == Some("h899")));
        }
    }

    #[test]
    fn series_keys_parse_with_escapes() {
        let t = parse_series_key(r"gpu,host=rig\,1,model=A\ 100,uuid=G\=1").unwrap();
        assert_eq!(t.get("host").map(String::as_str), Some("rig,1"));
        assert_eq!(t.get("model").map(String::as_str), Some("A 100"));
        assert_eq!(t.get("uuid").map(String::as_str), Some("G=1"));
        assert_eq!(parse_series_key("gpu,broken"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quote_literal(r"it's C:\x"), r"'it\'s C:\\x'");
    }

    #[test]
    fn values_decode_by_declared_type() {
        use FieldType::*;
        assert_eq!(decode_value(&json!(3), &[Float]), Some(FieldValue::Float(3.0)));
        assert_eq!(
            decode_value(&json!(4611686018427387905i64), &[Integer]),
            Some(FieldValue::Int(4611686018427387905))
        );
        assert_eq!(decode_value(&json!(u64::MAX), &[Unsigned]), Some(FieldValue::UInt(u64::MAX)));
        assert_eq!(decode_value(&json!(2.5), &[Integer, Float]), Some(FieldValue::Float(2.5)));
        assert_eq!(decode_value(&json!(2), &[Integer, Float]), Some(FieldValue::Int(2)));
        assert_eq!(decode_value(&json!(true), &[Boolean]), Some(FieldValue::Bool(true)));
        assert_eq!(decode_value(&json!("x"), &[String]), Some(FieldValue::Str("x".into())));
        assert_eq!(decode_value(&json!([1]), &[Float]), None);
    }

    #[test]
    fn series_decode_with_missing_fields_and_checked_times() {
        let series = |t: i64| RawSeries {
            name: "m".into(),
            columns: vec!["time".into(), "v".into()],
            values: vec![vec![json!(t), json!(1)]],
            ..Default::default()
        };
        let types = HashMap::from([("v".to_string(), vec![FieldType::Integer])]);
        let s = decode_series(series(5), &["v".into(), "missing".into()], &types).unwrap();
        assert_eq!(s.times_ns, [5]);
        assert_eq!(s.values, vec![vec![Some(FieldValue::Int(1)), None]]);
        let mut bad = series(5);
        bad.values[0][0] = json!("2024-01-01T00:00:00Z");
        assert!(decode_series(bad, &["v".into()], &types).unwrap_err().to_string().contains("epoch=ns"));
    }
}
