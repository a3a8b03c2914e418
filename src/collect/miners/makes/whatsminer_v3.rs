//! Whatsminer on btminer API v3 (length-prefixed JSON on TCP 4433): `get.device.info`
//! (identity) then `get.miner.status` with `summary+pools`, both read-only and needing no
//! token. Captures: `whatsminer-v3/` (M60S_VK40). Hashrates are TH/s.

use serde_json::Value;

use super::{Api, Make, Serve, Sim};
use crate::collect::miners::identify::{s, Identity};
use crate::collect::miners::profiles::{Alive, FieldMap, PoolSrc, Rate, Src, Unit};
use crate::miner_capture;

pub static MAP: FieldMap = FieldMap {
    id: "whatsminer-v3",
    hashrate: &[
        Rate::at("summary/msg/summary/hash-realtime", Unit::Ths),
        Rate::at("summary/msg/summary/hash-average", Unit::Ths),
    ],
    rated_hashrate: &[Rate::at("summary/msg/summary/factory-hash", Unit::Ths)],
    power_w: &[Src::P("summary/msg/summary/power-realtime"), Src::P("summary/msg/summary/power-5min")],
    diff_accepted: &[],
    shares_accepted: &[Src::Sum("pools/msg/pools/*/accepted")],
    shares_rejected: &[Src::Sum("pools/msg/pools/*/rejected")],
    temps_c: &[Src::P("summary/msg/summary/chip-temp-max"), Src::P("summary/msg/summary/board-temperature")],
    fans_rpm: &[Src::P("summary/msg/summary/fan-speed-in"), Src::P("summary/msg/summary/fan-speed-out")],
    uptime_s: &[Src::P("summary/msg/summary/elapsed")],
    pool: &[PoolSrc::List {
        at: "pools/msg/pools/*",
        url: "url",
        user: "account",
        alive: Some(("status", Alive::Word("alive"))),
        active: Some("stratum-active"),
        priority: Some("pool-priority"),
    }],
};

/// From `get.device.info` (document key `device_info`).
pub fn identify(doc: &Value) -> Identity {
    Identity {
        make: Some("Whatsminer".into()),
        model: s(doc, "device_info/msg/miner/type"),
        firmware: s(doc, "device_info/msg/system/fwversion").map(|fw| format!("btminer {fw} (API v3)")),
        map: &MAP,
    }
}

pub const MAKE: Make = Make {
    id: "whatsminer-v3",
    title: "Whatsminer, btminer API v3 (TCP 4433)",
    map: &MAP,
    api: Api::Framed {
        requests: &[
            (&["device_info"], r#"{"cmd":"get.device.info"}"#),
            (&["summary", "pools"], r#"{"cmd":"get.miner.status","param":"summary+pools"}"#),
        ],
        identify,
    },
    sim: Some(Sim {
        serve: Serve::Framed,
        replies: || {
            vec![
                ("get.device.info", miner_capture!("whatsminer-v3/get_device_info.json")),
                ("summary", miner_capture!("whatsminer-v3/get_miner_status_summary.json")),
                ("pools", miner_capture!("whatsminer-v3/get_miner_status_pools.json")),
                ("edevs", miner_capture!("whatsminer-v3/get_miner_status_edevs.json")),
            ]
        },
        base_ths: 171.259, // hash-realtime, TH/s
        share_diff: 65536.0,
        extra: &[
            super::extra("summary", "msg/summary/hash-1min", super::Moves::Hash),
            super::extra("summary", "msg/summary/hash-15min", super::Moves::Hash),
        ],
        port: Some(Api::FRAMED_PORT),
    }),
};
