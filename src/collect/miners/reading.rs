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
}

impl PowerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerSource::Reported => "reported",
            PowerSource::Estimated => "estimated",
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
    /// The pool in use (see [`pool_url`]): its URL without credentials, the worker name
    /// without a password, and whether the firmware says the pool is up.
    pub pool_url: Option<String>,
    pub pool_user: Option<String>,
    pub pool_alive: Option<bool>,
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
            pool_url: None,
            pool_user: None,
            pool_alive: None,
            online: false,
            error: Some(error.into()),
        }
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
            .field_opt(asic::POOL_URL, self.pool_url.as_deref())
            .field_opt(asic::POOL_USER, self.pool_user.as_deref())
            .field_opt(asic::POOL_ALIVE, self.pool_alive)
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
        let problem = if !p.is_finite() {
            Some(format!("power {p} W is not a power"))
        } else if p > limit.min(MAX_PLAUSIBLE_W) {
            Some(format!("power {p} W implausible (limit {limit:.0} W for this model); unit slip suspected"))
        } else {
            match hashrate_ths.filter(|h| *h > 0.0) {
                // A kW figure read as W, or a sensor reading next to nothing while the miner
                // hashes: either would make its joules look almost free.
                Some(h) if p / h < MIN_PLAUSIBLE_J_PER_TH => Some(format!(
                    "power {p} W while hashing {h:.3} TH/s is {:.4} J/TH, below any miner's \
                     {MIN_PLAUSIBLE_J_PER_TH} J/TH; unit slip (kW read as W?) or a failing sensor suspected",
                    p / h
                )),
                _ => None,
            }
        };
        if let Some(e) = problem {
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
    let pool = x.pool.unwrap_or_default();
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
        pool_url: pool.url.as_deref().and_then(pool_url),
        pool_user: pool.user.as_deref().and_then(pool_user),
        pool_alive: pool.alive,
        online: true,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// Longest pool URL or worker name kept: stratum URLs and worker names are tens of bytes; a
/// longer value is not a pool address and is not shipped with every point.
pub const MAX_POOL_TEXT: usize = 256;

/// The pool URL as it is shipped: without user information (`stratum+tcp://user:pass@host`
/// → `stratum+tcp://host`), query or fragment, where a password could sit. `None` for an
/// empty or overlong value or one with control characters.
pub fn pool_url(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, raw),
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let out = match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    };
    shippable(out.trim_end_matches('/'))
}

/// The worker name as it is shipped: what comes before a `:` (`account.worker:password` is
/// how some firmwares hold both).
pub fn pool_user(raw: &str) -> Option<String> {
    shippable(raw.split(':').next().unwrap_or("").trim())
}

fn shippable(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= MAX_POOL_TEXT && !s.chars().any(char::is_control)).then(|| s.to_owned())
}

/// No single miner hashes faster than this (the largest hydro units are under 1 PH/s).
pub const MAX_PLAUSIBLE_THS: f64 = 2000.0;
/// No single miner draws more than this.
pub const MAX_PLAUSIBLE_W: f64 = 20_000.0;

/// Fewer joules per terahash than any miner spends. SHA-256 machines are above 9 J/TH; the
/// other algorithms' hashes cost more, not less (a Scrypt D1: about 220,000 J/TH).
pub const MIN_PLAUSIBLE_J_PER_TH: f64 = 1.0;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_credentials_never_leave() {
        assert_eq!(pool_url("stratum+tcp://pool.example:3333").as_deref(), Some("stratum+tcp://pool.example:3333"));
        assert_eq!(pool_url(" a.b:pw@pool.example:3333 ").as_deref(), Some("pool.example:3333"));
        assert_eq!(
            pool_url("stratum+ssl://u:p@pool.example:443/?pass=p#x").as_deref(),
            Some("stratum+ssl://pool.example:443")
        );
        // A Stratum V2 URL's path is the pool's public key: kept.
        assert_eq!(
            pool_url("stratum2+tcp://v2.pool.example/9awtMD5KQgvRUh2yFbjVeT7b").as_deref(),
            Some("stratum2+tcp://v2.pool.example/9awtMD5KQgvRUh2yFbjVeT7b")
        );
        assert_eq!(pool_url(""), None);
        assert_eq!(pool_url("pool\n.example"), None);
        assert_eq!(pool_url(&"a".repeat(MAX_POOL_TEXT + 1)), None);
        assert_eq!(pool_user("acct.worker1:x").as_deref(), Some("acct.worker1"));
        assert_eq!(pool_user("bc1qexampleaddress.rig7").as_deref(), Some("bc1qexampleaddress.rig7"));
        assert_eq!(pool_user(":x"), None);
    }
}
