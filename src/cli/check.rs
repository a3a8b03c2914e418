//! `wattledger check --config F`: validates a config file and contacts everything
//! it names.
//!
//! The kind of file is told by its sections: an agent config has `[agent]`, an
//! aggregator config has `[[workloads]]` or `[sites]`, anything else is checked for
//! its `[store]` only. Each check prints one line (`ok` or `FAIL` with what to do);
//! the exit status is non-zero when any failed. [`check_store`] is the reusable part
//! shared by both kinds.

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
}

/// What `check` found for one thing the config names.
struct Line {
    what: String,
    result: Result<String, String>,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let path = &args.config;
    let table: toml::Table = crate::config::load(path)?;
    let lines = if table.contains_key("agent") {
        check_agent(path).await?
    } else if table.contains_key("workloads") || table.contains_key("sites") {
        check_aggregator(path).await?
    } else {
        let cfg = load_store_section(path)?;
        vec![Line { what: "[store]".into(), result: check_store(&cfg).await.map_err(|e| e.to_string()) }]
    };
    let mut failed = 0;
    for l in &lines {
        match &l.result {
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
    println!("{}: all {} checks passed", path.display(), lines.len());
    Ok(ExitCode::SUCCESS)
}

/// An agent config: every key, then the store it ships to, then one collection
/// from every source (NVML opened and read, every miner polled, every inference
/// server scraped), exactly as the agent would do it.
async fn check_agent(path: &Path) -> anyhow::Result<Vec<Line>> {
    let cfg = AgentConfig::load(path)?;
    cfg.validate().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut lines = vec![Line { what: "config".into(), result: Ok("agent config is valid".into()) }];
    if let Some(store) = &cfg.store {
        lines.push(Line { what: "[store]".into(), result: check_output(store).await });
    }
    for sink in &cfg.sinks {
        lines.push(Line { what: format!("sink {}", sink.name()), result: sink.healthcheck().await });
    }
    let sources = match crate::agent::sources_from_config(&cfg) {
        Ok(s) => s,
        Err(e) => {
            lines.push(Line { what: "sources".into(), result: Err(e.to_string()) });
            return Ok(lines);
        }
    };
    let now = crate::model::now_ns();
    for mut s in sources {
        let name = s.source.name().to_string();
        let result = match s.source.collect(now).await {
            Err(e) => Err(e.message),
            Ok(points) => Ok(summarize(&points)),
        };
        lines.push(Line { what: format!("source {name}"), result });
    }
    Ok(lines)
}

/// One line about what a source gave back: how many devices answered, and which
/// did not and why.
fn summarize(points: &[crate::model::Point]) -> String {
    let mut bad = Vec::new();
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
            bad.push(format!("{device} offline"));
        } else if let Some(s) = status {
            bad.push(format!("{device} {s}"));
        }
    }
    if bad.is_empty() {
        format!("{} devices read", points.len())
    } else {
        format!("{} devices read, {} not healthy: {}", points.len(), bad.len(), bad.join(", "))
    }
}

/// The agent's output may be a server that only takes writes (the aggregator's
/// ingest, VictoriaMetrics): when the InfluxQL check fails for a reason other than
/// credentials, fall back to `/ping`, which all of them answer.
async fn check_output(cfg: &StoreConfig) -> Result<String, String> {
    match check_store(cfg).await {
        Ok(s) => Ok(s),
        Err(e @ StoreError::Auth(_)) => Err(e.to_string()),
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
async fn check_aggregator(path: &Path) -> anyhow::Result<Vec<Line>> {
    let cfg = AggregatorConfig::load(path)?;
    cfg.validate().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut lines = vec![Line {
        what: "config".into(),
        result: Ok(format!("aggregator config is valid ({} workloads)", cfg.workloads.len())),
    }];
    // The aggregator refuses to serve this; say so before it is deployed.
    let api = match cfg.unauthenticated_exposure()? {
        Some(why) => Err(format!("the aggregator will refuse to start: {why}")),
        None if cfg.api.allow_unauthenticated => Ok(format!(
            "listen = {:?} with allow_unauthenticated = true: whatever has no token is open to anyone who can connect",
            cfg.api.listen
        )),
        None => Ok(format!("listen = {:?}: access is limited by its address or a token", cfg.api.listen)),
    };
    lines.push(Line { what: "[api]".into(), result: api });
    let alerts = crate::alert::config::AlertsConfig::from_aggregator(&cfg, super::aggregator::config_dir(path))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    lines.push(Line {
        what: "[alerts]".into(),
        result: alerts.rules(&cfg).map(|r| {
            format!(
                "{} rules; Alertmanager: {}; webhook: {}",
                r.len(),
                alerts.alertmanager_url.urls().len(),
                if alerts.webhook_url.is_some() { "yes" } else { "no" }
            )
        }),
    });
    lines.push(Line { what: "[store]".into(), result: check_store(&cfg.store).await.map_err(|e| e.to_string()) });
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
        lines.push(Line { what: "[market]".into(), result });
    }
    Ok(lines)
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
            let path = cfg.path.as_deref().ok_or_else(|| {
                crate::config::ConfigError::Invalid("`path` is required when kind = \"embedded\"".into())
            })?;
            if path.exists() {
                let store = open_store(cfg).await?;
                store.ping().await?;
                Ok(format!("embedded store {} opens", path.display()))
            } else {
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
        }
    }
}
