//! Whatsminer on btminer API v1/v2 (`{"cmd":...}` on TCP 4028, no multi-commands).
//! Captures: `whatsminer-v1/`, `whatsminer-v2/`. Hashrates are MH/s.

use serde_json::Value;

use super::{Api, Make, Serve, Sim};
use crate::collect::miners::identify::{s, Identity};
use crate::collect::miners::profiles::{FieldMap, Rate, Src, Unit};
use crate::miner_capture;

pub static MAP: FieldMap = FieldMap {
    id: "whatsminer",
    hashrate: &[
        Rate::at("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        Rate::at("summary/SUMMARY/0/HS RT", Unit::Mhs),
        Rate::at("summary/SUMMARY/0/MHS av", Unit::Mhs),
    ],
    rated_hashrate: &[Rate::at("summary/SUMMARY/0/Factory GHS", Unit::Ghs)],
    power_w: &[Src::P("summary/SUMMARY/0/Power"), Src::P("summary/SUMMARY/0/Power_RT")],
    diff_accepted: &[Src::P("summary/SUMMARY/0/Difficulty Accepted")],
    shares_accepted: &[Src::P("summary/SUMMARY/0/Accepted")],
    shares_rejected: &[Src::P("summary/SUMMARY/0/Rejected")],
    temps_c: &[Src::P("summary/SUMMARY/0/Chip Temp Max"), Src::P("summary/SUMMARY/0/Temperature")],
    fans_rpm: &[Src::P("summary/SUMMARY/0/Fan Speed In"), Src::P("summary/SUMMARY/0/Fan Speed Out")],
    uptime_s: &[Src::P("summary/SUMMARY/0/Elapsed")],
    pool: crate::collect::miners::profiles::CGMINER_POOLS,
};

/// From a document holding `get_version`, and `devdetails` for the model (`M30S+_VE40`).
pub fn identify(doc: &Value) -> Identity {
    Identity {
        make: Some("Whatsminer".into()),
        model: s(doc, "devdetails/DEVDETAILS/0/Model"),
        firmware: s(doc, "get_version/Msg/fw_ver").map(|fw| format!("btminer {fw}")),
        map: &MAP,
    }
}

/// btminer v1/v2 answer no multi-command, so `pools` (for the pool in use) is a request of its
/// own; like `devdetails` it may be refused without failing the reading.
const API: Api =
    Api::Btminer { commands: &["summary", "pools", "devdetails"], optional: &["pools", "devdetails"], identify };

/// Both btminer API versions: the same map and commands, each with its own captures.
const fn btminer(
    id: &'static str,
    title: &'static str,
    replies: fn() -> Vec<(&'static str, Value)>,
    base_ths: f64,
) -> Make {
    Make {
        id,
        title,
        map: &MAP,
        api: API,
        sim: Some(Sim { serve: Serve::Btminer, replies, base_ths, share_diff: 65536.0, extra: &[], port: None }),
    }
}

pub const MAKE_V1: Make = btminer(
    "whatsminer-v1",
    "Whatsminer, btminer API v1",
    || {
        vec![
            ("summary", miner_capture!("whatsminer-v1/summary.json")),
            ("devs", miner_capture!("whatsminer-v1/devs.json")),
            ("pools", miner_capture!("whatsminer-v1/pools.json")),
            ("get_psu", miner_capture!("whatsminer-v1/get_psu.json")),
            ("get_version", miner_capture!("whatsminer-v1/get_version.json")),
            ("status", miner_capture!("whatsminer-v1/status.json")),
        ]
    },
    70.66811452, // MHS 5s 70668114.52 MH/s
);

pub const MAKE_V2: Make = btminer(
    "whatsminer-v2",
    "Whatsminer, btminer API v2",
    || {
        vec![
            ("summary", miner_capture!("whatsminer-v2/summary.json")),
            ("devs", miner_capture!("whatsminer-v2/devs.json")),
            ("devdetails", miner_capture!("whatsminer-v2/devdetails.json")),
            ("pools", miner_capture!("whatsminer-v2/pools.json")),
            ("get_psu", miner_capture!("whatsminer-v2/get_psu.json")),
            ("get_version", miner_capture!("whatsminer-v2/get_version.json")),
            ("get_miner_info", miner_capture!("whatsminer-v2/get_miner_info.json")),
            ("get_error_code", miner_capture!("whatsminer-v2/get_error_code.json")),
        ]
    },
    124.5, // HS RT 124500000.0 MH/s
);
