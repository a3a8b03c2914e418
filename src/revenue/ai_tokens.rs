//! `ai_tokens`: inference paid per million prompt and generation tokens, from the
//! servers' token counters. A server restart resets its counters; the post-restart
//! value is what it served since, never a negative delta.

use serde::Deserialize;

use super::{
    non_negative, Efficiency, Family, Inputs, ModelInfo, Revenue, RevenueError, RevenueInput, RevenueModel, Terms,
    TermsError,
};
use crate::model::schema::{gpu, inference};

pub const INFO: ModelInfo = ModelInfo {
    name: "ai_tokens",
    title: "AI inference · per token",
    family: Family::Ai,
    inputs: Inputs {
        energy_measurement: gpu::MEASUREMENT,
        revenue_measurement: inference::MEASUREMENT,
        revenue_fields: &[inference::PROMPT_TOKENS, inference::GENERATION_TOKENS],
        market: false,
    },
    efficiency: Some(Efficiency::TokensPerJoule),
    paid_by_use: true,
};

/// The terms: `usd_per_mtok_prompt` and `usd_per_mtok_generation`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiTokens {
    pub usd_per_mtok_prompt: f64,
    pub usd_per_mtok_generation: f64,
}

impl RevenueModel for AiTokens {
    fn info(&self) -> &'static ModelInfo {
        &INFO
    }

    fn revenue(&self, input: &RevenueInput<'_>) -> Result<Revenue, RevenueError> {
        let (mut prompt, mut generation) = (0.0, 0.0);
        for dev in input.devices {
            prompt += dev.sums.prompt_tokens;
            generation += dev.sums.generation_tokens;
        }
        let revenue_usd =
            prompt / 1e6 * self.usd_per_mtok_prompt.max(0.0) + generation / 1e6 * self.usd_per_mtok_generation.max(0.0);
        Ok(Revenue { revenue_usd, work_th: None, tokens: Some(prompt + generation) })
    }
}

impl Terms for AiTokens {
    const EXAMPLE: &'static str = "usd_per_mtok_prompt = 0.5\nusd_per_mtok_generation = 1.5";

    fn check(&self) -> Result<(), TermsError> {
        non_negative("usd_per_mtok_prompt", self.usd_per_mtok_prompt)?;
        non_negative("usd_per_mtok_generation", self.usd_per_mtok_generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Sample;
    use crate::revenue::testutil::*;
    use crate::signal::Window;

    #[test]
    fn tokens_with_a_server_restart() {
        // $0.50 per million prompt tokens, $1.50 per million generated. The server
        // restarts between 60 s and 120 s.
        //   prompt:     1.0e6 -> 3.0e6 (+2.0e6), restart -> 0.5e6 (+0.5e6), -> 1.5e6 (+1.0e6) = 3.5e6
        //   generation: 2e5 -> 6e5 (+4e5),      restart -> 1e5 (+1e5),      -> 3e5 (+2e5)     = 7e5
        // revenue = 3.5 × 0.50 + 0.7 × 1.50 = 1.75 + 1.05 = $2.80; tokens 4.2e6.
        let samples: Vec<Sample> = [(0, 1.0e6, 2e5), (60, 3.0e6, 6e5), (120, 0.5e6, 1e5), (180, 1.5e6, 3e5)]
            .iter()
            .map(|&(t, p, g)| Sample { prompt_tokens: Some(p), generation_tokens: Some(g), ..at(t) })
            .collect();
        let devices = [device("h/vllm", &samples, 0, 180, 90, None)];
        let input = RevenueInput { devices: &devices, window: Window::new(0, 180 * S), market: None };
        let r = AiTokens { usd_per_mtok_prompt: 0.5, usd_per_mtok_generation: 1.5 }.revenue(&input).unwrap();
        assert!((r.revenue_usd - 2.80).abs() < 1e-12, "{r:?}");
        assert_eq!(r.tokens, Some(4.2e6));
    }
}
