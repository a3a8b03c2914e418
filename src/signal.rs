//! Sampled signals cut into windows.
//!
//! Every per-window number (energy, hash work, token counts, healthy GPU time) is
//! built from the same unit: the *interval* between two consecutive samples of one
//! device. An interval longer than `max_gap` is a hole: nothing is integrated across
//! it and its time does not count as covered. An interval that straddles a window
//! edge is split in proportion to time (counters) or by linear interpolation
//! (gauges), so that the amount over two adjacent windows is exactly the amount over
//! their union. Everything here is pure arithmetic on `(time_ns, value)` pairs.

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

/// One interval `[t0, t1]` between samples `index` and `index + 1`, clipped to
/// the window as `[a, b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    pub index: usize,
    pub t0: i64,
    pub t1: i64,
    pub a: i64,
    pub b: i64,
}

impl Piece {
    /// The share of the whole interval that lies inside the window.
    pub fn fraction(&self) -> f64 {
        (self.b - self.a) as f64 / (self.t1 - self.t0) as f64
    }

    pub fn clipped_s(&self) -> f64 {
        (self.b - self.a) as f64 / 1e9
    }
}

/// The intervals of `times_ns` (sorted ascending) that overlap `win` and are at
/// most `max_gap_ns` long, each clipped to the window. Intervals of zero length
/// (duplicate timestamps) are skipped.
pub fn pieces(times_ns: &[i64], win: Window, max_gap_ns: i64) -> impl Iterator<Item = Piece> + '_ {
    // First interval that can overlap: the one ending after the window start.
    let first = times_ns.partition_point(|&t| t <= win.start_ns).saturating_sub(1);
    (first..times_ns.len().saturating_sub(1)).take_while(move |&i| times_ns[i] < win.end_ns).filter_map(move |i| {
        let (t0, t1) = (times_ns[i], times_ns[i + 1]);
        if t1 <= t0 || t1 - t0 > max_gap_ns {
            return None;
        }
        let a = t0.max(win.start_ns);
        let b = t1.min(win.end_ns);
        (b > a).then_some(Piece { index: i, t0, t1, a, b })
    })
}

/// A value accumulated over a window plus the time that backs it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accumulated {
    pub value: f64,
    pub covered_ns: i64,
}

/// Linear interpolation of a gauge at `t` inside `[t0, t1]`.
pub fn interpolate(t0: i64, v0: f64, t1: i64, v1: f64, t: i64) -> f64 {
    if t1 == t0 {
        return v0;
    }
    v0 + (v1 - v0) * ((t - t0) as f64 / (t1 - t0) as f64)
}

/// The trapezoid area (value × seconds) of a piece of a linear segment.
pub fn trapezoid(p: &Piece, v0: f64, v1: f64) -> f64 {
    let va = interpolate(p.t0, v0, p.t1, v1, p.a);
    let vb = interpolate(p.t0, v0, p.t1, v1, p.b);
    p.clipped_s() * (va + vb) / 2.0
}

/// Integral over the window of a gauge (power in W gives joules, hashrate in TH/s
/// gives TH), by trapezoids between samples, not across gaps. Negative samples
/// are treated as 0 (a gauge of power or hashrate cannot be negative).
pub fn integral(track: &[(i64, f64)], win: Window, max_gap_ns: i64) -> Accumulated {
    let times: Vec<i64> = track.iter().map(|s| s.0).collect();
    let mut acc = Accumulated::default();
    for p in pieces(&times, win, max_gap_ns) {
        let (v0, v1) = (track[p.index].1.max(0.0), track[p.index + 1].1.max(0.0));
        acc.value += trapezoid(&p, v0, v1);
        acc.covered_ns += p.b - p.a;
    }
    acc
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

/// Increase of a counter over the window: the sum of per-interval increases
/// ([`counter_delta`]), each interval's share given by the part of its time inside
/// the window; intervals longer than `max_gap_ns` are not counted.
pub fn increase(track: &[(i64, f64)], win: Window, max_gap_ns: i64) -> Accumulated {
    let times: Vec<i64> = track.iter().map(|s| s.0).collect();
    let mut acc = Accumulated::default();
    for p in pieces(&times, win, max_gap_ns) {
        acc.value += counter_delta(track[p.index].1, track[p.index + 1].1) * p.fraction();
        acc.covered_ns += p.b - p.a;
    }
    acc
}

/// Time (ns) inside the window during which a linearly interpolated gauge is at
/// or above `threshold`, counting only intervals no longer than `max_gap_ns`.
pub fn time_at_or_above(track: &[(i64, f64)], threshold: f64, win: Window, max_gap_ns: i64) -> i64 {
    let times: Vec<i64> = track.iter().map(|s| s.0).collect();
    let mut total = 0i64;
    for p in pieces(&times, win, max_gap_ns) {
        let (v0, v1) = (track[p.index].1, track[p.index + 1].1);
        let (va, vb) = (interpolate(p.t0, v0, p.t1, v1, p.a), interpolate(p.t0, v0, p.t1, v1, p.b));
        total += match (va >= threshold, vb >= threshold) {
            (true, true) => p.b - p.a,
            (false, false) => 0,
            (above_a, _) => {
                // One crossing inside [a, b]: solve the line for the threshold.
                let tc = p.a as f64 + (threshold - va) / (vb - va) * (p.b - p.a) as f64;
                let tc = (tc.round() as i64).clamp(p.a, p.b);
                if above_a {
                    tc - p.a
                } else {
                    p.b - tc
                }
            }
        };
    }
    total
}

/// Time (ns) inside the window covered by intervals whose two end samples are
/// both `true` (for example: the GPU reported itself healthy at both ends).
pub fn time_both_true(track: &[(i64, bool)], win: Window, max_gap_ns: i64) -> i64 {
    let times: Vec<i64> = track.iter().map(|s| s.0).collect();
    pieces(&times, win, max_gap_ns).filter(|p| track[p.index].1 && track[p.index + 1].1).map(|p| p.b - p.a).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn pieces_clip_and_skip_gaps() {
        // Samples at 0, 10, 20, 100, 110 s; window [5, 105) s; max gap 30 s.
        let t = [0, 10 * S, 20 * S, 100 * S, 110 * S];
        let got: Vec<_> = pieces(&t, Window::new(5 * S, 105 * S), 30 * S).map(|p| (p.a / S, p.b / S)).collect();
        // [0,10] clipped to [5,10]; [10,20]; [20,100] is an 80 s gap; [100,110] clipped to [100,105].
        assert_eq!(got, vec![(5, 10), (10, 20), (100, 105)]);
    }

    #[test]
    fn trapezoid_of_a_clipped_ramp() {
        // Power ramps 100 W -> 200 W over [0, 10] s; window [5, 10): power goes
        // 150 -> 200 W, area = 5 s × (150 + 200) / 2 = 875 J.
        let track = [(0, 100.0), (10 * S, 200.0)];
        let got = integral(&track, Window::new(5 * S, 10 * S), 60 * S);
        assert!((got.value - 875.0).abs() < 1e-9, "{got:?}");
        assert_eq!(got.covered_ns, 5 * S);
    }

    #[test]
    fn counter_with_a_reset() {
        // 1000 -> 1600 (+600), reset to 50 (+50 since restart), 50 -> 250 (+200): 850.
        let track = [(0, 1000.0), (10 * S, 1600.0), (20 * S, 50.0), (30 * S, 250.0)];
        let got = increase(&track, Window::new(0, 30 * S), 60 * S);
        assert!((got.value - 850.0).abs() < 1e-9);
    }

    #[test]
    fn threshold_crossing_is_interpolated() {
        // Utilization 0% at 0 s, 100% at 100 s; threshold 80% is crossed at 80 s,
        // so 20 s are at or above it.
        let track = [(0, 0.0), (100 * S, 100.0)];
        assert_eq!(time_at_or_above(&track, 80.0, Window::new(0, 100 * S), 200 * S), 20 * S);
        // Falling 100% -> 0%: above for the first 20 s.
        let track = [(0, 100.0), (100 * S, 0.0)];
        assert_eq!(time_at_or_above(&track, 80.0, Window::new(0, 100 * S), 200 * S), 20 * S);
    }
}
