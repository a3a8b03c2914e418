//! The demo's simulated clock: it replays the recent past quickly, then runs on.
//!
//! Everything in the demo (simulated miners, the fake NVML library, the agents that
//! stamp points, the aggregator that decides which windows are complete) reads time
//! from one [`DemoClock`], so the whole site agrees on "now". The clock starts at
//! `now − backfill`, runs at `backfill_rate` until it reaches the wall-clock time
//! the demo started at, then runs at `live_rate` (`--speed`). With `--speed 1` it
//! then matches the wall clock; faster speeds run ahead of it into the future, which
//! is fine because nothing in the demo reads the wall clock.

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
    /// A clock that starts `backfill` before `wall_now_ns`, replays it in
    /// `backfill_real` of real time, then runs `live_rate` times faster than real
    /// time. `backfill_real` of zero skips the replay.
    pub fn new(wall_now_ns: i64, backfill: Duration, backfill_real: Duration, live_rate: f64) -> Self {
        let backfill_ns = backfill.as_nanos() as i64;
        let backfill_rate = if backfill_real.is_zero() || backfill_ns == 0 {
            1.0
        } else {
            backfill_ns as f64 / backfill_real.as_nanos() as f64
        };
        let start_ns = if backfill_real.is_zero() { wall_now_ns } else { wall_now_ns - backfill_ns };
        DemoClock { started: Instant::now(), start_ns, live_from_ns: wall_now_ns, backfill_rate, live_rate }
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
        let c = DemoClock::new(100 * H, Duration::from_secs(24 * 3600), Duration::from_secs(12), 60.0);
        assert_eq!(c.at(Duration::ZERO), 76 * H);
        assert_eq!(c.at(Duration::from_secs(6)), 88 * H);
        assert_eq!(c.at(Duration::from_secs(12)), 100 * H);
        // One real minute after the replay, at 60×: one simulated hour later.
        assert_eq!(c.at(Duration::from_secs(72)), 101 * H);
    }

    #[test]
    fn no_replay_starts_at_now() {
        let c = DemoClock::new(5 * H, Duration::from_secs(3600), Duration::ZERO, 1.0);
        assert_eq!(c.at(Duration::ZERO), 5 * H);
        assert_eq!(c.at(Duration::from_secs(10)), 5 * H + 10_000_000_000);
        assert!(!c.in_backfill() || c.now_ns() < 5 * H);
    }

    #[test]
    fn never_goes_backwards() {
        let c = DemoClock::new(50 * H, Duration::from_secs(86_400), Duration::from_secs(20), 1.0);
        let mut last = i64::MIN;
        for ms in (0..40_000).step_by(7) {
            let t = c.at(Duration::from_millis(ms));
            assert!(t >= last, "time went back at {ms} ms");
            last = t;
        }
    }
}
