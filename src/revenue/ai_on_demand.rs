//! `ai_on_demand`: GPUs paid by the GPU-hour only while they are busy.
//!
//! A GPU accrues for the time its measured utilization (`util_gpu_pct`, linearly
//! interpolated between samples) is at or above the workload's threshold, within
//! intervals no longer than `max_gap`: the busy time the window computation tracks
//! for [`RevenueModel::util_threshold_pct`].

use serde::Deserialize;

use super::{
    gpu_hour_info, gpu_hours_revenue, non_negative, ModelInfo, Revenue, RevenueError, RevenueInput, RevenueModel,
    Terms, TermsError,
};
use crate::model::schema::gpu;

pub const INFO: ModelInfo = gpu_hour_info("ai_on_demand", "AI · on demand", &[gpu::UTIL_GPU_PCT], true);

/// The terms: `usd_per_gpu_hour` and `util_threshold_pct`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiOnDemand {
    pub usd_per_gpu_hour: f64,
    pub util_threshold_pct: f64,
}

impl RevenueModel for AiOnDemand {
    fn info(&self) -> &'static ModelInfo {
        &INFO
    }

    fn revenue(&self, input: &RevenueInput<'_>) -> Result<Revenue, RevenueError> {
        // The window computation tracks exactly one threshold for this model, ours.
        let busy_ns: i64 = input.devices.iter().map(|d| d.sums.busy_ns.first().copied().unwrap_or(0)).sum();
        Ok(gpu_hours_revenue(busy_ns, self.usd_per_gpu_hour))
    }

    fn util_threshold_pct(&self) -> Option<f64> {
        Some(self.util_threshold_pct)
    }
}

impl Terms for AiOnDemand {
    const EXAMPLE: &'static str = "usd_per_gpu_hour = 2.0\nutil_threshold_pct = 50.0";

    fn check(&self) -> Result<(), TermsError> {
        non_negative("usd_per_gpu_hour", self.usd_per_gpu_hour)?;
        non_negative("util_threshold_pct", self.util_threshold_pct)?;
        if self.util_threshold_pct > 100.0 {
            return Err(TermsError::at(
                "util_threshold_pct",
                format!("util_threshold_pct is a percentage, got {}", self.util_threshold_pct),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Sample;
    use crate::revenue::testutil::*;
    use crate::signal::Window;

    #[test]
    fn only_busy_time_is_paid() {
        // $3/GPU-hour above 50% utilization. Samples every 60 s over [0, 3600 s]:
        // 90% up to 1800 s, then 10%. Between 1800 s (90%) and 1860 s (10%) the
        // interpolated utilization crosses 50% half-way, at 1830 s.
        // Busy time 1830 s; revenue = 3 × 1830 / 3600 = $1.525.
        let model = AiOnDemand { usd_per_gpu_hour: 3.0, util_threshold_pct: 50.0 };
        let samples: Vec<Sample> =
            (0..=60).map(|i| Sample { util_gpu_pct: Some(if i <= 30 { 90.0 } else { 10.0 }), ..at(i * 60) }).collect();
        let devices = [device("h/g0", &samples, 0, 3600, 90, model.util_threshold_pct())];
        let input = RevenueInput { devices: &devices, window: Window::new(0, 3600 * S), market: None };
        let r = model.revenue(&input).unwrap();
        assert!((r.revenue_usd - 1.525).abs() < 1e-12, "{r:?}");
    }
}
