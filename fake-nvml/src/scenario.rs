//! The scenario file: scripted GPUs and the profiles their readings follow over
//! simulated time. See `fake-nvml/README.md` for the format.
//!
//! Every profile has an exact integral (closed form), so the energy counter is the
//! analytic integral of the scripted power, not a sum of samples: a test can compute
//! the expected counter by hand.

use std::f64::consts::PI;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Returned by nvmlSystemGetDriverVersion.
    #[serde(default = "default_driver_version")]
    pub driver_version: String,
    /// When set, nvmlInit_v2 / nvmlInitWithFlags return this nvmlReturn_t code.
    #[serde(default)]
    pub init_error: Option<u32>,
    /// Unix time (ns) of simulated second 0; default: the real time of the first init.
    #[serde(default)]
    pub start_unix_ns: Option<i64>,
    /// Simulated seconds per real second when the clock is not pinned.
    #[serde(default = "one")]
    pub speed: f64,
    /// When set, the clock starts pinned at this Unix time (ns), as if
    /// `fakeNvmlSetSimTimeNs` had been called before init.
    #[serde(default)]
    pub pin_unix_ns: Option<i64>,
    /// Simulated seconds at which the driver is reloaded: every energy counter restarts at 0.
    #[serde(default)]
    pub driver_reloads_s: Vec<f64>,
    pub gpus: Vec<Gpu>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub name: String,
    pub uuid: String,
    pub power_limit_w: f64,
    pub mem_total_bytes: u64,
    pub power_w: Profile,
    #[serde(default = "zero")]
    pub util_gpu_pct: Profile,
    #[serde(default = "zero")]
    pub util_mem_pct: Profile,
    #[serde(default = "zero")]
    pub mem_used_bytes: Profile,
    #[serde(default = "default_temp")]
    pub temp_c: Profile,
    #[serde(default = "default_clock")]
    pub sm_clock_mhz: Profile,
    #[serde(default = "default_mem_clock")]
    pub mem_clock_mhz: Profile,
    /// Energy counter value (J) at simulated second 0, before any driver reload.
    #[serde(default)]
    pub energy_start_j: f64,
    /// `average` (Ampere and newer: nvmlDeviceGetPowerUsage is a 1 s average) or `instant`.
    #[serde(default)]
    pub power_usage_reports: PowerUsageReports,
    /// Readings this GPU does not support (NVML_ERROR_NOT_SUPPORTED); see `Reading`.
    #[serde(default)]
    pub not_supported: Vec<Reading>,
    /// `[from_s, to_s)` intervals during which every call returns NVML_ERROR_GPU_IS_LOST.
    #[serde(default)]
    pub lost: Vec<(f64, f64)>,
    /// MIG mode enabled (nvmlDeviceGetMigMode current = pending = 1).
    #[serde(default)]
    pub mig: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerUsageReports {
    #[default]
    Average,
    Instant,
}

/// A reading that a scenario can mark as not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    Name,
    Uuid,
    PowerUsage,
    PowerInstant,
    PowerAverage,
    Energy,
    Utilization,
    Memory,
    Temperature,
    Clock,
    PowerLimit,
    MigMode,
    FieldValues,
}

/// A value over simulated time `t` (seconds since start).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Profile {
    /// A constant.
    Const(f64),
    /// Piecewise constant: `[[t_s, value], ...]` sorted by time; the value before the
    /// first step is the first value; with `repeat_s` the pattern repeats with that period.
    Steps {
        steps: Vec<(f64, f64)>,
        #[serde(default)]
        repeat_s: Option<f64>,
    },
    /// `mean + amplitude * sin(2π (t + phase_s) / period_s)`.
    Sine { sine: Sine },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sine {
    pub mean: f64,
    pub amplitude: f64,
    pub period_s: f64,
    #[serde(default)]
    pub phase_s: f64,
}

fn default_driver_version() -> String {
    "550.54.15".into()
}
fn one() -> f64 {
    1.0
}
fn zero() -> Profile {
    Profile::Const(0.0)
}
fn default_temp() -> Profile {
    Profile::Const(40.0)
}
fn default_clock() -> Profile {
    Profile::Const(1410.0)
}
fn default_mem_clock() -> Profile {
    Profile::Const(1593.0)
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = serde_json::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(format!("speed must be a positive number, got {}", self.speed));
        }
        for (i, g) in self.gpus.iter().enumerate() {
            for (what, p) in [
                ("power_w", &g.power_w),
                ("util_gpu_pct", &g.util_gpu_pct),
                ("util_mem_pct", &g.util_mem_pct),
                ("mem_used_bytes", &g.mem_used_bytes),
                ("temp_c", &g.temp_c),
                ("sm_clock_mhz", &g.sm_clock_mhz),
                ("mem_clock_mhz", &g.mem_clock_mhz),
            ] {
                p.validate().map_err(|e| format!("gpus[{i}].{what}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Simulated time of the last driver reload at or before `t`.
    pub fn last_reload(&self, t: f64) -> Option<f64> {
        self.driver_reloads_s.iter().copied().filter(|r| *r <= t).reduce(f64::max)
    }
}

impl Gpu {
    pub fn supports(&self, r: Reading) -> bool {
        !self.not_supported.contains(&r)
    }

    pub fn is_lost(&self, t: f64) -> bool {
        self.lost.iter().any(|(from, to)| t >= *from && t < *to)
    }

    /// Energy counter in joules at `t`: the start value plus the exact integral of the
    /// power profile, restarted at 0 by the last driver reload.
    pub fn energy_j(&self, t: f64, last_reload: Option<f64>) -> f64 {
        match last_reload {
            Some(r) => self.power_w.integral(t) - self.power_w.integral(r),
            None => self.energy_start_j + self.power_w.integral(t),
        }
    }

    /// Mean power over the second ending at `t` (over `[0, t]` while `t < 1`).
    pub fn power_average_w(&self, t: f64) -> f64 {
        let from = (t - 1.0).max(0.0);
        if t <= from {
            return self.power_w.at(t);
        }
        (self.power_w.integral(t) - self.power_w.integral(from)) / (t - from)
    }
}

impl Profile {
    fn validate(&self) -> Result<(), String> {
        match self {
            Profile::Const(v) if !v.is_finite() => Err("not a finite number".into()),
            Profile::Const(_) => Ok(()),
            Profile::Steps { steps, repeat_s } => {
                if steps.is_empty() {
                    return Err("steps is empty".into());
                }
                if steps.windows(2).any(|w| w[1].0 < w[0].0) {
                    return Err("steps must be sorted by time".into());
                }
                if let Some(p) = repeat_s {
                    if p.is_nan() || *p <= 0.0 || steps.last().is_some_and(|s| s.0 >= *p) {
                        return Err("repeat_s must be positive and after the last step".into());
                    }
                }
                Ok(())
            }
            Profile::Sine { sine } if sine.period_s.is_nan() || sine.period_s <= 0.0 => {
                Err("sine.period_s must be positive".into())
            }
            Profile::Sine { .. } => Ok(()),
        }
    }

    /// The value at `t` (clamped to `t >= 0`).
    pub fn at(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        match self {
            Profile::Const(v) => *v,
            Profile::Steps { steps, repeat_s } => {
                let t = match repeat_s {
                    Some(p) => t.rem_euclid(*p),
                    None => t,
                };
                steps.iter().take_while(|(at, _)| *at <= t).last().unwrap_or(&steps[0]).1
            }
            Profile::Sine { sine } => {
                sine.mean + sine.amplitude * (2.0 * PI * (t + sine.phase_s) / sine.period_s).sin()
            }
        }
    }

    /// Exact integral from 0 to `t` (clamped to `t >= 0`).
    pub fn integral(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        match self {
            Profile::Const(v) => v * t,
            Profile::Steps { steps, repeat_s: None } => steps_integral(steps, t),
            Profile::Steps { steps, repeat_s: Some(p) } => {
                let periods = (t / p).floor();
                periods * steps_integral(steps, *p) + steps_integral(steps, t - periods * p)
            }
            Profile::Sine { sine } => {
                let w = 2.0 * PI / sine.period_s;
                sine.mean * t + sine.amplitude / w * ((w * sine.phase_s).cos() - (w * (t + sine.phase_s)).cos())
            }
        }
    }
}

/// ∫₀ᵗ of a piecewise-constant function whose value before the first step is the first value.
fn steps_integral(steps: &[(f64, f64)], t: f64) -> f64 {
    let mut total = 0.0;
    let mut from = 0.0;
    let mut value = steps[0].1;
    for &(at, v) in steps {
        if at >= t {
            break;
        }
        if at > from {
            total += value * (at - from);
            from = at;
        }
        value = v;
    }
    total + value * (t - from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_integral_by_hand() {
        let p = Profile::Steps { steps: vec![(0.0, 100.0), (10.0, 300.0)], repeat_s: None };
        assert_eq!(p.integral(5.0), 500.0);
        assert_eq!(p.integral(10.0), 1000.0);
        assert_eq!(p.integral(12.0), 1600.0);
        assert_eq!(p.at(9.99), 100.0);
        assert_eq!(p.at(10.0), 300.0);
    }

    #[test]
    fn repeating_steps_integral() {
        let p = Profile::Steps { steps: vec![(0.0, 100.0), (30.0, 600.0)], repeat_s: Some(60.0) };
        // one period = 30*100 + 30*600 = 21000 J
        assert_eq!(p.integral(60.0), 21_000.0);
        assert_eq!(p.integral(150.0), 2.0 * 21_000.0 + 3_000.0 + 600.0 * 0.0);
        assert_eq!(p.integral(160.0), 2.0 * 21_000.0 + 3_000.0 + 6_000.0);
        assert_eq!(p.at(95.0), 600.0);
    }

    #[test]
    fn sine_integral_over_a_period_is_the_mean() {
        let p = Profile::Sine { sine: Sine { mean: 300.0, amplitude: 100.0, period_s: 60.0, phase_s: 7.0 } };
        assert!((p.integral(60.0) - 18_000.0).abs() < 1e-6);
        assert!(
            (p.integral(15.0)
                - (300.0 * 15.0
                    + 100.0 * 60.0 / (2.0 * PI) * ((2.0 * PI * 7.0 / 60.0).cos() - (2.0 * PI * 22.0 / 60.0).cos())))
            .abs()
                < 1e-9
        );
    }

    #[test]
    fn bad_scenarios_are_rejected_with_the_place() {
        let e = Scenario::parse(r#"{"gpus":[{"name":"x","uuid":"u","power_limit_w":1,"mem_total_bytes":1,"power_w":{"steps":[[5,1],[2,3]]}}]}"#).unwrap_err();
        assert!(e.contains("gpus[0].power_w"), "{e}");
        let e = Scenario::parse(r#"{"gpus":[], "speeed": 2}"#).unwrap_err();
        assert!(e.contains("speeed"), "{e}");
    }
}
