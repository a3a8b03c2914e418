//! Energy per workload and window: coverage and facility energy.
//!
//! The integration rules (counter deltas, power trapezoids, resets, gaps) live in
//! one place, [`crate::ledger::accumulator`], used by the agent to write the energy
//! ledger and by [`super::windows`] on raw samples. An interval crossing a window
//! edge is split in proportion to time (counter) or by interpolating power
//! (trapezoid), so energy is additive across adjacent windows. Coverage is covered
//! time ÷ window length, per device; a workload's coverage is the mean over its
//! devices.

use crate::signal::Window;

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

    const S: i64 = 1_000_000_000;

    #[test]
    fn facility_energy_applies_pue() {
        // 3.6 MJ (1 kWh) at PUE 1.25 is 4.5 MJ at the meter.
        assert_eq!(facility_energy_j(3.6e6, 1.25), 4.5e6);
    }

    #[test]
    fn coverage_is_device_time_over_possible_time() {
        // Two devices over 100 s, one covered 100 s, the other 50 s: 150 / 200.
        assert_eq!(coverage(150 * S, 2, Window::new(0, 100 * S)), 0.75);
        assert_eq!(coverage(0, 0, Window::new(0, 100 * S)), 0.0);
    }
}
