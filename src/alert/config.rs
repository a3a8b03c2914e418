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

use crate::aggregate::config::{AggregatorConfig, KeyError};
use crate::aggregate::fleet::{IdleRule, IDLE_GPU};

/// The rule kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Unprofitable,
    MinerEfficiency,
    HashrateLow,
    GpuIdleBurn,
    DeviceOffline,
    AgentSilent,
    LowCoverage,
    MarketStale,
    MeterGap,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Unprofitable,
        Kind::MinerEfficiency,
        Kind::HashrateLow,
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
            Kind::HashrateLow => "hashrate_low",
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

/// What a miner's figure is compared with (`miner_efficiency`, `hashrate_low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// The miner's own mean over the 6 h before the window.
    Baseline,
    /// The model's rated figure, where the model table has it.
    Rated,
    /// Both; the larger shortfall counts.
    Either,
}

impl Expected {
    pub fn baseline(self) -> bool {
        self != Expected::Rated
    }
    pub fn rated(self) -> bool {
        self != Expected::Baseline
    }
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
    /// How much data each evaluation looks at (0: `[aggregator] fleet_lookback`).
    pub window_s: u64,
    /// `gpu_idle_burn`: utilisation below which a GPU counts as idle.
    pub util_below_pct: f64,
    /// `miner_efficiency`, `hashrate_low`: what the miner is compared with.
    pub expected: Option<Expected>,
    pub enabled: bool,
}

impl RuleDefault {
    /// The keys most kinds leave as they are (no idle utilisation, no `expected`,
    /// enabled); each entry of [`DEFAULTS`] sets the rest.
    const BASE: RuleDefault = RuleDefault {
        kind: Kind::Unprofitable,
        severity: "warning",
        threshold: 0.0,
        clear: 0.0,
        direction: Direction::Above,
        unit: "",
        for_s: 0,
        window_s: 0,
        util_below_pct: 0.0,
        expected: None,
        enabled: true,
    };
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
        ..RuleDefault::BASE
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
        expected: Some(Expected::Either),
        ..RuleDefault::BASE
    },
    // Hashrate over the window below the miner's own trailing baseline by more
    // than 20 % (one hashboard of three gone is 33 %); resolves under 10 %. Not
    // against the rated hashrate by default: tuning firmwares (LuxOS, ePIC, Braiins)
    // run miners well under their rating on purpose.
    RuleDefault {
        kind: Kind::HashrateLow,
        severity: "warning",
        threshold: 20.0,
        clear: 10.0,
        direction: Direction::Above,
        unit: "% under expected hashrate",
        for_s: 900,
        window_s: 600,
        expected: Some(Expected::Baseline),
        ..RuleDefault::BASE
    },
    // The page's `idle` flag uses the same figures (`IDLE_GPU`).
    RuleDefault {
        kind: Kind::GpuIdleBurn,
        severity: "warning",
        threshold: IDLE_GPU.power_above_w,
        clear: IDLE_GPU.power_above_w,
        direction: Direction::Above,
        unit: "W",
        for_s: 900,
        window_s: 600,
        util_below_pct: IDLE_GPU.util_below_pct,
        ..RuleDefault::BASE
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
        ..RuleDefault::BASE
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
        ..RuleDefault::BASE
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
        ..RuleDefault::BASE
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
        ..RuleDefault::BASE
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
        ..RuleDefault::BASE
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
    /// `miner_efficiency`, `hashrate_low`: `baseline`, `rated` or `either`.
    pub expected: Option<Expected>,
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
    pub expected: Option<Expected>,
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
            expected: d.expected,
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

/// The idle-GPU thresholds the page shows: the first `gpu_idle_burn` rule that
/// covers every GPU (no `site`, `workload` or `device` scope), else the defaults.
pub fn idle_rule(rules: &[Rule]) -> IdleRule {
    rules
        .iter()
        .find(|r| r.kind == Kind::GpuIdleBurn && r.site.is_none() && r.workload.is_none() && r.device.is_none())
        .map_or(IDLE_GPU, |r| IdleRule { power_above_w: r.threshold, util_below_pct: r.util_below_pct })
}

impl AlertsConfig {
    /// The `[alerts]` section of an aggregator config (defaults when absent).
    /// `config_dir` anchors a relative `state_file` and `webhook_secret_file`.
    pub fn from_aggregator(cfg: &AggregatorConfig, config_dir: &Path) -> Result<AlertsConfig, KeyError> {
        let mut out: AlertsConfig = match &cfg.alerts {
            None => AlertsConfig::default(),
            Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| KeyError::new("alerts", e.message()))?,
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
        let am = out.alertmanager_url.urls().into_iter().map(|u| ("alerts.alertmanager_url", u));
        for (at, url) in am.chain(out.webhook_url.clone().map(|u| ("alerts.webhook_url", u))) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(KeyError::new(at, format!("`{url}` is not an http:// or https:// URL")));
            }
        }
        if out.webhook_url.is_some() != out.webhook_secret_file.is_some() {
            return Err(KeyError::new(
                "alerts.webhook_secret_file",
                "webhook_url and webhook_secret_file go together: every webhook body is signed",
            ));
        }
        for (at, d) in [("alerts.resend_interval", out.resend_interval), ("alerts.timeout", out.timeout)] {
            if d.is_zero() {
                return Err(KeyError::new(at, "must be positive"));
            }
        }
        Ok(out)
    }

    /// The rules the engine runs: each kind's default unless `[[alerts.rules]]`
    /// names the kind, then one rule per entry, the default with its keys applied.
    pub fn rules(&self, cfg: &AggregatorConfig) -> Result<Vec<Rule>, KeyError> {
        let mut out = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for &kind in Kind::ALL {
            let d = kind.default_rule();
            let entries: Vec<(usize, &RuleConfig)> =
                self.rules.iter().enumerate().filter(|(_, r)| r.kind == kind).collect();
            if entries.is_empty() {
                if d.enabled {
                    out.push(Rule::from_default(d).with_config_defaults(cfg));
                }
                continue;
            }
            for (i, e) in entries {
                let mut r = Rule::from_default(d);
                let err = |key: &str, problem: String| KeyError::new(format!("alerts.rules[{i}].{key}"), problem);
                if let Some(n) = &e.name {
                    if n.is_empty() {
                        return Err(err("name", "must not be empty".into()));
                    }
                    r.name = n.clone();
                }
                if !names.insert(r.name.clone()) {
                    return Err(err(
                        "name",
                        format!("alertname {:?} is used twice; give each rule of kind {kind} its own `name`", r.name),
                    ));
                }
                if let Some(s) = &e.severity {
                    r.severity = s.clone();
                }
                for (key, v) in [("threshold", e.threshold), ("clear", e.clear), ("util_below_pct", e.util_below_pct)] {
                    if v.is_some_and(|v| !v.is_finite()) {
                        return Err(err(key, "must be a number".into()));
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
                    return Err(err(
                        "clear",
                        format!(
                            "clear = {} is itself past threshold = {}; an alert could never resolve",
                            r.clear, r.threshold
                        ),
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
                        return Err(err("window", "must be positive".into()));
                    }
                    r.window_s = w.as_secs_f64();
                }
                if let Some(u) = e.util_below_pct {
                    r.util_below_pct = u;
                }
                if let Some(x) = e.expected {
                    if d.expected.is_none() {
                        return Err(err(
                            "expected",
                            format!("applies to miner_efficiency and hashrate_low only, not {kind}"),
                        ));
                    }
                    r.expected = Some(x);
                }
                if let Some(w) = &e.workload {
                    if !cfg.workloads.iter().any(|x| &x.name == w) {
                        return Err(err("workload", format!("{w:?} is not a [[workloads]] name")));
                    }
                }
                if let Some(s) = &e.site {
                    if !cfg.sites.contains_key(s) {
                        return Err(err("site", format!("{s:?} has no [sites.{s}] section")));
                    }
                }
                if let Some(k) = &e.device_kind {
                    if !["gpu", "asic"].contains(&k.as_str()) {
                        return Err(err("device_kind", format!("is `gpu` or `asic`, got {k:?}")));
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
        // The page's idle flag follows the configured rule, else the defaults.
        assert_eq!(idle_rule(&rules), IdleRule { power_above_w: 200.0, util_below_pct: 10.0 });
        assert_eq!(idle_rule(&AlertsConfig::default().rules(&agg("")).unwrap()), IDLE_GPU);
        let scoped = agg("[[alerts.rules]]\nkind = \"gpu_idle_burn\"\nworkload = \"h\"\nthreshold = 90\n");
        let a = AlertsConfig::from_aggregator(&scoped, Path::new(".")).unwrap();
        assert_eq!(idle_rule(&a.rules(&scoped).unwrap()), IDLE_GPU, "a rule for one workload is not the fleet's");
        let hash = rules.iter().find(|r| r.kind == Kind::HashrateLow).unwrap();
        assert_eq!((hash.threshold, hash.clear, hash.expected), (20.0, 10.0, Some(Expected::Baseline)));
        let cfg = agg("[[alerts.rules]]\nkind = \"hashrate_low\"\nexpected = \"either\"\n");
        let rules = AlertsConfig::from_aggregator(&cfg, Path::new(".")).unwrap().rules(&cfg).unwrap();
        let hash = rules.iter().find(|r| r.kind == Kind::HashrateLow).unwrap();
        assert_eq!(hash.expected, Some(Expected::Either));
    }

    #[test]
    fn every_kind_has_one_default_and_its_config_name() {
        assert_eq!(Kind::ALL.len(), DEFAULTS.len());
        for &k in Kind::ALL {
            assert_eq!(DEFAULTS.iter().filter(|d| d.kind == k).count(), 1, "{k}");
            let parsed: Kind = serde_json::from_value(serde_json::Value::String(k.as_str().into())).unwrap();
            assert_eq!(parsed, k);
        }
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
        let hash = rules.iter().find(|r| r.kind == Kind::HashrateLow).unwrap();
        assert_eq!((hash.expected, hash.threshold), (Some(Expected::Either), 20.0));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |extra: &str| AlertsConfig::from_aggregator(&agg(extra), Path::new(".")).unwrap_err().to_string();
        assert!(err("[alerts]\nalertmanager_urls = \"x\"\n").contains("alertmanager_urls"));
        assert!(err("[[alerts.rules]]\nkind = \"gpu_idle\"\n").contains("gpu_idle"));
        assert!(
            err("[[alerts.rules]]\nkind = \"low_coverage\"\nthreshold = 0.9\nclear = 0.5\n").contains("never resolve")
        );
        assert!(err("[[alerts.rules]]\nkind = \"unprofitable\"\nworkload = \"nope\"\n").contains("nope"));
        assert!(err("[alerts]\nwebhook_url = \"http://127.0.0.1:1/\"\n").contains("webhook_secret_file"));
        assert!(err("[[alerts.rules]]\nkind = \"unprofitable\"\n[[alerts.rules]]\nkind = \"unprofitable\"\n")
            .contains("twice"));
        assert!(err("[[alerts.rules]]\nkind = \"gpu_idle_burn\"\nexpected = \"rated\"\n").contains("hashrate_low only"));
        // The key's path names the entry.
        let cfg = agg(
            "[[alerts.rules]]\nkind = \"unprofitable\"\n[[alerts.rules]]\nkind = \"low_coverage\"\nwindow = \"0s\"\n",
        );
        let e = AlertsConfig::from_aggregator(&cfg, Path::new(".")).unwrap_err();
        assert_eq!((e.at.as_str(), e.problem.as_str()), ("alerts.rules[1].window", "must be positive"));
        assert!(err("[[alerts.rules]]\nkind = \"hashrate_low\"\nexpected = \"nominal\"\n").contains("nominal"));
    }
}
