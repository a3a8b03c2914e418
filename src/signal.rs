//! Time ranges and the arithmetic of sampled signals.
//!
//! Every per-window number (energy, hash work, token counts, healthy GPU time) is
//! built from the same unit: the *interval* between two consecutive samples of one
//! device, integrated by [`crate::ledger::accumulator`]. An interval longer than
//! `max_gap` is a hole: nothing is integrated across it and its time does not count
//! as covered. An interval that straddles a window edge is split in proportion to
//! time (counters) or by linear interpolation (gauges), so that the amount over two
//! adjacent windows is exactly the amount over their union.

/// A half-open time range `[start_ns, end_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start_ns: i64,
    pub end_ns: i64,
}

impl Window {
    pub fn new(start_ns: i64, end_ns: i64) -> Self {
        Window { start_ns, end_ns }
    }

    pub fn len_ns(&self) -> i64 {
        (self.end_ns - self.start_ns).max(0)
    }

    pub fn len_s(&self) -> f64 {
        self.len_ns() as f64 / 1e9
    }
}

/// Linear interpolation of a gauge at `t` inside `[t0, t1]`.
pub fn interpolate(t0: i64, v0: f64, t1: i64, v1: f64, t: i64) -> f64 {
    if t1 == t0 {
        return v0;
    }
    v0 + (v1 - v0) * ((t - t0) as f64 / (t1 - t0) as f64)
}

/// The increase of a monotonic counter over one interval. A decrease is a reset
/// (the device restarted and its counter began again at 0), so the increase since
/// the reset is the new value itself: never negative.
pub fn counter_delta(v0: f64, v1: f64) -> f64 {
    if v1 >= v0 {
        v1 - v0
    } else {
        v1.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn interpolation_and_resets() {
        // Power ramps 100 W -> 200 W over [0, 10] s: 150 W at 5 s.
        assert_eq!(interpolate(0, 100.0, 10 * S, 200.0, 5 * S), 150.0);
        // 1000 -> 1600 is +600; a reset to 50 is +50 since the restart.
        assert_eq!(counter_delta(1000.0, 1600.0), 600.0);
        assert_eq!(counter_delta(1600.0, 50.0), 50.0);
    }
}
