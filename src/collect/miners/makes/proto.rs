//! Proto rig API (`GET /api/v1/{system,mining,cooling,pools}`, no login). GH/s. NB: the
//! captures (`proto/`) are simulator data, as their serials say, not hardware output.

use serde_json::Value;

use super::{extra, Api, HttpApi, HttpReq, Make, Moves, Serve, Sim};
use crate::collect::miners::identify::{s, Identity};
use crate::collect::miners::profiles::{FieldMap, PoolSrc, Rate, Src, Unit};
use crate::miner_capture;

pub static MAP: FieldMap = FieldMap {
    id: "proto",
    hashrate: &[Rate::at("mining/mining-status/hashrate_ghs", Unit::Ghs)],
    rated_hashrate: &[Rate::at("mining/mining-status/ideal_hashrate_ghs", Unit::Ghs)],
    power_w: &[Src::P("mining/mining-status/power_usage_watts")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("pools/pools/0/accepted")],
    shares_rejected: &[Src::P("pools/pools/0/rejected")],
    temps_c: &[Src::P("mining/mining-status/average_asic_temp_c"), Src::P("mining/mining-status/average_hb_temp_c")],
    fans_rpm: &[Src::P("cooling/cooling-status/fans/*/rpm")],
    uptime_s: &[Src::P("mining/mining-status/mining_uptime_s")],
    // The capture's `status`/`connection_status` take only the value "Active" and their other
    // values are not documented, so `alive` is not read; the pool is the first by priority.
    pool: &[PoolSrc::List {
        at: "pools/pools/*",
        url: "url",
        user: "user",
        alive: None,
        active: None,
        priority: Some("priority"),
    }],
};

/// From `/api/v1/system`.
pub fn identify(doc: &Value) -> Identity {
    let os = match (s(doc, "system/system-info/os/name"), s(doc, "system/system-info/os/version")) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, v) => n.or(v),
    };
    Identity {
        make: s(doc, "system/system-info/manufacturer").or_else(|| Some("Proto".into())),
        model: s(doc, "system/system-info/model"),
        firmware: os,
        map: &MAP,
    }
}

pub const MAKE: Make = Make {
    id: "proto",
    title: "Proto rig",
    map: &MAP,
    api: Api::Http(HttpApi {
        label: "Proto",
        requests: &[
            HttpReq::get("system", "/api/v1/system"),
            HttpReq::get("mining", "/api/v1/mining"),
            HttpReq::get("cooling", "/api/v1/cooling"),
            HttpReq::get("pools", "/api/v1/pools"),
        ],
        detect: |v| v.get("system-info").is_some(),
        identify,
        login: None,
    }),
    sim: Some(Sim {
        serve: Serve::Http,
        replies: || {
            vec![
                ("/api/v1/system", miner_capture!("proto/system.json")),
                ("/api/v1/mining", miner_capture!("proto/mining.json")),
                ("/api/v1/cooling", miner_capture!("proto/cooling.json")),
                ("/api/v1/pools", miner_capture!("proto/pools.json")),
                ("/api/v1/hardware", miner_capture!("proto/hardware.json")),
                ("/api/v1/telemetry", miner_capture!("proto/telemetry_full.json")),
            ]
        },
        base_ths: 141.147_435_031_471_1, // hashrate_ghs / 1000
        share_diff: 1_048_576.0,         // pools difficulty
        extra: &[
            extra("/api/v1/mining", "mining-status/average_hashrate_ghs", Moves::Hash),
            extra("/api/v1/mining", "mining-status/reboot_uptime_s", Moves::Elapsed),
            extra("/api/v1/system", "system-info/uptime_seconds", Moves::Elapsed),
        ],
        port: None,
    }),
};
