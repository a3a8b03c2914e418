//! The aggregator: measured revenue per joule for each workload.
//!
//! Pure parts, each unit-tested with hand-worked numbers:
//! [`crate::signal`] (intervals, gaps, clipping), [`energy`], [`tariff`], [`compare`]
//! (the per-workload comparison) and the revenue models in [`crate::revenue`].
//! Parts that touch the outside: [`windows`] (reads the [`Store`] window by window,
//! writes `workload_efficiency` back) and [`market`] (static values or a
//! mempool-style HTTP API). [`Aggregator`] ties them together for the `report`
//! and `aggregator` commands, the HTTP API and the demo; time always comes from a
//! [`Clock`] so the demo can run simulated time.

pub mod basis;
pub mod compare;
pub mod config;
pub mod device;
pub mod energy;
pub mod fleet;
pub mod ledger_sums;
pub mod market;
pub mod metered;
pub mod prices;
pub mod reconcile;
pub mod tariff;
pub mod unassigned;
pub mod windows;

pub use self::fleet::{Fleet, FleetDevice};

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;

use self::compare::{rank, Report, Summarizer, WindowResult};
use self::config::{AggregatorConfig, MarketSourceKind};
use self::market::{market_fields, market_point, markets_from_series, HttpMarket, MarketHistory};
use self::tariff::Tariff;
use self::windows::{
    aligned_windows, compute_window, config_hash, efficiency_point, empty_window, source_values, stored_windows,
    values_in, LedgerCache, WindowStamp, WorkloadPlan,
};
use crate::ledger::EnergyFrom;
use crate::model::schema::{self, energy_price};
use crate::model::{Clock, FieldValue};
use crate::revenue::{Market, ModelInfo};
use crate::store::influx::InfluxStore;
use crate::store::{SeriesQuery, Store, StoreConfig, StoreError, StoreKind, WriteApi};

const DAY_NS: i64 = 86_400_000_000_000;
/// How far back a range looks for the market snapshot or energy price in effect
/// at its start.
const PRICE_LOOKBACK_NS: i64 = 7 * DAY_NS;
/// How far before a run's range it looks for stored windows with data, to tell a
/// workload's first data (nothing written before it) from an outage (empty
/// windows written, so coverage shows the hole).
const HISTORY_LOOKBACK_NS: i64 = 90 * DAY_NS;

/// A span of time in which a workload is known to have none of the values its
/// windows read ([`windows::values_in`] counted zero): complete windows inside it
/// are answered empty without reading the store. Found by [`Aggregator::compute`]
/// for the windows before a workload's first stored data, checked again by every
/// scheduled pass (late or backfilled data drops it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietSpan {
    pub from_ns: i64,
    pub to_ns: i64,
}

impl QuietSpan {
    fn holds(&self, win: &crate::signal::Window) -> bool {
        self.from_ns <= win.start_ns && win.end_ns <= self.to_ns
    }
}

/// Where [`Aggregator::compute`] takes complete windows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Stored windows whose config still matches; the rest computed (and written
    /// back when `write_back`).
    Stored { write_back: bool },
    /// Every window computed from the measurements (an audit of the stored ones).
    Recompute,
}

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] config::KeyError),
    #[error(transparent)]
    Market(#[from] market::MarketError),
    #[error("no workload named {0:?} in the config")]
    UnknownWorkload(String),
    /// No device by that id in the range asked for.
    #[error("{0}")]
    UnknownDevice(String),
    /// A range that is empty, too long or outside the years a timestamp holds.
    #[error("{0}")]
    Range(String),
}

/// The longest range one report or API call computes.
pub const MAX_RANGE_NS: i64 = 400 * 86_400_000_000_000;

/// The years a nanosecond timestamp holds, with a margin for window alignment:
/// 1678-01-01 to 2262-01-01.
const MIN_TIME_NS: i64 = -9_214_560_000_000_000_000;
const MAX_TIME_NS: i64 = 9_222_076_800_000_000_000;

/// Refuses a range no computation should start: `to` not after `from`, longer than
/// [`MAX_RANGE_NS`], or outside 1678..2262 (where window ends would overflow).
pub fn check_range(from_ns: i64, to_ns: i64) -> Result<(), AggregateError> {
    let bad = |m: String| Err(AggregateError::Range(m));
    if !(MIN_TIME_NS..=MAX_TIME_NS).contains(&from_ns) || !(MIN_TIME_NS..=MAX_TIME_NS).contains(&to_ns) {
        return bad(format!(
            "the range {} .. {} is outside the years 1678 to 2262 that timestamps hold",
            rfc3339(from_ns),
            rfc3339(to_ns)
        ));
    }
    if to_ns <= from_ns {
        return bad(format!("`to` ({}) must be after `from` ({})", rfc3339(to_ns), rfc3339(from_ns)));
    }
    if to_ns - from_ns > MAX_RANGE_NS {
        return bad(format!(
            "the range {} .. {} is longer than 400 days; ask for a shorter one",
            rfc3339(from_ns),
            rfc3339(to_ns)
        ));
    }
    Ok(())
}

/// RFC 3339 text of a nanosecond timestamp (UTC, seconds precision unless finer).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A time given as text that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("`{text}` is not an RFC 3339 time like 2026-11-26T14:00:00Z ({reason})")]
    NotRfc3339 { text: String, reason: String },
    /// Outside what nanoseconds since 1970 in an `i64` hold (1677 to 2262).
    #[error("`{text}` is out of range")]
    OutOfRange { text: String },
}

/// Parses RFC 3339 (`2026-11-26T14:00:00Z`) into nanoseconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| TimeError::NotRfc3339 { text: s.to_string(), reason: e.to_string() })?;
    t.timestamp_nanos_opt().ok_or_else(|| TimeError::OutOfRange { text: s.to_string() })
}

/// What one scheduled run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunStats {
    pub windows_written: usize,
    pub market_fetched: bool,
    pub warnings: Vec<String>,
}

/// The aggregator as a library: build it with a config, a store and a clock.
pub struct Aggregator {
    cfg: AggregatorConfig,
    store: Arc<dyn Store>,
    /// Where windows are written and read back: `store`, or the same InfluxDB
    /// under `[aggregator] windows_retention_policy`.
    windows_store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    plans: Vec<WorkloadPlan>,
    http_market: Option<HttpMarket>,
    last_market_fetch_ns: Mutex<Option<i64>>,
    /// Workloads known to have stored windows with data (see `had_data_before`).
    with_history: Mutex<std::collections::BTreeSet<String>>,
    /// Per workload, the time known to hold none of its values (see [`QuietSpan`]).
    quiet: std::sync::Mutex<BTreeMap<String, QuietSpan>>,
    /// The partial current windows last computed for a request, by (workload,
    /// start), served again within `live_window_max_age` (see [`LiveWindow`]).
    live: std::sync::Mutex<BTreeMap<(String, i64), LiveWindow>>,
    energy_from: EnergyFrom,
}

/// A partial window as computed for a request. A later request whose window has
/// the same start and reaches at least as far is answered with it while it is
/// younger than `[aggregator] live_window_max_age` and its workload's config is
/// the same: the page and the API ask for "the last 24 h" every few seconds, and
/// at a site the live window's ledger is thousands of devices' rows. Points
/// written through the aggregator's ingest drop every one.
#[derive(Debug, Clone)]
struct LiveWindow {
    config_hash: String,
    computed_at_ns: i64,
    result: WindowResult,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator").field("workloads", &self.plans.len()).finish()
    }
}

/// How a window of a pass is written back once its site is reconciled.
enum WriteBack {
    /// Not written: a partial or quiet window, or write-back is off.
    No,
    /// Computed now: written with its stamp.
    Computed(WindowStamp),
    /// Served from the store: written again, with its stamp, only when reconciling
    /// its site changed it. Late data or a new device at another workload of the
    /// same site moves the site meter's facility factor, and with it this window's
    /// facility energy and cost, though none of its own values changed.
    Stored(WindowStamp),
}

/// Reconciles the windows of a pass per site (see [`reconcile::reconcile_all`]) and
/// returns them with the reconciliations and the points to write back: every
/// computed window, every stored window that reconciling changed, and the
/// reconciliation of each site window with one of those.
fn reconcile_for_write(mut windows: Vec<WindowResult>, write_back: Vec<WriteBack>, len_ns: i64) -> PassWrites {
    let before: Vec<(f64, f64, reconcile::FacilityBasis)> =
        windows.iter().map(|w| (w.facility_energy_j, w.energy_cost_usd, w.facility_basis)).collect();
    let reconciled = reconcile::reconcile_all(&mut windows);
    let moved = |a: f64, b: f64| (a - b).abs() > 1e-12 * a.abs().max(b.abs());
    let mut points = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for ((w, again), (facility_j, cost_usd, basis)) in windows.iter().zip(&write_back).zip(before) {
        let stamp = match again {
            WriteBack::Computed(stamp) => stamp,
            WriteBack::Stored(stamp)
                if moved(w.facility_energy_j, facility_j)
                    || moved(w.energy_cost_usd, cost_usd)
                    || w.facility_basis != basis =>
            {
                stamp
            }
            WriteBack::Stored(_) | WriteBack::No => continue,
        };
        written.insert((w.site.clone(), w.window.start_ns));
        points.push(efficiency_point(w, len_ns, stamp));
    }
    let windows_written = points.len();
    let label = windows::window_label(len_ns);
    points.extend(
        reconciled.iter().filter(|r| written.contains(&(r.site.clone(), r.window.start_ns))).map(|r| r.point(&label)),
    );
    PassWrites { windows, reconciled, points, windows_written }
}

/// What [`reconcile_for_write`] gives back.
struct PassWrites {
    windows: Vec<WindowResult>,
    reconciled: Vec<reconcile::Reconciliation>,
    points: Vec<crate::model::Point>,
    windows_written: usize,
}

impl Aggregator {
    pub fn new(cfg: AggregatorConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self, AggregateError> {
        let plans = cfg.plans()?;
        let http_market = match (cfg.market.source, &cfg.market.url) {
            (MarketSourceKind::Http, Some(url)) => {
                Some(HttpMarket::new(url, cfg.market.fee_blocks, cfg.market.timeout)?)
            }
            _ => None,
        };
        let windows_store = match &cfg.aggregator.windows_retention_policy {
            None => store.clone(),
            Some(rp) => {
                if cfg.store.kind != StoreKind::Influxdb || cfg.store.api != WriteApi::V1 {
                    return Err(AggregateError::Config(config::KeyError {
                        at: "aggregator.windows_retention_policy".into(),
                        problem: "needs [store] kind = \"influxdb\" with api = \"v1\"; remove it for other stores"
                            .into(),
                    }));
                }
                let store_cfg = StoreConfig { retention_policy: Some(rp.clone()), ..cfg.store.clone() };
                Arc::new(InfluxStore::from_config(&store_cfg)?)
            }
        };
        Ok(Aggregator {
            cfg,
            store,
            windows_store,
            clock,
            plans,
            http_market,
            last_market_fetch_ns: Mutex::new(None),
            with_history: Mutex::default(),
            quiet: std::sync::Mutex::default(),
            live: std::sync::Mutex::default(),
            energy_from: EnergyFrom::Auto,
        })
    }

    /// Where energy and revenue inputs are read from (default `auto`: the energy
    /// ledger, with raw samples for every device and interval it lacks).
    pub fn with_energy_from(mut self, from: EnergyFrom) -> Self {
        self.energy_from = from;
        self
    }

    pub fn energy_from(&self) -> EnergyFrom {
        self.energy_from
    }

    pub fn config(&self) -> &AggregatorConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now_ns(&self) -> i64 {
        self.clock.now_ns()
    }

    pub fn window_ns(&self) -> i64 {
        self.cfg.aggregator.window.as_nanos() as i64
    }

    /// Forgets the partial windows kept for requests ([`LiveWindow`]): new points
    /// were written.
    pub fn forget_live_windows(&self) {
        self.live.lock().expect("live windows").clear();
    }

    /// The kept partial window of `plan` for `win`, if it still stands for it.
    fn live_window(
        &self,
        plan: &WorkloadPlan,
        hash: &str,
        win: crate::signal::Window,
        now_ns: i64,
    ) -> Option<WindowResult> {
        let max_age_ns = self.cfg.aggregator.live_window_max_age.as_nanos() as i64;
        let live = self.live.lock().expect("live windows");
        let kept = live.get(&(plan.name.clone(), win.start_ns))?;
        let fresh = now_ns - kept.computed_at_ns <= max_age_ns && kept.computed_at_ns <= now_ns;
        let reaches = kept.result.window.end_ns <= win.end_ns && win.end_ns - kept.result.window.end_ns <= max_age_ns;
        (max_age_ns > 0 && fresh && reaches && kept.config_hash == hash).then(|| kept.result.clone())
    }

    fn keep_live_window(&self, plan: &WorkloadPlan, hash: &str, w: &WindowResult, now_ns: i64) {
        let max_age_ns = self.cfg.aggregator.live_window_max_age.as_nanos() as i64;
        if max_age_ns == 0 {
            return;
        }
        let mut live = self.live.lock().expect("live windows");
        live.retain(|_, k| now_ns - k.computed_at_ns <= max_age_ns);
        let kept = LiveWindow { config_hash: hash.to_string(), computed_at_ns: now_ns, result: w.clone() };
        live.insert((plan.name.clone(), w.window.start_ns), kept);
    }

    /// Market history covering `[from_ns, to_ns)`.
    async fn market_history(&self, from_ns: i64, to_ns: i64) -> Result<MarketHistory, AggregateError> {
        let mc = &self.cfg.market;
        if !self.plans.iter().any(|p| p.revenue_model.info().inputs.market) {
            return Ok(MarketHistory::none());
        }
        if mc.source == MarketSourceKind::Static {
            return Ok(MarketHistory::Static(Market {
                time_ns: 0,
                btc_usd: mc.btc_usd.unwrap_or(0.0),
                difficulty: mc.difficulty.unwrap_or(0.0),
                block_subsidy_btc: mc.block_subsidy_btc.unwrap_or(0.0),
                fees_btc_per_block: mc.fees_btc_per_block.unwrap_or(0.0),
            }));
        }
        let q = SeriesQuery {
            measurement: schema::market::MEASUREMENT.into(),
            fields: market_fields(),
            tag_filters: match (mc.source, &mc.source_tag) {
                (MarketSourceKind::Store, None) => vec![],
                (MarketSourceKind::Store, Some(tag)) => vec![(schema::market::TAG_SOURCE.into(), tag.clone())],
                _ => vec![(schema::market::TAG_SOURCE.into(), "http".into())],
            },
            start_ns: from_ns - PRICE_LOOKBACK_NS,
            end_ns: to_ns,
        };
        let series = self.store.read(&q).await?;
        Ok(MarketHistory::Stored { points: markets_from_series(&series), max_age_ns: mc.max_age.as_nanos() as i64 })
    }

    async fn measured_prices(&self, site: &str, from_ns: i64, to_ns: i64) -> Result<Vec<(i64, f64)>, AggregateError> {
        let q = SeriesQuery {
            measurement: energy_price::MEASUREMENT.into(),
            fields: vec![energy_price::USD_PER_KWH.into()],
            tag_filters: vec![(energy_price::TAG_SITE.into(), site.into())],
            start_ns: from_ns - PRICE_LOOKBACK_NS,
            end_ns: to_ns,
        };
        let mut prices: Vec<(i64, f64)> = Vec::new();
        for s in self.store.read(&q).await? {
            for (i, &t) in s.times_ns.iter().enumerate() {
                if let Some(v) = s.values[i].first().cloned().flatten().as_ref().and_then(FieldValue::as_f64) {
                    prices.push((t, v));
                }
            }
        }
        prices.sort_by_key(|p| p.0);
        Ok(prices)
    }

    /// Every window of `len_ns` in `[from_ns, to_ns)` for the named workloads
    /// (all when `only` is `None`), in time order per workload, handed to `sink`.
    ///
    /// With [`Windows::Stored`], a complete window (a whole aligned window that
    /// ended by now) stored with the workload's current config hash is served
    /// from the store; every other window (the partial current one, windows never
    /// stored or stored by another config) is computed from the measurements, and
    /// complete ones with data are written back when `write_back` is set. With
    /// [`Windows::Stored`], complete windows before the first stored window with
    /// data are not computed when the store holds none of the values they read
    /// (one count per measurement over them, remembered as a [`QuietSpan`]): they
    /// are answered empty, as computing them would. With [`Windows::Recompute`]
    /// every window is computed and nothing is written.
    pub async fn compute(
        &self,
        from_ns: i64,
        to_ns: i64,
        len_ns: i64,
        only: Option<&str>,
        mode: Windows,
        mut sink: impl FnMut(WindowResult),
    ) -> Result<(), AggregateError> {
        self.compute_reconciled(from_ns, to_ns, len_ns, only, mode, &mut sink).await.map(drop)
    }

    /// [`Self::compute`], returning the group meters' reconciliations of the
    /// windows computed. A site meter's facility energy needs every workload of the
    /// site, so with `only` the other workloads of its site are computed too (and
    /// not handed to `sink`).
    pub async fn compute_reconciled(
        &self,
        from_ns: i64,
        to_ns: i64,
        len_ns: i64,
        only: Option<&str>,
        mode: Windows,
        mut sink: impl FnMut(WindowResult),
    ) -> Result<Vec<reconcile::Reconciliation>, AggregateError> {
        check_range(from_ns, to_ns)?;
        let only_site = match only {
            Some(name) => match self.plans.iter().find(|p| p.name == name) {
                Some(p) => Some(p.site.as_str()),
                None => return Err(AggregateError::UnknownWorkload(name.to_string())),
            },
            None => None,
        };
        // Stored windows are computed with `auto`: reading only one path (an audit
        // of the other) computes every window and writes none.
        let mode = if self.energy_from == EnergyFrom::Auto { mode } else { Windows::Recompute };
        let now_ns = self.clock.now_ns();
        let mut market = None;
        let mut measured: BTreeMap<String, Tariff> = BTreeMap::new();
        // Every window, with how it is written back.
        let mut results: Vec<(WindowResult, WriteBack)> = Vec::new();
        for plan in &self.plans {
            if only_site.is_some_and(|s| s != plan.site) {
                continue;
            }
            let stored = match mode {
                Windows::Stored { .. } => {
                    stored_windows(self.windows_store.as_ref(), plan, from_ns, to_ns, len_ns).await?
                }
                Windows::Recompute => BTreeMap::new(),
            };
            let hash = config_hash(plan);
            // A complete window stored by the current config is served as it is.
            let served = |win: &crate::signal::Window| {
                let complete = win.len_ns() == len_ns && win.end_ns <= now_ns;
                stored.get(&win.start_ns).filter(|w| complete && w.stamp.config_hash == hash)
            };
            let windows = aligned_windows(from_ns, to_ns, len_ns);
            let quiet = match mode {
                Windows::Stored { .. } => {
                    // Complete windows not served, before the first stored data.
                    let data_from = stored.values().filter(|w| w.result.devices > 0).map(|w| w.result.window.start_ns);
                    let data_from = data_from.min().unwrap_or(i64::MAX);
                    let before: Vec<_> = windows
                        .iter()
                        .filter(|w| w.len_ns() == len_ns && w.end_ns <= now_ns.min(data_from) && served(w).is_none())
                        .collect();
                    match (before.first(), before.last()) {
                        (Some(a), Some(b)) => self.quiet_span(plan, a.start_ns, b.end_ns).await?,
                        _ => None,
                    }
                }
                Windows::Recompute => None,
            };
            let is_quiet = |win: &crate::signal::Window| {
                let complete = win.len_ns() == len_ns && win.end_ns <= now_ns;
                complete && served(win).is_none() && quiet.is_some_and(|q| q.holds(win))
            };
            let mut ledger = LedgerCache::new(
                len_ns,
                windows.iter().filter(|w| served(w).is_none() && !is_quiet(w)).copied().collect(),
            );
            for win in windows {
                let complete = win.len_ns() == len_ns && win.end_ns <= now_ns;
                if let Some(w) = served(&win) {
                    let again = if matches!(mode, Windows::Stored { write_back: true }) {
                        WriteBack::Stored(w.stamp.clone())
                    } else {
                        WriteBack::No
                    };
                    results.push((w.result.clone(), again));
                    continue;
                }
                if market.is_none() {
                    market = Some(self.market_history(from_ns, to_ns).await?);
                }
                if is_quiet(&win) {
                    let tariff = self.tariff_for(plan, from_ns, to_ns, &mut measured).await?;
                    let market = market.as_ref().expect("loaded above");
                    results.push((empty_window(plan, tariff, win, market), WriteBack::No));
                    continue;
                }
                let serving = matches!(mode, Windows::Stored { .. });
                if !complete && serving {
                    if let Some(w) = self.live_window(plan, &hash, win, now_ns) {
                        results.push((w, WriteBack::No));
                        continue;
                    }
                }
                let write = complete && matches!(mode, Windows::Stored { write_back: true });
                let source_values =
                    if write { Some(source_values(self.store.as_ref(), plan, win).await?) } else { None };
                let tariff = self.tariff_for(plan, from_ns, to_ns, &mut measured).await?;
                let market = market.as_ref().expect("loaded above");
                let w = compute_window(&self.store, plan, tariff, win, market, self.energy_from, &mut ledger).await?;
                if !complete && serving {
                    self.keep_live_window(plan, &hash, &w, now_ns);
                }
                // An empty window is left to the scheduled run, which knows whether
                // it precedes the workload's first data (then nothing is written).
                let stamp = source_values
                    .filter(|_| w.devices > 0)
                    .map(|source_values| WindowStamp { config_hash: hash.clone(), source_values });
                results.push((w, stamp.map_or(WriteBack::No, WriteBack::Computed)));
                // A long range never holds a runtime thread between windows.
                tokio::task::yield_now().await;
            }
        }
        let (windows, write_back): (Vec<WindowResult>, Vec<WriteBack>) = results.into_iter().unzip();
        let PassWrites { windows, reconciled, points, .. } = reconcile_for_write(windows, write_back, len_ns);
        for w in windows {
            if only.is_none_or(|n| n == w.workload) {
                sink(w);
            }
        }
        if !points.is_empty() {
            self.windows_store.write(&points).await?;
        }
        Ok(reconciled)
    }

    /// The tariff to charge `plan` with over a range: its own, or for a measured
    /// tariff the site's prices, loaded once per site.
    async fn tariff_for<'a>(
        &'a self,
        plan: &'a WorkloadPlan,
        from_ns: i64,
        to_ns: i64,
        measured: &'a mut BTreeMap<String, Tariff>,
    ) -> Result<&'a Tariff, AggregateError> {
        if !matches!(plan.tariff, Tariff::Measured { .. }) {
            return Ok(&plan.tariff);
        }
        if !measured.contains_key(&plan.site) {
            let prices = self.measured_prices(&plan.site, from_ns, to_ns).await?;
            measured.insert(plan.site.clone(), Tariff::Measured { prices });
        }
        Ok(&measured[&plan.site])
    }

    /// The comparison over `[from_ns, to_ns)`, from the energy ledger and raw
    /// measurements as [`Self::with_energy_from`] says, in windows of the
    /// configured length (see [`Self::compute`] for which come from the store).
    pub async fn report(&self, from_ns: i64, to_ns: i64, mode: Windows) -> Result<Report, AggregateError> {
        let mut sums: BTreeMap<String, Summarizer> =
            self.plans.iter().map(|p| (p.name.clone(), Summarizer::new(&p.name, p.revenue_model.info()))).collect();
        let reconciled = self
            .compute_reconciled(from_ns, to_ns, self.window_ns(), None, mode, |w| {
                if let Some(s) = sums.get_mut(&w.workload) {
                    s.add(&w);
                }
            })
            .await?;
        let mut warnings = Vec::new();
        let mut rows = Vec::new();
        for (_, s) in sums {
            for w in &s.warnings {
                if !warnings.contains(w) {
                    warnings.push(w.clone());
                }
            }
            rows.push(s.finish());
        }
        rank(&mut rows);
        let configured = self.plans.iter().map(|p| p.name.as_str()).collect();
        let win = crate::signal::Window { start_ns: from_ns, end_ns: to_ns };
        let max_gap_ns = self.cfg.aggregator.max_gap.as_nanos() as i64;
        let unassigned = unassigned::unassigned(self.store.as_ref(), &configured, win, max_gap_ns).await?;
        warnings.extend(unassigned.iter().flat_map(unassigned::Unassigned::warnings));
        Ok(Report {
            from: rfc3339(from_ns),
            to: rfc3339(to_ns),
            energy_from: self.energy_from,
            workloads: rows,
            unassigned,
            reconciliation: reconcile::summarise(&reconciled),
            warnings,
        })
    }

    /// One workload's windows over `[from_ns, to_ns)`.
    pub async fn workload_windows(
        &self,
        name: &str,
        from_ns: i64,
        to_ns: i64,
        mode: Windows,
    ) -> Result<(&'static ModelInfo, Vec<WindowResult>), AggregateError> {
        let kind = self
            .plans
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.revenue_model.info())
            .ok_or_else(|| AggregateError::UnknownWorkload(name.to_string()))?;
        let mut out = Vec::new();
        self.compute(from_ns, to_ns, self.window_ns(), Some(name), mode, |w| out.push(w)).await?;
        Ok((kind, out))
    }

    /// Fetches market data when the `http` source is due, and stores it.
    pub async fn refresh_market(&self, now_ns: i64) -> Result<bool, AggregateError> {
        let Some(http) = &self.http_market else { return Ok(false) };
        let mut last = self.last_market_fetch_ns.lock().await;
        let refresh_ns = self.cfg.market.refresh.as_nanos() as i64;
        if last.is_some_and(|t| now_ns - t < refresh_ns) {
            return Ok(false);
        }
        let snap = http.fetch().await?;
        self.store.write(&[market_point(&snap, "http")]).await?;
        *last = Some(now_ns);
        Ok(true)
    }

    /// One scheduled pass at `now_ns`: refresh market data when due, then bring
    /// the stored windows up to date: every complete window that ended within
    /// `late_data_lookback`, and every complete short window of the last long
    /// window, is (re)computed and written back when it is missing, was stored by
    /// another config (its hash differs), or late data arrived for it (the count
    /// of its source values differs from the one stored with it). Windows before a
    /// workload's first data are not written (see [`Self::first_data_ns`]).
    pub async fn run_once(&self, now_ns: i64) -> Result<RunStats, AggregateError> {
        let mut stats = RunStats::default();
        self.recheck_quiet().await?;
        match self.refresh_market(now_ns).await {
            Ok(fetched) => stats.market_fetched = fetched,
            Err(e) => {
                tracing::warn!(error = %e, "market data refresh failed; windows will flag stale data");
                stats.warnings.push(e.to_string());
            }
        }
        let a = &self.cfg.aggregator;
        let long = self.window_ns();
        let short = a.short_window.as_nanos() as i64;
        let lookback = (a.late_data_lookback.as_nanos() as i64).max(long);
        // Prices and market data for every window of the pass.
        let range_from = now_ns - lookback - long;
        let mut market = None;
        let mut measured: BTreeMap<String, Tariff> = BTreeMap::new();
        // Per workload, where its data starts within this pass (`i64::MIN` when it
        // had data before): nothing earlier is written.
        let mut data_from: BTreeMap<&str, i64> = BTreeMap::new();
        for (len, back) in [(long, lookback), (short, long)] {
            let to = now_ns.div_euclid(len) * len;
            let from = (to - back).div_euclid(len) * len;
            // Every window of the pass, with how it is written back.
            let mut results: Vec<(WindowResult, WriteBack)> = Vec::new();
            for plan in &self.plans {
                let hash = config_hash(plan);
                let stored = stored_windows(self.windows_store.as_ref(), plan, from, to, len).await?;
                if len == long && self.had_data_before(plan, from).await? {
                    data_from.insert(&plan.name, i64::MIN);
                }
                let windows = aligned_windows(from, to, len);
                // The windows of the pass that need it share grouped ledger reads.
                let mut ledger = LedgerCache::new(len, windows.clone());
                for win in windows {
                    let source_values = source_values(self.store.as_ref(), plan, win).await?;
                    let stamp = WindowStamp { config_hash: hash.clone(), source_values };
                    if let Some(w) = stored.get(&win.start_ns).filter(|w| w.stamp == stamp) {
                        // Up to date; still part of its site's reconciliation.
                        results.push((w.result.clone(), WriteBack::Stored(stamp)));
                        continue;
                    }
                    if market.is_none() {
                        market = Some(self.market_history(range_from, now_ns).await?);
                    }
                    let tariff = self.tariff_for(plan, range_from, now_ns, &mut measured).await?;
                    let market = market.as_ref().expect("loaded above");
                    let w =
                        compute_window(&self.store, plan, tariff, win, market, self.energy_from, &mut ledger).await?;
                    if w.devices > 0 && len == long {
                        data_from.entry(&plan.name).or_insert(win.start_ns);
                    }
                    let started = data_from.get(plan.name.as_str()).is_some_and(|&t| win.start_ns >= t);
                    if !started && w.devices == 0 {
                        continue;
                    }
                    for warning in &w.warnings {
                        if !stats.warnings.contains(warning) {
                            stats.warnings.push(warning.clone());
                        }
                    }
                    results.push((w, WriteBack::Computed(stamp)));
                }
            }
            let (windows, write_back): (Vec<WindowResult>, Vec<WriteBack>) = results.into_iter().unzip();
            let pass = reconcile_for_write(windows, write_back, len);
            self.windows_store.write(&pass.points).await?;
            stats.windows_written += pass.windows_written;
        }
        Ok(stats)
    }

    /// A [`QuietSpan`] of `plan` holding `[from_ns, to_ns)`: the one remembered,
    /// or, when that does not hold it, one found now by counting the values of
    /// the whole span (joined with the remembered one where they touch); `None`
    /// when the store has values there.
    async fn quiet_span(
        &self,
        plan: &WorkloadPlan,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Option<QuietSpan>, AggregateError> {
        let want = QuietSpan { from_ns, to_ns };
        let known = self.quiet.lock().expect("quiet spans").get(&plan.name).copied();
        if known.is_some_and(|k| k.from_ns <= from_ns && to_ns <= k.to_ns) {
            return Ok(known);
        }
        let span = match known {
            Some(k) if k.from_ns <= to_ns && from_ns <= k.to_ns => {
                QuietSpan { from_ns: k.from_ns.min(from_ns), to_ns: k.to_ns.max(to_ns) }
            }
            _ => want,
        };
        let mut found = None;
        if values_in(self.store.as_ref(), plan, span.from_ns, span.to_ns).await? == 0 {
            found = Some(span);
        } else if span != want && values_in(self.store.as_ref(), plan, from_ns, to_ns).await? == 0 {
            // The values are in the remembered part (they arrived after it was
            // counted): the wanted span replaces it.
            found = Some(want);
        } else if span == want {
            // The remembered span lies apart from the values found; it stands.
            return Ok(known);
        }
        let mut quiet = self.quiet.lock().expect("quiet spans");
        match found {
            Some(f) => quiet.insert(plan.name.clone(), f),
            None => quiet.remove(&plan.name),
        };
        Ok(found)
    }

    /// Drops every remembered [`QuietSpan`] whose time now holds values (late
    /// data, a backfill): one count per measurement and span, each scheduled pass.
    async fn recheck_quiet(&self) -> Result<(), AggregateError> {
        let spans: Vec<(String, QuietSpan)> =
            self.quiet.lock().expect("quiet spans").iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (name, span) in spans {
            let Some(plan) = self.plans.iter().find(|p| p.name == name) else { continue };
            if values_in(self.store.as_ref(), plan, span.from_ns, span.to_ns).await? > 0 {
                let mut quiet = self.quiet.lock().expect("quiet spans");
                if quiet.get(&name) == Some(&span) {
                    quiet.remove(&name);
                }
            }
        }
        Ok(())
    }

    /// The [`QuietSpan`] remembered for a workload, if any.
    pub fn quiet_span_of(&self, workload: &str) -> Option<QuietSpan> {
        self.quiet.lock().expect("quiet spans").get(workload).copied()
    }

    /// Whether `plan` has a stored window with data that starts before `before_ns`
    /// (within [`HISTORY_LOOKBACK_NS`]). Once true it is remembered.
    async fn had_data_before(&self, plan: &WorkloadPlan, before_ns: i64) -> Result<bool, AggregateError> {
        if self.with_history.lock().await.contains(&plan.name) {
            return Ok(true);
        }
        let stored = stored_windows(
            self.windows_store.as_ref(),
            plan,
            before_ns - HISTORY_LOOKBACK_NS,
            before_ns,
            self.window_ns(),
        )
        .await?;
        let had = stored.values().any(|w| w.result.devices > 0);
        if had {
            self.with_history.lock().await.insert(plan.name.clone());
        }
        Ok(had)
    }

    /// Runs [`Self::run_once`] every `[aggregator] interval` until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.cfg.aggregator.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    let now = self.clock.now_ns();
                    match self.run_once(now).await {
                        Ok(s) => {
                            for w in &s.warnings {
                                tracing::warn!(warning = %w, "aggregator");
                            }
                            tracing::info!(windows = s.windows_written, market_fetched = s.market_fetched, "windows computed");
                        }
                        Err(e) => tracing::error!(error = %e, "aggregator run failed; retrying next interval"),
                    }
                }
            }
        }
    }
}
