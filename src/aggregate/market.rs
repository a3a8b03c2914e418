//! Bitcoin market data: BTC price, network difficulty, block subsidy and mean fees
//! per block, for the `bitcoin_fpps` model.
//!
//! Two sources. `static` takes the values from `[market]`. `http` reads a
//! mempool-style REST API from a configurable base URL (`…/api`):
//!
//! | value | endpoint | field |
//! | --- | --- | --- |
//! | BTC price and its time | `GET /v1/prices` | `USD`, `time` (unix s) |
//! | difficulty | `GET /v1/mining/hashrate/3d` | `currentDifficulty` |
//! | mean fees per block, tip height | `GET /v1/mining/reward-stats/{fee_blocks}` | `totalFee` (sat, a string) ÷ blocks, `endBlock` |
//!
//! The subsidy follows from the height (50 BTC halved every 210,000 blocks).
//! Each fetch is written to the store as a `market` point stamped with the
//! price's own time, so that every window's revenue can be recomputed later from
//! the data it used. A window uses the latest market point at or before its end;
//! one older than `max_age` is used but flagged stale in the window's warnings,
//! never silently.

use std::time::Duration;

use serde::Deserialize;

use crate::model::schema::market as m;
use crate::model::{FieldValue, Point};
use crate::revenue::Market;
use crate::store::Series;

/// Largest body read from the market API.
const MAX_BODY_BYTES: usize = 1 << 20;
const SAT_PER_BTC: f64 = 1e8;

#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("market source {url}: {message}")]
    Http { url: String, message: String },
    #[error("market source {url}: unexpected answer: {answer}")]
    Parse { url: String, answer: AnswerError },
}

/// What is wrong with a mempool-style answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    /// `endpoint` did not answer the JSON it documents.
    #[error("{endpoint}: {message}")]
    Json { endpoint: &'static str, message: String },
    #[error("reward-stats totalFee {0:?} is not an integer")]
    TotalFee(String),
    #[error("reward-stats endBlock {end} is before startBlock {start}")]
    BlockRange { start: u64, end: u64 },
    #[error("price {price} or difficulty {difficulty} is not a positive number")]
    NotPositive { price: f64, difficulty: f64 },
}

/// Block subsidy at `height`: 50 BTC >> (height / 210,000), in BTC.
pub fn block_subsidy_btc(height: u64) -> f64 {
    let halvings = height / 210_000;
    if halvings >= 64 {
        return 0.0;
    }
    (5_000_000_000u64 >> halvings) as f64 / SAT_PER_BTC
}

#[derive(Deserialize)]
struct Prices {
    time: i64,
    #[serde(rename = "USD")]
    usd: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Hashrate {
    current_difficulty: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RewardStats {
    start_block: u64,
    end_block: u64,
    total_fee: String,
}

/// Parses the three answers into a market snapshot.
pub fn parse_mempool(prices: &[u8], hashrate: &[u8], reward_stats: &[u8]) -> Result<Market, AnswerError> {
    fn json<T: serde::de::DeserializeOwned>(endpoint: &'static str, body: &[u8]) -> Result<T, AnswerError> {
        serde_json::from_slice(body).map_err(|e| AnswerError::Json { endpoint, message: e.to_string() })
    }
    let p: Prices = json("/v1/prices", prices)?;
    let h: Hashrate = json("/v1/mining/hashrate", hashrate)?;
    let r: RewardStats = json("/v1/mining/reward-stats", reward_stats)?;
    let fee_sat: u64 = r.total_fee.trim().parse().map_err(|_| AnswerError::TotalFee(r.total_fee.clone()))?;
    if r.end_block < r.start_block {
        return Err(AnswerError::BlockRange { start: r.start_block, end: r.end_block });
    }
    // Heights come from a remote server: no arithmetic on them may overflow.
    let blocks = (r.end_block - r.start_block) as f64 + 1.0;
    if !(p.usd.is_finite() && p.usd > 0.0 && h.current_difficulty.is_finite() && h.current_difficulty > 0.0) {
        return Err(AnswerError::NotPositive { price: p.usd, difficulty: h.current_difficulty });
    }
    Ok(Market {
        time_ns: p.time.saturating_mul(1_000_000_000),
        btc_usd: p.usd,
        difficulty: h.current_difficulty,
        block_subsidy_btc: block_subsidy_btc(r.end_block.saturating_add(1)),
        fees_btc_per_block: fee_sat as f64 / blocks / SAT_PER_BTC,
    })
}

/// Reads a mempool-style API.
#[derive(Debug, Clone)]
pub struct HttpMarket {
    client: reqwest::Client,
    base_url: String,
    fee_blocks: u32,
}

impl HttpMarket {
    pub fn new(base_url: &str, fee_blocks: u32, timeout: Duration) -> Result<Self, MarketError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| MarketError::Http { url: base_url.into(), message: e.to_string() })?;
        Ok(HttpMarket { client, base_url: base_url.trim_end_matches('/').to_string(), fee_blocks })
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, MarketError> {
        let url = format!("{}{path}", self.base_url);
        let err = |message: String| MarketError::Http { url: url.clone(), message };
        let mut resp = self.client.get(&url).send().await.map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(err(format!("answer larger than {MAX_BODY_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Fetches price, difficulty and fees.
    pub async fn fetch(&self) -> Result<Market, MarketError> {
        let prices = self.get("/v1/prices").await?;
        let hashrate = self.get("/v1/mining/hashrate/3d").await?;
        let rewards = self.get(&format!("/v1/mining/reward-stats/{}", self.fee_blocks)).await?;
        parse_mempool(&prices, &hashrate, &rewards)
            .map_err(|answer| MarketError::Parse { url: self.base_url.clone(), answer })
    }
}

/// The `market` point for a snapshot.
pub fn market_point(market: &Market, source: &str) -> Point {
    Point::new(m::MEASUREMENT, market.time_ns)
        .tag(m::TAG_SOURCE, source)
        .field(m::BTC_USD, market.btc_usd)
        .field(m::DIFFICULTY, market.difficulty)
        .field(m::BLOCK_SUBSIDY_BTC, market.block_subsidy_btc)
        .field(m::FEES_BTC_PER_BLOCK, market.fees_btc_per_block)
        .field(m::HASHPRICE_USD_PER_PHS_DAY, market.hashprice_usd_per_phs_day())
}

/// Fields read back from the `market` measurement.
pub fn market_fields() -> Vec<String> {
    [m::BTC_USD, m::DIFFICULTY, m::BLOCK_SUBSIDY_BTC, m::FEES_BTC_PER_BLOCK].iter().map(|s| s.to_string()).collect()
}

/// Market snapshots from stored `market` series, in time order; rows missing a
/// value are skipped.
pub fn markets_from_series(series: &[Series]) -> Vec<Market> {
    let mut out = Vec::new();
    for s in series {
        let col = |name: &str| s.fields.iter().position(|f| f == name);
        let (Some(p), Some(d), Some(sub), Some(fee)) =
            (col(m::BTC_USD), col(m::DIFFICULTY), col(m::BLOCK_SUBSIDY_BTC), col(m::FEES_BTC_PER_BLOCK))
        else {
            continue;
        };
        for (i, &t) in s.times_ns.iter().enumerate() {
            let get = |j: usize| s.values[i].get(j).cloned().flatten().as_ref().and_then(FieldValue::as_f64);
            if let (Some(btc_usd), Some(difficulty), Some(block_subsidy_btc), Some(fees_btc_per_block)) =
                (get(p), get(d), get(sub), get(fee))
            {
                out.push(Market { time_ns: t, btc_usd, difficulty, block_subsidy_btc, fees_btc_per_block });
            }
        }
    }
    out.sort_by_key(|x| x.time_ns);
    out
}

/// The market data a window sees.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketAt {
    pub market: Option<Market>,
    pub warning: Option<String>,
}

/// Market history for a range: either static values, or stored snapshots.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketHistory {
    Static(Market),
    Stored { points: Vec<Market>, max_age_ns: i64 },
}

impl MarketHistory {
    /// No market data at all (workloads without `bitcoin_fpps`).
    pub fn none() -> Self {
        MarketHistory::Stored { points: Vec::new(), max_age_ns: 0 }
    }

    /// What a window ending at `end_ns` uses: the latest snapshot at or before its
    /// end, flagged when older than `max_age`.
    pub fn at(&self, end_ns: i64) -> MarketAt {
        match self {
            MarketHistory::Static(m) => MarketAt { market: Some(Market { time_ns: end_ns, ..*m }), warning: None },
            MarketHistory::Stored { points, max_age_ns } => {
                let i = points.partition_point(|p| p.time_ns <= end_ns);
                if i == 0 {
                    return MarketAt {
                        market: None,
                        warning: Some(format!(
                            "no market data at or before {}; is the [market] source reachable?",
                            crate::aggregate::rfc3339(end_ns)
                        )),
                    };
                }
                let p = points[i - 1];
                let age = end_ns - p.time_ns;
                let warning = (age > *max_age_ns).then(|| {
                    format!(
                        "market data from {} is stale ({} old at {}, max_age {}); bitcoin revenue uses it",
                        crate::aggregate::rfc3339(p.time_ns),
                        human_age(age),
                        crate::aggregate::rfc3339(end_ns),
                        human_age(*max_age_ns)
                    )
                });
                MarketAt { market: Some(p), warning }
            }
        }
    }
}

fn human_age(ns: i64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 86_400 {
        format!("{:.1}d", s as f64 / 86_400.0)
    } else if s >= 3600 {
        format!("{:.1}h", s as f64 / 3600.0)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, Just};

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/market").join(name)).unwrap()
    }

    #[test]
    fn subsidy_schedule() {
        assert_eq!(block_subsidy_btc(0), 50.0);
        assert_eq!(block_subsidy_btc(736_656), 6.25);
        assert_eq!(block_subsidy_btc(839_999), 6.25);
        assert_eq!(block_subsidy_btc(840_000), 3.125);
        assert_eq!(block_subsidy_btc(1_050_000), 1.5625);
    }

    #[test]
    fn parses_recorded_answers() {
        // prices: $43,753 at 1703252411; difficulty 31251101365711.12; 100 blocks
        // 736556..736655 with 1,311,748,254 sat of fees = 0.13117 BTC per block;
        // next height 736656 → 6.25 BTC subsidy.
        let got = parse_mempool(
            &fixture("prices.json"),
            &fixture("mining-hashrate-3d.json"),
            &fixture("mining-reward-stats-100.json"),
        )
        .unwrap();
        assert_eq!(got.time_ns, 1_703_252_411_000_000_000);
        assert_eq!(got.btc_usd, 43_753.0);
        assert_eq!(got.difficulty, 31_251_101_365_711.12);
        assert_eq!(got.block_subsidy_btc, 6.25);
        assert!((got.fees_btc_per_block - 0.13117482540).abs() < 1e-12);
    }

    #[test]
    fn bad_answers_are_errors() {
        let err = parse_mempool(
            b"{\"time\":1}",
            &fixture("mining-hashrate-3d.json"),
            &fixture("mining-reward-stats-100.json"),
        )
        .unwrap_err();
        assert!(matches!(&err, AnswerError::Json { endpoint: "/v1/prices", .. }), "{err}");
        assert!(err.to_string().contains("/v1/prices"), "{err}");
    }

    #[test]
    fn stale_data_is_flagged() {
        let snap =
            Market { time_ns: 0, btc_usd: 1.0, difficulty: 1.0, block_subsidy_btc: 1.0, fees_btc_per_block: 0.0 };
        let h = MarketHistory::Stored { points: vec![snap], max_age_ns: 3_600_000_000_000 };
        assert_eq!(h.at(1_000_000_000).warning, None);
        let late = h.at(7_200_000_000_000);
        assert_eq!(late.market, Some(snap));
        assert!(late.warning.unwrap().contains("stale"));
        assert!(h.at(-1).market.is_none());
    }

    proptest::proptest! {
        /// Extreme heights, fees, prices and times from a hostile or broken server
        /// give a snapshot or an error, never a panic or a non-finite number.
        #[test]
        fn extreme_answers_never_panic(
            start in proptest::prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()],
            end in proptest::prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()],
            fee in proptest::prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>()],
            time in proptest::prop_oneof![Just(i64::MAX), Just(i64::MIN), any::<i64>()],
            usd in proptest::prop_oneof![Just(f64::MAX), Just(f64::MIN_POSITIVE), Just(1e300), any::<f64>()],
        ) {
            let prices = format!(r#"{{"time": {time}, "USD": {usd:e}}}"#);
            let hashrate = r#"{"currentDifficulty": 1e14}"#;
            let rewards = format!(r#"{{"startBlock": {start}, "endBlock": {end}, "totalFee": "{fee}"}}"#);
            if let Ok(m) = parse_mempool(prices.as_bytes(), hashrate.as_bytes(), rewards.as_bytes()) {
                proptest::prop_assert!(m.fees_btc_per_block.is_finite() && m.fees_btc_per_block >= 0.0);
                proptest::prop_assert!((0.0..=50.0).contains(&m.block_subsidy_btc));
            }
        }
    }
}
