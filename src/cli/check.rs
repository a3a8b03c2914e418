//! `wattledger check --config F`: validates a config file and contacts everything
//! it names; with `--offline`, validates it and everything it names on this host
//! (secret files, the embedded store's path, miner targets) and contacts nothing.
//!
//! The kind of file is told by its sections: an agent config has `[agent]`, an
//! aggregator config has `[[workloads]]` or `[sites]`, anything else is checked for
//! its `[store]` only. Each check prints one line (`ok`, `WARN` or `FAIL` with what
//! to do); the exit status is non-zero when any failed, warnings do not fail.
//! [`check_store`] is the reusable part shared by both kinds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;

use crate::agent::config::AgentConfig;
use crate::aggregate::config::{AggregatorConfig, MarketSourceKind};
use crate::model::schema;
use crate::store::{open_store, StoreConfig, StoreError, StoreKind};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to check (agent or aggregator).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Contact nothing: check the keys, that secret files can be read and that the
    /// store's path is usable, without reaching any server, miner or GPU. What the
    /// packaging, the Ansible role's `validate:` and the tests run.
    #[arg(long)]
    pub offline: bool,
}

/// What `check` found for one thing the config names.
struct Line {
    what: String,
    result: Result<String, String>,
    /// A finding that does not fail the check but that the operator should read.
    warn: bool,
}

impl Line {
    fn new(what: impl Into<String>, result: Result<String, String>) -> Line {
        Line { what: what.into(), result, warn: false }
    }
    fn warning(what: impl Into<String>, msg: String) -> Line {
        Line { what: what.into(), result: Ok(msg), warn: true }
    }
}

/// Said on every line `--offline` skipped the contact for.
const NOT_CONTACTED: &str = "not contacted (--offline)";

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let path = &args.config;
    let table: toml::Table = crate::config::load(path)?;
    let offline = args.offline;
    let lines = if table.contains_key("agent") {
        check_agent(path, offline).await?
    } else if table.contains_key("workloads") || table.contains_key("sites") {
        check_aggregator(path, offline).await?
    } else {
        let cfg = load_store_section(path)?;
        vec![Line::new("[store]", store_line(&cfg, offline).await)]
    };
    let mut failed = 0;
    for l in &lines {
        match &l.result {
            Ok(msg) if l.warn => println!("WARN  {}: {msg}", l.what),
            Ok(msg) => println!("ok    {}: {msg}", l.what),
            Err(msg) => {
                failed += 1;
                println!("FAIL  {}: {msg}", l.what);
            }
        }
    }
    if failed > 0 {
        eprintln!("{}: {failed} of {} checks failed", path.display(), lines.len());
        return Ok(ExitCode::FAILURE);
    }
    let warned = lines.iter().filter(|l| l.warn).count();
    let warnings = match warned {
        0 => String::new(),
        1 => " (1 warning)".to_string(),
        n => format!(" ({n} warnings)"),
    };
    let scope = if offline { ", nothing contacted" } else { "" };
    println!("{}: all {} checks passed{warnings}{scope}", path.display(), lines.len());
    Ok(ExitCode::SUCCESS)
}

/// `[store]` online (it must answer) or offline (keys, secrets and paths only).
async fn store_line(cfg: &StoreConfig, offline: bool) -> Result<String, String> {
    if offline {
        check_store_offline(cfg).await.map_err(|e| e.to_string())
    } else {
        check_store(cfg).await.map_err(|e| e.to_string())
    }
}

/// An agent config: every key, then the store it ships to, then one collection
/// from every source (NVML opened and read, every miner polled, every inference
/// server scraped), exactly as the agent would do it.
/// With `offline`, the sources are built (targets parsed, URLs checked) but not
/// read, and NVML is not opened.
async fn check_agent(path: &Path, offline: bool) -> anyhow::Result<Vec<Line>> {
    let cfg = AgentConfig::load(path)?; // checks every key
    let mut lines = vec![Line::new("config", Ok("agent config is valid".into()))];
    if let Some(store) = &cfg.store {
        let result = if offline { store_line(store, true).await } else { check_output(store).await };
        lines.push(Line::new("[store]", result));
    }
    for sink in &cfg.sinks {
        // Building the writer reads its secret files: a missing token fails here,
        // not on the agent's first write.
        let result = match sink.build() {
            Err(e) => Err(format!("{} {e}", sink.section())),
            Ok(w) if offline => Ok(format!("{}: keys valid, secrets readable; {NOT_CONTACTED}", w.describe())),
            Ok(_) => sink.healthcheck().await,
        };
        lines.push(Line::new(format!("sink {}", sink.name()), result));
    }
    if offline {
        lines.extend(describe_sources(&cfg));
        return Ok(lines);
    }
    let sources = match crate::agent::sources_from_config(&cfg) {
        Ok(s) => s,
        Err(e) => {
            lines.push(Line::new("sources", Err(e.to_string())));
            return Ok(lines);
        }
    };
    let now = crate::model::now_ns();
    for mut s in sources {
        let name = s.source.name().to_string();
        let result = match s.source.collect(now).await {
            Err(e) => Err(e.message),
            Ok(points) => summarize(&points),
        };
        lines.push(Line::new(format!("source {name}"), result));
    }
    Ok(lines)
}

/// `--offline`: one line per configured source, built as the agent builds it
/// (miner targets parsed, inference URLs checked) but never read.
fn describe_sources(cfg: &AgentConfig) -> Vec<Line> {
    let mut lines = Vec::new();
    if let Some(g) = cfg.gpus.as_ref().filter(|g| g.enabled) {
        let lib = g.nvml_lib.as_deref().map_or("the system's libnvidia-ml".to_string(), |p| p.display().to_string());
        lines.push(Line::new(
            "source nvml",
            Ok(format!("every {:?} from {lib}; NVML not opened (--offline)", g.interval)),
        ));
    }
    if let Some(m) = &cfg.miners {
        let result = m.build().map(|_| {
            format!("{} every {:?}; {NOT_CONTACTED}", plural(m.targets.len(), "target", "targets"), m.interval)
        });
        lines.push(Line::new("source miners", result.map_err(|e| e.to_string())));
    }
    for s in &cfg.inference {
        let result = crate::collect::inference::InferenceSource::new(s.clone())
            .map(|_| format!("{} every {:?}; {NOT_CONTACTED}", s.url, s.interval))
            .map_err(|e| e.message);
        lines.push(Line::new(format!("source inference:{}", s.name), result));
    }
    lines
}

/// `1 miner`, `2 miners`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// One line about what a source gave back: how many devices answered, and which
/// did not and why. A miner source where no miner answered fails: the agent would
/// ship nothing but `online = 0`.
fn summarize(points: &[crate::model::Point]) -> Result<String, String> {
    let mut bad = Vec::new();
    let mut miners_offline = 0;
    for p in points {
        let offline = p.field_value(schema::asic::ONLINE).and_then(|v| v.as_f64()) == Some(0.0);
        let status = p.field_value(schema::gpu::STATUS).and_then(|v| v.as_str()).filter(|s| *s != "ok");
        let device = p
            .tag_value(schema::asic::TAG_MINER)
            .or_else(|| p.tag_value(schema::gpu::TAG_UUID))
            .or_else(|| p.tag_value(schema::gpu::TAG_GPU))
            .or_else(|| p.tag_value(schema::meter::TAG_METER))
            .unwrap_or("?");
        if offline {
            miners_offline += 1;
            bad.push(format!("{device} offline"));
        } else if let Some(s) = status {
            bad.push(format!("{device} {s}"));
        }
    }
    let read = plural(points.len(), "device read", "devices read");
    if !points.is_empty() && miners_offline == points.len() {
        return Err(format!(
            "{read}, none answered: {}; check the addresses in [miners] targets and that the miners are powered",
            bad.join(", ")
        ));
    }
    if bad.is_empty() {
        Ok(read)
    } else {
        Ok(format!("{read}, {} not healthy: {}", bad.len(), bad.join(", ")))
    }
}

/// The agent's output may be a server that only takes writes (the aggregator's
/// ingest, VictoriaMetrics): when the server has no InfluxQL endpoint, fall back to
/// `/ping`, which all of them answer. Wrong credentials, an unreadable secret file
/// and a database the server says does not exist fail: the agent's writes would.
async fn check_output(cfg: &StoreConfig) -> Result<String, String> {
    match check_store(cfg).await {
        Ok(s) => Ok(s),
        Err(e @ (StoreError::Auth(_) | StoreError::Config(_))) => Err(e.to_string()),
        Err(StoreError::NotFound(m)) if m.contains("does not exist") => Err(m),
        Err(e) if cfg.kind == StoreKind::Influxdb => {
            let url = cfg.url.as_deref().unwrap_or_default().trim_end_matches('/');
            let ping = reqwest::Client::builder()
                .timeout(cfg.timeout)
                .build()
                .map_err(|e| e.to_string())?
                .get(format!("{url}/ping"))
                .send()
                .await;
            match ping {
                Ok(r) if r.status().is_success() => Ok(format!(
                    "{url} answers /ping (it does not answer InfluxQL: {e}); credentials are checked on the first write"
                )),
                _ => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// An aggregator config: every key and the workloads' terms, the store, and the
/// market data source when it is `http`.
/// Online, each workload must have matched data in the store over the last day;
/// one that matched none is a warning naming the close `workload` tags.
async fn check_aggregator(path: &Path, offline: bool) -> anyhow::Result<Vec<Line>> {
    let cfg = AggregatorConfig::load(path)?; // checks every key
    let mut lines = vec![Line::new(
        "config",
        Ok(format!("aggregator config is valid ({})", plural(cfg.workloads.len(), "workload", "workloads"))),
    )];
    // The aggregator refuses to serve this; say so before it is deployed.
    let api = match cfg.unauthenticated_exposure()? {
        Some(why) => Err(format!("the aggregator will refuse to start: {why}")),
        None if cfg.api.allow_unauthenticated => Ok(format!(
            "listen = {:?} with allow_unauthenticated = true: whatever has no token is open to anyone who can connect",
            cfg.api.listen
        )),
        None => Ok(format!("listen = {:?}: access is limited by its address or a token", cfg.api.listen)),
    };
    lines.push(Line::new("[api]", api));
    let alerts = crate::alert::config::AlertsConfig::from_aggregator(&cfg, super::aggregator::config_dir(path))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    lines.push(Line::new(
        "[alerts]",
        alerts
            .rules(&cfg)
            .map(|r| {
                format!(
                    "{}; Alertmanager: {}; webhook: {}",
                    plural(r.len(), "rule", "rules"),
                    alerts.alertmanager_url.urls().len(),
                    if alerts.webhook_url.is_some() { "yes" } else { "no" }
                )
            })
            .map_err(|e| e.to_string()),
    ));
    if let Some(f) = &cfg.api.token_file {
        let result = cfg.api_token().map(|_| format!("{} is readable", f.display())).map_err(|e| e.to_string());
        lines.push(Line::new("[api] token_file", result));
    }
    let store = store_line(&cfg.store, offline).await;
    let store_ok = store.is_ok();
    lines.push(Line::new("[store]", store));
    if offline {
        if cfg.market.source == MarketSourceKind::Http {
            lines.push(Line::new(
                "[market]",
                Ok(format!("{}: {NOT_CONTACTED}", cfg.market.url.as_deref().unwrap_or(""))),
            ));
        }
        return Ok(lines);
    }
    if store_ok {
        lines.extend(check_workload_data(&cfg).await);
    }
    if cfg.market.source == MarketSourceKind::Http {
        let m = &cfg.market;
        let url = m.url.clone().unwrap_or_default();
        let result = match crate::aggregate::market::HttpMarket::new(&url, m.fee_blocks, m.timeout) {
            Err(e) => Err(e.to_string()),
            Ok(src) => src
                .fetch()
                .await
                .map(|mk| {
                    format!(
                        "{url} answers: BTC ${:.0}, difficulty {:.3e}, subsidy {} BTC, fees {:.4} BTC per block",
                        mk.btc_usd, mk.difficulty, mk.block_subsidy_btc, mk.fees_btc_per_block
                    )
                })
                .map_err(|e| e.to_string()),
        };
        lines.push(Line::new("[market]", result));
    }
    Ok(lines)
}

/// How far back `check` looks for each workload's data.
const WORKLOAD_DATA_LOOKBACK_NS: i64 = 24 * 3600 * 1_000_000_000;

/// One line per workload: how many devices carried its `workload` tag in the last
/// day, or a warning naming the tags that were close (`btc-hostd` for
/// `btc-hosted` drops those devices from every window).
async fn check_workload_data(cfg: &AggregatorConfig) -> Vec<Line> {
    let store = match open_store(&cfg.store).await {
        Ok(s) => s,
        Err(e) => return vec![Line::new("workloads", Err(e.to_string()))],
    };
    let end_ns = crate::model::now_ns();
    let mut devices: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for measurement in [schema::gpu::MEASUREMENT, schema::asic::MEASUREMENT, schema::host_power::MEASUREMENT] {
        let q = crate::store::SeriesQuery {
            measurement: measurement.to_string(),
            fields: vec![schema::gpu::POWER_W.to_string()],
            tag_filters: vec![],
            start_ns: end_ns - WORKLOAD_DATA_LOOKBACK_NS,
            end_ns,
        };
        match store.read(&q).await {
            Ok(series) => {
                for s in series.iter().filter(|s| !s.times_ns.is_empty()) {
                    if let Some(w) = s.tags.get(schema::TAG_WORKLOAD) {
                        let id = s.tags.values().cloned().collect::<Vec<_>>().join("/");
                        devices.entry(w.clone()).or_default().insert(id);
                    }
                }
            }
            Err(e) => return vec![Line::new("workloads", Err(e.to_string()))],
        }
    }
    let seen: Vec<&str> = devices.keys().map(String::as_str).collect();
    cfg.workloads
        .iter()
        .map(|w| {
            let what = format!("workload {}", w.name);
            match devices.get(&w.name) {
                Some(d) => Line::new(what, Ok(format!("{} in the last day", plural(d.len(), "device", "devices")))),
                None => {
                    let close = crate::config::near_misses(&w.name, seen.iter().copied());
                    let hint = if close.is_empty() {
                        format!(
                            "the store has data for: {}",
                            if seen.is_empty() { "nothing".into() } else { seen.join(", ") }
                        )
                    } else {
                        format!(
                            "close `workload` tags with data: {} (check the agents' [workloads] and this name)",
                            close
                                .iter()
                                .map(|c| format!("{c} ({})", plural(devices[*c].len(), "device", "devices")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    Line::warning(what, format!("no device data with workload = {:?} in the last day; {hint}", w.name))
                }
            }
        })
        .collect()
}

/// Reads `[store]` from any wattledger config file, with `${ENV}` expanded and
/// unknown keys refused by name.
pub fn load_store_section(path: &Path) -> anyhow::Result<StoreConfig> {
    let table: toml::Table = crate::config::load(path)?;
    let store = table
        .get("store")
        .ok_or_else(|| {
            anyhow!("{}: no [store] section; add one (see docs/config.md, section [store])", path.display())
        })?
        .clone();
    store.try_into::<StoreConfig>().map_err(|e| anyhow!("{}: [store]: {}", path.display(), e.to_string().trim()))
}

/// `--offline`: resolves a `[store]` section without contacting anything: for
/// InfluxDB, the keys and secret files; for the embedded store, that the file
/// exists (it is not opened) or its folder is writable.
pub async fn check_store_offline(cfg: &StoreConfig) -> Result<String, StoreError> {
    match cfg.kind {
        StoreKind::Influxdb => {
            open_store(cfg).await?;
            let url = cfg.url.as_deref().unwrap_or_default();
            Ok(format!("InfluxDB at {url}: keys valid, secrets readable; {NOT_CONTACTED}"))
        }
        StoreKind::Embedded => {
            let path = embedded_path(cfg)?;
            if path.exists() {
                Ok(format!("embedded store {} exists; not opened (--offline)", path.display()))
            } else {
                embedded_can_be_created(path)
            }
        }
    }
}

fn embedded_path(cfg: &StoreConfig) -> Result<&Path, StoreError> {
    cfg.path.as_deref().ok_or_else(|| {
        StoreError::Config(crate::config::ConfigError::Invalid("`path` is required when kind = \"embedded\"".into()))
    })
}

/// The embedded store's file is missing: fine when its folder can take it.
fn embedded_can_be_created(path: &Path) -> Result<String, StoreError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(Path::new("/"));
    let meta = std::fs::metadata(existing)
        .map_err(|e| StoreError::Embedded(format!("cannot inspect {}: {e}", existing.display())))?;
    if !meta.is_dir() || meta.permissions().readonly() {
        return Err(StoreError::Embedded(format!(
            "{} does not exist and {} is not a writable folder",
            path.display(),
            existing.display()
        )));
    }
    // Opening would create the file; a check leaves no traces.
    Ok(format!("embedded store {} does not exist yet; it will be created on first use", path.display()))
}

/// Builds the store a `[store]` section names and checks it answers: for InfluxDB,
/// `/ping`, then a query on the database with the configured credentials; for the
/// embedded store, that the file opens (or that its folder exists, when the file
/// will be created on first use). Returns a one-line summary of what was checked.
pub async fn check_store(cfg: &StoreConfig) -> Result<String, StoreError> {
    match cfg.kind {
        StoreKind::Influxdb => {
            let store = open_store(cfg).await?;
            store.ping().await?;
            let url = cfg.url.as_deref().unwrap_or_default();
            let db = cfg.database.as_deref().or(cfg.bucket.as_deref()).unwrap_or_default();
            let api = match cfg.api {
                crate::store::WriteApi::V1 => "v1 /write",
                crate::store::WriteApi::V2 => "v2 /api/v2/write",
            };
            Ok(format!(
                "InfluxDB at {url} answers, the credentials are accepted and database `{db}` exists (writes use the {api} API)"
            ))
        }
        StoreKind::Embedded => {
            let path = embedded_path(cfg)?;
            if path.exists() {
                let store = open_store(cfg).await?;
                store.ping().await?;
                Ok(format!("embedded store {} opens", path.display()))
            } else {
                embedded_can_be_created(path)
            }
        }
    }
}
