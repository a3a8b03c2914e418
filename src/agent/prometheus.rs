//! The device readings the agent collected, served on its `/metrics` beside its own
//! counters, for sites that scrape with Prometheus or VictoriaMetrics.
//!
//! The latest `gpu` and `asic` point of each device is kept (after the agent's tags
//! are added) and rendered with Prometheus names in base units (`_watts`, `_joules`,
//! `_celsius`, ratios 0–1, hashes per second). A field the device did not report is
//! absent from the page, never 0. With `metrics_dcgm_names` the GPU readings are also
//! rendered under dcgm-exporter's default field names and labels (its
//! `etc/default-counters.csv`, release 4.5.3-4.8.2 with the lower-case `hostname`
//! label), so dashboards built on dcgm-exporter keep working. A device not seen for
//! [`STALE_AFTER_NS`] leaves the page, so a removed GPU or miner does not linger.
//!
//! No timestamps are written: the scraper stamps each sample, as it does for
//! dcgm-exporter, so a replayed or skewed clock cannot put samples out of order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::model::prom::escape_label as escape;
use crate::model::schema::{asic, gpu, TAG_HOST, TAG_SITE, TAG_WORKLOAD};
use crate::model::Point;

/// A device not read for this long (by the point's own time) is no longer served.
pub const STALE_AFTER_NS: i64 = 10 * 60 * 1_000_000_000;

/// One rendered metric: Prometheus name, type, help, the point's field and its scale.
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    field: &'static str,
    scale: f64,
}

const fn m(name: &'static str, kind: &'static str, help: &'static str, field: &'static str, scale: f64) -> Metric {
    Metric { name, kind, help, field, scale }
}

const GPU_METRICS: &[Metric] = &[
    m("wattledger_gpu_power_watts", "gauge", "GPU power draw (NVML average power).", gpu::POWER_W, 1.0),
    m("wattledger_gpu_power_instant_watts", "gauge", "GPU instantaneous power.", gpu::POWER_INSTANT_W, 1.0),
    m("wattledger_gpu_energy_joules_total", "counter", "GPU energy since driver load.", gpu::ENERGY_J, 1.0),
    m("wattledger_gpu_utilization_ratio", "gauge", "GPU utilisation, 0-1.", gpu::UTIL_GPU_PCT, 0.01),
    m(
        "wattledger_gpu_memory_utilization_ratio",
        "gauge",
        "Memory controller utilisation, 0-1.",
        gpu::UTIL_MEM_PCT,
        0.01,
    ),
    m("wattledger_gpu_memory_used_bytes", "gauge", "Framebuffer memory used.", gpu::MEM_USED_BYTES, 1.0),
    m("wattledger_gpu_memory_total_bytes", "gauge", "Framebuffer memory total.", gpu::MEM_TOTAL_BYTES, 1.0),
    m("wattledger_gpu_temperature_celsius", "gauge", "GPU temperature.", gpu::TEMP_C, 1.0),
    m("wattledger_gpu_sm_clock_hertz", "gauge", "SM clock.", gpu::SM_CLOCK_MHZ, 1e6),
    m("wattledger_gpu_power_limit_watts", "gauge", "Enforced power limit.", gpu::POWER_LIMIT_W, 1.0),
];

/// dcgm-exporter's default counters for the readings NVML gives the agent, in its units.
const DCGM_METRICS: &[Metric] = &[
    m("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", gpu::POWER_W, 1.0),
    m(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        gpu::ENERGY_J,
        1e3,
    ),
    m("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", gpu::UTIL_GPU_PCT, 1.0),
    m("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", gpu::UTIL_MEM_PCT, 1.0),
    m("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", gpu::TEMP_C, 1.0),
    m("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", gpu::SM_CLOCK_MHZ, 1.0),
    m("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", gpu::MEM_USED_BYTES, 1.0 / 1048576.0),
];

const ASIC_METRICS: &[Metric] = &[
    m("wattledger_miner_power_watts", "gauge", "Miner power (see label power_source).", asic::POWER_W, 1.0),
    m("wattledger_miner_hashrate_hashes_per_second", "gauge", "Miner hashrate.", asic::HASHRATE_THS, 1e12),
    m(
        "wattledger_miner_accepted_difficulty_total",
        "counter",
        "Sum of the difficulty of accepted shares; resets with the mining process.",
        asic::DIFF_ACCEPTED,
        1.0,
    ),
    m("wattledger_miner_shares_accepted_total", "counter", "Accepted shares.", asic::SHARES_ACCEPTED, 1.0),
    m("wattledger_miner_shares_rejected_total", "counter", "Rejected shares.", asic::SHARES_REJECTED, 1.0),
    m("wattledger_miner_temperature_celsius", "gauge", "Hottest chip or board temperature.", asic::TEMP_C_MAX, 1.0),
    m("wattledger_miner_fan_speed_rpm", "gauge", "Mean fan speed.", asic::FAN_RPM_AVG, 1.0),
    m("wattledger_miner_uptime_seconds", "gauge", "Mining-process uptime.", asic::UPTIME_S, 1.0),
    m("wattledger_miner_up", "gauge", "1 when the miner answered as a miner, else 0.", asic::ONLINE, 1.0),
];

/// The latest reading of every GPU and miner, keyed by measurement and tags.
#[derive(Debug, Default)]
pub struct DeviceReadings {
    latest: Mutex<BTreeMap<(String, Vec<(String, String)>), Point>>,
}

impl DeviceReadings {
    /// Keeps the `gpu` and `asic` points of a collection (already tagged by the agent).
    pub fn observe(&self, points: &[Point]) {
        let mut map = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        for p in points.iter().filter(|p| p.measurement == gpu::MEASUREMENT || p.measurement == asic::MEASUREMENT) {
            map.insert((p.measurement.clone(), device_key(p)), p.clone());
        }
    }

    /// The Prometheus text of the readings no older than [`STALE_AFTER_NS`] before `now_ns`.
    pub fn render(&self, now_ns: i64, dcgm_names: bool) -> String {
        let mut map = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| now_ns - p.time_ns <= STALE_AFTER_NS);
        let gpus: Vec<&Point> = map.values().filter(|p| p.measurement == gpu::MEASUREMENT).collect();
        let miners: Vec<&Point> = map.values().filter(|p| p.measurement == asic::MEASUREMENT).collect();
        let mut o = String::new();
        render_family(&mut o, GPU_METRICS, &gpus, |p| own_labels(p, &[gpu::TAG_GPU, gpu::TAG_UUID, gpu::TAG_MODEL]));
        if dcgm_names {
            render_family(&mut o, DCGM_METRICS, &gpus, dcgm_labels);
        }
        render_family(&mut o, ASIC_METRICS, &miners, |p| {
            own_labels(
                p,
                &[asic::TAG_MINER, asic::TAG_MAKE, asic::TAG_MODEL, asic::TAG_FIRMWARE, asic::TAG_POWER_SOURCE],
            )
        });
        o
    }
}

/// What identifies a device across polls: its identity tags, not ones that change
/// from read to read (`power_source`, `firmware` after an upgrade).
fn device_key(p: &Point) -> Vec<(String, String)> {
    let ids: &[&str] = if p.measurement == gpu::MEASUREMENT {
        &[TAG_SITE, TAG_HOST, gpu::TAG_GPU, gpu::TAG_UUID]
    } else {
        &[TAG_SITE, TAG_HOST, asic::TAG_MINER]
    };
    p.tags.iter().filter(|(k, _)| ids.contains(&k.as_str())).cloned().collect()
}

fn render_family(o: &mut String, metrics: &[Metric], points: &[&Point], labels: impl Fn(&Point) -> String) {
    for m in metrics {
        let mut header = false;
        for p in points {
            // Strings (a status text) and absent fields are not samples.
            let Some(v) = p.field_value(m.field).and_then(|v| v.as_f64()) else { continue };
            if !header {
                let _ = writeln!(o, "# HELP {} {}\n# TYPE {} {}", m.name, m.help, m.name, m.kind);
                header = true;
            }
            let _ = writeln!(o, "{}{{{}}} {}", m.name, labels(p), v * m.scale);
        }
    }
}

fn own_labels(p: &Point, device_tags: &[&str]) -> String {
    let mut parts = Vec::new();
    for k in [TAG_SITE, TAG_HOST, TAG_WORKLOAD].iter().chain(device_tags) {
        if let Some(v) = p.tag_value(k) {
            parts.push(format!("{k}=\"{}\"", escape(v)));
        }
    }
    parts.join(",")
}

/// dcgm-exporter's labels: `gpu`, `UUID`, `device` (`nvidiaN`), `modelName`, `hostname`;
/// plus the agent's `site` and `workload`. `pci_bus_id` is not read by the agent and left out.
fn dcgm_labels(p: &Point) -> String {
    let mut parts = Vec::new();
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}=\"{}\"", escape(&v)));
        }
    };
    let index = p.tag_value(gpu::TAG_GPU).map(str::to_owned);
    push("gpu", index.clone());
    push("UUID", p.tag_value(gpu::TAG_UUID).map(str::to_owned));
    push("device", index.map(|i| format!("nvidia{i}")));
    push("modelName", p.tag_value(gpu::TAG_MODEL).map(str::to_owned));
    push("hostname", p.tag_value(TAG_HOST).map(str::to_owned));
    push("site", p.tag_value(TAG_SITE).map(str::to_owned));
    push("workload", p.tag_value(TAG_WORKLOAD).map(str::to_owned));
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::inference::parse_samples;

    fn gpu_point(t: i64, power: f64) -> Point {
        Point::new(gpu::MEASUREMENT, t)
            .tag(TAG_SITE, "s")
            .tag(TAG_HOST, "h")
            .tag(gpu::TAG_GPU, "0")
            .tag(gpu::TAG_UUID, "GPU-1")
            .tag(gpu::TAG_MODEL, "NVIDIA H100")
            .field(gpu::POWER_W, power)
            .field(gpu::ENERGY_J, 1500.0)
            .field(gpu::UTIL_GPU_PCT, 97i64)
            .field(gpu::STATUS, "ok")
    }

    #[test]
    fn latest_reading_in_base_units_and_dcgm_units() {
        let r = DeviceReadings::default();
        r.observe(&[gpu_point(1, 100.0)]);
        r.observe(&[gpu_point(2, 350.5)]);
        let page = r.render(2, true);
        let s = parse_samples(&page).unwrap();
        let get = |n: &str| s.iter().filter(|x| x.name == n).map(|x| x.value).collect::<Vec<_>>();
        assert_eq!(get("wattledger_gpu_power_watts"), vec![350.5]);
        assert_eq!(get("wattledger_gpu_utilization_ratio"), vec![0.97]);
        assert_eq!(get("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"), vec![1_500_000.0]);
        assert_eq!(get("DCGM_FI_DEV_GPU_UTIL"), vec![97.0]);
        // Not reported, so not on the page (never a 0).
        assert!(get("wattledger_gpu_temperature_celsius").is_empty());
        assert!(!page.contains("status"));
        assert!(page.contains("modelName=\"NVIDIA H100\""), "{page}");
        assert!(!r.render(2, false).contains("DCGM_"));
        // Stale devices leave the page.
        assert!(r.render(2 + STALE_AFTER_NS + 1, false).is_empty());
    }

    #[test]
    fn miner_readings_keep_one_series_per_miner() {
        let r = DeviceReadings::default();
        let p = |src: &str, ths: f64| {
            Point::new(asic::MEASUREMENT, 1)
                .tag(TAG_SITE, "s")
                .tag(TAG_HOST, "h")
                .tag(asic::TAG_MINER, "127.0.0.1:4028")
                .tag(asic::TAG_POWER_SOURCE, src)
                .field(asic::HASHRATE_THS, ths)
                .field(asic::ONLINE, true)
        };
        r.observe(&[p("reported", 100.0)]);
        r.observe(&[p("estimated", 110.0)]);
        let s = parse_samples(&r.render(1, false)).unwrap();
        let hr: Vec<_> = s.iter().filter(|x| x.name == "wattledger_miner_hashrate_hashes_per_second").collect();
        assert_eq!(hr.len(), 1);
        assert_eq!(hr[0].value, 110e12);
        assert!(s.iter().any(|x| x.name == "wattledger_miner_up" && x.value == 1.0));
    }
}
