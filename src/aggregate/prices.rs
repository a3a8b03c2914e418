//! The prices behind the revenue chart, for the page's overlay: BTC price and
//! hashprice from the market data the aggregator reads (`[market]`), and each
//! site's energy tariff, over a range of at most [`MAX_HISTORY_NS`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::MarketSourceKind;
use super::device::{bucket_ns, MAX_HISTORY_NS, MAX_POINTS};
use super::market::MarketHistory;
use super::{check_range, rfc3339, AggregateError, Aggregator};
use crate::signal::Window;

/// One market snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarketPoint {
    pub time: String,
    pub btc_usd: f64,
    pub hashprice_usd_per_phs_day: f64,
}

/// A price that holds from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TariffStep {
    pub start: String,
    pub end: String,
    pub usd_per_kwh: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteTariff {
    pub site: String,
    /// `true` when the site has more price changes than [`MAX_POINTS`] in the range:
    /// then each step is a bucket's time-weighted mean price.
    pub averaged: bool,
    pub steps: Vec<TariffStep>,
    /// Why there are no steps (no measured price yet).
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prices {
    pub from: String,
    pub to: String,
    /// `static` (configured values), `store` or `http` (stored snapshots), or `none`
    /// when no workload's model reads market data.
    pub market_source: &'static str,
    /// Snapshots in the range, led by the one in effect at its start; at most
    /// [`MAX_POINTS`] (the latest of each bucket when there are more).
    pub market: Vec<MarketPoint>,
    pub tariffs: Vec<SiteTariff>,
}

fn market_point(m: &crate::revenue::Market, time_ns: i64) -> MarketPoint {
    MarketPoint { time: rfc3339(time_ns), btc_usd: m.btc_usd, hashprice_usd_per_phs_day: m.hashprice_usd_per_phs_day() }
}

/// Steps cut to `[from, to)` and, past [`MAX_POINTS`], averaged per bucket.
fn bounded_steps(steps: Vec<(Window, f64)>, from_ns: i64, to_ns: i64) -> (bool, Vec<TariffStep>) {
    let step = |w: Window, p: f64| TariffStep { start: rfc3339(w.start_ns), end: rfc3339(w.end_ns), usd_per_kwh: p };
    if steps.len() <= MAX_POINTS {
        return (false, steps.into_iter().map(|(w, p)| step(w, p)).collect());
    }
    let mut out = Vec::new();
    for b in super::windows::aligned_windows(from_ns, to_ns, bucket_ns(from_ns, to_ns)) {
        let (mut weighted, mut ns) = (0.0, 0i64);
        for (w, p) in &steps {
            let overlap = w.end_ns.min(b.end_ns) - w.start_ns.max(b.start_ns);
            if overlap > 0 {
                weighted += p * overlap as f64;
                ns += overlap;
            }
        }
        if ns > 0 {
            out.push(step(b, weighted / ns as f64));
        }
    }
    (true, out)
}

impl Aggregator {
    /// Market prices and tariffs over `[from_ns, to_ns)`.
    pub async fn prices(&self, from_ns: i64, to_ns: i64) -> Result<Prices, AggregateError> {
        check_range(from_ns, to_ns)?;
        if to_ns - from_ns > MAX_HISTORY_NS {
            return Err(AggregateError::Range(format!(
                "prices cover at most 31 days; {} .. {} is longer",
                rfc3339(from_ns),
                rfc3339(to_ns)
            )));
        }
        let history = self.market_history(from_ns, to_ns).await?;
        let (market_source, market) = match &history {
            MarketHistory::Static(m) => ("static", vec![market_point(m, from_ns), market_point(m, to_ns)]),
            MarketHistory::Stored { points, .. } if points.is_empty() => {
                let uses_market = self.plans.iter().any(|p| p.revenue_model.info().inputs.market);
                (if uses_market { self.market_source_name() } else { "none" }, Vec::new())
            }
            MarketHistory::Stored { points, .. } => {
                // The snapshot in effect at `from`, then those inside the range.
                let first = points.partition_point(|p| p.time_ns <= from_ns).saturating_sub(1);
                let inside: Vec<_> = points[first..].iter().filter(|p| p.time_ns < to_ns).collect();
                let len = bucket_ns(from_ns, to_ns);
                let thin = inside.len() > MAX_POINTS;
                let mut kept: Vec<(i64, &crate::revenue::Market)> = Vec::new();
                for p in inside {
                    let t = p.time_ns.max(from_ns);
                    match kept.last_mut() {
                        // Thinned only past the limit: the latest snapshot of each bucket.
                        Some(last) if thin && last.0.div_euclid(len) == t.div_euclid(len) => *last = (t, p),
                        _ => kept.push((t, p)),
                    }
                }
                (self.market_source_name(), kept.into_iter().map(|(t, m)| market_point(m, t)).collect())
            }
        };
        let mut tariffs = Vec::new();
        let mut measured = BTreeMap::new();
        let mut sites = std::collections::BTreeSet::new();
        for plan in &self.plans {
            if !sites.insert(plan.site.clone()) {
                continue;
            }
            let tariff = self.tariff_for(plan, from_ns, to_ns, &mut measured).await?;
            let (averaged, steps, warning) = match tariff.segments(Window { start_ns: from_ns, end_ns: to_ns }) {
                Ok(steps) => {
                    let (averaged, steps) = bounded_steps(steps, from_ns, to_ns);
                    (averaged, steps, None)
                }
                Err(e) => (false, Vec::new(), Some(e.to_string())),
            };
            tariffs.push(SiteTariff { site: plan.site.clone(), averaged, steps, warning });
        }
        Ok(Prices { from: rfc3339(from_ns), to: rfc3339(to_ns), market_source, market, tariffs })
    }

    fn market_source_name(&self) -> &'static str {
        match self.cfg.market.source {
            MarketSourceKind::Static => "static",
            MarketSourceKind::Store => "store",
            MarketSourceKind::Http => "http",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    #[test]
    fn many_price_changes_become_time_weighted_bucket_means() {
        // 600 five-minute prices alternating 0.10 / 0.20 over 50 h: more than 500
        // steps, so 50 h in 600 s buckets (300 of them), each two steps: mean 0.15.
        let steps: Vec<(Window, f64)> = (0..600)
            .map(|i| {
                let w = Window { start_ns: i * H / 12, end_ns: (i + 1) * H / 12 };
                (w, if i % 2 == 0 { 0.10 } else { 0.20 })
            })
            .collect();
        let (averaged, out) = bounded_steps(steps.clone(), 0, 50 * H);
        assert!(averaged);
        assert_eq!(out.len(), 300);
        assert!(out.iter().all(|s| (s.usd_per_kwh - 0.15).abs() < 1e-12), "{:?}", &out[..3]);
        let (averaged, out) = bounded_steps(steps[..10].to_vec(), 0, 50 * H);
        assert!(!averaged && out.len() == 10 && out[1].usd_per_kwh == 0.20);
    }
}
