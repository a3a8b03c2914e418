//! `ai_contract`: reserved GPUs paid by the GPU-hour for every hour each GPU was
//! present and healthy, whatever its load.
//!
//! Present and healthy is measured, not assumed: a GPU accrues over an interval
//! between two consecutive samples when both samples say it was healthy (NVML
//! `status = "ok"`, or no status with a power reading) and the interval is no
//! longer than `max_gap`. A GPU that falls off the bus (`lost`) or stops reporting
//! accrues nothing for that time.

use serde::Deserialize;

use super::{
    gpu_hour_info, gpu_hours_revenue, non_negative, ModelInfo, Revenue, RevenueError, RevenueInput, RevenueModel,
    Terms, TermsError,
};
use crate::model::schema::gpu;

pub const INFO: ModelInfo = gpu_hour_info("ai_contract", "AI · reserved contract", &[gpu::STATUS], false);

/// The terms: `usd_per_gpu_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiContract {
    pub usd_per_gpu_hour: f64,
}

impl RevenueModel for AiContract {
    fn info(&self) -> &'static ModelInfo {
        &INFO
    }

    fn revenue(&self, input: &RevenueInput<'_>) -> Result<Revenue, RevenueError> {
        let healthy_ns: i64 = input.devices.iter().map(|d| d.sums.healthy_ns).sum();
        Ok(gpu_hours_revenue(healthy_ns, self.usd_per_gpu_hour))
    }
}

impl Terms for AiContract {
    const EXAMPLE: &'static str = "usd_per_gpu_hour = 2.1";

    fn check(&self) -> Result<(), TermsError> {
        non_negative("usd_per_gpu_hour", self.usd_per_gpu_hour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Sample;
    use crate::revenue::testutil::*;
    use crate::signal::Window;

    fn gpu(id: &str, samples: impl IntoIterator<Item = (i64, bool)>) -> crate::revenue::DeviceSums {
        let samples: Vec<Sample> = samples.into_iter().map(|(t, ok)| Sample { healthy: ok, ..at(t) }).collect();
        device(id, &samples, 0, 3600, 90, None)
    }

    #[test]
    fn gpu_offline_for_part_of_the_window() {
        // Two GPUs at $2/GPU-hour, polled every 60 s, window [0, 3600 s), max gap 90 s.
        // GPU A is healthy throughout: 3600 s.
        // GPU B is healthy until 1800 s, silent until 2700 s (a 900 s gap: not
        // present), reports `lost` from 2700 s to 2940 s, healthy again from 3000 s:
        //   [0,1800] 1800 s + [3000,3600] 600 s = 2400 s
        //   ([2940,3000] has a lost end, so it does not count.)
        // GPU-hours = (3600 + 2400) / 3600 = 1.6667; revenue = 2 × 1.6667 = $3.3333.
        let a = gpu("h/a", (0..=60).map(|i| (i * 60, true)));
        let b = gpu(
            "h/b",
            (0..=30)
                .map(|i| (i * 60, true))
                .chain((45..=49).map(|i| (i * 60, false)))
                .chain((50..=60).map(|i| (i * 60, true))),
        );
        let devices = [a, b];
        let input = RevenueInput { devices: &devices, window: Window::new(0, 3600 * S), market: None };
        let r = AiContract { usd_per_gpu_hour: 2.0 }.revenue(&input).unwrap();
        assert!((r.revenue_usd - 2.0 * 6000.0 / 3600.0).abs() < 1e-12, "{r:?}");
    }
}
