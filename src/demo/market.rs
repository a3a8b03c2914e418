//! The demo's simulated market and energy price.
//!
//! The demo site must not reach the internet, and a fixed price would hide the
//! point of the comparison: mining revenue per kWh moves with the Bitcoin price and
//! the fees in each block, while a GPU contract pays the same every hour. So the
//! demo writes its own market series into the store, tagged `source=demo-sim`:
//!
//! - BTC/USD follows geometric Brownian motion (no drift, 55 % annualised
//!   volatility, about 0.6 % per hour), from a seed, so a run is reproducible;
//! - fees per block follow a mean-reverting log process (they swing by a factor of
//!   two within hours, as mempool congestion does);
//! - difficulty and the block subsidy stay constant over the demo's days (they
//!   change every two weeks and every four years);
//! - the energy price follows a time-of-use tariff (cheap nights, an evening peak),
//!   in UTC hours.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::schema::{energy_price, market};
use crate::model::{FieldValue, Point};
use crate::store::Series;

/// The fields of a market sample, as stored.
pub const SAMPLE_FIELDS: [&str; 4] =
    [market::BTC_USD, market::DIFFICULTY, market::BLOCK_SUBSIDY_BTC, market::FEES_BTC_PER_BLOCK];

/// The value every simulated market and price point carries in its `source` tag.
pub const SOURCE_TAG: &str = "demo-sim";

const NS_PER_S: f64 = 1e9;
const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;

#[derive(Debug, Clone)]
pub struct MarketSpec {
    pub seed: u64,
    pub btc_usd_start: f64,
    /// Annualised volatility of the BTC price (0.55 = 55 %).
    pub btc_volatility: f64,
    pub difficulty: f64,
    pub block_subsidy_btc: f64,
    /// Long-run mean of fees per block.
    pub fees_btc_per_block_mean: f64,
    /// Standard deviation of log fees around their mean, once settled.
    pub fees_log_sd: f64,
    /// How quickly fees return to their mean (e-folding time, seconds).
    pub fees_reversion_s: f64,
    /// Spacing of the points, seconds.
    pub step_s: f64,
}

impl Default for MarketSpec {
    fn default() -> Self {
        MarketSpec {
            seed: 21,
            btc_usd_start: 92_000.0,
            btc_volatility: 0.55,
            difficulty: 1.49e14,
            block_subsidy_btc: 3.125,
            fees_btc_per_block_mean: 0.03,
            fees_log_sd: 0.6,
            fees_reversion_s: 4.0 * 3600.0,
            step_s: 300.0,
        }
    }
}

/// One market sample: the same values the aggregator prices mining with.
pub type MarketSample = crate::revenue::Market;

/// The `market` point for a sample, tagged `source=demo-sim`.
pub fn sample_point(sample: &MarketSample) -> Point {
    crate::aggregate::market::market_point(sample, SOURCE_TAG)
}

/// Walks the market forward one step at a time from a seed.
#[derive(Debug)]
pub struct MarketSim {
    spec: MarketSpec,
    rng: StdRng,
    next_ns: i64,
    ln_btc: f64,
    /// Deviation of log fees from the log of their mean.
    fee_dev: f64,
}

impl MarketSim {
    /// A path whose first sample is at `start_ns`.
    pub fn new(spec: MarketSpec, start_ns: i64) -> Self {
        let rng = StdRng::seed_from_u64(spec.seed);
        let ln_btc = spec.btc_usd_start.ln();
        MarketSim { spec, rng, next_ns: start_ns, ln_btc, fee_dev: 0.0 }
    }

    /// Continues a path from its last stored sample: the next sample is one step
    /// after it, with the same price and fee level, so a restart shows no jump.
    pub fn resume(spec: MarketSpec, last: &MarketSample) -> Self {
        let rng = StdRng::seed_from_u64(spec.seed ^ last.time_ns as u64);
        let fee_dev = if last.fees_btc_per_block > 0.0 && spec.fees_btc_per_block_mean > 0.0 {
            (last.fees_btc_per_block / spec.fees_btc_per_block_mean).ln()
        } else {
            0.0
        };
        let mut m = MarketSim { next_ns: last.time_ns, ln_btc: last.btc_usd.max(1.0).ln(), fee_dev, spec, rng };
        m.step();
        m
    }

    /// The latest sample among stored `market` series (as [`MarketSample::to_point`] wrote them).
    pub fn last_stored(series: &[Series]) -> Option<MarketSample> {
        let mut best: Option<MarketSample> = None;
        for s in series {
            let col = |name: &str| s.fields.iter().position(|f| f == name);
            let (Some(b), Some(d), Some(sub), Some(f)) = (
                col(market::BTC_USD),
                col(market::DIFFICULTY),
                col(market::BLOCK_SUBSIDY_BTC),
                col(market::FEES_BTC_PER_BLOCK),
            ) else {
                continue;
            };
            for (i, &t) in s.times_ns.iter().enumerate().rev() {
                let v = |j: usize| s.values[i].get(j).cloned().flatten().as_ref().and_then(FieldValue::as_f64);
                if let (Some(btc_usd), Some(difficulty), Some(block_subsidy_btc), Some(fees_btc_per_block)) =
                    (v(b), v(d), v(sub), v(f))
                {
                    if best.as_ref().is_none_or(|x| t > x.time_ns) {
                        best = Some(MarketSample {
                            time_ns: t,
                            btc_usd,
                            difficulty,
                            block_subsidy_btc,
                            fees_btc_per_block,
                        });
                    }
                    break;
                }
            }
        }
        best
    }

    /// Time of the sample [`step`](Self::step) returns.
    pub fn next_ns(&self) -> i64 {
        self.next_ns
    }

    pub fn step_ns(&self) -> i64 {
        (self.spec.step_s * NS_PER_S) as i64
    }

    /// The sample at `next_ns()`, then moves one step on.
    pub fn step(&mut self) -> MarketSample {
        let s = &self.spec;
        let sample = MarketSample {
            time_ns: self.next_ns,
            btc_usd: self.ln_btc.exp(),
            difficulty: s.difficulty,
            block_subsidy_btc: s.block_subsidy_btc,
            fees_btc_per_block: s.fees_btc_per_block_mean * self.fee_dev.exp(),
        };
        let dt_years = s.step_s / SECONDS_PER_YEAR;
        let sigma = s.btc_volatility;
        self.ln_btc += -0.5 * sigma * sigma * dt_years + sigma * dt_years.sqrt() * normal(&mut self.rng);
        // Ornstein–Uhlenbeck, exact discretisation: stationary sd = fees_log_sd.
        let decay = (-s.step_s / s.fees_reversion_s).exp();
        self.fee_dev = self.fee_dev * decay + s.fees_log_sd * (1.0 - decay * decay).sqrt() * normal(&mut self.rng);
        self.next_ns += self.step_ns();
        sample
    }
}

/// A standard normal draw (Box–Muller), to avoid a dependency for one function.
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The demo site's simulated energy price feed: a price per hour of the day (UTC),
/// in $/kWh, written as `energy_price` points (read by a `measured` tariff).
#[derive(Debug, Clone, PartialEq)]
pub struct PriceSchedule {
    /// `(first hour, price)`, sorted by hour, the first at hour 0; a price holds until
    /// the next entry's hour.
    pub periods: Vec<(u32, f64)>,
}

impl PriceSchedule {
    /// Off-peak nights, a shoulder by day and an evening peak, like many industrial
    /// tariffs: $0.045 (00–07), $0.075 (07–16), $0.16 (16–21), $0.075 (21–24).
    pub fn demo() -> Self {
        PriceSchedule { periods: vec![(0, 0.045), (7, 0.075), (16, 0.16), (21, 0.075)] }
    }

    pub fn usd_per_kwh_at(&self, time_ns: i64) -> f64 {
        let hour = (time_ns.div_euclid(3_600_000_000_000)).rem_euclid(24) as u32;
        self.periods.iter().rev().find(|(h, _)| *h <= hour).map(|(_, p)| *p).unwrap_or(self.periods[0].1)
    }

    /// The `energy_price` point for `site` at `time_ns`.
    pub fn point(&self, site: &str, time_ns: i64) -> Point {
        Point::new(energy_price::MEASUREMENT, time_ns)
            .tag(energy_price::TAG_SITE, site)
            .tag(market::TAG_SOURCE, SOURCE_TAG)
            .field(energy_price::USD_PER_KWH, self.usd_per_kwh_at(time_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashprice_matches_the_design_sanity_figure() {
        // 3.155 BTC × $92,000 × 86,400 s × 1e15 H/s ÷ (1.49e14 × 2^32) = $39.19 per PH/s-day.
        let s = MarketSample {
            time_ns: 0,
            btc_usd: 92_000.0,
            difficulty: 1.49e14,
            block_subsidy_btc: 3.125,
            fees_btc_per_block: 0.03,
        };
        assert!((s.hashprice_usd_per_phs_day() - 39.19).abs() < 0.005, "{}", s.hashprice_usd_per_phs_day());
    }

    #[test]
    fn same_seed_same_path_and_points_are_tagged() {
        let mut a = MarketSim::new(MarketSpec::default(), 0);
        let mut b = MarketSim::new(MarketSpec::default(), 0);
        for _ in 0..100 {
            assert_eq!(a.step(), b.step());
        }
        let p = sample_point(&a.step());
        assert_eq!(p.time_ns, 100 * 300_000_000_000);
        assert_eq!(p.tag_value("source"), Some(SOURCE_TAG));
        assert_eq!(p.measurement, "market");
    }

    #[test]
    fn a_resumed_path_continues_from_the_stored_sample() {
        let mut m = MarketSim::new(MarketSpec::default(), 0);
        let samples: Vec<MarketSample> = (0..50).map(|_| m.step()).collect();
        let last = samples.last().unwrap();
        let p = sample_point(last);
        let series = Series {
            tags: p.tags.iter().cloned().collect(),
            fields: p.fields.iter().map(|(k, _)| k.clone()).collect(),
            times_ns: vec![samples[0].time_ns, last.time_ns],
            values: vec![
                sample_point(&samples[0]).fields.into_iter().map(|(_, v)| Some(v)).collect(),
                p.fields.iter().map(|(_, v)| Some(v.clone())).collect(),
            ],
        };
        let found = MarketSim::last_stored(&[series]).unwrap();
        assert_eq!(&found, last);
        let mut r = MarketSim::resume(MarketSpec::default(), &found);
        assert_eq!(r.next_ns(), last.time_ns + 300_000_000_000);
        let next = r.step();
        assert!((next.btc_usd / last.btc_usd - 1.0).abs() < 0.02, "{} after {}", next.btc_usd, last.btc_usd);
        assert!((next.fees_btc_per_block / last.fees_btc_per_block).ln().abs() < 0.5);
    }

    #[test]
    fn price_volatility_is_realistic() {
        // Hourly log returns over a simulated year: sd ≈ 0.55 / sqrt(8766) ≈ 0.59 %.
        let spec = MarketSpec { step_s: 3600.0, ..MarketSpec::default() };
        let mut m = MarketSim::new(spec, 0);
        let prices: Vec<f64> = (0..8766).map(|_| m.step().btc_usd).collect();
        let r: Vec<f64> = prices.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
        assert!((0.0053..0.0065).contains(&sd), "hourly sd {sd}");
        assert!(prices.iter().all(|p| *p > 0.0));
    }

    #[test]
    fn fees_swing_around_their_mean() {
        let mut m = MarketSim::new(MarketSpec::default(), 0);
        let fees: Vec<f64> = (0..20_000).map(|_| m.step().fees_btc_per_block).collect();
        let (lo, hi) = fees.iter().fold((f64::MAX, 0f64), |(lo, hi), f| (lo.min(*f), hi.max(*f)));
        assert!(lo < 0.015 && hi > 0.06, "fees stayed within {lo}..{hi}");
        let median = {
            let mut s = fees.clone();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        assert!((0.022..0.04).contains(&median), "median fees {median}");
    }

    #[test]
    fn tariff_by_hour() {
        let t = PriceSchedule::demo();
        let at = |h: i64| t.usd_per_kwh_at(h * 3_600_000_000_000 + 1);
        assert_eq!(at(0), 0.045);
        assert_eq!(at(6), 0.045);
        assert_eq!(at(7), 0.075);
        assert_eq!(at(16), 0.16);
        assert_eq!(at(20), 0.16);
        assert_eq!(at(21), 0.075);
        assert_eq!(at(24 + 17), 0.16);
        let p = t.point("demo", 0);
        assert_eq!(p.tag_value("site"), Some("demo"));
        assert_eq!(p.tag_value("source"), Some(SOURCE_TAG));
    }
}
