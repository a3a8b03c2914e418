//! The aggregator's configuration: `[store]`, `[sites.NAME]`, `[market]`,
//! `[[workloads]]`, `[aggregator]`, `[api]` and `[alerts]` (kept as TOML for
//! `crate::alert::config`; every key is documented in
//! `docs/config.md`, section "Aggregator"). Unknown keys are refused by name. A
//! workload's terms are parsed, once, into its revenue model while the file is
//! read (each model refuses keys it does not take); [`AggregatorConfig::plans`]
//! checks what serde cannot (that sites exist, that prices are sane) and builds the
//! runtime [`WorkloadPlan`]s. Every error is a [`KeyError`] naming the key path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use serde::Deserialize;

use super::tariff::{Tariff, TouPeriod};
use super::windows::WorkloadPlan;
use crate::config::{ConfigError, Secret};
use crate::revenue::{self, RevenueModel};
use crate::store::StoreConfig;

pub use crate::config::KeyError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    pub store: StoreConfig,
    #[serde(default)]
    pub sites: BTreeMap<String, SiteConfig>,
    #[serde(default)]
    pub market: MarketConfig,
    #[serde(default)]
    pub workloads: Vec<WorkloadConfig>,
    #[serde(default)]
    pub aggregator: WindowsConfig,
    #[serde(default)]
    pub api: ApiConfig,
    /// `[alerts]`, kept as TOML here: the alert engine (`crate::alert::config`)
    /// parses and checks it, so this layer does not depend on it.
    pub alerts: Option<toml::Value>,
}

/// `[sites.NAME]`: where devices run, what a kWh costs there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Power usage effectiveness: facility energy ÷ IT energy (≥ 1).
    #[serde(default = "one")]
    pub pue: f64,
    /// A flat energy price; or give `[sites.NAME.tariff]`.
    pub energy_usd_per_kwh: Option<f64>,
    pub tariff: Option<TariffConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TariffKind {
    Flat,
    TimeOfUse,
    Measured,
}

/// `[sites.NAME.tariff]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffConfig {
    pub kind: TariffKind,
    /// `flat`: the price.
    pub usd_per_kwh: Option<f64>,
    /// `time_of_use`: the site's UTC offset, `+02:00`, `-05:00`, `Z`.
    pub utc_offset: Option<String>,
    /// `time_of_use`: the price outside every period.
    pub default_usd_per_kwh: Option<f64>,
    #[serde(default)]
    pub periods: Vec<TouPeriod>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MarketSourceKind {
    #[default]
    Static,
    Http,
    /// Market points already in the store, written by another process (another
    /// aggregator's `http` source, a market-data feed, the demo's simulator).
    Store,
}

/// `[market]`: Bitcoin price, difficulty, subsidy and fees for `bitcoin_fpps`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    #[serde(default)]
    pub source: MarketSourceKind,
    pub btc_usd: Option<f64>,
    pub difficulty: Option<f64>,
    pub block_subsidy_btc: Option<f64>,
    pub fees_btc_per_block: Option<f64>,
    /// `store`: only read `market` points with this `source` tag (all when unset).
    pub source_tag: Option<String>,
    /// `http`: base URL of a mempool-style API, up to and including `/api`.
    pub url: Option<String>,
    #[serde(default = "default_refresh", with = "crate::config::duration")]
    pub refresh: Duration,
    /// Market data older than this at a window's end is flagged stale.
    #[serde(default = "default_max_age", with = "crate::config::duration")]
    pub max_age: Duration,
    /// `http`: blocks over which mean fees per block are taken.
    #[serde(default = "default_fee_blocks")]
    pub fee_blocks: u32,
    #[serde(default = "default_http_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            source: MarketSourceKind::Static,
            btc_usd: None,
            difficulty: None,
            block_subsidy_btc: None,
            fees_btc_per_block: None,
            source_tag: None,
            url: None,
            refresh: default_refresh(),
            max_age: default_max_age(),
            fee_blocks: default_fee_blocks(),
            timeout: default_http_timeout(),
        }
    }
}

/// `[[workloads]]`: a named group of devices (by their `workload` tag) and its
/// revenue model, built from the model's terms (the entry's other keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWorkload")]
pub struct WorkloadConfig {
    pub name: String,
    /// The `model` key, built with the entry's terms.
    pub revenue_model: Arc<dyn RevenueModel>,
    /// The site whose PUE and tariff apply; may be left out when there is one site.
    pub site: Option<String>,
    /// Overrides `[aggregator] max_gap` for this workload's devices.
    pub max_gap: Option<Duration>,
}

/// A `[[workloads]]` entry as written: the keys every workload has, and the rest,
/// which are the model's terms (the model refuses any it does not take).
#[derive(Deserialize)]
struct RawWorkload {
    name: String,
    model: String,
    site: Option<String>,
    #[serde(default, with = "opt_duration")]
    max_gap: Option<Duration>,
    #[serde(flatten)]
    terms: toml::Table,
}

/// A `[[workloads]]` entry whose model or terms are wrong (serde adds the line).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("[[workloads]] name = {name:?}: {source}")]
    Model { name: String, source: revenue::UnknownModel },
    #[error("[[workloads]] name = {name:?} (model {model}): {source}")]
    Terms { name: String, model: &'static str, source: revenue::TermsError },
}

impl TryFrom<RawWorkload> for WorkloadConfig {
    type Error = WorkloadError;

    fn try_from(raw: RawWorkload) -> Result<Self, WorkloadError> {
        let name = raw.name;
        let reg = revenue::lookup(&raw.model).map_err(|source| WorkloadError::Model { name: name.clone(), source })?;
        let model = reg.build(raw.terms).map_err(|source| WorkloadError::Terms {
            name: name.clone(),
            model: reg.info.name,
            source,
        })?;
        Ok(WorkloadConfig { name, revenue_model: model, site: raw.site, max_gap: raw.max_gap })
    }
}

/// `[aggregator]`: windows and schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    #[serde(default = "default_window", with = "crate::config::duration")]
    pub window: Duration,
    #[serde(default = "default_short_window", with = "crate::config::duration")]
    pub short_window: Duration,
    /// How far back each run looks for late data and config changes in stored
    /// windows (`recompute_lookback` is the older name).
    #[serde(default = "default_lookback", alias = "recompute_lookback", with = "crate::config::duration")]
    pub late_data_lookback: Duration,
    #[serde(default = "default_max_gap", with = "crate::config::duration")]
    pub max_gap: Duration,
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub interval: Duration,
    #[serde(default = "default_fleet_lookback", with = "crate::config::duration")]
    pub fleet_lookback: Duration,
    /// How long the partial current window, once computed for a request, is
    /// served again to the next requests (`0s`: computed for every request).
    #[serde(default = "default_live_window_max_age", with = "crate::config::duration")]
    pub live_window_max_age: Duration,
    /// No longer used (raw reads stream, see docs/aggregator.md); accepted so that
    /// older configs still load.
    #[serde(default = "default_read_chunk", with = "crate::config::duration")]
    pub read_chunk: Duration,
    /// InfluxDB (`api = "v1"`): the retention policy the windows are written to
    /// and read from, so they can outlive the raw samples (see docs/retention.md).
    #[serde(default)]
    pub windows_retention_policy: Option<String>,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            window: default_window(),
            short_window: default_short_window(),
            late_data_lookback: default_lookback(),
            max_gap: default_max_gap(),
            interval: default_interval(),
            fleet_lookback: default_fleet_lookback(),
            live_window_max_age: default_live_window_max_age(),
            read_chunk: default_read_chunk(),
            windows_retention_policy: None,
        }
    }
}

/// `[api]`: the HTTP API and the InfluxDB-compatible ingest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub ingest: bool,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Token for the page and the JSON API only (`token` also works there).
    pub read_token: Option<Secret>,
    pub read_token_file: Option<PathBuf>,
    /// Token for the ingest only (`token` also works there).
    pub write_token: Option<Secret>,
    pub write_token_file: Option<PathBuf>,
    /// Serve a non-loopback `listen` without tokens anyway.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Connections served at once; more are answered 503.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a connection has to send a request head (also bounds idle keep-alive).
    #[serde(default = "default_header_read_timeout", with = "crate::config::duration")]
    pub header_read_timeout: Duration,
    /// Time a write body may take to arrive.
    #[serde(default = "default_body_timeout", with = "crate::config::duration")]
    pub body_timeout: Duration,
    /// Ingest per-line limits (see [`crate::ship::lineproto::Limits`]).
    #[serde(default = "default_max_fields_per_line")]
    pub max_fields_per_line: usize,
    #[serde(default = "default_max_tags_per_line")]
    pub max_tags_per_line: usize,
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: usize,
    #[serde(default = "default_max_tag_value_bytes")]
    pub max_tag_value_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(),
            token: None,
            token_file: None,
            ingest: false,
            max_body_bytes: default_max_body(),
            read_token: None,
            read_token_file: None,
            write_token: None,
            write_token_file: None,
            allow_unauthenticated: false,
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            body_timeout: default_body_timeout(),
            max_fields_per_line: default_max_fields_per_line(),
            max_tags_per_line: default_max_tags_per_line(),
            max_key_bytes: default_max_key_bytes(),
            max_tag_value_bytes: default_max_tag_value_bytes(),
        }
    }
}

impl ApiConfig {
    /// The ingest's per-line limits.
    pub fn line_limits(&self) -> crate::ship::lineproto::Limits {
        crate::ship::lineproto::Limits {
            max_fields_per_line: self.max_fields_per_line,
            max_tags_per_line: self.max_tags_per_line,
            max_key_bytes: self.max_key_bytes,
            max_tag_value_bytes: self.max_tag_value_bytes,
        }
    }

    /// The listener's connection limits.
    pub fn conn_limits(&self) -> crate::http::ConnLimits {
        crate::http::ConnLimits { max_connections: self.max_connections, header_read_timeout: self.header_read_timeout }
    }
}

fn default_max_connections() -> usize {
    crate::http::ConnLimits::default().max_connections
}
fn default_header_read_timeout() -> Duration {
    crate::http::ConnLimits::default().header_read_timeout
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_fields_per_line() -> usize {
    crate::ship::lineproto::Limits::default().max_fields_per_line
}
fn default_max_tags_per_line() -> usize {
    crate::ship::lineproto::Limits::default().max_tags_per_line
}
fn default_max_key_bytes() -> usize {
    crate::ship::lineproto::Limits::default().max_key_bytes
}
fn default_max_tag_value_bytes() -> usize {
    crate::ship::lineproto::Limits::default().max_tag_value_bytes
}

fn one() -> f64 {
    1.0
}
fn default_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}
fn default_fee_blocks() -> u32 {
    144
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_short_window() -> Duration {
    Duration::from_secs(300)
}
fn default_live_window_max_age() -> Duration {
    Duration::from_secs(10)
}
fn default_lookback() -> Duration {
    Duration::from_secs(3 * 3600)
}
fn default_max_gap() -> Duration {
    Duration::from_secs(90)
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_fleet_lookback() -> Duration {
    Duration::from_secs(3600)
}
fn default_read_chunk() -> Duration {
    Duration::from_secs(900)
}
/// `127.0.0.1:…`, `[::1]:…`, `localhost:…`: only this host can connect.
fn is_loopback_listen(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

fn default_listen() -> String {
    "127.0.0.1:8787".to_string()
}
fn default_max_body() -> usize {
    25_000_000
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::config::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl AggregatorConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: AggregatorConfig = crate::config::load(path)?;
        cfg.validate().map_err(|error| ConfigError::Key { path: path.to_owned(), error })?;
        Ok(cfg)
    }

    /// Checks everything serde cannot; the error names the key to fix.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.plans().map(drop)
    }

    /// Checks the config and builds the workloads ready to compute.
    pub fn plans(&self) -> Result<Vec<WorkloadPlan>, KeyError> {
        let w = &self.aggregator;
        if w.window.as_secs_f64() < 1.0 || w.short_window.as_secs_f64() < 1.0 {
            return Err(KeyError::new("aggregator.window", "window and short_window must be at least 1s"));
        }
        if w.max_gap.is_zero() {
            return Err(KeyError::new("aggregator.max_gap", "max_gap must be positive"));
        }
        let st = &self.store;
        if !st.retention_policies.is_empty()
            && (st.kind != crate::store::StoreKind::Influxdb || st.api != crate::store::WriteApi::V1)
        {
            return Err(KeyError::new(
                "store.retention_policies",
                "needs kind = \"influxdb\" with api = \"v1\"; InfluxDB 2.x and later keep one retention per bucket",
            ));
        }
        let mut tariffs = BTreeMap::new();
        for (name, site) in &self.sites {
            if !(site.pue.is_finite() && site.pue >= 1.0) {
                return Err(KeyError::new(
                    format!("sites.{name}.pue"),
                    format!("pue = {} must be a number ≥ 1 (facility ÷ IT energy)", site.pue),
                ));
            }
            tariffs.insert(name.as_str(), site.tariff(name)?);
        }
        let mut seen = std::collections::BTreeSet::new();
        // The first workload whose model needs market data, named in errors.
        let mut needs_market: Option<&str> = None;
        let default_gap = w.max_gap.as_nanos() as i64;
        let mut plans = Vec::with_capacity(self.workloads.len());
        for (i, wl) in self.workloads.iter().enumerate() {
            let at = format!("workloads[{i}]");
            if wl.name.is_empty() {
                return Err(KeyError::new(format!("{at}.name"), "name must not be empty"));
            }
            if !seen.insert(&wl.name) {
                return Err(KeyError::new(format!("{at}.name"), format!("{:?} appears twice", wl.name)));
            }
            let (site, site_cfg) = self.find_site(wl).map_err(|e| KeyError::new(format!("{at}.site"), e))?;
            if wl.revenue_model.info().inputs.market && needs_market.is_none() {
                needs_market = Some(wl.name.as_str());
            }
            if wl.max_gap.is_some_and(|g| g.is_zero()) {
                return Err(KeyError::new(format!("{at}.max_gap"), "max_gap must be positive"));
            }
            plans.push(WorkloadPlan {
                name: wl.name.clone(),
                site: site.to_string(),
                revenue_model: wl.revenue_model.clone(),
                pue: site_cfg.pue,
                tariff: tariffs[site].clone(),
                max_gap_ns: wl.max_gap.map_or(default_gap, |g| g.as_nanos() as i64),
            });
        }
        if let Some(user) = needs_market {
            let m = &self.market;
            match m.source {
                MarketSourceKind::Static => {
                    for (key, v) in [
                        ("btc_usd", m.btc_usd),
                        ("difficulty", m.difficulty),
                        ("block_subsidy_btc", m.block_subsidy_btc),
                        ("fees_btc_per_block", m.fees_btc_per_block),
                    ] {
                        let at = format!("market.{key}");
                        match v {
                            None => {
                                return Err(KeyError::new(
                                    at,
                                    format!("source = \"static\" needs `{key}` (workload `{user}` uses market data)"),
                                ))
                            }
                            Some(v) if !(v.is_finite() && v >= 0.0) => {
                                return Err(KeyError::new(at, format!("{key} = {v} must be a number ≥ 0")))
                            }
                            _ => {}
                        }
                    }
                    if m.difficulty == Some(0.0) {
                        return Err(KeyError::new("market.difficulty", "difficulty must be positive"));
                    }
                }
                MarketSourceKind::Store => {}
                MarketSourceKind::Http => {
                    if m.url.as_deref().is_none_or(str::is_empty) {
                        return Err(KeyError::new(
                            "market.url",
                            "source = \"http\" needs `url`, the base of a mempool-style API ending in /api",
                        ));
                    }
                    if m.fee_blocks == 0 {
                        return Err(KeyError::new("market.fee_blocks", "fee_blocks must be at least 1"));
                    }
                }
            }
        }
        let token = Secret::resolve("token", self.api.token.as_ref(), self.api.token_file.as_deref())
            .map_err(|e| KeyError::new("api.token", e.to_string()))?;
        let write_token =
            Secret::resolve("write_token", self.api.write_token.as_ref(), self.api.write_token_file.as_deref())
                .map_err(|e| KeyError::new("api.write_token", e.to_string()))?;
        Secret::resolve("read_token", self.api.read_token.as_ref(), self.api.read_token_file.as_deref())
            .map_err(|e| KeyError::new("api.read_token", e.to_string()))?;
        if self.api.ingest
            && token.as_ref().is_none_or(Secret::is_empty)
            && write_token.as_ref().is_none_or(Secret::is_empty)
        {
            return Err(KeyError::new(
                "api.token",
                "ingest = true needs `token`, `token_file`, `write_token` or `write_token_file`: writes are never accepted without one",
            ));
        }
        Ok(plans)
    }

    /// The site a workload belongs to; the error is at `workloads[i].site`.
    pub fn site_of(&self, wl: &WorkloadConfig) -> Result<(&str, &SiteConfig), KeyError> {
        let i = self.workloads.iter().position(|w| w.name == wl.name).unwrap_or(0);
        self.find_site(wl).map_err(|problem| KeyError::new(format!("workloads[{i}].site"), problem))
    }

    fn find_site(&self, wl: &WorkloadConfig) -> Result<(&str, &SiteConfig), String> {
        match &wl.site {
            Some(s) => self
                .sites
                .get_key_value(s)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| format!("site {s:?} of workload {:?} has no [sites.{s}] section", wl.name)),
            None if self.sites.len() == 1 => {
                let (k, v) = self.sites.iter().next().expect("one site");
                Ok((k.as_str(), v))
            }
            None if self.sites.is_empty() => {
                Err(format!("workload {:?}: add a [sites.NAME] section (pue, energy_usd_per_kwh) for it", wl.name))
            }
            None => {
                Err(format!("workload {:?}: set `site` (there are {} [sites.*] sections)", wl.name, self.sites.len()))
            }
        }
    }

    /// The API token, from `token` or `token_file`.
    pub fn api_token(&self) -> Result<Option<Secret>, ConfigError> {
        Secret::resolve("token", self.api.token.as_ref(), self.api.token_file.as_deref())
    }

    /// The read-only token (page and API), from `read_token` or `read_token_file`.
    pub fn api_read_token(&self) -> Result<Option<Secret>, ConfigError> {
        Secret::resolve("read_token", self.api.read_token.as_ref(), self.api.read_token_file.as_deref())
    }

    /// The ingest-only token, from `write_token` or `write_token_file`.
    pub fn api_write_token(&self) -> Result<Option<Secret>, ConfigError> {
        Secret::resolve("write_token", self.api.write_token.as_ref(), self.api.write_token_file.as_deref())
    }

    /// Why serving `[api] listen` as configured would be open to the network, if
    /// it would: a non-loopback address where the API (or, with `ingest`, the
    /// ingest) has no token and `allow_unauthenticated` is not set.
    pub fn unauthenticated_exposure(&self) -> Result<Option<String>, ConfigError> {
        if self.api.allow_unauthenticated || is_loopback_listen(&self.api.listen) {
            return Ok(None);
        }
        let set = |t: Option<Secret>| t.is_some_and(|t| !t.is_empty());
        let any = set(self.api_token()?);
        let read = any || set(self.api_read_token()?);
        let write = any || set(self.api_write_token()?);
        let open = match (read, write || !self.api.ingest) {
            (true, true) => return Ok(None),
            (false, true) => "the page and the API",
            (true, false) => "the ingest",
            (false, false) => "the page, the API and the ingest",
        };
        Ok(Some(format!(
            "[api] listen = {:?} is not a loopback address and {open} would need no token: \
             set [api] token (or read_token / write_token), or allow_unauthenticated = true \
             if something in front (a proxy, a firewall) controls access",
            self.api.listen
        )))
    }
}

impl SiteConfig {
    /// The site's tariff. `Measured` starts without prices; they are read from the
    /// store for each range.
    pub fn tariff(&self, name: &str) -> Result<Tariff, KeyError> {
        let at = |key: &str| format!("sites.{name}.{key}");
        let price = |key: &str, v: Option<f64>| match v {
            Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
            Some(v) => Err(KeyError::new(at(key), format!("{key} = {v} must be a price ≥ 0"))),
            None => Err(KeyError::new(at(key), format!("[sites.{name}] needs `{key}`"))),
        };
        match (&self.energy_usd_per_kwh, &self.tariff) {
            (Some(_), Some(_)) => Err(KeyError::new(
                format!("sites.{name}"),
                format!("set either energy_usd_per_kwh or [sites.{name}.tariff], not both"),
            )),
            (None, None) => Err(KeyError::new(
                format!("sites.{name}"),
                format!("set energy_usd_per_kwh or a [sites.{name}.tariff]"),
            )),
            (Some(p), None) => Ok(Tariff::Flat { usd_per_kwh: price("energy_usd_per_kwh", Some(*p))? }),
            (None, Some(t)) => match t.kind {
                TariffKind::Flat => Ok(Tariff::Flat { usd_per_kwh: price("tariff.usd_per_kwh", t.usd_per_kwh)? }),
                TariffKind::Measured => Ok(Tariff::Measured { prices: Vec::new() }),
                TariffKind::TimeOfUse => {
                    let utc_offset_s = parse_utc_offset(t.utc_offset.as_deref().unwrap_or("Z"))
                        .map_err(|e| KeyError::new(at("tariff.utc_offset"), e.to_string()))?;
                    let default_usd_per_kwh = price("tariff.default_usd_per_kwh", t.default_usd_per_kwh)?;
                    for (i, p) in t.periods.iter().enumerate() {
                        if p.from_hour > 23 || p.to_hour > 24 || p.from_hour == p.to_hour {
                            return Err(KeyError::new(
                                at(&format!("tariff.periods[{i}]")),
                                format!(
                                    "period {}..{}: hours are 0-24 and from_hour differs from to_hour",
                                    p.from_hour, p.to_hour
                                ),
                            ));
                        }
                        price(&format!("tariff.periods[{i}].usd_per_kwh"), Some(p.usd_per_kwh))?;
                    }
                    Ok(Tariff::TimeOfUse { utc_offset_s, periods: t.periods.clone(), default_usd_per_kwh })
                }
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{0}` is not a UTC offset like +02:00 or -05:00")]
pub struct BadUtcOffset(pub String);

/// `+02:00`, `-05:30`, `+2`, `Z` → seconds east of UTC.
pub fn parse_utc_offset(s: &str) -> Result<i64, BadUtcOffset> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let bad = || BadUtcOffset(s.to_string());
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<AggregatorConfig, String> {
        let cfg: AggregatorConfig = crate::config::from_str(toml, Path::new("test.toml")).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    const BASE: &str =
        "[store]\nkind = \"embedded\"\npath = \"x.db\"\n[sites.a]\npue = 1.2\nenergy_usd_per_kwh = 0.05\n";

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/aggregator.toml");
        std::env::set_var("WATTLEDGER_API_TOKEN", "example-token");
        let cfg = AggregatorConfig::load(&path).unwrap();
        assert!(cfg.workloads.len() >= 4);
        let kinds: std::collections::BTreeSet<_> = cfg.workloads.iter().map(|w| w.revenue_model.info().name).collect();
        assert_eq!(kinds.len(), 4, "the example shows every model: {kinds:?}");
    }

    #[test]
    fn missing_model_parameter_is_named() {
        let err = parse(&format!("{BASE}[[workloads]]\nname = \"h100\"\nmodel = \"ai_contract\"\n")).unwrap_err();
        assert!(err.contains("usd_per_gpu_hour"), "{err}");
        let err = parse(&format!(
            "{BASE}[[workloads]]\nname = \"h\"\nmodel = \"ai_contract\"\nusd_per_gpu_hour = 2.0\npool_fee = 0.1\n"
        ))
        .unwrap_err();
        assert!(err.contains("pool_fee") && err.contains("does not apply"), "{err}");
    }

    #[test]
    fn unknown_keys_and_models_are_refused() {
        let err = parse(&format!("{BASE}[[workloads]]\nname = \"x\"\nmodel = \"ai_lottery\"\n")).unwrap_err();
        assert!(err.contains("ai_lottery"), "{err}");
        let err = parse(&format!("{BASE}[aggregator]\nwindoww = \"1h\"\n")).unwrap_err();
        assert!(err.contains("windoww"), "{err}");
    }

    #[test]
    fn ingest_needs_a_token() {
        let err = parse(&format!("{BASE}[api]\ningest = true\n")).unwrap_err();
        assert!(err.contains("token"), "{err}");
        parse(&format!("{BASE}[api]\ningest = true\ntoken = \"t\"\n")).unwrap();
    }

    #[test]
    fn bitcoin_needs_market_values() {
        let err =
            parse(&format!("{BASE}[[workloads]]\nname = \"btc\"\nmodel = \"bitcoin_fpps\"\n[market]\nbtc_usd = 1.0\n"))
                .unwrap_err();
        assert!(err.contains("difficulty"), "{err}");
    }

    #[test]
    fn huge_durations_are_refused_not_a_panic() {
        for (section, key) in [("aggregator", "window"), ("aggregator", "interval"), ("market", "refresh")] {
            let err = parse(&format!("{BASE}[{section}]\n{key} = \"99999999999999999999999s\"\n")).unwrap_err();
            assert!(err.contains(key) && err.contains("too long"), "{err}");
        }
        let err =
            parse(&format!("{BASE}[[workloads]]\nname = \"h\"\nmodel = \"ai_contract\"\nusd_per_gpu_hour = 1.0\nmax_gap = \"99999999999999999999h\"\n"))
                .unwrap_err();
        assert!(err.contains("too long"), "{err}");
        // 100 years is the limit, and still fits i64 nanoseconds.
        parse(&format!("{BASE}[aggregator]\nrecompute_lookback = \"36500d\"\n")).unwrap();
    }

    #[test]
    fn errors_carry_the_key_path() {
        let toml = format!(
            "{BASE}[[workloads]]\nname = \"a\"\nmodel = \"ai_contract\"\nusd_per_gpu_hour = 1.0\n\
             [[workloads]]\nname = \"b\"\nmodel = \"ai_contract\"\nusd_per_gpu_hour = 1.0\nsite = \"nowhere\"\n"
        );
        let cfg: AggregatorConfig = crate::config::from_str(&toml, Path::new("test.toml")).unwrap();
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.at, "workloads[1].site", "{err}");
        let err = parse(&format!("{BASE}[sites.b]\npue = 0.5\nenergy_usd_per_kwh = 0.05\n")).unwrap_err();
        assert!(err.starts_with("sites.b.pue: "), "{err}");
        // A term out of range is named with its workload, from the model's own check.
        let err = parse(&format!("{BASE}[[workloads]]\nname = \"h\"\nmodel = \"ai_on_demand\"\nusd_per_gpu_hour = 1.0\nutil_threshold_pct = 150\n"))
            .unwrap_err();
        assert!(err.contains("\"h\"") && err.contains("util_threshold_pct is a percentage"), "{err}");
    }

    #[test]
    fn tariffs_parse() {
        let cfg = parse(
            "[store]\nkind = \"embedded\"\npath = \"x.db\"\n[sites.b]\n[sites.b.tariff]\nkind = \"time_of_use\"\nutc_offset = \"-05:30\"\ndefault_usd_per_kwh = 0.07\nperiods = [{ from_hour = 17, to_hour = 21, usd_per_kwh = 0.2 }]\n",
        )
        .unwrap();
        match cfg.sites["b"].tariff("b").unwrap() {
            Tariff::TimeOfUse { utc_offset_s, default_usd_per_kwh, periods } => {
                assert_eq!(utc_offset_s, -(5 * 3600 + 1800));
                assert_eq!(default_usd_per_kwh, 0.07);
                assert_eq!(periods.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("[store]\nkind = \"embedded\"\n[sites.c]\npue = 0.9\nenergy_usd_per_kwh = 0.05\n")
            .unwrap_err()
            .contains("pue"));
    }
}
