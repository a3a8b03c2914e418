//! Revenue models: what a workload earns in a window, as pure functions of the
//! devices' measurements, market data and the workload's contract terms.
//!
//! One module per model, each a terms struct implementing [`RevenueModel`] and
//! [`Terms`], registered by one line in [`REVENUE_MODELS`]:
//! - [`bitcoin_fpps`]: accepted difficulty (or hashrate × hashprice) × an FPPS payout;
//! - [`ai_contract`]: $/GPU-hour for every GPU present and healthy;
//! - [`ai_on_demand`]: $/GPU-hour while measured utilization is at or above a threshold;
//! - [`ai_tokens`]: $ per million prompt and generation tokens.
//!
//! Models read each device's [`Sums`] over the window: accepted difficulty, hash
//! work, tokens, healthy and busy time, integrated by the same rules as energy
//! ([`crate::ledger::accumulator`]), from the energy ledger or from raw samples.
//! Nothing is counted across a gap longer than `max_gap`, so revenue and energy are
//! measured over the same covered time and their ratio stays honest. Counter resets
//! (reboots, server restarts) count the post-reset value, never a negative delta.
//! Revenue is never negative: every term is a non-negative count times a
//! non-negative price.

pub mod ai_contract;
pub mod ai_on_demand;
pub mod ai_tokens;
pub mod bitcoin_fpps;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

pub use crate::ledger::{DeviceSums, Sums};
use crate::signal::Window;

/// Every revenue model a `[[workloads]]` entry can name, in the order the docs
/// list them. Adding a model is its file plus one line here.
pub const REVENUE_MODELS: &[Registration] = &[
    register::<bitcoin_fpps::BitcoinFpps>(&bitcoin_fpps::INFO),
    register::<ai_contract::AiContract>(&ai_contract::INFO),
    register::<ai_on_demand::AiOnDemand>(&ai_on_demand::INFO),
    register::<ai_tokens::AiTokens>(&ai_tokens::INFO),
];

/// What a revenue model is, apart from its terms: its name in configs and in the
/// `kind` tag, what it reads and how its efficiency is shown.
#[derive(Debug, PartialEq)]
pub struct ModelInfo {
    /// The `model` value in `[[workloads]]` and the `kind` tag written back.
    pub name: &'static str,
    /// How the page titles it.
    pub title: &'static str,
    /// Which palette the page draws it in.
    pub family: Family,
    pub inputs: Inputs,
    /// The hardware efficiency shown beside revenue per kWh, if any.
    pub efficiency: Option<Efficiency>,
    /// Whether its pay follows the GPUs' use, so that a GPU drawing power while idle is
    /// lost money (the `gpu_idle_burn` alert); a reserved contract pays by the hour
    /// whether the GPU works or not.
    pub paid_by_use: bool,
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Serialized as its name, `"bitcoin_fpps"`, as in configs.
impl Serialize for ModelInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Mining,
    Ai,
}

/// The measurements a model needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// Where the workload's energy is measured: miners' or GPUs' power.
    pub energy_measurement: &'static str,
    /// Where the revenue's inputs are measured (counters, utilization, health).
    pub revenue_measurement: &'static str,
    /// Fields the revenue needs from `revenue_measurement`.
    pub revenue_fields: &'static [&'static str],
    /// Whether it needs `[market]` data (BTC price, difficulty, subsidy, fees).
    pub market: bool,
}

/// A hardware efficiency: which summary field holds it and its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Efficiency {
    /// IT energy ÷ hash work ([`Revenue::work_th`]), J/TH.
    JoulesPerTh,
    /// Tokens served ([`Revenue::tokens`]) ÷ IT energy, tok/J.
    TokensPerJoule,
}

impl Efficiency {
    /// The field of the comparison row that holds it.
    pub fn field(self) -> &'static str {
        match self {
            Efficiency::JoulesPerTh => "j_per_th",
            Efficiency::TokensPerJoule => "tokens_per_j",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Efficiency::JoulesPerTh => "J/TH",
            Efficiency::TokensPerJoule => "tok/J",
        }
    }
}

/// Bitcoin market data in effect for a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Market {
    /// When these values were observed (the price's own timestamp).
    pub time_ns: i64,
    pub btc_usd: f64,
    pub difficulty: f64,
    pub block_subsidy_btc: f64,
    pub fees_btc_per_block: f64,
}

impl Market {
    /// What one unit of accepted share difficulty is worth: a share of difficulty
    /// `d` is `d × 2^32` expected hashes, a block takes `difficulty × 2^32`, so
    /// `d` earns `d / difficulty` of a block reward.
    pub fn usd_per_share_difficulty(&self) -> f64 {
        if self.difficulty <= 0.0 {
            return 0.0;
        }
        (self.block_subsidy_btc + self.fees_btc_per_block).max(0.0) * self.btc_usd.max(0.0) / self.difficulty
    }

    /// Hashprice: expected USD for 1 PH/s over one day,
    /// `1e15 × 86400 / (difficulty × 2^32) × (subsidy + fees) × price`.
    pub fn hashprice_usd_per_phs_day(&self) -> f64 {
        1e15 * 86_400.0 / 4_294_967_296.0 * self.usd_per_share_difficulty()
    }
}

/// One device's measurements in and around a window: numeric fields as
/// `(time_ns, value)` tracks in time order, and whether the device reported itself
/// healthy at each sample (GPU `status == "ok"`, miner `online`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceTracks {
    /// Stable identity: `host/gpu-uuid`, `host/miner`, `host/server`.
    pub id: String,
    pub tracks: BTreeMap<String, Vec<(i64, f64)>>,
    pub healthy: Vec<(i64, bool)>,
}

impl DeviceTracks {
    pub fn track(&self, field: &str) -> &[(i64, f64)] {
        self.tracks.get(field).map_or(&[], |v| v.as_slice())
    }
}

/// What a workload earned in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Revenue {
    pub revenue_usd: f64,
    /// Miners: hash work done, in TH (∫ hashrate dt), for J/TH.
    pub work_th: Option<f64>,
    /// Inference: prompt + generation tokens served, for tokens per joule.
    pub tokens: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RevenueError {
    #[error("no market data (BTC price, difficulty, subsidy, fees) for this window; configure [market] or check that the market source is reachable")]
    NoMarket,
}

/// What the window computation hands to a model: the sums of each device of the
/// model's revenue measurement over the window.
#[derive(Debug, Clone, Copy)]
pub struct RevenueInput<'a> {
    pub devices: &'a [DeviceSums],
    pub window: Window,
    pub market: Option<&'a Market>,
}

/// A revenue model. Implementations hold the workload's contract terms.
pub trait RevenueModel: Send + Sync + fmt::Debug {
    fn info(&self) -> &'static ModelInfo;
    fn revenue(&self, input: &RevenueInput<'_>) -> Result<Revenue, RevenueError>;
    /// The utilisation threshold whose busy time the model reads, if any
    /// ([`Sums::busy_ns`]`[0]`).
    fn util_threshold_pct(&self) -> Option<f64> {
        None
    }
}

/// A model's terms as read from its `[[workloads]]` entry: the model struct itself,
/// deserialized with `deny_unknown_fields`, plus the checks serde cannot make.
pub trait Terms: RevenueModel + DeserializeOwned + 'static {
    /// Terms that build this model, as a `[[workloads]]` entry writes them (without
    /// `name` and `model`). The property tests vary their numbers.
    const EXAMPLE: &'static str;

    fn check(&self) -> Result<(), TermsError> {
        Ok(())
    }
}

/// A term that is missing, unknown to the model or out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{problem}")]
pub struct TermsError {
    /// The key at fault, when one is.
    pub key: Option<String>,
    pub problem: String,
}

impl TermsError {
    pub fn at(key: &str, problem: impl Into<String>) -> Self {
        TermsError { key: Some(key.to_string()), problem: problem.into() }
    }
}

/// `key = v` must be a finite number ≥ 0.
pub fn non_negative(key: &str, v: f64) -> Result<(), TermsError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(TermsError::at(key, format!("{key} = {v} must be ≥ 0")))
    }
}

/// A model paid by the GPU-hour: energy and revenue inputs both from the GPUs' own
/// measurement (`revenue_fields` says which GPU fields decide the paid time), no market.
pub const fn gpu_hour_info(
    name: &'static str,
    title: &'static str,
    revenue_fields: &'static [&'static str],
    paid_by_use: bool,
) -> ModelInfo {
    ModelInfo {
        name,
        title,
        family: Family::Ai,
        inputs: Inputs {
            energy_measurement: crate::model::schema::gpu::MEASUREMENT,
            revenue_measurement: crate::model::schema::gpu::MEASUREMENT,
            revenue_fields,
            market: false,
        },
        efficiency: None,
        paid_by_use,
    }
}

/// What `paid_ns` GPU-nanoseconds earn at `usd_per_gpu_hour` (a negative rate earns nothing).
pub fn gpu_hours_revenue(paid_ns: i64, usd_per_gpu_hour: f64) -> Revenue {
    Revenue { revenue_usd: paid_ns as f64 / 3.6e12 * usd_per_gpu_hour.max(0.0), work_th: None, tokens: None }
}

/// Builds a model from a workload's terms.
type BuildFn = fn(&'static ModelInfo, toml::Table) -> Result<Arc<dyn RevenueModel>, TermsError>;

/// One entry of [`REVENUE_MODELS`].
#[derive(Debug)]
pub struct Registration {
    pub info: &'static ModelInfo,
    /// [`Terms::EXAMPLE`] of the model.
    pub example_terms: &'static str,
    build: BuildFn,
}

const fn register<T: Terms>(info: &'static ModelInfo) -> Registration {
    Registration { info, example_terms: T::EXAMPLE, build: build_terms::<T> }
}

fn build_terms<T: Terms>(info: &'static ModelInfo, terms: toml::Table) -> Result<Arc<dyn RevenueModel>, TermsError> {
    let model: T = T::deserialize(toml::Value::Table(terms)).map_err(|e| {
        let msg = e.message().to_string();
        // serde says "unknown field `pool_fee`, expected `usd_per_gpu_hour`".
        match msg.strip_prefix("unknown field `").and_then(|r| r.split_once('`')) {
            Some((key, rest)) => TermsError::at(key, format!("`{key}` does not apply to model {}{rest}", info.name)),
            None => {
                let key = msg.strip_prefix("missing field `").and_then(|r| r.split_once('`')).map(|(k, _)| k);
                TermsError { key: key.map(str::to_string), problem: msg.replace("missing field", "needs") }
            }
        }
    })?;
    model.check()?;
    Ok(Arc::new(model))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown revenue model {name:?}; the models are {}", REVENUE_MODELS.iter().map(|r| r.info.name).collect::<Vec<_>>().join(", "))]
pub struct UnknownModel {
    pub name: String,
}

/// The registered model called `name`.
pub fn lookup(name: &str) -> Result<&'static Registration, UnknownModel> {
    REVENUE_MODELS.iter().find(|r| r.info.name == name).ok_or_else(|| UnknownModel { name: name.to_string() })
}

impl Registration {
    /// Builds the model with a workload's terms (its keys other than `name`,
    /// `model`, `site` and `max_gap`).
    pub fn build(&self, terms: toml::Table) -> Result<Arc<dyn RevenueModel>, TermsError> {
        (self.build)(self.info, terms)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::ledger::accumulator::{sums_over, Rules, Sample};

    pub const S: i64 = 1_000_000_000;

    /// One device's sums over `[start_s, end_s)` of `samples` (times in seconds),
    /// by the integration rules with `max_gap_s` and busy time at `threshold_pct`.
    pub fn device(
        id: &str,
        samples: &[Sample],
        start_s: i64,
        end_s: i64,
        max_gap_s: i64,
        threshold_pct: Option<f64>,
    ) -> DeviceSums {
        let rules = Rules { max_gap_ns: max_gap_s * S, util_thresholds_pct: threshold_pct.into_iter().collect() };
        let samples: Vec<Sample> = samples.iter().map(|s| Sample { time_ns: s.time_ns * S, ..*s }).collect();
        DeviceSums { id: id.to_string(), sums: sums_over(&samples, &rules, start_s * S, end_s * S) }
    }

    /// A sample at `t_s` seconds, healthy, with nothing else.
    pub fn at(t_s: i64) -> Sample {
        Sample { time_ns: t_s, healthy: true, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::S;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hashprice_matches_the_worked_example() {
        // difficulty 1e14, 3.125 BTC subsidy, no fees, $100,000:
        // 8.64e19 / (1e14 × 4.295e9) ≈ 2.01e-4 blocks/day, × 312,500 $ ≈ $62.9/PH/day.
        let m = Market {
            time_ns: 0,
            btc_usd: 100_000.0,
            difficulty: 1e14,
            block_subsidy_btc: 3.125,
            fees_btc_per_block: 0.0,
        };
        assert!((m.hashprice_usd_per_phs_day() - 62.87).abs() < 0.01, "{}", m.hashprice_usd_per_phs_day());
    }

    /// A model's declared inputs are what the windows hand it: the ledger's rules
    /// accumulate a fixed set of fields per measurement (`ledger::raw_fields`), so a model
    /// that needs another field fails here until the ledger's rules read it.
    #[test]
    fn every_models_inputs_are_fields_the_ledger_rules_read() {
        for reg in REVENUE_MODELS {
            let inputs = reg.info.inputs;
            for m in [inputs.energy_measurement, inputs.revenue_measurement] {
                assert!(
                    crate::ledger::RAW_MEASUREMENTS.contains(&m),
                    "{}: {m} is not a measurement the rules read",
                    reg.info
                );
            }
            let read = crate::ledger::raw_fields(inputs.revenue_measurement);
            for f in inputs.revenue_fields {
                assert!(
                    read.contains(f),
                    "{}: {}.{f} is not read by ledger::raw_fields",
                    reg.info,
                    inputs.revenue_measurement
                );
            }
        }
    }

    #[test]
    fn the_registry_builds_each_model_from_its_own_terms() {
        let names: Vec<_> = REVENUE_MODELS.iter().map(|r| r.info.name).collect();
        assert_eq!(names, ["bitcoin_fpps", "ai_contract", "ai_on_demand", "ai_tokens"]);
        let terms = |s: &str| -> toml::Table { toml::from_str(s).unwrap() };
        let m =
            lookup("ai_on_demand").unwrap().build(terms("usd_per_gpu_hour = 2\nutil_threshold_pct = 50.0")).unwrap();
        assert_eq!(m.info().name, "ai_on_demand");
        assert_eq!(format!("{m:?}"), "AiOnDemand { usd_per_gpu_hour: 2.0, util_threshold_pct: 50.0 }");
        // bitcoin_fpps' pool_fee defaults to 0.
        assert!(lookup("bitcoin_fpps").unwrap().build(toml::Table::new()).is_ok());
        let err = lookup("ai_contract").unwrap().build(terms("usd_per_gpu_hour = 2.0\npool_fee = 0.1")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("pool_fee"));
        assert!(err.problem.contains("does not apply to model ai_contract"), "{err}");
        let err = lookup("ai_tokens").unwrap().build(terms("usd_per_mtok_prompt = 1.0")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("usd_per_mtok_generation"), "{err}");
        let err = lookup("ai_contract").unwrap().build(terms("usd_per_gpu_hour = -1.0")).unwrap_err();
        assert_eq!(err, TermsError::at("usd_per_gpu_hour", "usd_per_gpu_hour = -1 must be ≥ 0"));
        let err = lookup("ai_lottery").unwrap_err().to_string();
        assert!(err.contains("ai_lottery") && err.contains("bitcoin_fpps, ai_contract"), "{err}");
        for r in REVENUE_MODELS {
            let m = r.build(terms(r.example_terms)).unwrap_or_else(|e| panic!("{}: example terms: {e}", r.info));
            assert_eq!(m.info(), r.info);
        }
    }

    /// A registration's example terms with every number `x` replaced by
    /// `u × 2 × max(|x|, 0.5)` for the next `u` of `us` (in `[0, 1)`): a fraction such
    /// as `pool_fee` stays under 1, a price or threshold ranges around its example.
    fn varied_terms(r: &Registration, us: &[f64]) -> toml::Table {
        let mut t: toml::Table = toml::from_str(r.example_terms).unwrap();
        for ((_, v), u) in t.iter_mut().zip(us.iter().cycle()) {
            if let Some(x) = v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                *v = toml::Value::Float(u * 2.0 * x.abs().max(0.5));
            }
        }
        t
    }

    fn arb_sums() -> impl Strategy<Value = Sums> {
        (
            -1e9f64..1e13,
            proptest::option::of(-1e9f64..1e13),
            0.0f64..1e13,
            0.0f64..1e13,
            0i64..4_000_000_000_000,
            0i64..4_000_000_000_000,
        )
            .prop_map(|(work_th, diff, prompt, generation, healthy_ns, busy)| Sums {
                work_th: work_th.max(0.0),
                diff_accepted: diff.map(|d| d.max(0.0)),
                prompt_tokens: prompt,
                generation_tokens: generation,
                healthy_ns,
                busy_ns: vec![busy],
                ..Default::default()
            })
    }

    proptest! {
        #[test]
        fn revenue_is_never_negative(
            sums in proptest::collection::vec(arb_sums(), 0..5), start in 0i64..2000, len in 1i64..3000,
            btc in -1e5f64..1e6, diff in -1e10f64..1e15, us in proptest::collection::vec(0.0f64..1.0, 1..4),
        ) {
            let devices: Vec<DeviceSums> = sums.into_iter().map(|sums| DeviceSums { id: "d".into(), sums }).collect();
            let market = Market { time_ns: 0, btc_usd: btc, difficulty: diff, block_subsidy_btc: 3.125, fees_btc_per_block: 0.1 };
            let input = RevenueInput { devices: &devices, window: Window::new(start * S, (start + len) * S), market: Some(&market) };
            // Every registered model, with its example terms varied.
            for reg in REVENUE_MODELS {
                let terms = varied_terms(reg, &us);
                let model = reg.build(terms.clone()).map_err(|e| TestCaseError::fail(format!("{}: {terms}: {e}", reg.info)))?;
                let r = model.revenue(&input).unwrap();
                prop_assert!(r.revenue_usd >= 0.0, "{}: {terms}: {r:?}", reg.info);
            }
        }
    }
}
