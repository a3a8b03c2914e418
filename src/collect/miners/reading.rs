//! The normalized reading of one miner, and the checks every reading passes: a hashrate
//! that is implausible for the rating is a unit slip, a power above any single miner is
//! one too; both are kept out of the reading and named in `error`.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::identify::Identity;
use super::{models, profiles, DEFAULT_MAX_REPLY_BYTES};
use crate::model::schema::asic;
use crate::model::Point;

/// Where `power_w` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerSource {
    /// The miner reports it (its own sensor or firmware estimate).
    Reported,
    /// Measured hashrate × the model's nominal J/TH ([`models`]).
    Estimated,
    /// A PDU or smart-plug reading configured for this miner.
    Meter,
}

impl PowerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerSource::Reported => "reported",
            PowerSource::Estimated => "estimated",
            PowerSource::Meter => "meter",
        }
    }
}

/// One normalized reading of one miner. Units are in the names; counters are raw counters
/// (they reset when the mining process restarts). `None` = the miner does not say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinerReading {
    pub host: String,
    pub port: u16,
    pub make: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub hashrate_ths: Option<f64>,
    pub power_w: Option<f64>,
    pub power_source: Option<PowerSource>,
    pub diff_accepted: Option<f64>,
    pub shares_accepted: Option<u64>,
    pub shares_rejected: Option<u64>,
    pub temp_c_max: Option<f64>,
    pub fan_rpm_avg: Option<f64>,
    pub uptime_s: Option<u64>,
    pub online: bool,
    /// Why the miner is offline, or which value was rejected by the sanity check.
    pub error: Option<String>,
}

impl MinerReading {
    /// A reading for a miner that could not be read.
    pub fn offline(host: &str, port: u16, error: impl Into<String>) -> Self {
        MinerReading {
            host: host.to_owned(),
            port,
            make: None,
            model: None,
            firmware: None,
            hashrate_ths: None,
            power_w: None,
            power_source: None,
            diff_accepted: None,
            shares_accepted: None,
            shares_rejected: None,
            temp_c_max: None,
            fan_rpm_avg: None,
            uptime_s: None,
            online: false,
            error: Some(error.into()),
        }
    }

    /// Replaces power with a configured meter's reading (PDU outlet, smart plug).
    pub fn with_meter(mut self, power_w: f64) -> Self {
        self.power_w = Some(power_w);
        self.power_source = Some(PowerSource::Meter);
        self
    }

    /// `host:port`, the `miner` tag.
    pub fn miner_id(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `asic` point for this reading.
    pub fn to_point(&self, time_ns: i64) -> Point {
        let mut p = Point::new(asic::MEASUREMENT, time_ns).tag(asic::TAG_MINER, self.miner_id());
        if let Some(m) = &self.make {
            p = p.tag(asic::TAG_MAKE, m.as_str());
        }
        if let Some(m) = &self.model {
            p = p.tag(asic::TAG_MODEL, m.as_str());
        }
        if let Some(f) = &self.firmware {
            p = p.tag(asic::TAG_FIRMWARE, f.as_str());
        }
        if let Some(s) = self.power_source {
            p = p.tag(asic::TAG_POWER_SOURCE, s.as_str());
        }
        p.field_opt(asic::POWER_W, self.power_w)
            .field_opt(asic::HASHRATE_THS, self.hashrate_ths)
            .field_opt(asic::DIFF_ACCEPTED, self.diff_accepted)
            .field_opt(asic::SHARES_ACCEPTED, self.shares_accepted)
            .field_opt(asic::SHARES_REJECTED, self.shares_rejected)
            .field_opt(asic::TEMP_C_MAX, self.temp_c_max)
            .field_opt(asic::FAN_RPM_AVG, self.fan_rpm_avg)
            .field_opt(asic::UPTIME_S, self.uptime_s)
            .field(asic::ONLINE, self.online)
    }
}

/// Limits for reading one miner.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Budget for the whole reading of one miner, all its requests together.
    pub timeout: Duration,
    /// Cap on each reply's size in bytes.
    pub max_reply_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { timeout: Duration::from_secs(5), max_reply_bytes: DEFAULT_MAX_REPLY_BYTES }
    }
}

/// Applies the identity, the sanity check and the power estimate to extracted values.
pub fn finish(host: &str, port: u16, id: &Identity, doc: &Value) -> MinerReading {
    let x = profiles::extract(id.map, doc);
    let spec = models::rated(id.make.as_deref(), id.model.as_deref());
    let mut errors = Vec::new();
    let addr = format!("{host}:{port}");
    // The table first: a miner's own nominal figure can carry the same unit slip as its reading.
    let rated_ths = spec.map(|s| s.rated_ths).or(x.rated_ths);
    let hashrate_ths = match x.hashrate_ths {
        Some(h) => match check_hashrate(h, rated_ths) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(miner = %addr, make = ?id.make, model = ?id.model, "{e}; not stored");
                errors.push(e);
                None
            }
        },
        None => None,
    };
    let (mut power_w, mut power_source) = (x.power_w, x.power_w.map(|_| PowerSource::Reported));
    if let Some(p) = power_w {
        let limit = spec.map(|s| s.rated_w * 2.5).unwrap_or(MAX_PLAUSIBLE_W);
        if p > limit.min(MAX_PLAUSIBLE_W) {
            let e = format!("power {p} W implausible (limit {limit:.0} W for this model); unit slip suspected");
            tracing::warn!(miner = %addr, "{e}; not stored");
            errors.push(e);
            power_w = None;
            power_source = None;
        }
    }
    if power_w.is_none() {
        if let (Some(spec), Some(h)) = (spec, hashrate_ths) {
            power_w = Some(h * spec.j_per_th());
            power_source = Some(PowerSource::Estimated);
        }
    }
    MinerReading {
        host: host.to_owned(),
        port,
        make: id.make.clone(),
        model: id.model.clone(),
        firmware: id.firmware.clone(),
        hashrate_ths,
        power_w,
        power_source,
        diff_accepted: x.diff_accepted,
        shares_accepted: x.shares_accepted,
        shares_rejected: x.shares_rejected,
        temp_c_max: x.temp_c_max,
        fan_rpm_avg: x.fan_rpm_avg,
        uptime_s: x.uptime_s,
        online: true,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// No single miner hashes faster than this (the largest hydro units are under 1 PH/s).
pub const MAX_PLAUSIBLE_THS: f64 = 2000.0;
/// No single miner draws more than this.
pub const MAX_PLAUSIBLE_W: f64 = 20_000.0;

/// Accepts a hashrate only if it is plausible for the rated hashrate: more than 3× the
/// rating means a unit slip (GH/s read as TH/s is 1000×); less than 1/300 of it while
/// reporting anything at all means the opposite slip.
pub fn check_hashrate(h: f64, rated_ths: Option<f64>) -> Result<f64, String> {
    if !h.is_finite() || h < 0.0 {
        return Err(format!("hashrate {h} TH/s is not a number"));
    }
    if let Some(r) = rated_ths {
        if h > r * 3.0 {
            return Err(format!(
                "hashrate {h:.3} TH/s is {:.0}× the rated {r} TH/s; unit slip suspected (GH/s read as TH/s?)",
                h / r
            ));
        }
        if h > 0.0 && h < r / 300.0 {
            return Err(format!(
                "hashrate {h:.6} TH/s is 1/{:.0} of the rated {r} TH/s; unit slip suspected (TH/s read as GH/s?)",
                r / h
            ));
        }
    } else if h > MAX_PLAUSIBLE_THS {
        return Err(format!(
            "hashrate {h:.1} TH/s exceeds any single miner ({MAX_PLAUSIBLE_THS} TH/s); unit slip suspected"
        ));
    }
    Ok(h)
}
