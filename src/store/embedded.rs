//! The embedded store: one SQLite file, no server. Used by the demo and by small
//! sites, and as the second implementation that keeps the [`Store`] contract honest.
//!
//! # Layout
//!
//! * `measurements(id, name)` and `series(id, measurement_id, tags)`: one row per
//!   measurement and per measurement + tag set; `tags` is the sorted tag list as
//!   JSON. Both are cached in memory, so writes find series without a query and reads
//!   filter tags in Rust.
//! * `field_names(id, name)`: a dictionary, so rows carry a small integer per field.
//! * `points(measurement_id, time_ns, series_id, fields)`: one row per point, in a
//!   `WITHOUT ROWID` table keyed by `(measurement_id, time_ns, series_id)`. `fields`
//!   is a compact blob: per field a varint name id, a type byte and the value (8 bytes
//!   for numbers, 1 for bools, varint length + UTF-8 for strings). A row per field
//!   would be several times larger and slower.
//!
//! * `series_hours(measurement_id, hour_ns, series_id, last_ns, exact, fields)`:
//!   which series have rows in which UTC hour, one row per series and hour, with a
//!   summary of the hour's values (`embedded/hours.rs`). It answers
//!   [`Store::series_keys`] without scanning points (the points are keyed by time, so
//!   finding the series of a range would otherwise read every row of it), and counts
//!   and grouped reads over whole hours (and over the hour a grouped read ends in,
//!   for the series whose last point there is before its end). An older file gains it, or its summaries, on
//!   first open, from its points in one pass.
//! * `hours_pending(measurement_id, hour_ns)`: the hours whose summaries in
//!   `series_hours` are behind their points. Summaries are kept in memory while
//!   batches write into them (`embedded/hour_cache.rs`) and written out before any
//!   read that uses them, when a measurement's writes move to a new hour, when many
//!   are waiting, and on close. Reading and rewriting every touched summary in every
//!   batch had cut the write rate by 9×. The hour is listed here in the same
//!   transaction as its first points, and unlisted in the one that writes its
//!   summaries, so after a crash the next open rebuilds exactly those hours from
//!   their points.
//!
//! The key puts time before series on purpose. Collectors write every series' newest
//! point at about the same time, so with time first a batch appends to the end of a
//! measurement's range and touches few pages; with series first it touched one page
//! per series per batch, which made writes of thousands of series I/O-bound. Reads
//! scan one measurement's time range in key order and keep the rows of the matching
//! series, which is what the aggregator asks for (all devices of a measurement over
//! a window). A read resolves the requested field names to ids once and decodes only
//! those fields of each row's blob, straight into the [`Series`] columns (the others
//! are skipped by length, strings without allocating).
//!
//! # Semantics
//!
//! As in InfluxDB, a point with the same series and timestamp as a stored one merges
//! into it: its fields overwrite those with the same name and the others stay. So
//! replaying a batch is idempotent. Points are checked by the same rules as the line
//! protocol encoder ([`crate::ship::lineproto::validate`]), so both stores accept the
//! same points; one bad point refuses the whole batch and nothing is written.
//! Unlike InfluxDB, a field may change type between points (the last write wins).
//!
//! # Threads
//!
//! SQLite calls block, so every call runs on tokio's blocking pool
//! (`spawn_blocking`) with the connection behind a mutex; the store is `Send + Sync`
//! and can be shared as `Arc<dyn Store>`. WAL journaling with `synchronous=NORMAL`
//! and one transaction per batch give the write rate (see `docs/benchmarks.md`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{tags_match, Aggregate, GroupedQuery, RowVisitor, Series, SeriesCollector, SeriesQuery, Store, StoreError};
use crate::model::{FieldValue, Point};
use crate::ship::lineproto;

mod hour_cache;
mod hours;
use hour_cache::HourCache;
use hours::{number_of, raw_number, SeriesHour};

/// One measurement's rows in a time range, in key order (both read paths).
const READ_RANGE_SQL: &str = "SELECT time_ns, series_id, fields FROM points
     WHERE measurement_id = ?1 AND time_ns >= ?2 AND time_ns < ?3
     ORDER BY time_ns, series_id";

const SCHEMA_VERSION: i64 = 5;

/// The granule of `series_hours`.
const HOUR_NS: i64 = 3_600_000_000_000;

/// A [`Store`] in one SQLite file.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Mutex<Inner>>,
    description: String,
}

/// Series an embedded store keeps unless `[store] max_series` says otherwise. The
/// series cache holds every series in memory, so this also bounds its size.
pub const DEFAULT_MAX_SERIES: usize = 100_000;

struct Inner {
    conn: Connection,
    /// Most series kept; see [`DEFAULT_MAX_SERIES`].
    max_series: usize,
    /// Series in `series`, all measurements together.
    series_count: usize,
    /// measurement -> its id and tag set -> series id. Mirrors `measurements`
    /// and `series`.
    series: HashMap<String, MeasurementIds>,
    /// field name -> id. Mirrors the `field_names` table.
    field_ids: HashMap<String, u32>,
    field_names: HashMap<u32, String>,
    /// Hour summaries not yet in `series_hours` (see the module doc).
    hours: HourCache,
    /// `PRAGMA data_version` when this connection last looked: it changes when
    /// another connection (another process, or a second store on the same file)
    /// commits, and then the cached summaries may be stale.
    data_version: i64,
    /// Set when a write or flush failed part way: the cache is empty and the
    /// listed hours are rebuilt from their points before summaries are used.
    hours_stale: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: what is not written here is rebuilt on the next open.
        if let Err(e) = self.flush_hours() {
            tracing::warn!(error = %e, "writing the embedded store's hour summaries on close failed; the next open rebuilds them");
        }
    }
}

/// The series a read matched, sorted, with their measurement's id: `None` when
/// nothing matches.
type Matching<'a> = Option<(i64, Vec<(&'a Vec<(String, String)>, i64)>)>;

/// One stored point as read: time and its fields by name id.
type Row = (i64, Vec<(u32, FieldValue)>);

#[derive(Default)]
struct MeasurementIds {
    id: i64,
    /// Every point of a batch is looked up here (twice: the series limit, then its
    /// id), so with a fast hash rather than SipHash.
    series: HashMap<Vec<(String, String)>, i64, foldhash::fast::RandomState>,
}

fn sql_err(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Embedded(format!("{context}: {e}"))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store at `path`; its folder is created too.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Embedded(format!("cannot create folder {} for the store: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Embedded(format!("cannot open {}: {e}; is the path writable?", path.display())))?;
        Self::init(conn, format!("embedded sqlite {}", path.display()))
    }

    /// From the `[store]` section (`kind = "embedded"`, `path = ...`).
    pub fn from_config(cfg: &super::StoreConfig) -> Result<Self, StoreError> {
        let path = cfg.path.as_deref().ok_or_else(|| {
            crate::config::ConfigError::Invalid("[store] `path` is required when kind = \"embedded\"".into())
        })?;
        let store = EmbeddedStore::open(path)?;
        store.set_max_series(cfg.max_series);
        Ok(store)
    }

    /// Sets the most series this store keeps ([`DEFAULT_MAX_SERIES`] until then).
    pub fn set_max_series(&self, max_series: usize) {
        self.lock().max_series = max_series;
    }

    /// A store that lives only as long as this value (tests, one-off runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(sql_err("cannot open an in-memory database"))?;
        Self::init(conn, "embedded sqlite (in memory)".into())
    }

    fn init(conn: Connection, description: String) -> Result<Self, StoreError> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| StoreError::Embedded(format!("{description} is not a SQLite database: {e}")))?;
        if version == 1 {
            return Err(StoreError::Embedded(format!(
                "{description} was created by an early development build of wattledger with another layout; move it away and start a new one"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::Embedded(format!(
                "{description} has schema version {version}, newer than this wattledger understands ({SCHEMA_VERSION}); upgrade wattledger"
            )));
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -65536;
             CREATE TABLE IF NOT EXISTS measurements (
                 id INTEGER PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE);
             CREATE TABLE IF NOT EXISTS series (
                 id INTEGER PRIMARY KEY,
                 measurement_id INTEGER NOT NULL REFERENCES measurements(id),
                 tags TEXT NOT NULL,
                 UNIQUE (measurement_id, tags));
             CREATE TABLE IF NOT EXISTS field_names (
                 id INTEGER PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE);
             CREATE TABLE IF NOT EXISTS points (
                 measurement_id INTEGER NOT NULL,
                 time_ns INTEGER NOT NULL,
                 series_id INTEGER NOT NULL,
                 fields BLOB NOT NULL,
                 PRIMARY KEY (measurement_id, time_ns, series_id)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS series_hours (
                 measurement_id INTEGER NOT NULL,
                 hour_ns INTEGER NOT NULL,
                 series_id INTEGER NOT NULL,
                 last_ns INTEGER NOT NULL DEFAULT 0,
                 exact INTEGER NOT NULL DEFAULT 0,
                 fields BLOB NOT NULL DEFAULT x'',
                 PRIMARY KEY (measurement_id, hour_ns, series_id)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS hours_pending (
                 measurement_id INTEGER NOT NULL,
                 hour_ns INTEGER NOT NULL,
                 PRIMARY KEY (measurement_id, hour_ns)) WITHOUT ROWID;",
        )
        .map_err(|e| StoreError::Embedded(format!("cannot set up {description}: {e}")))?;
        let summarise_err =
            |e| StoreError::Embedded(format!("cannot summarise the series of {description} by hour: {e}"));
        if version < 4 {
            // A new file (version 0) has no points, so this is instant; a version 2
            // or 3 file is summarised in one pass over its points.
            upgrade_hours(&conn).map_err(summarise_err)?;
        } else {
            // Version 4 had no pending hours (its summaries were written with
            // every batch); a version 5 file closed without writing them has some.
            let listed: i64 =
                conn.query_row("SELECT count(*) FROM hours_pending", [], |r| r.get(0)).map_err(summarise_err)?;
            if listed > 0 || version == 4 {
                let tx = conn.unchecked_transaction().map_err(summarise_err)?;
                rebuild_pending_hours(&tx).map_err(summarise_err)?;
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};")).map_err(summarise_err)?;
                tx.commit().map_err(summarise_err)?;
            }
        }
        let mut inner = Inner {
            conn,
            max_series: DEFAULT_MAX_SERIES,
            series_count: 0,
            series: HashMap::new(),
            field_ids: HashMap::new(),
            field_names: HashMap::new(),
            hours: HourCache::default(),
            data_version: 0,
            hours_stale: false,
        };
        inner.data_version = data_version(&inner.conn).map_err(sql_err("reading the data version"))?;
        inner.load_caches()?;
        Ok(EmbeddedStore { inner: Arc::new(Mutex::new(inner)), description })
    }

    /// Where the data lives, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave SQLite inconsistent (the
        // transaction rolls back), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes on the calling thread; [`Store::write`] calls this off the executor.
    pub fn write_blocking(&self, points: &[Point]) -> Result<(), StoreError> {
        for p in points {
            lineproto::validate(p)?;
        }
        let mut inner = self.lock();
        inner.check_series_limit(points)?;
        let result = inner.write(points);
        if result.is_err() {
            // The transaction rolled back: ids cached during it may not exist, and
            // it may have been rebuilding summaries.
            inner.hours.clear();
            inner.hours_stale = true;
            if let Err(e) = inner.load_caches() {
                tracing::warn!(error = %e, "reloading the embedded store's caches failed");
            }
        }
        result
    }

    /// Reads on the calling thread; see [`Store::read`].
    pub fn read_blocking(&self, query: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        self.lock().read(query)
    }

    /// Streams on the calling thread: hands batches of [`Scanned`] to `send`
    /// (which returns false when the reader has gone away).
    fn scan_batches(
        &self,
        q: &SeriesQuery,
        any_of: Option<&[Vec<(String, String)>]>,
        send: &mut dyn FnMut(Vec<Scanned>) -> bool,
    ) -> Result<(), StoreError> {
        let inner = self.lock();
        let Some((measurement_id, matching)) = inner.matching_any(q, any_of) else {
            return Ok(());
        };
        in_batches(send, |each| inner.scan(q, measurement_id, &matching, each))
    }

    /// See [`Store::series_keys`]: from `series_hours`, so a series counts when it
    /// has rows in an hour the range touches.
    pub fn series_keys_blocking(&self, q: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        let mut inner = self.lock();
        inner.flush_hours()?;
        let Some((measurement_id, matching)) = inner.matching(q) else {
            return Ok(Vec::new());
        };
        if q.end_ns <= q.start_ns {
            return Ok(Vec::new());
        }
        let slots = SeriesSlots::new(&matching);
        let mut stmt = inner
            .conn
            .prepare_cached(
                "SELECT DISTINCT series_id FROM series_hours
                 WHERE measurement_id = ?1 AND hour_ns >= ?2 AND hour_ns < ?3",
            )
            .map_err(sql_err("preparing a series lookup"))?;
        let first_hour = q.start_ns - q.start_ns.rem_euclid(HOUR_NS);
        let ids = stmt
            .query_map(params![measurement_id, first_hour, q.end_ns], |r| r.get::<_, i64>(0))
            .map_err(sql_err("looking up series"))?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(i) = slots.get(id.map_err(sql_err("looking up series"))?) {
                out.push(matching[i].0.iter().cloned().collect());
            }
        }
        out.sort();
        Ok(out)
    }

    /// See [`Store::tag_values`].
    pub fn tag_values_blocking(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        let inner = self.lock();
        let mut values: Vec<String> = inner
            .series
            .get(measurement)
            .into_iter()
            .flat_map(|m| m.series.keys())
            .filter_map(|tags| tags.iter().find(|(k, _)| k == tag).map(|(_, v)| v.clone()))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// [`Store::read_each`] of the series that also match one of `any_of`.
    async fn stream(
        &self,
        query: &SeriesQuery,
        any_of: Option<Vec<Vec<(String, String)>>>,
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        if query.fields.is_empty() {
            return Err(StoreError::Query("a streaming read must name the fields it reads".into()));
        }
        let query = query.clone();
        self.visit(visitor, move |s, send| s.scan_batches(&query, any_of.as_deref(), send)).await
    }

    /// Runs `read` on the blocking pool and hands what it sends to `visitor`.
    /// SQLite blocks, so the rows are read there and come here in batches
    /// through a bounded channel: the reading thread waits while the visitor is
    /// behind.
    async fn visit(
        &self,
        visitor: &mut dyn RowVisitor,
        read: impl FnOnce(&EmbeddedStore, &mut dyn FnMut(Vec<Scanned>) -> bool) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Scanned>>(STREAM_DEPTH);
        let reader = self.blocking(move |s| read(&s, &mut |batch| tx.blocking_send(batch).is_ok()));
        let consume = async {
            while let Some(batch) = rx.recv().await {
                for event in batch {
                    match event {
                        Scanned::Series(i, tags) => visitor.series(i, &tags),
                        Scanned::Row(i, t, values) => visitor.row(i, t, &values),
                    }
                }
            }
        };
        let (result, ()) = tokio::join!(reader, consume);
        result
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(EmbeddedStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this))
            .await
            .map_err(|e| StoreError::Embedded(format!("store task failed: {e}")))?
    }
}

impl Inner {
    /// Refuses, before anything is written, a batch that would take the store past
    /// `max_series`, in the words InfluxDB 1.x uses for its own limit.
    fn check_series_limit(&self, points: &[Point]) -> Result<(), StoreError> {
        let mut new: std::collections::HashSet<(&str, Vec<(String, String)>)> = std::collections::HashSet::new();
        for p in points {
            let known = self.series.get(p.measurement.as_str()).is_some_and(|m| {
                m.series.contains_key(&p.tags) || (!p.tags.is_sorted() && m.series.contains_key(&sorted(&p.tags)))
            });
            if known || !new.insert((p.measurement.as_str(), sorted(&p.tags))) {
                continue;
            }
            if self.series_count.saturating_add(new.len()) > self.max_series {
                return Err(StoreError::Limit(format!(
                    "partial write: max-series-per-database limit exceeded: ({}); the batch would add series \
                     past it (measurement {:?}); raise [store] max_series or write fewer distinct tag sets",
                    self.max_series, p.measurement
                )));
            }
        }
        Ok(())
    }

    fn load_caches(&mut self) -> Result<(), StoreError> {
        self.series_count = 0;
        self.series.clear();
        self.field_ids.clear();
        self.field_names.clear();
        let mut names: HashMap<i64, String> = HashMap::new();
        let mut stmt =
            self.conn.prepare("SELECT id, name FROM measurements").map_err(sql_err("reading measurements"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(sql_err("reading measurements"))?;
        for row in rows {
            let (id, name) = row.map_err(sql_err("reading measurements"))?;
            self.series.insert(name.clone(), MeasurementIds { id, series: HashMap::default() });
            names.insert(id, name);
        }
        drop(stmt);
        let mut stmt =
            self.conn.prepare("SELECT id, measurement_id, tags FROM series").map_err(sql_err("reading series"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
            .map_err(sql_err("reading series"))?;
        for row in rows {
            let (id, mid, tags) = row.map_err(sql_err("reading series"))?;
            let tags: Vec<(String, String)> = serde_json::from_str(&tags)
                .map_err(|e| StoreError::Embedded(format!("series {id} has unreadable tags: {e}")))?;
            let m = names
                .get(&mid)
                .and_then(|name| self.series.get_mut(name))
                .ok_or_else(|| StoreError::Embedded(format!("series {id} names a missing measurement {mid}")))?;
            m.series.insert(tags, id);
            self.series_count += 1;
        }
        drop(stmt);
        let mut stmt = self.conn.prepare("SELECT id, name FROM field_names").map_err(sql_err("reading field names"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))
            .map_err(sql_err("reading field names"))?;
        for row in rows {
            let (id, name) = row.map_err(sql_err("reading field names"))?;
            self.field_ids.insert(name.clone(), id);
            self.field_names.insert(id, name);
        }
        Ok(())
    }

    fn write(&mut self, points: &[Point]) -> Result<(), StoreError> {
        let Inner {
            conn, series, field_ids, field_names, series_count, hours, data_version: seen, hours_stale, ..
        } = self;
        // Immediate: the data version read next stays true until the commit.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_err("starting a write"))?;
        if foreign_commit(&tx, seen).map_err(sql_err("reading the data version"))? || *hours_stale {
            hours.clear();
            rebuild_pending_hours(&tx).map_err(sql_err("rebuilding hour summaries"))?;
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO points (measurement_id, time_ns, series_id, fields) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (measurement_id, time_ns, series_id) DO NOTHING",
                )
                .map_err(sql_err("preparing a write"))?;
            let mut blob = Vec::with_capacity(256);
            let mut ids: Vec<u32> = Vec::new();
            for p in points {
                let key = series_key(&tx, series, series_count, p)?;
                blob.clear();
                ids.clear();
                for (name, value) in &p.fields {
                    let id = field_id(&tx, field_ids, field_names, name)?;
                    encode_field(&mut blob, id, value);
                    ids.push(id);
                }
                let inserted =
                    insert.execute(params![key.0, p.time_ns, key.1, &blob]).map_err(sql_err("writing a point"))?;
                let hour = p.time_ns - p.time_ns.rem_euclid(HOUR_NS);
                if hours.list(key.0, hour) {
                    tx.prepare_cached("INSERT OR IGNORE INTO hours_pending (measurement_id, hour_ns) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![key.0, hour]))
                        .map_err(sql_err("listing a series' hour"))?;
                }
                let summary = hours.summary_mut((key.0, hour, key.1), || load_hour(&tx, key.0, hour, key.1))?;
                if inserted == 0 {
                    merge_into_existing(&tx, key, p.time_ns, &blob, summary)?;
                } else {
                    // A name twice in one point: a read takes the first value.
                    let firsts = ids.iter().enumerate().filter(|&(k, id)| !ids[..k].contains(id));
                    summary.add_point(p.time_ns, firsts.map(|(k, &id)| (id, number_of(&p.fields[k].1))));
                }
            }
        }
        tx.commit().map_err(sql_err("committing a write"))?;
        *hours_stale = false;
        if hours.should_flush() {
            // The points are in; a summary that did not make it is rebuilt later.
            if let Err(e) = self.flush_hours() {
                tracing::warn!(error = %e, "writing the embedded store's hour summaries failed; they are rebuilt from the points");
            }
        }
        Ok(())
    }

    /// Writes the pending hour summaries to `series_hours` and unlists their
    /// hours, in one transaction; the cache keeps them (clean) for the next batch
    /// while they are recent.
    ///
    /// When another connection has committed since this one last looked, the
    /// cache is dropped instead and every listed hour rebuilt from its points
    /// (theirs and ours), so a summary read next is never stale.
    fn flush_hours(&mut self) -> Result<(), StoreError> {
        let result = self.try_flush_hours();
        if result.is_err() {
            self.hours.clear();
            self.hours_stale = true;
        }
        result
    }

    fn try_flush_hours(&mut self) -> Result<(), StoreError> {
        let version_err = sql_err("reading the data version");
        let mut foreign = foreign_commit(&self.conn, &mut self.data_version).map_err(&version_err)?;
        if !foreign && !self.hours_stale && !self.hours.any_pending() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err("starting to write hour summaries"))?;
        foreign |= foreign_commit(&tx, &mut self.data_version).map_err(&version_err)?;
        if foreign || self.hours_stale {
            self.hours.clear();
            rebuild_pending_hours(&tx).map_err(sql_err("rebuilding hour summaries"))?;
        } else {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO series_hours (measurement_id, hour_ns, series_id, last_ns, exact, fields)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql_err("preparing to write hour summaries"))?;
            let mut blob = Vec::with_capacity(256);
            for (&(m, hour, sid), summary) in self.hours.dirty() {
                summary.encode_fields(&mut blob);
                put.execute(params![m, hour, sid, summary.last_ns, summary.exact, &blob])
                    .map_err(sql_err("summarising a series' hour"))?;
            }
            let mut done = tx
                .prepare_cached("DELETE FROM hours_pending WHERE measurement_id = ?1 AND hour_ns = ?2")
                .map_err(sql_err("preparing to write hour summaries"))?;
            for (m, hour) in self.hours.pending() {
                done.execute(params![m, hour]).map_err(sql_err("unlisting a series' hour"))?;
            }
        }
        tx.commit().map_err(sql_err("committing hour summaries"))?;
        self.hours.flushed();
        self.hours_stale = false;
        Ok(())
    }

    fn read(&self, q: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        let Some((measurement_id, matching)) = self.matching(q) else {
            return Ok(Vec::new());
        };
        if q.fields.is_empty() {
            return self.read_all_fields(q, measurement_id, matching);
        }
        let mut out = SeriesCollector::new(&q.fields);
        self.scan(q, measurement_id, &matching, |event| {
            match event {
                Scanned::Series(i, tags) => out.series(i, &tags),
                Scanned::Row(i, t, values) => out.push_row(i, t, values),
            }
            true
        })?;
        Ok(out.finish())
    }

    /// Walks the rows of a read with named fields in key order, handing each
    /// matching series (once, before its first row) and row to `each`, which
    /// returns false to stop. The requested fields' name ids and columns are
    /// resolved once: each row's blob is walked once, only these fields are
    /// decoded (the others are skipped by length, strings without allocating).
    fn scan(
        &self,
        q: &SeriesQuery,
        measurement_id: i64,
        matching: &[(&Vec<(String, String)>, i64)],
        mut each: impl FnMut(Scanned) -> bool,
    ) -> Result<(), StoreError> {
        let cols: Vec<(u32, usize)> =
            q.fields.iter().enumerate().filter_map(|(j, f)| self.field_ids.get(f).map(|&id| (id, j))).collect();
        let slots = SeriesSlots::new(matching);
        let mut announced = vec![false; matching.len()];
        let mut stmt = self.conn.prepare_cached(READ_RANGE_SQL).map_err(sql_err("preparing a read"))?;
        let mut iter = stmt.query(params![measurement_id, q.start_ns, q.end_ns]).map_err(sql_err("reading points"))?;
        while let Some(row) = iter.next().map_err(sql_err("reading points"))? {
            let sid: i64 = row.get(1).map_err(sql_err("reading points"))?;
            let Some(i) = slots.get(sid) else { continue };
            let blob = row.get_ref(2).map_err(sql_err("reading points"))?;
            let blob = blob.as_blob().map_err(|e| StoreError::Embedded(format!("corrupt row: {e}")))?;
            let mut values: Vec<Option<FieldValue>> = vec![None; q.fields.len()];
            // InfluxQL leaves out rows that have none of the selected fields.
            if decode_selected(blob, &cols, &mut values)? {
                if !announced[i] {
                    announced[i] = true;
                    if !each(Scanned::Series(i, matching[i].0.iter().cloned().collect())) {
                        return Ok(());
                    }
                }
                let t: i64 = row.get(0).map_err(sql_err("reading points"))?;
                if !each(Scanned::Row(i, t, values)) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// [`Store::read_grouped`] on the reading thread; finished buckets go to
    /// `each` (which returns false to stop). With buckets of whole hours, the
    /// hours entirely inside the range come from their `series_hours` summaries
    /// (a series' hour whose summary is not exact from its points), and so does
    /// the hour the range ends in for a series whose last point there is before
    /// the end; only the rest of the partial hours at the range's edges is read
    /// point by point. Every row's
    /// blob is walked once and its numbers folded straight into its series' open
    /// bucket, so no row is decoded into values or sent anywhere.
    fn grouped(&self, q: &GroupedQuery, mut each: impl FnMut(Scanned) -> bool) -> Result<(), StoreError> {
        let rows = q.rows_query();
        let Some((measurement_id, matching)) = self.matching(&rows) else {
            return Ok(());
        };
        let mut fold = GroupFold::new(q, &self.field_ids, &matching);
        let slots = SeriesSlots::new(&matching);
        let (start, end) = (q.start_ns, q.end_ns);
        let (h0, h1) = whole_hours(start, end);
        // The hour the range ends in, when the range holds its start: the current
        // window of a live read. A series whose last point of that hour is before
        // the end has all of the hour's points inside the range, so its summary
        // serves there too.
        let tail = (end > h1 && h1 >= start).then_some(h1);
        if q.bucket_ns <= 0 || q.bucket_ns % HOUR_NS != 0 || (h0 >= h1 && tail.is_none()) {
            if self.fold_points(measurement_id, start, end, &slots, None, &mut fold, &mut each)? {
                fold.finish(&mut each);
            }
            return Ok(());
        }
        if !self.fold_points(measurement_id, start, h0, &slots, None, &mut fold, &mut each)? {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT hour_ns, series_id, exact, fields, last_ns FROM series_hours
                 WHERE measurement_id = ?1 AND hour_ns >= ?2 AND hour_ns < ?3 ORDER BY hour_ns, series_id",
            )
            .map_err(sql_err("preparing a read"))?;
        let hours_end = if tail.is_some() { h1 + HOUR_NS } else { h1 };
        let mut iter = stmt.query(params![measurement_id, h0, hours_end]).map_err(sql_err("reading hours"))?;
        // The series of the current hour whose summary does not serve (not exact,
        // or in the tail hour with points after the end): that hour is read from
        // their points, before any later hour of theirs.
        let mut inexact = vec![false; matching.len()];
        let mut any_inexact = false;
        let mut current: Option<i64> = None;
        let mut summary = Vec::new();
        while let Some(row) = iter.next().map_err(sql_err("reading hours"))? {
            let hour: i64 = row.get(0).map_err(sql_err("reading hours"))?;
            if current != Some(hour) {
                if let (Some(c), true) = (current, any_inexact) {
                    if !self.fold_points(
                        measurement_id,
                        c,
                        c + HOUR_NS,
                        &slots,
                        Some(&inexact),
                        &mut fold,
                        &mut each,
                    )? {
                        return Ok(());
                    }
                    inexact.iter_mut().for_each(|x| *x = false);
                    any_inexact = false;
                }
                current = Some(hour);
            }
            let sid: i64 = row.get(1).map_err(sql_err("reading hours"))?;
            let Some(i) = slots.get(sid) else { continue };
            let exact: bool = row.get(2).map_err(sql_err("reading hours"))?;
            let last_ns: i64 = row.get(4).map_err(sql_err("reading hours"))?;
            if !exact || (Some(hour) == tail && last_ns >= end) {
                inexact[i] = true;
                any_inexact = true;
                continue;
            }
            let blob = row.get_ref(3).map_err(sql_err("reading hours"))?;
            let blob = blob.as_blob().map_err(|e| StoreError::Embedded(format!("corrupt hour row: {e}")))?;
            summary.clear();
            hours::each_field(blob, |f| {
                summary.push(f);
                Ok(())
            })?;
            if !fold.hour(i, hour, &summary, &mut each) {
                return Ok(());
            }
        }
        if let (Some(c), true) = (current, any_inexact) {
            if !self.fold_points(
                measurement_id,
                c,
                (c + HOUR_NS).min(end),
                &slots,
                Some(&inexact),
                &mut fold,
                &mut each,
            )? {
                return Ok(());
            }
        }
        if tail.is_some() || self.fold_points(measurement_id, h1, end, &slots, None, &mut fold, &mut each)? {
            fold.finish(&mut each);
        }
        Ok(())
    }

    /// Folds the points of `[start, end)` of the matching series (of those marked
    /// in `only`, when given) into `fold`; false when `each` asked to stop.
    #[allow(clippy::too_many_arguments)]
    fn fold_points(
        &self,
        measurement_id: i64,
        start: i64,
        end: i64,
        slots: &SeriesSlots,
        only: Option<&[bool]>,
        fold: &mut GroupFold<'_>,
        each: &mut dyn FnMut(Scanned) -> bool,
    ) -> Result<bool, StoreError> {
        if start >= end {
            return Ok(true);
        }
        let mut stmt = self.conn.prepare_cached(READ_RANGE_SQL).map_err(sql_err("preparing a read"))?;
        let mut iter = stmt.query(params![measurement_id, start, end]).map_err(sql_err("reading points"))?;
        while let Some(row) = iter.next().map_err(sql_err("reading points"))? {
            let sid: i64 = row.get(1).map_err(sql_err("reading points"))?;
            let Some(i) = slots.get(sid) else { continue };
            if only.is_some_and(|o| !o[i]) {
                continue;
            }
            let t: i64 = row.get(0).map_err(sql_err("reading points"))?;
            let blob = row.get_ref(2).map_err(sql_err("reading points"))?;
            let blob = blob.as_blob().map_err(|e| StoreError::Embedded(format!("corrupt row: {e}")))?;
            if !fold.row(i, t, blob, each)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Store::count`]: the whole hours of the range from their summaries (the
    /// value counts are exact whatever was merged), the partial hours at its edges
    /// from the points.
    fn count(&self, q: &SeriesQuery) -> Result<u64, StoreError> {
        let Some((measurement_id, matching)) = self.matching(q) else {
            return Ok(0);
        };
        // Per requested column, its field's name id (a name asked twice counts twice).
        let cols: Vec<u32> = q.fields.iter().filter_map(|f| self.field_ids.get(f).copied()).collect();
        if cols.is_empty() {
            return Ok(0);
        }
        let slots = SeriesSlots::new(&matching);
        let (h0, h1) = whole_hours(q.start_ns, q.end_ns);
        if h0 >= h1 {
            return self.count_points(measurement_id, q.start_ns, q.end_ns, &slots, &cols);
        }
        let mut n = self.count_points(measurement_id, q.start_ns, h0, &slots, &cols)?
            + self.count_points(measurement_id, h1, q.end_ns, &slots, &cols)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT series_id, fields FROM series_hours WHERE measurement_id = ?1 AND hour_ns >= ?2 AND hour_ns < ?3",
            )
            .map_err(sql_err("preparing a count"))?;
        let mut iter = stmt.query(params![measurement_id, h0, h1]).map_err(sql_err("counting"))?;
        while let Some(row) = iter.next().map_err(sql_err("counting"))? {
            let sid: i64 = row.get(0).map_err(sql_err("counting"))?;
            if slots.get(sid).is_none() {
                continue;
            }
            let blob = row.get_ref(1).map_err(sql_err("counting"))?;
            let blob = blob.as_blob().map_err(|e| StoreError::Embedded(format!("corrupt hour row: {e}")))?;
            hours::each_field(blob, |f| {
                n += f.values * cols.iter().filter(|&&c| c == f.id).count() as u64;
                Ok(())
            })?;
        }
        Ok(n)
    }

    /// The values of the fields `cols` in the points of `[start, end)` of the
    /// matching series, counted without decoding them.
    fn count_points(
        &self,
        measurement_id: i64,
        start: i64,
        end: i64,
        slots: &SeriesSlots,
        cols: &[u32],
    ) -> Result<u64, StoreError> {
        if start >= end {
            return Ok(0);
        }
        let mut n = 0u64;
        let mut seen = vec![false; cols.len()];
        let mut stmt = self.conn.prepare_cached(READ_RANGE_SQL).map_err(sql_err("preparing a count"))?;
        let mut iter = stmt.query(params![measurement_id, start, end]).map_err(sql_err("counting"))?;
        while let Some(row) = iter.next().map_err(sql_err("counting"))? {
            let sid: i64 = row.get(1).map_err(sql_err("counting"))?;
            if slots.get(sid).is_none() {
                continue;
            }
            let blob = row.get_ref(2).map_err(sql_err("counting"))?;
            let blob = blob.as_blob().map_err(|e| StoreError::Embedded(format!("corrupt row: {e}")))?;
            seen.iter_mut().for_each(|s| *s = false);
            let mut pos = 0;
            while pos < blob.len() {
                let (id, _) = next_field(blob, &mut pos)?;
                for (k, &c) in cols.iter().enumerate() {
                    // A field twice in one row counts once, as a read gives it once.
                    if c == id && !seen[k] {
                        seen[k] = true;
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    /// The series of `q.measurement` whose tags match every filter, sorted, with
    /// the measurement's id; `None` when nothing matches.
    fn matching<'a>(&'a self, q: &SeriesQuery) -> Matching<'a> {
        self.matching_any(q, None)
    }

    /// [`Self::matching`], keeping only series that also match one of `any_of`
    /// when it is given ([`Store::read_each_any`]).
    fn matching_any<'a>(&'a self, q: &SeriesQuery, any_of: Option<&[Vec<(String, String)>]>) -> Matching<'a> {
        let m = self.series.get(&q.measurement)?;
        let has = |tags: &'a Vec<(String, String)>| {
            move |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
        };
        let mut matching: Vec<(&Vec<(String, String)>, i64)> = m
            .series
            .iter()
            .filter(|(tags, _)| tags_match(has(tags), &q.tag_filters))
            .filter(|(tags, _)| any_of.is_none_or(|any| any.iter().any(|f| tags_match(has(tags), f))))
            .map(|(tags, id)| (tags, *id))
            .collect();
        matching.sort();
        (!matching.is_empty()).then_some((m.id, matching))
    }

    /// A read with no fields named: every field the rows have, by name (the same
    /// columns for every series, as InfluxQL gives them), so the rows are decoded
    /// whole and the columns known only at the end.
    fn read_all_fields(
        &self,
        q: &SeriesQuery,
        measurement_id: i64,
        matching: Vec<(&Vec<(String, String)>, i64)>,
    ) -> Result<Vec<Series>, StoreError> {
        let slots = SeriesSlots::new(&matching);
        let mut rows: Vec<Vec<Row>> = vec![Vec::new(); matching.len()];
        let mut stmt = self.conn.prepare_cached(READ_RANGE_SQL).map_err(sql_err("preparing a read"))?;
        let mut iter = stmt.query(params![measurement_id, q.start_ns, q.end_ns]).map_err(sql_err("reading points"))?;
        while let Some(row) = iter.next().map_err(sql_err("reading points"))? {
            let sid: i64 = row.get(1).map_err(sql_err("reading points"))?;
            let Some(i) = slots.get(sid) else { continue };
            let t: i64 = row.get(0).map_err(sql_err("reading points"))?;
            let blob = row.get_ref(2).map_err(sql_err("reading points"))?;
            let blob = blob.as_blob().map_err(|e| StoreError::Embedded(format!("corrupt row: {e}")))?;
            rows[i].push((t, decode_fields(blob)?));
        }
        let mut fields: Vec<String> = rows
            .iter()
            .flatten()
            .flat_map(|(_, f)| f.iter().map(|(id, _)| *id))
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .filter_map(|id| self.field_names.get(&id).cloned())
            .collect();
        fields.sort();
        let ids: Vec<Option<u32>> = fields.iter().map(|f| self.field_ids.get(f).copied()).collect();
        let mut out = Vec::new();
        for ((tags, _), rows) in matching.into_iter().zip(rows) {
            let mut series = Series {
                tags: tags.iter().cloned().collect::<BTreeMap<_, _>>(),
                fields: fields.clone(),
                ..Series::default()
            };
            for (t, mut row) in rows {
                let values: Vec<Option<FieldValue>> = ids
                    .iter()
                    .map(|id| {
                        id.and_then(|id| row.iter().position(|(rid, _)| *rid == id)).map(|k| row.swap_remove(k).1)
                    })
                    .collect();
                if values.iter().any(Option::is_some) {
                    series.times_ns.push(t);
                    series.values.push(values);
                }
            }
            if !series.times_ns.is_empty() {
                out.push(series);
            }
        }
        Ok(out)
    }
}

/// The whole UTC hours inside `[start, end)`: `[h0, h1)`, empty when `h0 >= h1`.
fn whole_hours(start: i64, end: i64) -> (i64, i64) {
    let h0 = start.saturating_add((HOUR_NS - start.rem_euclid(HOUR_NS)) % HOUR_NS);
    (h0, end - end.rem_euclid(HOUR_NS))
}

/// A grouped read's state: per matching series its open bucket, filled from
/// point blobs ([`GroupFold::row`]) and hour summaries ([`GroupFold::hour`]) in
/// time order per series.
struct GroupFold<'a> {
    bucket_ns: i64,
    aggregates: usize,
    /// Field name id -> the aggregates that read it (index = id).
    by_field: Vec<Vec<(usize, Aggregate)>>,
    open: Vec<Option<(i64, Vec<Option<f64>>)>>,
    announced: Vec<bool>,
    matching: &'a [(&'a Vec<(String, String)>, i64)],
}

impl<'a> GroupFold<'a> {
    fn new(
        q: &GroupedQuery,
        field_ids: &HashMap<String, u32>,
        matching: &'a [(&'a Vec<(String, String)>, i64)],
    ) -> Self {
        let mut by_field: Vec<Vec<(usize, Aggregate)>> = Vec::new();
        for (k, (agg, f)) in q.aggregates.iter().enumerate() {
            if let Some(&id) = field_ids.get(f) {
                let id = id as usize;
                if by_field.len() <= id {
                    by_field.resize_with(id + 1, Vec::new);
                }
                by_field[id].push((k, *agg));
            }
        }
        GroupFold {
            bucket_ns: q.bucket_ns.max(1),
            aggregates: q.aggregates.len(),
            by_field,
            open: vec![None; matching.len()],
            announced: vec![false; matching.len()],
            matching,
        }
    }

    /// The accumulators of series `i`'s bucket holding `t`, handing on the bucket
    /// open before it if that is another; `None` when `each` asked to stop.
    fn bucket<'o>(
        open: &'o mut [Option<(i64, Vec<Option<f64>>)>],
        announced: &mut [bool],
        (matching, bucket_ns, aggregates): (&[(&Vec<(String, String)>, i64)], i64, usize),
        (i, t): (usize, i64),
        each: &mut dyn FnMut(Scanned) -> bool,
    ) -> Option<&'o mut Vec<Option<f64>>> {
        let start = t - t.rem_euclid(bucket_ns);
        if open[i].as_ref().is_some_and(|b| b.0 != start) {
            let done = open[i].take().expect("checked above");
            if !each(Scanned::Row(i, done.0, done.1.into_iter().map(|v| v.map(FieldValue::Float)).collect())) {
                return None;
            }
        }
        if !announced[i] {
            announced[i] = true;
            if !each(Scanned::Series(i, matching[i].0.iter().cloned().collect())) {
                return None;
            }
        }
        Some(&mut open[i].get_or_insert_with(|| (start, vec![None; aggregates])).1)
    }

    /// Folds one point of series `i` at `t`; false when `each` asked to stop.
    fn row(
        &mut self,
        i: usize,
        t: i64,
        blob: &[u8],
        each: &mut dyn FnMut(Scanned) -> bool,
    ) -> Result<bool, StoreError> {
        let GroupFold { bucket_ns, aggregates, by_field, open, announced, matching } = self;
        let mut pos = 0;
        while pos < blob.len() {
            let (id, raw) = next_field(blob, &mut pos)?;
            let Some(aggs) = by_field.get(id as usize).filter(|a| !a.is_empty()) else { continue };
            let number = raw_number(&raw);
            let Some(acc) = Self::bucket(open, announced, (matching, *bucket_ns, *aggregates), (i, t), each) else {
                return Ok(false);
            };
            for &(k, agg) in aggs {
                let v = match (agg, number) {
                    (Aggregate::Count, _) => 1.0,
                    (_, Some(v)) => v,
                    _ => continue,
                };
                acc[k] = Some(acc[k].map_or(v, |a| agg.combine(a, v)));
            }
        }
        Ok(true)
    }

    /// Folds the exact summary of series `i`'s hour starting at `hour` (which
    /// lies in one bucket: buckets are whole hours); false when `each` asked to stop.
    fn hour(
        &mut self,
        i: usize,
        hour: i64,
        fields: &[hours::FieldHour],
        each: &mut dyn FnMut(Scanned) -> bool,
    ) -> bool {
        let GroupFold { bucket_ns, aggregates, by_field, open, announced, matching } = self;
        for f in fields {
            if f.values == 0 {
                continue;
            }
            let Some(aggs) = by_field.get(f.id as usize).filter(|a| !a.is_empty()) else { continue };
            let Some(acc) = Self::bucket(open, announced, (matching, *bucket_ns, *aggregates), (i, hour), each) else {
                return false;
            };
            for &(k, agg) in aggs {
                let v = match agg {
                    Aggregate::Count => f.values as f64,
                    _ if f.numbers == 0 => continue,
                    Aggregate::Sum => f.sum,
                    Aggregate::Min => f.min,
                    Aggregate::Max => f.max,
                };
                acc[k] = Some(acc[k].map_or(v, |a| agg.combine(a, v)));
            }
        }
        true
    }

    /// Hands on every bucket still open.
    fn finish(self, each: &mut dyn FnMut(Scanned) -> bool) {
        for (i, bucket) in self.open.into_iter().enumerate() {
            if let Some((start, values)) = bucket {
                if !each(Scanned::Row(i, start, values.into_iter().map(|v| v.map(FieldValue::Float)).collect())) {
                    break;
                }
            }
        }
    }
}

/// Runs `produce`, handing what it makes to `send` in batches of [`STREAM_BATCH`]
/// (`send` returns false when the reader has gone away; producing then stops).
fn in_batches(
    mut send: impl FnMut(Vec<Scanned>) -> bool,
    produce: impl FnOnce(&mut dyn FnMut(Scanned) -> bool) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(STREAM_BATCH);
    let mut open = true;
    produce(&mut |event| {
        batch.push(event);
        if batch.len() >= STREAM_BATCH {
            open = send(std::mem::replace(&mut batch, Vec::with_capacity(STREAM_BATCH)));
        }
        open
    })?;
    if open && !batch.is_empty() {
        send(batch);
    }
    Ok(())
}

/// What [`Inner::scan`] hands on: a series' first appearance, or one row.
enum Scanned {
    Series(usize, BTreeMap<String, String>),
    Row(usize, i64, Vec<Option<FieldValue>>),
}

/// Rows per message from the reading thread to a streaming read's visitor, and
/// messages in flight: a streaming read holds at most about
/// `STREAM_BATCH × (STREAM_DEPTH + 2)` rows however long its range.
const STREAM_BATCH: usize = 4096;
const STREAM_DEPTH: usize = 2;

/// Series id -> position among the series a read matched: a direct index when the
/// ids are small (they are SQLite row ids, dense from 1), else a hash map.
enum SeriesSlots {
    Dense(Vec<u32>),
    Sparse(HashMap<i64, usize>),
}

impl SeriesSlots {
    const NONE: u32 = u32::MAX;

    fn new(matching: &[(&Vec<(String, String)>, i64)]) -> Self {
        let max = matching.iter().map(|(_, id)| *id).max().unwrap_or(0);
        if (0..4_000_000).contains(&max) && matching.iter().all(|(_, id)| *id >= 0) {
            let mut v = vec![Self::NONE; max as usize + 1];
            for (i, (_, id)) in matching.iter().enumerate() {
                v[*id as usize] = i as u32;
            }
            SeriesSlots::Dense(v)
        } else {
            SeriesSlots::Sparse(matching.iter().enumerate().map(|(i, (_, id))| (*id, i)).collect())
        }
    }

    fn get(&self, sid: i64) -> Option<usize> {
        match self {
            SeriesSlots::Dense(v) => {
                usize::try_from(sid).ok().and_then(|i| v.get(i)).filter(|&&s| s != Self::NONE).map(|&s| s as usize)
            }
            SeriesSlots::Sparse(m) => m.get(&sid).copied(),
        }
    }
}

/// The (measurement id, series id) of a point's series, adding them if new.
fn sorted(tags: &[(String, String)]) -> Vec<(String, String)> {
    let mut t = tags.to_vec();
    t.sort();
    t
}

fn series_key(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut HashMap<String, MeasurementIds>,
    count: &mut usize,
    p: &Point,
) -> Result<(i64, i64), StoreError> {
    if let Some(m) = cache.get(p.measurement.as_str()) {
        if let Some(id) = m.series.get(&p.tags) {
            return Ok((m.id, *id));
        }
    }
    let tags = if p.tags.is_sorted() {
        p.tags.clone()
    } else {
        let mut t = p.tags.clone();
        t.sort();
        t
    };
    if !cache.contains_key(p.measurement.as_str()) {
        tx.prepare_cached("INSERT INTO measurements (name) VALUES (?1) ON CONFLICT DO NOTHING")
            .and_then(|mut s| s.execute(params![p.measurement]))
            .map_err(sql_err("adding a measurement"))?;
        let id: i64 = tx
            .prepare_cached("SELECT id FROM measurements WHERE name = ?1")
            .and_then(|mut s| s.query_row(params![p.measurement], |r| r.get(0)))
            .map_err(sql_err("adding a measurement"))?;
        cache.insert(p.measurement.clone(), MeasurementIds { id, series: HashMap::default() });
    }
    let m = cache.get_mut(p.measurement.as_str()).expect("inserted above");
    if let Some(id) = m.series.get(&tags) {
        return Ok((m.id, *id));
    }
    let tags_json = serde_json::to_string(&tags).map_err(|e| StoreError::Embedded(e.to_string()))?;
    tx.prepare_cached("INSERT INTO series (measurement_id, tags) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
        .and_then(|mut s| s.execute(params![m.id, tags_json]))
        .map_err(sql_err("adding a series"))?;
    let id: i64 = tx
        .prepare_cached("SELECT id FROM series WHERE measurement_id = ?1 AND tags = ?2")
        .and_then(|mut s| s.query_row(params![m.id, tags_json], |r| r.get(0)))
        .map_err(sql_err("adding a series"))?;
    m.series.insert(tags, id);
    *count += 1;
    Ok((m.id, id))
}

fn field_id(
    tx: &rusqlite::Transaction<'_>,
    ids: &mut HashMap<String, u32>,
    names: &mut HashMap<u32, String>,
    name: &str,
) -> Result<u32, StoreError> {
    if let Some(id) = ids.get(name) {
        return Ok(*id);
    }
    tx.prepare_cached("INSERT INTO field_names (name) VALUES (?1) ON CONFLICT DO NOTHING")
        .and_then(|mut s| s.execute(params![name]))
        .map_err(sql_err("adding a field name"))?;
    let id: u32 = tx
        .prepare_cached("SELECT id FROM field_names WHERE name = ?1")
        .and_then(|mut s| s.query_row(params![name], |r| r.get(0)))
        .map_err(sql_err("adding a field name"))?;
    ids.insert(name.to_owned(), id);
    names.insert(id, name.to_owned());
    Ok(id)
}

/// InfluxDB's rule for a second point at the same series and time: its fields
/// overwrite those of the stored point, the other stored fields stay. `summary`
/// (the point's hour) gains the fields the point did not have, and loses its
/// exactness when a stored number changes.
fn merge_into_existing(
    tx: &rusqlite::Transaction<'_>,
    (measurement_id, series_id): (i64, i64),
    time_ns: i64,
    new: &[u8],
    summary: &mut SeriesHour,
) -> Result<(), StoreError> {
    let old: Vec<u8> = tx
        .prepare_cached("SELECT fields FROM points WHERE measurement_id = ?1 AND time_ns = ?2 AND series_id = ?3")
        .and_then(|mut s| s.query_row(params![measurement_id, time_ns, series_id], |r| r.get(0)).optional())
        .map_err(sql_err("merging a point"))?
        .unwrap_or_default();
    let mut merged = decode_fields(&old)?;
    for (id, value) in decode_fields(new)? {
        match merged.iter_mut().find(|(mid, _)| *mid == id) {
            Some(slot) => {
                // A replay writes the same value again: nothing changes.
                if !same_value(&slot.1, &value) && (number_of(&slot.1).is_some() || number_of(&value).is_some()) {
                    summary.replaced();
                }
                slot.1 = value;
            }
            None => {
                summary.add_merged(time_ns, id, number_of(&value));
                merged.push((id, value));
            }
        }
    }
    let mut blob = Vec::with_capacity(old.len() + new.len());
    for (id, value) in &merged {
        encode_field(&mut blob, *id, value);
    }
    tx.prepare_cached("UPDATE points SET fields = ?4 WHERE measurement_id = ?1 AND time_ns = ?2 AND series_id = ?3")
        .and_then(|mut s| s.execute(params![measurement_id, time_ns, series_id, blob]))
        .map_err(sql_err("merging a point"))?;
    Ok(())
}

/// Equal to the bit (so `0.0` and `-0.0` differ, as they do in a sum).
fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::Float(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// The stored summary of one series' hour, or an empty one.
fn load_hour(
    tx: &rusqlite::Transaction<'_>,
    measurement_id: i64,
    hour: i64,
    series_id: i64,
) -> Result<SeriesHour, StoreError> {
    let row: Option<(i64, bool, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT last_ns, exact, fields FROM series_hours WHERE measurement_id = ?1 AND hour_ns = ?2 AND series_id = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![measurement_id, hour, series_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
        })
        .map_err(sql_err("reading a series' hour"))?;
    match row {
        Some((last_ns, exact, blob)) => SeriesHour::decode(last_ns, exact, &blob),
        None => Ok(SeriesHour::default()),
    }
}

/// Brings `series_hours` of an older file (version 2: no such table, version 3:
/// series and hour only) to this version: the summary columns are added and every
/// row rebuilt from the points in one pass in key order (time order within a
/// measurement, so every summary is exact), holding one hour's series at a time.
fn upgrade_hours(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let has_summaries: bool =
        tx.query_row("SELECT count(*) FROM pragma_table_info('series_hours') WHERE name = 'fields'", [], |r| {
            r.get::<_, i64>(0).map(|n| n > 0)
        })?;
    if !has_summaries {
        tx.execute_batch(
            "ALTER TABLE series_hours ADD COLUMN last_ns INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE series_hours ADD COLUMN exact INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE series_hours ADD COLUMN fields BLOB NOT NULL DEFAULT x'';",
        )?;
    }
    tx.execute_batch("DELETE FROM series_hours; DELETE FROM hours_pending;")?;
    summarise_points(
        &tx,
        "SELECT measurement_id, time_ns, series_id, fields FROM points ORDER BY measurement_id, time_ns, series_id",
        [],
    )?;
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
    tx.commit()
}

/// Rebuilds from their points the summaries of every hour listed in
/// `hours_pending` (a crash, or another connection's), and unlists them. The
/// caller holds a transaction.
fn rebuild_pending_hours(conn: &Connection) -> rusqlite::Result<()> {
    let listed: Vec<(i64, i64)> = conn
        .prepare_cached("SELECT measurement_id, hour_ns FROM hours_pending")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (m, hour) in listed {
        conn.execute("DELETE FROM series_hours WHERE measurement_id = ?1 AND hour_ns = ?2", params![m, hour])?;
        summarise_points(
            conn,
            "SELECT measurement_id, time_ns, series_id, fields FROM points
             WHERE measurement_id = ?1 AND time_ns >= ?2 AND time_ns < ?3 ORDER BY time_ns, series_id",
            params![m, hour, hour + HOUR_NS],
        )?;
        conn.execute("DELETE FROM hours_pending WHERE measurement_id = ?1 AND hour_ns = ?2", params![m, hour])?;
    }
    Ok(())
}

/// Writes to `series_hours` the summaries of the points `sql` selects
/// (`measurement_id, time_ns, series_id, fields`, in key order), holding one
/// measurement's hour of series at a time.
fn summarise_points(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> rusqlite::Result<()> {
    let mut put = conn.prepare_cached(
        "INSERT INTO series_hours (measurement_id, hour_ns, series_id, last_ns, exact, fields)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut flush = |(m, hour): (i64, i64), open: &mut HashMap<i64, SeriesHour>| -> rusqlite::Result<()> {
        let mut blob = Vec::new();
        for (sid, summary) in open.drain() {
            summary.encode_fields(&mut blob);
            put.execute(params![m, hour, sid, summary.last_ns, summary.exact, &blob])?;
        }
        Ok(())
    };
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(args)?;
    let mut current: Option<(i64, i64)> = None;
    let mut open: HashMap<i64, SeriesHour> = HashMap::new();
    let mut fields: Vec<(u32, Option<f64>)> = Vec::new();
    let bad = |_| rusqlite::Error::InvalidQuery;
    while let Some(row) = rows.next()? {
        let (m, t, sid): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let blob = row.get_ref(3)?.as_blob().map_err(|_| rusqlite::Error::InvalidQuery)?;
        let hour = t - t.rem_euclid(HOUR_NS);
        if current != Some((m, hour)) {
            if let Some(c) = current {
                flush(c, &mut open)?;
            }
            current = Some((m, hour));
        }
        fields.clear();
        let mut pos = 0;
        while pos < blob.len() {
            let (id, raw) = next_field(blob, &mut pos).map_err(bad)?;
            if !fields.iter().any(|(f, _)| *f == id) {
                fields.push((id, raw_number(&raw)));
            }
        }
        open.entry(sid).or_default().add_point(t, fields.iter().copied());
    }
    if let Some(c) = current {
        flush(c, &mut open)?;
    }
    Ok(())
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// Whether another connection committed since `seen` was read (which it updates).
fn foreign_commit(conn: &Connection, seen: &mut i64) -> rusqlite::Result<bool> {
    let now = data_version(conn)?;
    let changed = now != *seen;
    *seen = now;
    Ok(changed)
}

const T_FLOAT: u8 = 0;
const T_INT: u8 = 1;
const T_UINT: u8 = 2;
const T_FALSE: u8 = 3;
const T_TRUE: u8 = 4;
const T_STR: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn encode_field(out: &mut Vec<u8>, id: u32, value: &FieldValue) {
    put_varint(out, u64::from(id));
    match value {
        FieldValue::Float(f) => {
            out.push(T_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        FieldValue::Int(i) => {
            out.push(T_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        FieldValue::UInt(u) => {
            out.push(T_UINT);
            out.extend_from_slice(&u.to_le_bytes());
        }
        FieldValue::Bool(b) => out.push(if *b { T_TRUE } else { T_FALSE }),
        FieldValue::Str(s) => {
            out.push(T_STR);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn corrupt() -> StoreError {
    StoreError::Embedded("corrupt field data in the store file".into())
}

/// One field of a row's blob, not yet a value: a string stays borrowed, so a reader
/// that skips it allocates nothing.
enum RawField<'a> {
    Float([u8; 8]),
    Int([u8; 8]),
    UInt([u8; 8]),
    Bool(bool),
    Str(&'a [u8]),
}

impl RawField<'_> {
    fn value(&self) -> Result<FieldValue, StoreError> {
        Ok(match *self {
            RawField::Float(x) => FieldValue::Float(f64::from_le_bytes(x)),
            RawField::Int(x) => FieldValue::Int(i64::from_le_bytes(x)),
            RawField::UInt(x) => FieldValue::UInt(u64::from_le_bytes(x)),
            RawField::Bool(v) => FieldValue::Bool(v),
            RawField::Str(s) => FieldValue::Str(std::str::from_utf8(s).map_err(|_| corrupt())?.to_owned()),
        })
    }
}

/// Reads the field at `*pos` (name id, type byte, value) and moves past it.
fn next_field<'a>(b: &'a [u8], pos: &mut usize) -> Result<(u32, RawField<'a>), StoreError> {
    let id = u32::try_from(get_varint(b, pos).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let ty = *b.get(*pos).ok_or_else(corrupt)?;
    *pos += 1;
    let mut eight = || -> Result<[u8; 8], StoreError> {
        let s: [u8; 8] = b.get(*pos..*pos + 8).ok_or_else(corrupt)?.try_into().expect("slice of 8");
        *pos += 8;
        Ok(s)
    };
    let raw = match ty {
        T_FLOAT => RawField::Float(eight()?),
        T_INT => RawField::Int(eight()?),
        T_UINT => RawField::UInt(eight()?),
        T_FALSE => RawField::Bool(false),
        T_TRUE => RawField::Bool(true),
        T_STR => {
            let len = usize::try_from(get_varint(b, pos).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            let end = pos.checked_add(len).ok_or_else(corrupt)?;
            let s = b.get(*pos..end).ok_or_else(corrupt)?;
            *pos = end;
            RawField::Str(s)
        }
        _ => return Err(corrupt()),
    };
    Ok((id, raw))
}

fn decode_fields(b: &[u8]) -> Result<Vec<(u32, FieldValue)>, StoreError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let (id, raw) = next_field(b, &mut pos)?;
        out.push((id, raw.value()?));
    }
    Ok(out)
}

/// Decodes into `values[column]` only the fields of `cols` (name id, column) that
/// the blob has, skipping the others without allocating; true when any was found.
/// A field appearing twice keeps its first value, as [`decode_fields`] + lookup did.
fn decode_selected(b: &[u8], cols: &[(u32, usize)], values: &mut [Option<FieldValue>]) -> Result<bool, StoreError> {
    let mut any = false;
    let mut pos = 0;
    while pos < b.len() {
        let (id, raw) = next_field(b, &mut pos)?;
        let slot = cols.iter().find(|(cid, _)| *cid == id).map(|&(_, j)| j).filter(|&j| values[j].is_none());
        if let Some(j) = slot {
            values[j] = Some(raw.value()?);
            any = true;
        }
    }
    Ok(any)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn write(&self, points: &[Point]) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let points = points.to_vec();
        self.blocking(move |s| s.write_blocking(&points)).await
    }

    async fn read(&self, query: &SeriesQuery) -> Result<Vec<Series>, StoreError> {
        let query = query.clone();
        self.blocking(move |s| s.read_blocking(&query)).await
    }

    async fn read_each(&self, query: &SeriesQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        self.stream(query, None, visitor).await
    }

    async fn read_each_any(
        &self,
        query: &SeriesQuery,
        any_of: &[Vec<(String, String)>],
        visitor: &mut dyn RowVisitor,
    ) -> Result<(), StoreError> {
        if any_of.is_empty() {
            return Ok(());
        }
        self.stream(query, Some(any_of.to_vec()), visitor).await
    }

    async fn series_keys(&self, query: &SeriesQuery) -> Result<Vec<BTreeMap<String, String>>, StoreError> {
        let query = query.clone();
        self.blocking(move |s| s.series_keys_blocking(&query)).await
    }

    async fn count(&self, query: &SeriesQuery) -> Result<u64, StoreError> {
        let query = query.clone();
        self.blocking(move |s| {
            let mut inner = s.lock();
            inner.flush_hours()?;
            inner.count(&query)
        })
        .await
    }

    async fn read_grouped(&self, query: &GroupedQuery, visitor: &mut dyn RowVisitor) -> Result<(), StoreError> {
        let query = query.clone();
        self.visit(visitor, move |s, send| {
            let mut inner = s.lock();
            inner.flush_hours()?;
            in_batches(send, |each| inner.grouped(&query, each))
        })
        .await
    }

    async fn tag_values(&self, measurement: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        let (m, t) = (measurement.to_owned(), tag.to_owned());
        self.blocking(move |s| s.tag_values_blocking(&m, &t)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|s| {
            // A store busy writing a batch is reachable: health checks do not queue
            // behind the write lock.
            let inner = match s.inner.try_lock() {
                Ok(inner) => inner,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
            };
            inner
                .conn
                .query_row("SELECT count(*) FROM series", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(sql_err("checking the store"))
        })
        .await
    }
}

/// Line protocol straight into the store, so an agent can point its shipper at a
/// local embedded store. Bodies are nanosecond precision, as [`Writer`] says; a
/// body with a bad line writes nothing.
#[async_trait]
impl crate::ship::Writer for EmbeddedStore {
    async fn write_lines(&self, body: &str) -> Result<(), crate::ship::WriteError> {
        let points = lineproto::parse(body, lineproto::Precision::Ns).map_err(|e| {
            crate::ship::WriteError::Rejected { server: self.description.clone(), message: e.to_string() }
        })?;
        Store::write(self, &points).await.map_err(|e| match e {
            StoreError::Invalid(_) | StoreError::Limit(_) => {
                crate::ship::WriteError::Rejected { server: self.description.clone(), message: e.to_string() }
            }
            other => {
                crate::ship::WriteError::Unavailable { server: self.description.clone(), message: other.to_string() }
            }
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_blobs_round_trip_and_reject_garbage() {
        let values = [
            FieldValue::Float(-1.5),
            FieldValue::Int(i64::MIN),
            FieldValue::UInt(u64::MAX),
            FieldValue::Bool(true),
            FieldValue::Bool(false),
            FieldValue::Str("héllo \"x\"".into()),
        ];
        let mut blob = Vec::new();
        for (i, v) in values.iter().enumerate() {
            encode_field(&mut blob, 300 + i as u32, v);
        }
        let back = decode_fields(&blob).unwrap();
        assert_eq!(back.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), values);
        assert_eq!(back[0].0, 300);
        for cut in 1..blob.len() {
            let _ = decode_fields(&blob[..cut]);
        }
        assert!(decode_fields(&[1, 9]).is_err());
    }

    #[test]
    fn a_version_4_file_is_taken_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let t = 1_700_000_000 * 1_000_000_000;
        let points =
            [Point::new("m", t).tag("h", "a").field("e", 1.5), Point::new("m", t + 1).tag("h", "b").field("e", 2.0)];
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store.write_blocking(&points).unwrap();
        }
        // Version 4: summaries written with every batch, no `hours_pending`.
        Connection::open(&path).unwrap().execute_batch("DROP TABLE hours_pending; PRAGMA user_version = 4").unwrap();
        let store = EmbeddedStore::open(&path).unwrap();
        let q = SeriesQuery {
            measurement: "m".into(),
            fields: vec!["e".into()],
            tag_filters: vec![],
            start_ns: t - HOUR_NS,
            end_ns: t + HOUR_NS,
        };
        assert_eq!(store.lock().count(&q).unwrap(), 2);
        assert_eq!(store.series_keys_blocking(&q).unwrap().len(), 2);
        drop(store);
        let version: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_newer_schema_and_a_non_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(EmbeddedStore::open(&path).unwrap());
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let err = EmbeddedStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("upgrade wattledger"), "{err}");
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 1").unwrap();
        let err = EmbeddedStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("move it away"), "{err}");
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
        let err = EmbeddedStore::open(&junk).err().unwrap().to_string();
        assert!(err.contains("junk.db"), "{err}");
    }

    #[tokio::test]
    async fn line_protocol_goes_in_whole_or_not_at_all() {
        use crate::ship::{WriteError, Writer};
        let s = EmbeddedStore::open_in_memory().unwrap();
        let err = s.write_lines("m,h=a v=1 1\nm,h=b v=oops 2\n").await.unwrap_err();
        assert!(
            matches!(&err, WriteError::Rejected { message, .. } if message.starts_with("line 2, column 9")),
            "{err}"
        );
        assert!(s.tag_values_blocking("m", "h").unwrap().is_empty());
        s.write_lines("m,h=a v=1 1\nm,h=b v=2i 2\n").await.unwrap();
        assert_eq!(s.tag_values_blocking("m", "h").unwrap(), ["a", "b"]);
    }

    #[test]
    fn a_bad_point_writes_nothing_and_the_store_stays_usable() {
        let s = EmbeddedStore::open_in_memory().unwrap();
        let good = Point::new("m", 1).tag("h", "a").field("v", 1.0);
        let bad = Point::new("m", 2).tag("h", "new").field("v", f64::NAN);
        let err = s.write_blocking(&[good.clone(), bad]).unwrap_err().to_string();
        assert!(err.contains("NaN"), "{err}");
        assert!(s.tag_values_blocking("m", "h").unwrap().is_empty());
        s.write_blocking(&[good]).unwrap();
        assert_eq!(s.tag_values_blocking("m", "h").unwrap(), ["a"]);
    }
}
