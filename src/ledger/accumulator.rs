//! The integration rules, as an incremental per-device fold.
//!
//! A [`DeviceAccumulator`] is fed one device's samples in time order, one at a
//! time, and hands out *parts*: an amount of energy, work, accepted difficulty,
//! tokens, healthy or busy time over a time range `[a, b)`. The caller decides
//! where each part goes (the agent: the ledger interval it falls in; the
//! aggregator: the window's tariff segment, or nowhere when a ledger point
//! already holds that time). Every interval between two consecutive samples of a
//! quantity is cut at the [`Cuts`] the caller names, so a part never straddles a
//! boundary the caller cares about, and amounts are additive over adjacent ranges.
//!
//! Rules, interval by interval (an interval is the time between two consecutive
//! samples carrying the quantity, see [`crate::signal`]):
//!
//! - **Energy.** Both ends carry the energy counter (`energy_j`, NVML's total
//!   energy since the driver loaded): the counter's increase. The counter went
//!   backwards (driver reload, GPU reset): energy is never negative; with power at
//!   both ends the interval falls back to the trapezoid of power, the only
//!   measurement that covers the time before *and* after the reset, otherwise the
//!   post-reset value is counted (a lower bound). No counter at both ends, power
//!   at both ends: trapezoid of power (negative readings count as 0). Otherwise
//!   nothing is integrated and the time is not covered.
//! - **Counters** (accepted difficulty, prompt and generation tokens): the
//!   increase, a decrease being a reset that counts the post-reset value
//!   ([`counter_delta`]); a cut splits the increase in proportion to time.
//! - **Gauges** (hashrate): trapezoid, negative readings as 0.
//! - **Healthy time**: intervals whose two ends both say healthy.
//! - **Busy time**: time the linearly interpolated utilisation is at or above
//!   each threshold.
//! - An interval longer than `max_gap`, or of zero length, integrates nothing; a
//!   sample older than the previous one of its quantity is ignored.

use crate::signal::{counter_delta, interpolate};

/// What the rules depend on: the longest interval still integrated, and the
/// utilisation thresholds whose busy time is tracked.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub max_gap_ns: i64,
    pub util_thresholds_pct: Vec<f64>,
}

/// One sample of one device: every quantity the rules integrate, `None` where the
/// sample lacks it. `healthy` follows the raw schema: GPU `status == "ok"`, else
/// miner `online`, else true (the device reported).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub time_ns: i64,
    pub power_w: Option<f64>,
    pub energy_j: Option<f64>,
    pub healthy: bool,
    pub hashrate_ths: Option<f64>,
    pub diff_accepted: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    pub util_gpu_pct: Option<f64>,
}

/// An amount over `[a, b)` (or at an instant, for [`Part::Reading`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Part {
    /// A sample at this instant, with its power reading if any.
    Reading {
        power_w: Option<f64>,
    },
    /// Energy over the range; `counter` when it came from the energy counter.
    Energy {
        joules: f64,
        counter: bool,
    },
    Work {
        th: f64,
    },
    DiffAccepted {
        delta: f64,
    },
    PromptTokens {
        delta: f64,
    },
    GenerationTokens {
        delta: f64,
    },
    /// Both ends healthy: the whole range counts.
    Healthy,
    /// Time at or above `Rules::util_thresholds_pct[index]`.
    Busy {
        index: usize,
        ns: i64,
    },
}

/// Where intervals are cut: every multiple of `grid_ns` (when positive) and every
/// time in `list` (sorted ascending).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cuts {
    pub grid_ns: i64,
    pub list: Vec<i64>,
}

impl Cuts {
    /// The first cut strictly after `t`, or `None`.
    fn after(&self, t: i64) -> Option<i64> {
        let grid = (self.grid_ns > 0).then(|| (t.div_euclid(self.grid_ns) + 1) * self.grid_ns);
        let i = self.list.partition_point(|&c| c <= t);
        match (grid, self.list.get(i).copied()) {
            (Some(g), Some(l)) => Some(g.min(l)),
            (g, l) => g.or(l),
        }
    }

    /// `[t0, t1]` cut into consecutive `(a, b)` ranges.
    fn split(&self, t0: i64, t1: i64, mut f: impl FnMut(i64, i64)) {
        let mut a = t0;
        while a < t1 {
            let b = self.after(a).map_or(t1, |c| c.min(t1));
            f(a, b);
            a = b;
        }
    }
}

/// The previous sample of one device, per quantity.
#[derive(Debug, Clone, Default)]
pub struct DeviceAccumulator {
    energy: Option<(i64, Option<f64>, Option<f64>)>,
    healthy: Option<(i64, bool)>,
    hashrate: Option<(i64, f64)>,
    diff: Option<(i64, f64)>,
    prompt: Option<(i64, f64)>,
    generation: Option<(i64, f64)>,
    util: Option<(i64, f64)>,
}

/// The interval from the previous sample `(t0, v0)` to `t1`, when it integrates.
fn usable(prev: Option<i64>, t1: i64, max_gap_ns: i64) -> Option<i64> {
    prev.filter(|&t0| t1 > t0 && t1 - t0 <= max_gap_ns)
}

/// Trapezoid of the line `(t0, v0)–(t1, v1)` over `[a, b]`, in value × seconds.
fn trapezoid(t0: i64, v0: f64, t1: i64, v1: f64, a: i64, b: i64) -> f64 {
    let (va, vb) = (interpolate(t0, v0, t1, v1, a), interpolate(t0, v0, t1, v1, b));
    (b - a) as f64 / 1e9 * (va + vb) / 2.0
}

/// Time in `[a, b]` the line `(t0, v0)–(t1, v1)` is at or above `threshold`.
fn time_at_or_above(t0: i64, v0: f64, t1: i64, v1: f64, a: i64, b: i64, threshold: f64) -> i64 {
    let (va, vb) = (interpolate(t0, v0, t1, v1, a), interpolate(t0, v0, t1, v1, b));
    match (va >= threshold, vb >= threshold) {
        (true, true) => b - a,
        (false, false) => 0,
        (above_a, _) => {
            // One crossing inside [a, b]: solve the line for the threshold.
            let tc = a as f64 + (threshold - va) / (vb - va) * (b - a) as f64;
            let tc = (tc.round() as i64).clamp(a, b);
            if above_a {
                tc - a
            } else {
                b - tc
            }
        }
    }
}

impl DeviceAccumulator {
    /// The earliest time a later sample can still add to: no part handed out by a
    /// later [`Self::push`] starts before it. `None` before the first sample.
    pub fn settled_ns(&self) -> Option<i64> {
        [
            self.energy.map(|e| e.0),
            self.healthy.map(|h| h.0),
            self.hashrate.map(|h| h.0),
            self.diff.map(|h| h.0),
            self.prompt.map(|h| h.0),
            self.generation.map(|h| h.0),
            self.util.map(|h| h.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Folds the next sample in, handing each part to `sink(a, b, part)`.
    pub fn push(&mut self, s: &Sample, rules: &Rules, cuts: &Cuts, mut sink: impl FnMut(i64, i64, Part)) {
        let t1 = s.time_ns;
        let gap = rules.max_gap_ns;
        sink(t1, t1, Part::Reading { power_w: s.power_w });
        if s.power_w.is_some() || s.energy_j.is_some() {
            let prev = self.energy;
            if let Some(t0) = usable(prev.map(|p| p.0), t1, gap) {
                let (_, p0, e0) = prev.expect("usable implies a previous sample");
                let power = match (p0, s.power_w) {
                    (Some(a), Some(b)) => Some((a.max(0.0), b.max(0.0))),
                    _ => None,
                };
                let span = (t1 - t0) as f64;
                cuts.split(t0, t1, |a, b| {
                    let fraction = (b - a) as f64 / span;
                    let part = match (e0, s.energy_j, power) {
                        (Some(e0), Some(e1), _) if e1 >= e0 => {
                            Part::Energy { joules: (e1 - e0) * fraction, counter: true }
                        }
                        (Some(_), Some(_), Some((p0, p1))) => {
                            Part::Energy { joules: trapezoid(t0, p0, t1, p1, a, b), counter: false }
                        }
                        (Some(e0), Some(e1), None) => {
                            Part::Energy { joules: counter_delta(e0, e1) * fraction, counter: true }
                        }
                        (_, _, Some((p0, p1))) => {
                            Part::Energy { joules: trapezoid(t0, p0, t1, p1, a, b), counter: false }
                        }
                        _ => return,
                    };
                    sink(a, b, part);
                });
            }
            if prev.is_none_or(|p| t1 >= p.0) {
                self.energy = Some((t1, s.power_w, s.energy_j));
            }
        }
        if let Some(t0) = usable(self.healthy.map(|h| h.0), t1, gap) {
            if self.healthy.is_some_and(|h| h.1) && s.healthy {
                cuts.split(t0, t1, |a, b| sink(a, b, Part::Healthy));
            }
        }
        if self.healthy.is_none_or(|h| t1 >= h.0) {
            self.healthy = Some((t1, s.healthy));
        }
        counter(&mut self.diff, s.diff_accepted, t1, gap, cuts, |a, b, delta| sink(a, b, Part::DiffAccepted { delta }));
        counter(&mut self.prompt, s.prompt_tokens, t1, gap, cuts, |a, b, delta| {
            sink(a, b, Part::PromptTokens { delta })
        });
        counter(&mut self.generation, s.generation_tokens, t1, gap, cuts, |a, b, delta| {
            sink(a, b, Part::GenerationTokens { delta })
        });
        gauge(&mut self.hashrate, s.hashrate_ths, t1, gap, |t0, v0, v1| {
            let (v0, v1) = (v0.max(0.0), v1.max(0.0));
            cuts.split(t0, t1, |a, b| sink(a, b, Part::Work { th: trapezoid(t0, v0, t1, v1, a, b) }));
        });
        gauge(&mut self.util, s.util_gpu_pct, t1, gap, |t0, v0, v1| {
            cuts.split(t0, t1, |a, b| {
                for (index, &threshold) in rules.util_thresholds_pct.iter().enumerate() {
                    let ns = time_at_or_above(t0, v0, t1, v1, a, b, threshold);
                    sink(a, b, Part::Busy { index, ns });
                }
            });
        });
    }
}

/// A counter's increase from the previous value, cut at `cuts`.
fn counter(
    prev: &mut Option<(i64, f64)>,
    value: Option<f64>,
    t1: i64,
    gap: i64,
    cuts: &Cuts,
    mut sink: impl FnMut(i64, i64, f64),
) {
    gauge(prev, value, t1, gap, |t0, v0, v1| {
        let (delta, span) = (counter_delta(v0, v1), (t1 - t0) as f64);
        cuts.split(t0, t1, |a, b| sink(a, b, delta * ((b - a) as f64 / span)));
    });
}

/// Calls `f(t0, v0, v1)` for a usable interval of a quantity, then remembers the value.
fn gauge(prev: &mut Option<(i64, f64)>, value: Option<f64>, t1: i64, gap: i64, f: impl FnOnce(i64, f64, f64)) {
    let Some(v1) = value else { return };
    if let Some(t0) = usable(prev.map(|p| p.0), t1, gap) {
        f(t0, prev.expect("usable implies a previous sample").1, v1);
    }
    if prev.is_none_or(|p| t1 >= p.0) {
        *prev = Some((t1, v1));
    }
}

/// A device's amounts over some time: what a ledger point holds and what a
/// revenue model reads. Additive: the sums of adjacent ranges add up to the sum
/// of their union.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sums {
    pub energy_j: f64,
    /// Time covered by energy (counter or trapezoid).
    pub covered_ns: i64,
    /// The part of `covered_ns` whose energy came from the counter.
    pub counter_ns: i64,
    /// Samples in the range, and the highest power reading among them.
    pub samples: u64,
    pub max_power_w: Option<f64>,
    /// ∫ hashrate dt, TH.
    pub work_th: f64,
    /// Accepted difficulty; `None` when the miner reported no accepted-difficulty
    /// interval in the range (it is then paid by hashrate).
    pub diff_accepted: Option<f64>,
    pub prompt_tokens: f64,
    pub generation_tokens: f64,
    pub healthy_ns: i64,
    /// Busy time per threshold, in the order of `Rules::util_thresholds_pct`.
    pub busy_ns: Vec<i64>,
}

impl Sums {
    pub fn add_part(&mut self, a: i64, b: i64, part: Part) {
        match part {
            Part::Reading { power_w } => {
                self.samples += 1;
                if let Some(p) = power_w {
                    self.max_power_w = Some(self.max_power_w.map_or(p, |m| m.max(p)));
                }
            }
            Part::Energy { joules, counter } => {
                self.energy_j += joules;
                self.covered_ns += b - a;
                if counter {
                    self.counter_ns += b - a;
                }
            }
            Part::Work { th } => self.work_th += th,
            Part::DiffAccepted { delta } => *self.diff_accepted.get_or_insert(0.0) += delta,
            Part::PromptTokens { delta } => self.prompt_tokens += delta,
            Part::GenerationTokens { delta } => self.generation_tokens += delta,
            Part::Healthy => self.healthy_ns += b - a,
            Part::Busy { index, ns } => {
                if self.busy_ns.len() <= index {
                    self.busy_ns.resize(index + 1, 0);
                }
                self.busy_ns[index] += ns;
            }
        }
    }

    /// Adds the sums of another range of the same device.
    pub fn absorb(&mut self, o: &Sums) {
        self.energy_j += o.energy_j;
        self.covered_ns += o.covered_ns;
        self.counter_ns += o.counter_ns;
        self.samples += o.samples;
        if let Some(p) = o.max_power_w {
            self.max_power_w = Some(self.max_power_w.map_or(p, |m| m.max(p)));
        }
        self.work_th += o.work_th;
        if let Some(d) = o.diff_accepted {
            *self.diff_accepted.get_or_insert(0.0) += d;
        }
        self.prompt_tokens += o.prompt_tokens;
        self.generation_tokens += o.generation_tokens;
        self.healthy_ns += o.healthy_ns;
        if self.busy_ns.len() < o.busy_ns.len() {
            self.busy_ns.resize(o.busy_ns.len(), 0);
        }
        for (i, ns) in o.busy_ns.iter().enumerate() {
            self.busy_ns[i] += ns;
        }
    }

    /// Whether the device showed up at all: a sample or covered time.
    pub fn seen(&self) -> bool {
        self.samples > 0 || self.covered_ns > 0
    }
}

/// One device's sums with its identity (`host/gpu-uuid`, `host/miner`, `host/server`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceSums {
    pub id: String,
    pub sums: Sums,
}

/// The sums of `samples` (one device, in time order) over `[start_ns, end_ns)`:
/// the fold with cuts at the range's edges, keeping the parts inside.
pub fn sums_over(samples: &[Sample], rules: &Rules, start_ns: i64, end_ns: i64) -> Sums {
    let cuts = Cuts { grid_ns: 0, list: vec![start_ns, end_ns] };
    let mut acc = DeviceAccumulator::default();
    let mut out = Sums::default();
    for s in samples {
        acc.push(s, rules, &cuts, |a, b, part| {
            if a >= start_ns && (b < end_ns || (b == end_ns && a < b)) {
                out.add_part(a, b, part);
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    fn rules(gap_s: i64) -> Rules {
        Rules { max_gap_ns: gap_s * S, util_thresholds_pct: vec![50.0] }
    }

    fn s(t_s: i64, power_w: Option<f64>, energy_j: Option<f64>) -> Sample {
        Sample { time_ns: t_s * S, power_w, energy_j, healthy: true, ..Default::default() }
    }

    #[test]
    fn counter_with_a_reset_falls_back_to_power() {
        // NVML counter every 10 s, power steady at 30 W; the driver reloads
        // between 10 s and 20 s and the counter restarts at ~0.
        //   [0,10]:  5300 - 5000 = 300 J (counter)
        //   [10,20]: 5300 -> 100 is a reset; power known: 10 s × 30 W = 300 J
        //   [20,30]: 400 - 100 = 300 J (counter)
        // total 900 J over [0, 30 s), fully covered, 20 s of it by the counter.
        let samples = [
            s(0, Some(30.0), Some(5000.0)),
            s(10, Some(30.0), Some(5300.0)),
            s(20, Some(30.0), Some(100.0)),
            s(30, Some(30.0), Some(400.0)),
        ];
        let e = sums_over(&samples, &rules(30), 0, 30 * S);
        assert!((e.energy_j - 900.0).abs() < 1e-9, "{e:?}");
        assert_eq!((e.covered_ns, e.counter_ns), (30 * S, 20 * S));
    }

    #[test]
    fn counter_reset_without_power_counts_the_post_reset_value() {
        // Same counter, no power field: the reset interval counts the 100 J since
        // the restart: 300 + 100 + 300 = 700 J.
        let samples =
            [s(0, None, Some(5000.0)), s(10, None, Some(5300.0)), s(20, None, Some(100.0)), s(30, None, Some(400.0))];
        let e = sums_over(&samples, &rules(30), 0, 30 * S);
        assert!((e.energy_j - 700.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn power_with_a_gap() {
        // 100 W at 0, 10, 20 s; silent until 200 s, then 200 W at 200 and 210 s.
        // max_gap 30 s: [20, 200] is a gap. 1000 + 1000 + 2000 = 4000 J over 30 s.
        let samples = [
            s(0, Some(100.0), None),
            s(10, Some(100.0), None),
            s(20, Some(100.0), None),
            s(200, Some(200.0), None),
            s(210, Some(200.0), None),
        ];
        let e = sums_over(&samples, &rules(30), 0, 300 * S);
        assert!((e.energy_j - 4000.0).abs() < 1e-9, "{e:?}");
        assert_eq!(e.covered_ns, 30 * S);
        assert_eq!(e.max_power_w, Some(200.0));
        assert_eq!(e.samples, 5);
    }

    #[test]
    fn edges_split_intervals() {
        // Counter 0 -> 600 J over [50, 70] s; [0, 60 s) gets half: 300 J. The
        // trapezoid of 0 -> 40 W over [50, 70] s clipped to [50, 60]: 0 -> 20 W,
        // 10 s × 10 W mean = 100 J.
        let counter = [s(50, None, Some(0.0)), s(70, None, Some(600.0))];
        let power = [s(50, Some(0.0), None), s(70, Some(40.0), None)];
        assert!((sums_over(&counter, &rules(30), 0, 60 * S).energy_j - 300.0).abs() < 1e-9);
        assert!((sums_over(&power, &rules(30), 0, 60 * S).energy_j - 100.0).abs() < 1e-9);
    }

    #[test]
    fn counters_gauges_health_and_busy_time() {
        // A miner: accepted difficulty 50e6 -> 51.4e6 -> reboot 0.7e6 over 0, 60,
        // 120 s: +1.4e6 + 0.7e6 = 2.1e6. Hashrate 100 TH/s: 120 s × 100 = 12,000 TH.
        // Healthy at 0 and 60, offline at 120: 60 s healthy. Utilisation 90 % at
        // 0 and 60 s, 10 % at 120 s: crosses 50 % at 90 s, 90 s busy.
        let m = |t: i64, d: f64, ok: bool, util: f64| Sample {
            time_ns: t * S,
            hashrate_ths: Some(100.0),
            diff_accepted: Some(d),
            util_gpu_pct: Some(util),
            healthy: ok,
            ..Default::default()
        };
        let samples = [m(0, 50e6, true, 90.0), m(60, 51.4e6, true, 90.0), m(120, 0.7e6, false, 10.0)];
        let e = sums_over(&samples, &rules(90), 0, 120 * S);
        assert!((e.diff_accepted.unwrap() - 2.1e6).abs() < 1e-6, "{e:?}");
        assert!((e.work_th - 12_000.0).abs() < 1e-9);
        assert_eq!(e.healthy_ns, 60 * S);
        assert_eq!(e.busy_ns, vec![90 * S]);
    }

    fn arb_samples() -> impl Strategy<Value = Vec<Sample>> {
        proptest::collection::vec(
            (1i64..40, proptest::option::of(0.0f64..2000.0), 0.0f64..5000.0, 0u8..10, 0.0f64..100.0),
            0..60,
        )
        .prop_map(|steps| {
            let (mut t, mut counter) = (0i64, 0.0f64);
            steps
                .into_iter()
                .map(|(dt, power, inc, kind, util)| {
                    t += dt * S;
                    // Now and then a reset, a sample without counter, or without power.
                    counter = if kind == 0 { inc / 10.0 } else { counter + inc };
                    Sample {
                        time_ns: t,
                        power_w: if kind == 2 { None } else { power },
                        energy_j: (kind != 1).then_some(counter),
                        healthy: kind != 3,
                        hashrate_ths: power.map(|p| p / 30.0),
                        diff_accepted: (kind != 4).then_some(counter * 1e3),
                        prompt_tokens: Some(counter),
                        generation_tokens: (kind != 5).then_some(counter / 2.0),
                        util_gpu_pct: (kind != 6).then_some(util),
                    }
                })
                .collect()
        })
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    proptest! {
        #[test]
        fn sums_are_additive_over_adjacent_ranges(samples in arb_samples(), a in 0i64..1500, m in 0i64..1500, b in 0i64..1500, gap in 5i64..60) {
            let mut cut = [a * S, m * S, b * S];
            cut.sort();
            let r = Rules { max_gap_ns: gap * S, util_thresholds_pct: vec![30.0, 70.0] };
            let mut parts = sums_over(&samples, &r, cut[0], cut[1]);
            parts.absorb(&sums_over(&samples, &r, cut[1], cut[2]));
            let whole = sums_over(&samples, &r, cut[0], cut[2]);
            prop_assert!(close(parts.energy_j, whole.energy_j), "{parts:?} {whole:?}");
            prop_assert_eq!(parts.covered_ns, whole.covered_ns);
            prop_assert_eq!(parts.healthy_ns, whole.healthy_ns);
            prop_assert!(close(parts.work_th, whole.work_th));
            prop_assert!(close(parts.prompt_tokens, whole.prompt_tokens));
            prop_assert_eq!(parts.samples, whole.samples);
            for (x, y) in parts.busy_ns.iter().zip(&whole.busy_ns) {
                prop_assert!((x - y).abs() <= 2, "{x} vs {y}");
            }
            prop_assert!(whole.energy_j >= 0.0 && whole.covered_ns <= cut[2] - cut[0]);
        }

        #[test]
        fn a_grid_gives_the_same_sums_as_whole_ranges(samples in arb_samples(), grid in 1i64..200, gap in 5i64..60) {
            // The agent's way (cut at every grid line, one bucket per cell) and the
            // aggregator's way (cut at the range edges) agree.
            let r = Rules { max_gap_ns: gap * S, util_thresholds_pct: vec![50.0] };
            let cuts = Cuts { grid_ns: grid * S, list: vec![] };
            let mut acc = DeviceAccumulator::default();
            let mut total = Sums::default();
            for s in &samples {
                acc.push(s, &r, &cuts, |a, b, p| total.add_part(a, b, p));
            }
            let whole = sums_over(&samples, &r, i64::MIN / 2, i64::MAX / 2);
            prop_assert!(close(total.energy_j, whole.energy_j));
            prop_assert_eq!(total.covered_ns, whole.covered_ns);
            prop_assert_eq!(total.diff_accepted.is_some(), whole.diff_accepted.is_some());
        }
    }
}
