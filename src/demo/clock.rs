//! The demo's simulated clock: it replays the recent past quickly, then runs on.
//!
//! Everything in the demo (simulated miners, the fake NVML library, the agents that
//! stamp points, the aggregator that decides which windows are complete) reads time
//! from one [`DemoClock`], so the whole site agrees on "now". The clock starts in
//! the past (a day ago, or where the previous run's data ends), runs at
//! `backfill_rate` until it reaches the wall-clock time the demo started at, then
//! runs at `live_rate` (`--speed`). With `--speed 1` it then matches the wall
//! clock; faster speeds run ahead of it into the future, which is fine because
//! nothing in the demo reads the wall clock.

use std::time::{Duration, Instant};

use crate::model::Clock;

#[derive(Debug, Clone)]
pub struct DemoClock {
    started: Instant,
    start_ns: i64,
    /// Simulated time at which the replay ends and live running begins.
    live_from_ns: i64,
    backfill_rate: f64,
    live_rate: f64,
}

impl DemoClock {
    /// A clock that starts at `start_ns`, replays up to `live_from_ns` at
    /// `backfill_rate` times real speed, then runs at `live_rate`. With
    /// `start_ns >= live_from_ns` it runs live from `start_ns` at once.
    pub fn new(start_ns: i64, live_from_ns: i64, backfill_rate: f64, live_rate: f64) -> Self {
        let backfill_rate = if backfill_rate.is_finite() && backfill_rate > 0.0 { backfill_rate } else { 1.0 };
        DemoClock {
            started: Instant::now(),
            start_ns,
            live_from_ns: live_from_ns.max(start_ns),
            backfill_rate,
            live_rate,
        }
    }

    /// Simulated time after `elapsed` of real time since the clock was made.
    pub fn at(&self, elapsed: Duration) -> i64 {
        let e = elapsed.as_nanos() as f64;
        let backfill_real_ns = (self.live_from_ns - self.start_ns) as f64 / self.backfill_rate;
        if e < backfill_real_ns {
            self.start_ns + (e * self.backfill_rate) as i64
        } else {
            self.live_from_ns + ((e - backfill_real_ns) * self.live_rate) as i64
        }
    }

    pub fn start_ns(&self) -> i64 {
        self.start_ns
    }

    /// Where the replay of the past ends.
    pub fn live_from_ns(&self) -> i64 {
        self.live_from_ns
    }

    /// True while the clock is still replaying the past.
    pub fn in_backfill(&self) -> bool {
        self.now_ns() < self.live_from_ns
    }

    /// How fast simulated time runs right now, in simulated seconds per real second.
    pub fn rate(&self) -> f64 {
        if self.in_backfill() {
            self.backfill_rate
        } else {
            self.live_rate
        }
    }

    pub fn live_rate(&self) -> f64 {
        self.live_rate
    }

    /// How much of the replay is done, 0–1 (1 once live, and when there was nothing to replay).
    pub fn replay_fraction(&self) -> f64 {
        let total = (self.live_from_ns - self.start_ns) as f64;
        if total <= 0.0 {
            return 1.0;
        }
        ((self.now_ns() - self.start_ns) as f64 / total).clamp(0.0, 1.0)
    }

    /// Real time until the replay ends (zero once live).
    pub fn backfill_remaining(&self) -> Duration {
        let left_ns = (self.live_from_ns - self.now_ns()).max(0) as f64 / self.backfill_rate;
        Duration::from_nanos(left_ns as u64)
    }
}

impl Clock for DemoClock {
    fn now_ns(&self) -> i64 {
        self.at(self.started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    #[test]
    fn replays_the_past_then_runs_at_live_speed() {
        // 24 h replayed in 12 s is 7200× real time; then 60×.
        let c = DemoClock::new(76 * H, 100 * H, 7200.0, 60.0);
        assert_eq!(c.at(Duration::ZERO), 76 * H);
        assert_eq!(c.at(Duration::from_secs(6)), 88 * H);
        assert_eq!(c.at(Duration::from_secs(12)), 100 * H);
        // One real minute after the replay, at 60×: one simulated hour later.
        assert_eq!(c.at(Duration::from_secs(72)), 101 * H);
    }

    #[test]
    fn resuming_ahead_of_the_wall_clock_runs_live_at_once() {
        // A previous run at high speed left simulated time past the wall clock.
        let c = DemoClock::new(7 * H, 5 * H, 7200.0, 1.0);
        assert_eq!(c.at(Duration::ZERO), 7 * H);
        assert_eq!(c.at(Duration::from_secs(10)), 7 * H + 10_000_000_000);
        assert!(!c.in_backfill());
        assert_eq!(c.backfill_remaining(), Duration::ZERO);
    }

    #[test]
    fn never_goes_backwards() {
        let c = DemoClock::new(26 * H, 50 * H, 4320.0, 1.0);
        let mut last = i64::MIN;
        for ms in (0..40_000).step_by(7) {
            let t = c.at(Duration::from_millis(ms));
            assert!(t >= last, "time went back at {ms} ms");
            last = t;
        }
    }
}
