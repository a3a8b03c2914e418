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

const API: Api = Api::Btminer { commands: &["summary", "devdetails"], optional: &["devdetails"], identify };

pub const MAKE_V1: Make = Make {
    id: "whatsminer-v1",
    title: "Whatsminer, btminer API v1",
    map: &MAP,
    api: API,
    sim: Some(Sim {
        serve: Serve::Btminer,
        replies: || {
            vec![
                ("summary", miner_capture!("whatsminer-v1/summary.json")),
                ("devs", miner_capture!("whatsminer-v1/devs.json")),
                ("pools", miner_capture!("whatsminer-v1/pools.json")),
                ("get_psu", miner_capture!("whatsminer-v1/get_psu.json")),
                ("get_version", miner_capture!("whatsminer-v1/get_version.json")),
                ("status", miner_capture!("whatsminer-v1/status.json")),
            ]
        },
        base_ths: 70.66811452, // MHS 5s 70668114.52 MH/s
        share_diff: 65536.0,
        extra: &[],
        port: None,
    }),
};

pub const MAKE_V2: Make = Make {
    id: "whatsminer-v2",
    title: "Whatsminer, btminer API v2",
    map: &MAP,
    api: API,
    sim: Some(Sim {
        serve: Serve::Btminer,
        replies: || {
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
        base_ths: 124.5, // HS RT 124500000.0 MH/s
        share_diff: 65536.0,
        extra: &[],
        port: None,
    }),
};
