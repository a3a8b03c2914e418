//! The agent's configuration file (`wattledger agent --config F`). Every key is
//! documented in `docs/config.md` under `## Agent`; examples per rig type live in
//! `agents/examples/` and are loaded by a test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::agent::spool::FsyncPolicy;
use crate::collect::inference::InferenceServerConfig;
pub use crate::collect::meters::MetersConfig;
pub use crate::collect::miners::fleet::MinersConfig;
use crate::config::{ConfigError, KeyError};
pub use crate::ledger::writer::LedgerConfig;
use crate::ship::SinkConfig;
use crate::store::{StoreConfig, StoreKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub agent: AgentSection,
    /// Where points go: one or more sinks (InfluxDB v1 or v2 API; the
    /// aggregator's ingest speaks v2), each with its own spool cursor.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Deprecated single output (the same keys as the aggregator's `[store]`);
    /// accepted as one sink. Use `[[sinks]]`.
    pub store: Option<StoreConfig>,
    pub gpus: Option<GpusConfig>,
    /// `[miners]`: the section is defined beside the code that reads it.
    pub miners: Option<MinersConfig>,
    #[serde(default)]
    pub inference: Vec<InferenceServerConfig>,
    /// `[meters]`: PDUs, BMCs, Modbus meters and smart plugs (`collect::meters`).
    pub meters: Option<MetersConfig>,
    #[serde(default)]
    pub workloads: WorkloadsConfig,
    /// `[ledger]`: the energy ledger, defined beside the code that writes it.
    #[serde(default)]
    pub ledger: LedgerConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Tag `site` on every point.
    pub site: String,
    /// Tag `host` on every point; the machine's hostname when absent.
    pub host: Option<String>,
    /// Tag `group` on every point: the rack, container or feeder this agent's
    /// devices are in, which a `group` meter channel of that name is reconciled
    /// against. Absent: the devices are only in their site's group.
    pub group: Option<String>,
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Bound of the spool on disk; past it the oldest unconfirmed points are dropped.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Most points in one write request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a collected point waits before it is shipped.
    #[serde(default = "default_batch_interval", with = "crate::config::duration")]
    pub batch_interval: Duration,
    /// How often the `agent` self-telemetry point is written.
    #[serde(default = "default_self_interval", with = "crate::config::duration")]
    pub self_telemetry_interval: Duration,
    /// Serve Prometheus `/metrics` on this address (off when absent).
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve the GPU readings under dcgm-exporter's field names and labels.
    #[serde(default)]
    pub metrics_dcgm_names: bool,
    /// On SIGTERM/SIGINT, how long to keep shipping the spool before exiting.
    #[serde(default = "default_shutdown_timeout", with = "crate::config::duration")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpusConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Path of `libnvidia-ml.so.1`; the system's loader search path when absent.
    pub nvml_lib: Option<PathBuf>,
    #[serde(default = "default_gpu_interval", with = "crate::config::duration")]
    pub interval: Duration,
}

/// Which workload a device belongs to (tag `workload`). The most specific rule
/// wins: a GPU's UUID before its index, a miner's exact address before the
/// narrowest CIDR range containing it, then `default`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadsConfig {
    pub default: Option<String>,
    /// GPU UUID (`GPU-…`) or index (`"0"`) → workload.
    #[serde(default)]
    pub gpus: BTreeMap<String, String>,
    /// Miner address (`10.0.0.5`, `10.0.0.5:4028`) or range (`10.0.1.0/24`) → workload.
    #[serde(default)]
    pub miners: BTreeMap<String, String>,
    /// Inference server name → workload.
    #[serde(default)]
    pub inference: BTreeMap<String, String>,
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/wattledger-agent/spool")
}
fn default_spool_max_bytes() -> u64 {
    1 << 30
}
fn default_batch_size() -> usize {
    5000
}
fn default_batch_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_self_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}
fn default_gpu_interval() -> Duration {
    Duration::from_secs(1)
}

impl AgentConfig {
    /// Loads and checks a config file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let cfg: AgentConfig = crate::config::load(path)?;
        cfg.validate().map_err(|error| ConfigError::Key { path: path.to_owned(), error })?;
        Ok(cfg)
    }

    pub fn from_toml(raw: &str) -> Result<AgentConfig, ConfigError> {
        let origin = Path::new("<agent config>");
        let cfg: AgentConfig = crate::config::from_str(raw, origin)?;
        cfg.validate().map_err(|error| ConfigError::Key { path: origin.to_owned(), error })?;
        Ok(cfg)
    }

    /// Checks what serde cannot: values in range, names unique, ranges parse. The
    /// error names the key path (`agent.batch_size`, `sinks[1].name`).
    pub fn validate(&self) -> Result<(), KeyError> {
        let a = &self.agent;
        if a.site.trim().is_empty() {
            return Err(KeyError::new("agent.site", "must not be empty"));
        }
        if a.batch_size == 0 {
            return Err(KeyError::new("agent.batch_size", "must be at least 1"));
        }
        if a.spool_max_bytes < 64 * 1024 {
            return Err(KeyError::new(
                "agent.spool_max_bytes",
                format!("{} is too small; use at least 65536", a.spool_max_bytes),
            ));
        }
        for (key, d) in [("batch_interval", a.batch_interval), ("self_telemetry_interval", a.self_telemetry_interval)] {
            if d.is_zero() {
                return Err(KeyError::new(format!("agent.{key}"), "must be longer than 0s"));
            }
        }
        match (&self.store, self.sinks.is_empty()) {
            (Some(_), false) => {
                return Err(KeyError::new(
                    "store",
                    "both [store] and [[sinks]] are set; move the [store] output into [[sinks]]",
                ))
            }
            (None, true) => {
                return Err(KeyError::new(
                    "sinks",
                    "no sinks: add a [[sinks]] section, e.g. type = \"influxdb_v2\" with url and bucket",
                ))
            }
            (Some(store), true) => {
                if store.kind == StoreKind::Influxdb && store.url.as_deref().unwrap_or("").is_empty() {
                    return Err(KeyError::new("store.url", "is required, e.g. url = \"http://127.0.0.1:8086\""));
                }
            }
            (None, false) => {}
        }
        let mut sink_names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let name = s.name();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(KeyError::new(
                    format!("sinks[{i}].name"),
                    format!(
                        "`{name}` may hold only letters, digits, `_` and `-` (it names the sink's spool cursor file)"
                    ),
                ));
            }
            if !sink_names.insert(name) {
                return Err(KeyError::new(
                    format!("sinks[{i}].name"),
                    format!("`{name}` is used twice; give each sink its own `name`"),
                ));
            }
            s.validate().map_err(|e| e.within(&format!("sinks[{i}]")))?;
        }
        if let Some(g) = &self.gpus {
            if g.interval.is_zero() {
                return Err(KeyError::new("gpus.interval", "must be longer than 0s"));
            }
        }
        if let Some(m) = &self.miners {
            if m.targets.is_empty() {
                return Err(KeyError::new(
                    "miners.targets",
                    "is empty; list HOST[:PORT] or CIDR ranges, or remove [miners]",
                ));
            }
            m.build().map_err(|e| KeyError::new("miners.targets", e.to_string()))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.inference.iter().enumerate() {
            s.validate().map_err(|e| e.within(&format!("inference[{i}]")))?;
            if !names.insert(s.name.as_str()) {
                return Err(KeyError::new(
                    format!("inference[{i}].name"),
                    format!("`{}` is used twice; names must be unique", s.name),
                ));
            }
        }
        if let Some(m) = &self.meters {
            m.validate().map_err(|e| e.within("meters"))?;
        }
        let gpus_on = self.gpus.as_ref().is_some_and(|g| g.enabled);
        if !gpus_on && self.miners.is_none() && self.inference.is_empty() && self.meters.is_none() {
            return Err(KeyError::new(
                "agent",
                "no sources: enable [gpus], list [miners] targets, add an [[inference]] server or [[meters.devices]]",
            ));
        }
        crate::agent::workloads::WorkloadMap::new(&self.workloads).map_err(|e| e.within("workloads"))?;
        self.ledger.validate().map_err(|e| e.within("ledger"))?;
        Ok(())
    }

    /// The `host` tag: the configured one or the machine's hostname.
    pub fn host(&self) -> String {
        self.agent.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(hostname)
    }
}

/// The machine's hostname (Linux `/proc`, then `$HOSTNAME`), `localhost` otherwise.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[agent]
site = "lab"
[store]
kind = "influxdb"
url = "http://127.0.0.1:8086"
[gpus]
"#;

    #[test]
    fn defaults_apply() {
        let c = AgentConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(c.agent.spool_max_bytes, 1 << 30);
        assert_eq!(c.agent.fsync, FsyncPolicy::Always);
        assert_eq!(c.gpus.as_ref().unwrap().interval, Duration::from_secs(1));
        assert!(c.agent.metrics_listen.is_none());
        assert!(!c.host().is_empty());
        assert_eq!(c.ledger, LedgerConfig::default());
        assert_eq!(c.ledger.interval, Duration::from_secs(60));
        let err = AgentConfig::from_toml(&format!("{MINIMAL}[ledger]\ninterval = \"0s\"\n")).unwrap_err();
        assert!(err.to_string().contains("[ledger] interval"), "{err}");
    }

    const SINKS: &str = r#"
[agent]
site = "lab"
[[sinks]]
type = "influxdb_v1"
name = "influx"
url = "http://127.0.0.1:8086"
database = "wattledger"
[[sinks]]
type = "influxdb_v2"
url = "http://127.0.0.1:8428"
bucket = "wattledger"
[gpus]
"#;

    #[test]
    fn sinks_load_and_are_checked() {
        let c = AgentConfig::from_toml(SINKS).unwrap();
        let names: Vec<&str> = c.sinks.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["influx", "influxdb_v2"]);
        assert!(c.store.is_none());
        let err = AgentConfig::from_toml(&SINKS.replace("name = \"influx\"", "name = \"influxdb_v2\"")).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        let err = AgentConfig::from_toml(&SINKS.replace("database = \"wattledger\"\n", "")).unwrap_err();
        assert!(err.to_string().contains("`database` is required"), "{err}");
        let err = AgentConfig::from_toml(&SINKS.replace("influxdb_v1", "kafka")).unwrap_err();
        assert!(err.to_string().contains("kafka"), "{err}");
        let err = AgentConfig::from_toml(&SINKS.replace("name = \"influx\"", "name = \"a/b\"")).unwrap_err();
        assert!(err.to_string().contains("a/b"), "{err}");
        let err =
            AgentConfig::from_toml(&SINKS.replace("[gpus]", "[store]\nkind = \"embedded\"\npath = \"x\"\n[gpus]"))
                .unwrap_err();
        assert!(err.to_string().contains("both [store] and [[sinks]]"), "{err}");
        let err = AgentConfig::from_toml("[agent]\nsite = \"lab\"\n[gpus]\n").unwrap_err();
        assert!(err.to_string().contains("no sinks"), "{err}");
    }

    #[test]
    fn errors_name_the_key_path() {
        // Through the loader: its error is typed and keeps the key path.
        let key = |raw: &str| match AgentConfig::from_toml(raw) {
            Err(ConfigError::Key { error, .. }) => error.at,
            other => panic!("expected a key error, got {other:?}"),
        };
        assert_eq!(key(&SINKS.replace("name = \"influx\"", "name = \"influxdb_v2\"")), "sinks[1].name");
        assert_eq!(key(&SINKS.replace("database = \"wattledger\"\n", "")), "sinks[0].database");
        assert_eq!(key(&MINIMAL.replace("[gpus]", "[gpus]\ninterval = \"0s\"")), "gpus.interval");
        assert_eq!(key(&MINIMAL.replace("site = \"lab\"", "site = \"lab\"\nbatch_size = 0")), "agent.batch_size");
        assert_eq!(key(&format!("{MINIMAL}[ledger]\ninterval = \"0s\"\n")), "ledger.interval");
        assert_eq!(
            key(&format!("{MINIMAL}[workloads.miners]\n\"192.0.2.0/33\" = \"w\"\n")),
            "workloads.miners.\"192.0.2.0/33\""
        );
        let plug = "[[meters.devices]]\nname = \"p\"\nurl = \"tasmota://192.0.2.9\"\n";
        assert_eq!(key(&format!("{MINIMAL}[meters]\ninterval = \"0s\"\n{plug}")), "meters.interval");
        assert_eq!(
            key(&format!("{MINIMAL}[meters]\n{plug}{}", plug.replace("tasmota:", "nosuch:"))),
            "meters.devices[1].name"
        );
        assert_eq!(
            key(&format!("{MINIMAL}[meters]\n{}", plug.replace("tasmota:", "nosuch:"))),
            "meters.devices[0].url"
        );
        let server = "[[inference]]\nname = \"llm\"\nkind = \"vllm\"\nurl = \"ftp://192.0.2.5/metrics\"\n";
        assert_eq!(key(&format!("{MINIMAL}{server}")), "inference[0].url");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = AgentConfig::from_toml(&MINIMAL.replace("[gpus]", "[gpus]\nintervall = \"1s\"")).unwrap_err();
        assert!(err.to_string().contains("intervall"), "{err}");
        let err = AgentConfig::from_toml(&MINIMAL.replace("site = \"lab\"", "site = \"lab\"\nfsync = \"sometimes\""))
            .unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        let err = AgentConfig::from_toml(&MINIMAL.replace("[gpus]", "[gpus]\nenabled = false")).unwrap_err();
        assert!(err.to_string().contains("no sources"), "{err}");
        let err = AgentConfig::from_toml(&format!("{MINIMAL}[workloads]\nminers = {{ \"10.0.0.0/33\" = \"x\" }}\n"))
            .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
    }
}
