//! The energy ledger: each device's energy, coverage and revenue inputs per
//! clock-aligned interval, worked out once, where the samples are.
//!
//! - [`accumulator`]: the one implementation of the integration rules (counter
//!   deltas, power trapezoids, resets, gaps, coverage), an incremental fold of one
//!   device's samples. The agent uses it to write the ledger; the aggregator uses
//!   it on raw samples where there is no ledger point, folding rows as they are
//!   read.
//! - [`writer`]: the agent side, which turns the points it spools into one
//!   `energy_ledger` point per device (or meter channel) and interval.
//! - [`point`]: the `energy_ledger` point, written and read back.
//!
//! This module sits below both `agent` and `aggregate`: it knows the raw schema
//! and the rules, not where points go.

pub mod accumulator;
pub mod point;
pub mod writer;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use self::accumulator::{Cuts, DeviceAccumulator, DeviceSums, Part, Rules, Sample, Sums};
use crate::model::schema::{self, asic, gpu, inference, meter};
use crate::model::{FieldValue, Point};

/// Where the aggregator takes energy and revenue inputs from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EnergyFrom {
    /// Ledger points where there are any, raw samples for every other device and interval.
    #[default]
    Auto,
    /// Raw samples only (the ledger is not read): to audit the ledger.
    Raw,
    /// Ledger points only (raw samples are not read).
    Ledger,
}

impl EnergyFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyFrom::Auto => "auto",
            EnergyFrom::Raw => "raw",
            EnergyFrom::Ledger => "ledger",
        }
    }
}

/// The raw measurements the rules read, each with the fields they need.
pub const RAW_MEASUREMENTS: [&str; 3] = [gpu::MEASUREMENT, asic::MEASUREMENT, inference::MEASUREMENT];

/// The measurements the agent writes ledger points for: the devices', and the
/// meter channels' (whose points the aggregator reads per site, not per workload).
pub const LEDGER_SOURCES: [&str; 4] = [gpu::MEASUREMENT, asic::MEASUREMENT, inference::MEASUREMENT, meter::MEASUREMENT];

/// Fields of a raw measurement that the rules read; a row without any of them is
/// not a sample.
pub fn raw_fields(measurement: &str) -> &'static [&'static str] {
    match measurement {
        m if m == gpu::MEASUREMENT => &[gpu::POWER_W, gpu::ENERGY_J, gpu::STATUS, gpu::UTIL_GPU_PCT],
        m if m == asic::MEASUREMENT => &[asic::POWER_W, asic::ONLINE, asic::HASHRATE_THS, asic::DIFF_ACCEPTED],
        m if m == inference::MEASUREMENT => &[inference::PROMPT_TOKENS, inference::GENERATION_TOKENS],
        // A meter channel is healthy while `online`; an offline reading has neither
        // power nor energy, so the time around it is a gap, never 0 W.
        m if m == meter::MEASUREMENT => &[meter::POWER_W, meter::ENERGY_J, meter::ONLINE],
        _ => &[],
    }
}

/// Column positions of the rules' fields in a series (or a point).
#[derive(Debug, Clone, Copy, Default)]
pub struct Columns {
    power: Option<usize>,
    energy: Option<usize>,
    status: Option<usize>,
    online: Option<usize>,
    hashrate: Option<usize>,
    diff: Option<usize>,
    prompt: Option<usize>,
    generation: Option<usize>,
    util: Option<usize>,
}

impl Columns {
    /// Positions of the rules' fields among `fields`, for rows of `measurement`.
    pub fn new<S: AsRef<str>>(measurement: &str, fields: &[S]) -> Columns {
        let wanted = raw_fields(measurement);
        let col = |name: &str| wanted.contains(&name).then(|| fields.iter().position(|f| f.as_ref() == name)).flatten();
        Columns {
            power: col(gpu::POWER_W),
            energy: col(gpu::ENERGY_J),
            status: col(gpu::STATUS),
            online: col(asic::ONLINE),
            hashrate: col(asic::HASHRATE_THS),
            diff: col(asic::DIFF_ACCEPTED),
            prompt: col(inference::PROMPT_TOKENS),
            generation: col(inference::GENERATION_TOKENS),
            util: col(gpu::UTIL_GPU_PCT),
        }
    }

    /// The sample a row holds, `None` when it has none of the rules' fields.
    /// Health: GPU `status == "ok"` when there is a status, else miner `online`,
    /// else true (the device reported).
    pub fn sample<'a>(&self, time_ns: i64, get: impl Fn(usize) -> Option<&'a FieldValue>) -> Option<Sample> {
        let cell = |j: Option<usize>| j.and_then(&get);
        let num = |j: Option<usize>| cell(j).and_then(FieldValue::as_f64).filter(|v| v.is_finite());
        let status = cell(self.status);
        let online = cell(self.online);
        let s = Sample {
            time_ns,
            power_w: num(self.power),
            energy_j: num(self.energy),
            healthy: match (status, online) {
                (Some(st), _) => st.as_str() == Some("ok"),
                (None, Some(on)) => on.as_f64().is_some_and(|x| x != 0.0),
                (None, None) => true,
            },
            hashrate_ths: num(self.hashrate),
            diff_accepted: num(self.diff),
            prompt_tokens: num(self.prompt),
            generation_tokens: num(self.generation),
            util_gpu_pct: num(self.util),
        };
        let any = status.is_some()
            || online.is_some()
            || [
                s.power_w,
                s.energy_j,
                s.hashrate_ths,
                s.diff_accepted,
                s.prompt_tokens,
                s.generation_tokens,
                s.util_gpu_pct,
            ]
            .iter()
            .any(Option::is_some);
        any.then_some(s)
    }

    /// The sample of a series row.
    pub fn row_sample(&self, time_ns: i64, row: &[Option<FieldValue>]) -> Option<Sample> {
        self.sample(time_ns, |j| row.get(j).and_then(Option::as_ref))
    }
}

/// The sample a point holds, when it is a device point of the raw schema.
pub fn point_sample(p: &Point) -> Option<Sample> {
    let names: Vec<&str> = p.fields.iter().map(|(k, _)| k.as_str()).collect();
    Columns::new(&p.measurement, &names).sample(p.time_ns, |j| p.fields.get(j).map(|f| &f.1))
}

/// The tags that identify one device in each measurement.
fn identity_tags(measurement: &str) -> &'static [&'static str] {
    match measurement {
        m if m == gpu::MEASUREMENT => &[schema::TAG_HOST, gpu::TAG_UUID, gpu::TAG_GPU],
        m if m == asic::MEASUREMENT => &[schema::TAG_HOST, asic::TAG_MINER],
        m if m == inference::MEASUREMENT => &[schema::TAG_HOST, inference::TAG_SERVER],
        m if m == meter::MEASUREMENT => &[schema::TAG_HOST, meter::TAG_METER, meter::TAG_CHANNEL],
        _ => &[schema::TAG_HOST],
    }
}

/// A device id such as `rig-1/GPU-1234…`: the identity tags present, joined.
pub fn device_id<'a>(measurement: &str, tags: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for key in identity_tags(measurement) {
        if let Some(v) = tags(key) {
            // A GPU with a UUID is named by it; the index is only a fallback.
            if *key == gpu::TAG_GPU && tags(gpu::TAG_UUID).is_some() {
                continue;
            }
            parts.push(v);
        }
    }
    parts.join("/")
}

/// The tag values that select one device's series in `measurement` (and its
/// ledger series): the identity tags present in `tags`, or all of them when none is.
pub fn identity_filter(measurement: &str, tags: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let has_uuid = tags.contains_key(gpu::TAG_UUID);
    let filter: Vec<(String, String)> = identity_tags(measurement)
        .iter()
        .filter(|k| !(**k == gpu::TAG_GPU && has_uuid))
        .filter_map(|k| tags.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    if filter.is_empty() {
        tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    } else {
        filter
    }
}

/// [`device_id`] of a series' tags; without any identity tag, all tags joined.
pub fn series_device_id(measurement: &str, tags: &BTreeMap<String, String>) -> String {
    let id = device_id(measurement, |k| tags.get(k).map(String::as_str));
    if id.is_empty() {
        tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    } else {
        id
    }
}
