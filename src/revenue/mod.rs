//! Revenue models: what a workload earns in a window, as pure functions of the
//! devices' measurements, market data and the workload's contract terms.
//!
//! One module per model, each implementing [`RevenueModel`]:
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

use serde::{Deserialize, Serialize};

use crate::aggregate::signal::Window;
pub use crate::ledger::{DeviceSums, Sums};
use crate::model::schema;

/// The four revenue models, as named in configs and in the `kind` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    BitcoinFpps,
    AiContract,
    AiOnDemand,
    AiTokens,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::BitcoinFpps => "bitcoin_fpps",
            ModelKind::AiContract => "ai_contract",
            ModelKind::AiOnDemand => "ai_on_demand",
            ModelKind::AiTokens => "ai_tokens",
        }
    }

    /// Where the workload's energy is measured: miners' or GPUs' power.
    pub fn energy_measurement(self) -> &'static str {
        match self {
            ModelKind::BitcoinFpps => schema::asic::MEASUREMENT,
            _ => schema::gpu::MEASUREMENT,
        }
    }

    /// Where the revenue's inputs are measured.
    pub fn revenue_measurement(self) -> &'static str {
        match self {
            ModelKind::BitcoinFpps => schema::asic::MEASUREMENT,
            ModelKind::AiContract | ModelKind::AiOnDemand => schema::gpu::MEASUREMENT,
            ModelKind::AiTokens => schema::inference::MEASUREMENT,
        }
    }

    /// Fields the revenue needs from [`Self::revenue_measurement`].
    pub fn revenue_fields(self) -> &'static [&'static str] {
        match self {
            ModelKind::BitcoinFpps => &[schema::asic::DIFF_ACCEPTED, schema::asic::HASHRATE_THS],
            ModelKind::AiContract => &[schema::gpu::STATUS],
            ModelKind::AiOnDemand => &[schema::gpu::UTIL_GPU_PCT],
            ModelKind::AiTokens => &[schema::inference::PROMPT_TOKENS, schema::inference::GENERATION_TOKENS],
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    fn kind(&self) -> ModelKind;
    fn revenue(&self, input: &RevenueInput<'_>) -> Result<Revenue, RevenueError>;
    /// The utilisation threshold whose busy time the model reads, if any
    /// ([`Sums::busy_ns`]`[0]`).
    fn util_threshold_pct(&self) -> Option<f64> {
        None
    }
}

/// A workload's contract terms, as read from its `[[workloads]]` entry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Terms {
    pub pool_fee: f64,
    pub usd_per_gpu_hour: f64,
    pub util_threshold_pct: f64,
    pub usd_per_mtok_prompt: f64,
    pub usd_per_mtok_generation: f64,
}

/// Builds the model of `kind` with the workload's terms.
pub fn build(kind: ModelKind, terms: Terms) -> Box<dyn RevenueModel> {
    match kind {
        ModelKind::BitcoinFpps => Box::new(bitcoin_fpps::BitcoinFpps { pool_fee: terms.pool_fee }),
        ModelKind::AiContract => Box::new(ai_contract::AiContract { usd_per_gpu_hour: terms.usd_per_gpu_hour }),
        ModelKind::AiOnDemand => Box::new(ai_on_demand::AiOnDemand {
            usd_per_gpu_hour: terms.usd_per_gpu_hour,
            util_threshold_pct: terms.util_threshold_pct,
        }),
        ModelKind::AiTokens => Box::new(ai_tokens::AiTokens {
            usd_per_mtok_prompt: terms.usd_per_mtok_prompt,
            usd_per_mtok_generation: terms.usd_per_mtok_generation,
        }),
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
            btc in -1e5f64..1e6, diff in -1e10f64..1e15, fee in 0.0f64..1.0,
        ) {
            let devices: Vec<DeviceSums> = sums.into_iter().map(|sums| DeviceSums { id: "d".into(), sums }).collect();
            let market = Market { time_ns: 0, btc_usd: btc, difficulty: diff, block_subsidy_btc: 3.125, fees_btc_per_block: 0.1 };
            let input = RevenueInput { devices: &devices, window: Window::new(start * S, (start + len) * S), market: Some(&market) };
            let terms = Terms { pool_fee: fee, usd_per_gpu_hour: 2.0, util_threshold_pct: 50.0, usd_per_mtok_prompt: 0.5, usd_per_mtok_generation: 1.5 };
            for kind in [ModelKind::BitcoinFpps, ModelKind::AiContract, ModelKind::AiOnDemand, ModelKind::AiTokens] {
                let r = build(kind, terms).revenue(&input).unwrap();
                prop_assert!(r.revenue_usd >= 0.0, "{kind}: {r:?}");
            }
        }
    }
}
