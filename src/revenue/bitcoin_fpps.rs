//! `bitcoin_fpps`: what a full-pay-per-share pool pays for the work a miner had
//! accepted.
//!
//! Per miner, per window: Δ accepted difficulty ÷ network difficulty × (block
//! subsidy + mean fees per block) × BTC price × (1 − pool fee). The accepted
//! difficulty is a counter; a reboot restarts it at 0, so the post-reboot value is
//! the work accepted since the reboot (see [`crate::signal::counter_delta`]).
//! A miner that reports no accepted-difficulty interval in this window is paid by
//! hashrate instead: ∫ hashrate dt × hashprice × (1 − pool fee).

use serde::Deserialize;

use super::{
    non_negative, Efficiency, Family, Inputs, Market, ModelInfo, Revenue, RevenueError, RevenueInput, RevenueModel,
    Terms, TermsError,
};
use crate::model::schema::asic;

pub const INFO: ModelInfo = ModelInfo {
    name: "bitcoin_fpps",
    title: "Bitcoin mining · FPPS",
    family: Family::Mining,
    inputs: Inputs {
        energy_measurement: asic::MEASUREMENT,
        revenue_measurement: asic::MEASUREMENT,
        revenue_fields: &[asic::DIFF_ACCEPTED, asic::HASHRATE_THS],
        market: true,
    },
    efficiency: Some(Efficiency::JoulesPerTh),
    paid_by_use: false,
};

/// The terms: `pool_fee` (0 when left out).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitcoinFpps {
    /// Pool fee as a fraction, 0.02 for 2%.
    #[serde(default)]
    pub pool_fee: f64,
}

impl RevenueModel for BitcoinFpps {
    fn info(&self) -> &'static ModelInfo {
        &INFO
    }

    fn revenue(&self, input: &RevenueInput<'_>) -> Result<Revenue, RevenueError> {
        let keep = (1.0 - self.pool_fee).clamp(0.0, 1.0);
        let mut revenue_usd = 0.0;
        let mut work_th = 0.0;
        for dev in input.devices {
            let hashed_th = dev.sums.work_th;
            work_th += hashed_th;
            let earned = if let Some(diff) = dev.sums.diff_accepted {
                let market = input.market.ok_or(RevenueError::NoMarket)?;
                diff * market.usd_per_share_difficulty()
            } else if hashed_th > 0.0 {
                let market = input.market.ok_or(RevenueError::NoMarket)?;
                hashrate_usd(hashed_th, market)
            } else {
                0.0
            };
            revenue_usd += earned.max(0.0) * keep;
        }
        Ok(Revenue { revenue_usd, work_th: Some(work_th), tokens: None })
    }
}

impl Terms for BitcoinFpps {
    const EXAMPLE: &'static str = "pool_fee = 0.02";

    fn check(&self) -> Result<(), TermsError> {
        non_negative("pool_fee", self.pool_fee)?;
        if self.pool_fee >= 1.0 {
            return Err(TermsError::at(
                "pool_fee",
                format!("pool_fee is a fraction (0.02 for 2%), got {}", self.pool_fee),
            ));
        }
        Ok(())
    }
}

/// USD for `work_th` TH of hashing at the market's hashprice: TH → PH·day is
/// ÷ 1000 ÷ 86400.
fn hashrate_usd(work_th: f64, market: &Market) -> f64 {
    work_th / 1000.0 / 86_400.0 * market.hashprice_usd_per_phs_day()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Sample;
    use crate::revenue::testutil::*;
    use crate::signal::Window;

    fn market() -> Market {
        Market { time_ns: 0, btc_usd: 100_000.0, difficulty: 1e14, block_subsidy_btc: 3.125, fees_btc_per_block: 0.125 }
    }

    fn diff(t: i64, d: f64) -> Sample {
        Sample { diff_accepted: Some(d), ..at(t) }
    }

    fn hashrate(t: i64, th: f64) -> Sample {
        Sample { hashrate_ths: Some(th), ..at(t) }
    }

    #[test]
    fn miner_that_reboots_mid_window() {
        // A ~100 TH/s miner polled every 60 s accepts ~1.4e6 difficulty a minute.
        // It reboots between 120 s and 180 s; at 180 s its counter restarted and
        // reads 0.7e6 (accepted since the reboot).
        //   [0,60] +1.4e6, [60,120] +1.4e6, [120,180] reset: +0.7e6,
        //   [180,240] +1.4e6, [240,300] +1.4e6            total 6.3e6
        // Payout per unit difficulty: (3.125 + 0.125) BTC × $100,000 / 1e14 = 3.25e-9 $.
        // Revenue: 6.3e6 × 3.25e-9 × (1 - 0.02) = 0.020475 × 0.98 = $0.0200655.
        let samples = [
            diff(0, 50.0e6),
            diff(60, 51.4e6),
            diff(120, 52.8e6),
            diff(180, 0.7e6),
            diff(240, 2.1e6),
            diff(300, 3.5e6),
        ];
        let devices = [device("rig/m1", &samples, 0, 300, 90, None)];
        let m = market();
        let input = RevenueInput { devices: &devices, window: Window::new(0, 300 * S), market: Some(&m) };
        let r = BitcoinFpps { pool_fee: 0.02 }.revenue(&input).unwrap();
        assert!((r.revenue_usd - 0.0200655).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn hashprice_fallback_without_accepted_difficulty() {
        // 100 TH/s for one hour, no pool fee. Work = 100 TH/s × 3600 s = 3.6e5 TH.
        // Expected blocks = 100e12 H/s × 3600 s / (1e14 × 2^32); each block pays
        // 3.25 BTC × $100,000 = $325,000.
        let samples = [hashrate(0, 100.0), hashrate(60, 100.0), hashrate(3540, 100.0), hashrate(3600, 100.0)];
        // The 3480 s interval from 60 to 3540 s would be a gap, so allow it here.
        let devices = [device("rig/m2", &samples, 0, 3600, 3600, None)];
        let m = market();
        let input = RevenueInput { devices: &devices, window: Window::new(0, 3600 * S), market: Some(&m) };
        let r = BitcoinFpps { pool_fee: 0.0 }.revenue(&input).unwrap();
        let expected = 100e12 * 3600.0 / (1e14 * 4_294_967_296.0) * 325_000.0;
        assert!((r.revenue_usd - expected).abs() < 1e-12, "{r:?} vs {expected}");
        assert!((expected - 0.27241).abs() < 1e-4);
        assert_eq!(r.work_th, Some(3.6e5));
    }

    #[test]
    fn no_market_is_an_error_not_zero() {
        let devices = [device("rig/m1", &[diff(0, 1.0), diff(60, 2.0)], 0, 60, 90, None)];
        let input = RevenueInput { devices: &devices, window: Window::new(0, 60 * S), market: None };
        assert_eq!(BitcoinFpps { pool_fee: 0.0 }.revenue(&input), Err(RevenueError::NoMarket));
    }
}
