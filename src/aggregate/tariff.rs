//! Energy cost: what the facility energy of a window costs.
//!
//! Three kinds of tariff: a flat price, a time-of-use schedule (local hour-of-day
//! ranges, each with a price, at a fixed UTC offset), or a measured `energy_price`
//! series (a step function: each price holds until the next one). A window is cut
//! into segments at every price change, energy is computed per segment (energy is
//! additive over time, see [`super::energy`]) and each segment is charged at its
//! own price, so a window that straddles a price change is charged correctly.

use serde::Deserialize;

use crate::model::schema::J_PER_KWH;
use crate::signal::Window;

const HOUR_NS: i64 = 3_600_000_000_000;

/// One time-of-use period: local hours `[from_hour, to_hour)`; `from_hour >
/// to_hour` wraps past midnight (22 → 6 is the night).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouPeriod {
    pub from_hour: u8,
    pub to_hour: u8,
    pub usd_per_kwh: f64,
}

impl TouPeriod {
    fn contains(&self, hour: u8) -> bool {
        if self.from_hour <= self.to_hour {
            (self.from_hour..self.to_hour).contains(&hour)
        } else {
            hour >= self.from_hour || hour < self.to_hour
        }
    }
}

/// A tariff ready to price windows. `Measured` carries the price points loaded
/// from the store for the range being computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Tariff {
    Flat { usd_per_kwh: f64 },
    TimeOfUse { utc_offset_s: i64, periods: Vec<TouPeriod>, default_usd_per_kwh: f64 },
    Measured { prices: Vec<(i64, f64)> },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TariffError {
    #[error("no energy_price point at or before {time}; write an energy_price point for the site or use a flat price")]
    NoPrice { time: String },
}

impl Tariff {
    /// The window cut at every price change, each part with its price.
    pub fn segments(&self, win: Window) -> Result<Vec<(Window, f64)>, TariffError> {
        let mut out: Vec<(Window, f64)> = Vec::new();
        let mut push = |w: Window, price: f64| match out.last_mut() {
            Some((last, p)) if *p == price && last.end_ns == w.start_ns => last.end_ns = w.end_ns,
            _ => out.push((w, price)),
        };
        match self {
            Tariff::Flat { usd_per_kwh } => push(win, *usd_per_kwh),
            Tariff::TimeOfUse { utc_offset_s, periods, default_usd_per_kwh } => {
                let offset_ns = utc_offset_s * 1_000_000_000;
                let mut t = win.start_ns;
                while t < win.end_ns {
                    let local = t + offset_ns;
                    let next_hour = (local.div_euclid(HOUR_NS) + 1) * HOUR_NS - offset_ns;
                    let end = next_hour.min(win.end_ns);
                    let hour = (local.div_euclid(HOUR_NS).rem_euclid(24)) as u8;
                    let price =
                        periods.iter().find(|p| p.contains(hour)).map_or(*default_usd_per_kwh, |p| p.usd_per_kwh);
                    push(Window::new(t, end), price);
                    t = end;
                }
            }
            Tariff::Measured { prices } => {
                let first = prices.partition_point(|&(t, _)| t <= win.start_ns);
                if first == 0 {
                    return Err(TariffError::NoPrice { time: crate::aggregate::rfc3339(win.start_ns) });
                }
                let mut t = win.start_ns;
                let mut price = prices[first - 1].1;
                for &(change, next_price) in &prices[first..] {
                    if change >= win.end_ns {
                        break;
                    }
                    push(Window::new(t, change), price);
                    t = change;
                    price = next_price;
                }
                push(Window::new(t, win.end_ns), price);
            }
        }
        Ok(out)
    }

    /// Cost of a window: `facility_energy_j(segment)` charged at each segment's price.
    pub fn cost_usd(&self, win: Window, mut facility_energy_j: impl FnMut(Window) -> f64) -> Result<f64, TariffError> {
        Ok(self.segments(win)?.into_iter().map(|(w, price)| facility_energy_j(w) / J_PER_KWH * price).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_NS;

    #[test]
    fn flat_tariff() {
        // 2 kWh of IT energy (7.2 MJ) at PUE 1.5 is 3 kWh at the meter; at
        // $0.05/kWh that costs 3 × 0.05 = $0.15.
        let t = Tariff::Flat { usd_per_kwh: 0.05 };
        let cost = t.cost_usd(Window::new(0, H), |_| 7.2e6 * 1.5).unwrap();
        assert!((cost - 0.15).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn time_of_use_charges_each_hour_at_its_price() {
        // Site at UTC+2, peak 17:00-21:00 local at $0.20, otherwise $0.08. The
        // window 14:00-16:00 UTC is 16:00-18:00 local: one off-peak hour, one peak
        // hour. A 1 kW load at PUE 1.0 uses 1 kWh each hour:
        // 1 × 0.08 + 1 × 0.20 = $0.28.
        let t = Tariff::TimeOfUse {
            utc_offset_s: 2 * 3600,
            periods: vec![TouPeriod { from_hour: 17, to_hour: 21, usd_per_kwh: 0.20 }],
            default_usd_per_kwh: 0.08,
        };
        let day = 20_000 * 24 * H; // some midnight UTC
        let win = Window::new(day + 14 * H, day + 16 * H);
        let segs = t.segments(win).unwrap();
        assert_eq!(
            segs,
            vec![(Window::new(day + 14 * H, day + 15 * H), 0.08), (Window::new(day + 15 * H, day + 16 * H), 0.20)]
        );
        let cost = t.cost_usd(win, |w| 1000.0 * w.len_s()).unwrap();
        assert!((cost - 0.28).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn night_period_wraps_midnight() {
        let p = TouPeriod { from_hour: 22, to_hour: 6, usd_per_kwh: 0.03 };
        assert!(p.contains(23) && p.contains(0) && p.contains(5));
        assert!(!p.contains(6) && !p.contains(21));
    }

    #[test]
    fn measured_prices_are_steps() {
        // $0.10 from t=0, $0.30 from 30 min. A 1 kW load over [15 min, 45 min):
        // 0.25 kWh at 0.10 + 0.25 kWh at 0.30 = $0.10.
        let t = Tariff::Measured { prices: vec![(0, 0.10), (H / 2, 0.30)] };
        let cost = t.cost_usd(Window::new(H / 4, 3 * H / 4), |w| 1000.0 * w.len_s()).unwrap();
        assert!((cost - 0.10).abs() < 1e-12, "{cost}");
        assert!(matches!(t.segments(Window::new(-H, 0)), Err(TariffError::NoPrice { .. })));
    }
}
