//! `wattledger check --config F`: validates a config file and contacts what it names.
//!
//! Today it checks the `[store]` section, which the agent's and the aggregator's
//! configs share: the keys, the secrets (`${ENV}` and `*_file`), and then the store
//! itself (reachable, credentials accepted, database present). [`check_store`] is
//! the reusable part; the other sections' validators plug in beside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::Args;

use crate::store::{open_store, StoreConfig, StoreError, StoreKind};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to check (agent or aggregator).
    #[arg(long, short)]
    pub config: PathBuf,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_store_section(&args.config)?;
    let summary = check_store(&cfg)
        .await
        .with_context(|| format!("{}: [store]", args.config.display()))?;
    println!("{}: [store] ok: {summary}", args.config.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads `[store]` from any wattledger config file, with `${ENV}` expanded and
/// unknown keys refused by name.
pub fn load_store_section(path: &Path) -> anyhow::Result<StoreConfig> {
    let table: toml::Table = crate::config::load(path)?;
    let store = table
        .get("store")
        .ok_or_else(|| anyhow!("{}: no [store] section; add one (see docs/config.md, section [store])", path.display()))?
        .clone();
    store
        .try_into::<StoreConfig>()
        .map_err(|e| anyhow!("{}: [store]: {}", path.display(), e.to_string().trim()))
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
