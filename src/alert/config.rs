//! `[alerts]` and `[[alerts.rules]]` of the aggregator config (every key is
//! documented in `docs/config.md`, section "Alerts", and `docs/alerts.md`).
//!
//! The aggregator's config keeps the section as raw TOML (the `aggregate` layer
//! knows nothing of alerts); [`AlertsConfig::from_aggregator`] parses it with the
//! same strictness: unknown keys are refused by name.
//!
//! Every rule kind has one built-in default in [`DEFAULTS`]; an `[[alerts.rules]]`
//! entry names its kind and changes only the keys it sets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::aggregate::config::AggregatorConfig;

/// The rule kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Unprofitable,
    MinerEfficiency,
    GpuIdleBurn,
    DeviceOffline,
    AgentSilent,
    LowCoverage,
    MarketStale,
    MeterGap,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Unprofitable,
        Kind::MinerEfficiency,
        Kind::GpuIdleBurn,
        Kind::DeviceOffline,
        Kind::AgentSilent,
        Kind::LowCoverage,
        Kind::MarketStale,
        Kind::MeterGap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Unprofitable => "unprofitable",
            Kind::MinerEfficiency => "miner_efficiency",
            Kind::GpuIdleBurn => "gpu_idle_burn",
            Kind::DeviceOffline => "device_offline",
            Kind::AgentSilent => "agent_silent",
            Kind::LowCoverage => "low_coverage",
            Kind::MarketStale => "market_stale",
            Kind::MeterGap => "meter_gap",
        }
    }

    pub fn default_rule(self) -> &'static RuleDefault {
        DEFAULTS.iter().find(|d| d.kind == self).expect("every kind has a default")
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a value breaches its threshold by being below or above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Below,
    Above,
}

/// One kind's built-in rule. The Grafana rule file in `dashboards/` carries the
/// same figures where its queries can express them; `tests/alert_rules.rs` checks it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleDefault {
    pub kind: Kind,
    pub severity: &'static str,
    /// The threshold, in `unit`.
    pub threshold: f64,
    /// Where the alert resolves (hysteresis); equal to `threshold` for none.
    pub clear: f64,
    pub direction: Direction,
    pub unit: &'static str,
    pub for_s: u64,
    /// How much data each evaluation looks at (0: the kind's own, see `window_for`).
    pub window_s: u64,
    /// `gpu_idle_burn`: utilisation below which a GPU counts as idle.
    pub util_below_pct: f64,
    pub enabled: bool,
}

/// The defaults, one per kind.
pub const DEFAULTS: &[RuleDefault] = &[
    // Profit per IT kWh (revenue per kWh minus the energy cost per kWh at the
    // site's tariff and PUE) below 0: the workload earns less than its break-even.
    RuleDefault {
        kind: Kind::Unprofitable,
        severity: "warning",
        threshold: 0.0,
        clear: 0.0,
        direction: Direction::Below,
        unit: "USD/kWh",
        for_s: 900,
        window_s: 300,
        util_below_pct: 0.0,
        enabled: true,
    },
    // Measured J/TH worse than the model's nominal, or than the miner's own
    // trailing baseline, by more than the makers' own tolerance (10 %); resolves
    // under 5 %.
    RuleDefault {
        kind: Kind::MinerEfficiency,
        severity: "warning",
        threshold: 10.0,
        clear: 5.0,
        direction: Direction::Above,
        unit: "% over nominal or baseline J/TH",
        for_s: 1800,
        window_s: 900,
        util_below_pct: 0.0,
        enabled: true,
    },
    RuleDefault {
        kind: Kind::GpuIdleBurn,
        severity: "warning",
        threshold: 150.0,
        clear: 150.0,
        direction: Direction::Above,
        unit: "W",
        for_s: 900,
        window_s: 600,
        util_below_pct: 10.0,
        enabled: true,
    },
    // No healthy reading for this many `max_gap` intervals.
    RuleDefault {
        kind: Kind::DeviceOffline,
        severity: "critical",
        threshold: 3.0,
        clear: 3.0,
        direction: Direction::Above,
        unit: "max_gap intervals",
        for_s: 0,
        window_s: 0,
        util_below_pct: 0.0,
        enabled: true,
    },
    RuleDefault {
        kind: Kind::AgentSilent,
        severity: "critical",
        threshold: 600.0,
        clear: 600.0,
        direction: Direction::Above,
        unit: "s",
        for_s: 0,
        window_s: 6 * 3600,
        util_below_pct: 0.0,
        enabled: true,
    },
    RuleDefault {
        kind: Kind::LowCoverage,
        severity: "warning",
        threshold: 0.9,
        clear: 0.95,
        direction: Direction::Below,
        unit: "coverage",
        for_s: 900,
        window_s: 300,
        util_below_pct: 0.0,
        enabled: true,
    },
    // Market data older than this many seconds (0: `[market] max_age`).
    RuleDefault {
        kind: Kind::MarketStale,
        severity: "warning",
        threshold: 0.0,
        clear: 0.0,
        direction: Direction::Above,
        unit: "s",
        for_s: 600,
        window_s: 7 * 86_400,
        util_below_pct: 0.0,
        enabled: true,
    },
    // A group meter (site, feeder, container) and the devices it feeds disagree by
    // more than 15 % of the meter's energy, either way, over a window the meter
    // covered. A site meter also sees cooling and losses: set the threshold of a
    // `site`-scoped rule above the site's overhead. Resolves under 10 %.
    RuleDefault {
        kind: Kind::MeterGap,
        severity: "warning",
        threshold: 15.0,
        clear: 10.0,
        direction: Direction::Above,
        unit: "% of the meter's energy",
        for_s: 1800,
        window_s: 3600,
        util_below_pct: 0.0,
        enabled: true,
    },
];

/// `alertmanager_url = "…"` or `alertmanager_url = ["…", "…"]` (an HA pair).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn urls(&self) -> Vec<String> {
        match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub alertmanager_url: OneOrMany,
    pub webhook_url: Option<String>,
    pub webhook_secret_file: Option<PathBuf>,
    /// A firing alert is sent to Alertmanager again this often.
    #[serde(default = "default_resend", with = "crate::config::duration")]
    pub resend_interval: Duration,
    /// Per delivery request.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// How often rules are evaluated; `[aggregator] interval` when unset.
    #[serde(default, with = "opt_duration")]
    pub interval: Option<Duration>,
    /// Where alert state survives restarts; relative paths are relative to the
    /// config file's folder.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// The page linked from each alert's annotations; `http://[api] listen/` when unset.
    pub page_url: Option<String>,
    /// Resolved alerts kept for `GET /api/alerts`.
    #[serde(default = "default_history")]
    pub history: usize,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            alertmanager_url: OneOrMany::None,
            webhook_url: None,
            webhook_secret_file: None,
            resend_interval: default_resend(),
            timeout: default_timeout(),
            interval: None,
            state_file: default_state_file(),
            page_url: None,
            history: default_history(),
            rules: vec![],
        }
    }
}

/// `[[alerts.rules]]`: an override of one kind's default, optionally for one scope.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub kind: Kind,
    /// The `alertname`; the kind's name when unset. Two rules of one kind need distinct names.
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub severity: Option<String>,
    pub threshold: Option<f64>,
    pub clear: Option<f64>,
    #[serde(default, rename = "for", with = "opt_duration")]
    pub for_: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub keep_firing_for: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub window: Option<Duration>,
    pub util_below_pct: Option<f64>,
    /// Scope: only this site, workload, device kind (`gpu`, `asic`) or device id.
    pub site: Option<String>,
    pub workload: Option<String>,
    pub device_kind: Option<String>,
    pub device: Option<String>,
}

/// One rule as the engine runs it: a default with the overrides applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub kind: Kind,
    pub name: String,
    pub severity: String,
    pub threshold: f64,
    pub clear: f64,
    pub direction: Direction,
    pub unit: String,
    pub for_s: f64,
    pub keep_firing_for_s: f64,
    pub window_s: f64,
    pub util_below_pct: f64,
    pub site: Option<String>,
    pub workload: Option<String>,
    pub device_kind: Option<String>,
    pub device: Option<String>,
}

impl Rule {
    pub fn from_default(d: &RuleDefault) -> Rule {
        Rule {
            kind: d.kind,
            name: d.kind.as_str().to_string(),
            severity: d.severity.to_string(),
            threshold: d.threshold,
            clear: d.clear,
            direction: d.direction,
            unit: d.unit.to_string(),
            for_s: d.for_s as f64,
            keep_firing_for_s: 0.0,
            window_s: d.window_s as f64,
            util_below_pct: d.util_below_pct,
            site: None,
            workload: None,
            device_kind: None,
            device: None,
        }
    }

    /// Fills what the default takes from the aggregator's config: `device_offline`
    /// looks back `[aggregator] fleet_lookback`; `market_stale` fires past
    /// `[market] max_age`.
    fn with_config_defaults(mut self, cfg: &AggregatorConfig) -> Rule {
        if self.window_s == 0.0 {
            self.window_s = cfg.aggregator.fleet_lookback.as_secs_f64();
        }
        if self.kind == Kind::MarketStale && self.threshold == 0.0 {
            self.threshold = cfg.market.max_age.as_secs_f64();
            self.clear = self.threshold;
        }
        self
    }

    /// True when `value` is past the threshold.
    pub fn breached(&self, value: f64) -> bool {
        match self.direction {
            Direction::Below => value < self.threshold,
            Direction::Above => value > self.threshold,
        }
    }

    /// True when `value` is back past the clear level (hysteresis).
    pub fn cleared(&self, value: f64) -> bool {
        match self.direction {
            Direction::Below => value >= self.clear,
            Direction::Above => value <= self.clear,
        }
    }

    /// True when the scope admits a device or workload with these labels.
    pub fn admits(
        &self,
        site: Option<&str>,
        workload: Option<&str>,
        device_kind: Option<&str>,
        device: Option<&str>,
    ) -> bool {
        let ok = |want: &Option<String>, got: Option<&str>| want.as_deref().is_none_or(|w| got == Some(w));
        ok(&self.site, site)
            && ok(&self.workload, workload)
            && ok(&self.device_kind, device_kind)
            && ok(&self.device, device)
    }
}

fn yes() -> bool {
    true
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_state_file() -> PathBuf {
    PathBuf::from("wattledger-alerts.json")
}
fn default_history() -> usize {
    100
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

impl AlertsConfig {
    /// The `[alerts]` section of an aggregator config (defaults when absent).
    /// `config_dir` anchors a relative `state_file` and `webhook_secret_file`.
    pub fn from_aggregator(cfg: &AggregatorConfig, config_dir: &Path) -> Result<AlertsConfig, String> {
        let mut out: AlertsConfig = match &cfg.alerts {
            None => AlertsConfig::default(),
            Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| format!("[alerts]: {}", e.message()))?,
        };
        if out.state_file.is_relative() {
            out.state_file = config_dir.join(&out.state_file);
        }
        if let Some(f) = &out.webhook_secret_file {
            if f.is_relative() {
                out.webhook_secret_file = Some(config_dir.join(f));
            }
        }
        out.rules(cfg)?;
        for url in out.alertmanager_url.urls().iter().chain(out.webhook_url.iter()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("[alerts] `{url}` is not an http:// or https:// URL"));
            }
        }
        if out.webhook_url.is_some() != out.webhook_secret_file.is_some() {
            return Err("[alerts] webhook_url and webhook_secret_file go together: every webhook body is signed".into());
        }
        if out.resend_interval.is_zero() || out.timeout.is_zero() {
            return Err("[alerts] resend_interval and timeout must be positive".into());
        }
        Ok(out)
    }

    /// The rules the engine runs: each kind's default unless `[[alerts.rules]]`
    /// names the kind, then one rule per entry, the default with its keys applied.
    pub fn rules(&self, cfg: &AggregatorConfig) -> Result<Vec<Rule>, String> {
        let mut out = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for kind in Kind::ALL {
            let d = kind.default_rule();
            let entries: Vec<&RuleConfig> = self.rules.iter().filter(|r| r.kind == kind).collect();
            if entries.is_empty() {
                if d.enabled {
                    out.push(Rule::from_default(d).with_config_defaults(cfg));
                }
                continue;
            }
            for e in entries {
                let mut r = Rule::from_default(d);
                let at = format!("[[alerts.rules]] kind = \"{kind}\"");
                if let Some(n) = &e.name {
                    if n.is_empty() {
                        return Err(format!("{at}: name must not be empty"));
                    }
                    r.name = n.clone();
                }
                if !names.insert(r.name.clone()) {
                    return Err(format!("{at}: alertname {:?} is used twice; give each rule its own `name`", r.name));
                }
                if let Some(s) = &e.severity {
                    r.severity = s.clone();
                }
                for (key, v) in [("threshold", e.threshold), ("clear", e.clear), ("util_below_pct", e.util_below_pct)] {
                    if v.is_some_and(|v| !v.is_finite()) {
                        return Err(format!("{at}: {key} must be a number"));
                    }
                }
                if let Some(t) = e.threshold {
                    r.threshold = t;
                    r.clear = e.clear.unwrap_or(t);
                }
                if let Some(c) = e.clear {
                    r.clear = c;
                }
                if r.breached(r.clear) {
                    return Err(format!(
                        "{at}: clear = {} is itself past threshold = {}; an alert could never resolve",
                        r.clear, r.threshold
                    ));
                }
                if let Some(f) = e.for_ {
                    r.for_s = f.as_secs_f64();
                }
                if let Some(k) = e.keep_firing_for {
                    r.keep_firing_for_s = k.as_secs_f64();
                }
                if let Some(w) = e.window {
                    if w.is_zero() {
                        return Err(format!("{at}: window must be positive"));
                    }
                    r.window_s = w.as_secs_f64();
                }
                if let Some(u) = e.util_below_pct {
                    r.util_below_pct = u;
                }
                if let Some(w) = &e.workload {
                    if !cfg.workloads.iter().any(|x| &x.name == w) {
                        return Err(format!("{at}: workload {w:?} is not a [[workloads]] name"));
                    }
                }
                if let Some(s) = &e.site {
                    if !cfg.sites.contains_key(s) {
                        return Err(format!("{at}: site {s:?} has no [sites.{s}] section"));
                    }
                }
                if let Some(k) = &e.device_kind {
                    if !["gpu", "asic"].contains(&k.as_str()) {
                        return Err(format!("{at}: device_kind is `gpu` or `asic`, got {k:?}"));
                    }
                }
                (r.site, r.workload, r.device_kind, r.device) =
                    (e.site.clone(), e.workload.clone(), e.device_kind.clone(), e.device.clone());
                if e.enabled.unwrap_or(d.enabled) {
                    out.push(r.with_config_defaults(cfg));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(extra: &str) -> AggregatorConfig {
        let toml = format!(
            "[store]\nkind = \"embedded\"\npath = \"x.db\"\n[sites.a]\nenergy_usd_per_kwh = 0.05\n\
             [[workloads]]\nname = \"h\"\nmodel = \"ai_contract\"\nusd_per_gpu_hour = 2.0\n{extra}"
        );
        crate::config::from_str(&toml, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn defaults_cover_every_kind_and_overrides_apply() {
        let a = AlertsConfig::from_aggregator(&agg(""), Path::new("/etc/w")).unwrap();
        assert_eq!(a.state_file, Path::new("/etc/w/wattledger-alerts.json"));
        let rules = a.rules(&agg("")).unwrap();
        assert_eq!(rules.len(), Kind::ALL.len());
        let cfg = agg("[alerts]\nalertmanager_url = [\"http://127.0.0.1:9093\", \"http://127.0.0.1:9094\"]\n\
             [[alerts.rules]]\nkind = \"gpu_idle_burn\"\nfor = \"5m\"\nthreshold = 200\n\
             [[alerts.rules]]\nkind = \"agent_silent\"\nenabled = false\n");
        let a = AlertsConfig::from_aggregator(&cfg, Path::new(".")).unwrap();
        assert_eq!(a.alertmanager_url.urls().len(), 2);
        let rules = a.rules(&cfg).unwrap();
        assert_eq!(rules.len(), Kind::ALL.len() - 1);
        let idle = rules.iter().find(|r| r.kind == Kind::GpuIdleBurn).unwrap();
        assert_eq!((idle.for_s, idle.threshold, idle.clear, idle.util_below_pct), (300.0, 200.0, 200.0, 10.0));
    }

    #[test]
    fn example_config_alerts_load() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/aggregator.toml");
        std::env::set_var("WATTLEDGER_API_TOKEN", "example-token");
        let cfg = AggregatorConfig::load(&path).unwrap();
        let a = AlertsConfig::from_aggregator(&cfg, Path::new("/etc/wattledger")).unwrap();
        assert_eq!(a.alertmanager_url.urls().len(), 2);
        let rules = a.rules(&cfg).unwrap();
        assert_eq!(rules.len(), Kind::ALL.len());
        let cov = rules.iter().find(|r| r.kind == Kind::LowCoverage).unwrap();
        assert_eq!((cov.window_s, cov.clear, cov.keep_firing_for_s), (3600.0, 0.95, 600.0));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |extra: &str| AlertsConfig::from_aggregator(&agg(extra), Path::new(".")).unwrap_err();
        assert!(err("[alerts]\nalertmanager_urls = \"x\"\n").contains("alertmanager_urls"));
        assert!(err("[[alerts.rules]]\nkind = \"gpu_idle\"\n").contains("gpu_idle"));
        assert!(
            err("[[alerts.rules]]\nkind = \"low_coverage\"\nthreshold = 0.9\nclear = 0.5\n").contains("never resolve")
        );
        assert!(err("[[alerts.rules]]\nkind = \"unprofitable\"\nworkload = \"nope\"\n").contains("nope"));
        assert!(err("[alerts]\nwebhook_url = \"http://127.0.0.1:1/\"\n").contains("webhook_secret_file"));
        assert!(err("[[alerts.rules]]\nkind = \"unprofitable\"\n[[alerts.rules]]\nkind = \"unprofitable\"\n")
            .contains("twice"));
    }
}
