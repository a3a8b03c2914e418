//! Energy per device and window.
//!
//! Rules, interval by interval (an interval is the time between two consecutive
//! samples of one device, see [`crate::signal`]):
//!
//! 1. Both ends carry the energy counter (`energy_j`, NVML's total energy since the
//!    driver loaded): the energy is the counter's increase.
//! 2. The counter went backwards: the driver reloaded or the GPU was reset, and the
//!    counter restarted near 0. Energy is never negative. If both ends carry power,
//!    the interval falls back to the trapezoid of power (the only measurement that
//!    covers the time before *and* after the reset); otherwise the post-reset value
//!    is counted, which is the energy since the restart and a lower bound for the
//!    interval.
//! 3. No counter at both ends, power at both ends: trapezoid of power.
//! 4. Otherwise, or when the interval is longer than `max_gap`, nothing is
//!    integrated and the interval's time is not covered.
//!
//! An interval crossing a window edge is split in proportion to time (counter) or
//! by interpolating power (trapezoid), so energy is additive across adjacent
//! windows. Coverage is covered time ÷ window length, per device; a workload's
//! coverage is the mean over its devices.

use crate::signal::{counter_delta, pieces, trapezoid, Window};

/// One sample of one device. Samples with neither field are ignored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergySample {
    pub time_ns: i64,
    pub power_w: Option<f64>,
    pub energy_j: Option<f64>,
}

/// A device's energy in one window and the time that backs it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeviceEnergy {
    pub energy_j: f64,
    pub covered_ns: i64,
}

impl DeviceEnergy {
    /// Covered time ÷ window length, in [0, 1].
    pub fn coverage(&self, win: Window) -> f64 {
        coverage(self.covered_ns, 1, win)
    }
}

/// Energy of one device over `win`; `samples` sorted by time.
pub fn device_energy(samples: &[EnergySample], win: Window, max_gap_ns: i64) -> DeviceEnergy {
    let usable: Vec<&EnergySample> = samples.iter().filter(|s| s.power_w.is_some() || s.energy_j.is_some()).collect();
    let times: Vec<i64> = usable.iter().map(|s| s.time_ns).collect();
    let mut out = DeviceEnergy::default();
    for p in pieces(&times, win, max_gap_ns) {
        let (s0, s1) = (usable[p.index], usable[p.index + 1]);
        let power = match (s0.power_w, s1.power_w) {
            (Some(a), Some(b)) => Some((a.max(0.0), b.max(0.0))),
            _ => None,
        };
        let joules = match (s0.energy_j, s1.energy_j, power) {
            (Some(e0), Some(e1), _) if e1 >= e0 => (e1 - e0) * p.fraction(),
            (Some(_), Some(_), Some((p0, p1))) => trapezoid(&p, p0, p1),
            (Some(e0), Some(e1), None) => counter_delta(e0, e1) * p.fraction(),
            (_, _, Some((p0, p1))) => trapezoid(&p, p0, p1),
            _ => continue,
        };
        out.energy_j += joules;
        out.covered_ns += p.b - p.a;
    }
    out
}

/// Covered device-time ÷ (devices × window length), clamped to [0, 1]; 0 when no
/// device reported.
pub fn coverage(covered_ns: i64, devices: usize, win: Window) -> f64 {
    let possible = devices as f64 * win.len_ns() as f64;
    if possible <= 0.0 {
        return 0.0;
    }
    (covered_ns as f64 / possible).clamp(0.0, 1.0)
}

/// Facility energy: IT energy × the site's power usage effectiveness.
pub fn facility_energy_j(it_energy_j: f64, pue: f64) -> f64 {
    it_energy_j * pue
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    fn s(t_s: i64, power_w: Option<f64>, energy_j: Option<f64>) -> EnergySample {
        EnergySample { time_ns: t_s * S, power_w, energy_j }
    }

    #[test]
    fn counter_with_a_reset_falls_back_to_power() {
        // NVML counter every 10 s, power steady at 30 W; the driver reloads
        // between 10 s and 20 s and the counter restarts at ~0.
        //   [0,10]:  5300 - 5000 = 300 J (counter)
        //   [10,20]: 5300 -> 100 is a reset; power known: 10 s × 30 W = 300 J
        //   [20,30]: 400 - 100 = 300 J (counter)
        // total 900 J over the window [0, 30 s), fully covered.
        let samples = [
            s(0, Some(30.0), Some(5000.0)),
            s(10, Some(30.0), Some(5300.0)),
            s(20, Some(30.0), Some(100.0)),
            s(30, Some(30.0), Some(400.0)),
        ];
        let win = Window::new(0, 30 * S);
        let e = device_energy(&samples, win, 30 * S);
        assert!((e.energy_j - 900.0).abs() < 1e-9, "{e:?}");
        assert_eq!(e.coverage(win), 1.0);
    }

    #[test]
    fn counter_reset_without_power_counts_the_post_reset_value() {
        // Same counter, no power field: the reset interval counts the 100 J since
        // the restart: 300 + 100 + 300 = 700 J.
        let samples =
            [s(0, None, Some(5000.0)), s(10, None, Some(5300.0)), s(20, None, Some(100.0)), s(30, None, Some(400.0))];
        let e = device_energy(&samples, Window::new(0, 30 * S), 30 * S);
        assert!((e.energy_j - 700.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn power_with_a_gap() {
        // 100 W at 0, 10, 20 s; the device is silent until 200 s, then 200 W at
        // 200 and 210 s. Window [0, 300 s), max_gap 30 s.
        //   [0,10]:  10 s × 100 W = 1000 J
        //   [10,20]: 10 s × 100 W = 1000 J
        //   [20,200]: 180 s > 30 s: a gap, not integrated
        //   [200,210]: 10 s × 200 W = 2000 J
        // energy 4000 J, covered 30 s, coverage 30 / 300 = 0.1.
        let samples = [
            s(0, Some(100.0), None),
            s(10, Some(100.0), None),
            s(20, Some(100.0), None),
            s(200, Some(200.0), None),
            s(210, Some(200.0), None),
        ];
        let win = Window::new(0, 300 * S);
        let e = device_energy(&samples, win, 30 * S);
        assert!((e.energy_j - 4000.0).abs() < 1e-9, "{e:?}");
        assert_eq!(e.covered_ns, 30 * S);
        assert!((e.coverage(win) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn window_edges_split_intervals() {
        // Counter 0 -> 600 J over [50, 70] s; the window [0, 60 s) gets half of the
        // interval: 300 J. The trapezoid of 0 -> 40 W over [50, 70] s, clipped to
        // [50, 60]: power 0 -> 20 W, 10 s × 10 W mean = 100 J.
        let counter = [s(50, None, Some(0.0)), s(70, None, Some(600.0))];
        let power = [s(50, Some(0.0), None), s(70, Some(40.0), None)];
        let win = Window::new(0, 60 * S);
        assert!((device_energy(&counter, win, 30 * S).energy_j - 300.0).abs() < 1e-9);
        assert!((device_energy(&power, win, 30 * S).energy_j - 100.0).abs() < 1e-9);
    }

    #[test]
    fn facility_energy_applies_pue() {
        // 3.6 MJ (1 kWh) at PUE 1.25 is 4.5 MJ at the meter.
        assert_eq!(facility_energy_j(3.6e6, 1.25), 4.5e6);
    }

    fn arb_samples() -> impl Strategy<Value = Vec<EnergySample>> {
        proptest::collection::vec((1i64..40, proptest::option::of(0.0f64..2000.0), 0.0f64..5000.0, 0u8..10), 0..60)
            .prop_map(|steps| {
                let (mut t, mut counter) = (0i64, 0.0f64);
                steps
                    .into_iter()
                    .map(|(dt, power, inc, kind)| {
                        t += dt * S;
                        // Now and then a reset, a sample without counter, or without power.
                        counter = if kind == 0 { inc / 10.0 } else { counter + inc };
                        let energy = (kind != 1).then_some(counter);
                        let power = if kind == 2 { None } else { power };
                        EnergySample { time_ns: t, power_w: power, energy_j: energy }
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn energy_is_additive_over_adjacent_windows(samples in arb_samples(), a in 0i64..1500, m in 0i64..1500, b in 0i64..1500, gap in 5i64..60) {
            let mut cut = [a * S, m * S, b * S];
            cut.sort();
            let gap = gap * S;
            let left = device_energy(&samples, Window::new(cut[0], cut[1]), gap);
            let right = device_energy(&samples, Window::new(cut[1], cut[2]), gap);
            let whole = device_energy(&samples, Window::new(cut[0], cut[2]), gap);
            prop_assert!((left.energy_j + right.energy_j - whole.energy_j).abs() <= 1e-6 * whole.energy_j.max(1.0));
            prop_assert_eq!(left.covered_ns + right.covered_ns, whole.covered_ns);
            prop_assert!(whole.energy_j >= 0.0);
        }

        #[test]
        fn coverage_stays_in_unit_interval(samples in arb_samples(), a in 0i64..1500, len in 1i64..1500, gap in 5i64..60) {
            let win = Window::new(a * S, (a + len) * S);
            let c = device_energy(&samples, win, gap * S).coverage(win);
            prop_assert!((0.0..=1.0).contains(&c));
        }
    }
}
