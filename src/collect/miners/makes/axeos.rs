//! Bitaxe on AxeOS (`GET /api/system/info`). Captures: `bitaxe-axeos/` (Supra). `hashRate`
//! is GH/s; the model follows from the ASIC.

use serde_json::Value;

use super::{Api, HttpApi, HttpReq, Make, Serve, Sim};
use crate::collect::miners::identify::{s, Identity};
use crate::collect::miners::profiles::{FieldMap, PoolSrc, Rate, Src, Unit};
use crate::miner_capture;

pub static MAP: FieldMap = FieldMap {
    id: "bitaxe-axeos",
    hashrate: &[Rate::at("system_info/hashRate", Unit::Ghs)],
    rated_hashrate: &[Rate::at("system_info/expectedHashrate", Unit::Ghs)],
    power_w: &[Src::P("system_info/power")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("system_info/sharesAccepted")],
    shares_rejected: &[Src::P("system_info/sharesRejected")],
    temps_c: &[Src::P("system_info/temp"), Src::P("system_info/vrTemp")],
    fans_rpm: &[Src::P("system_info/fanrpm")],
    uptime_s: &[Src::P("system_info/uptimeSeconds")],
    // The fallback pool when AxeOS says it is on it, else the primary. AxeOS reports no
    // connection state, so `alive` stays unknown.
    pool: &[
        PoolSrc::Flat {
            url: "system_info/fallbackStratumURL",
            port: Some("system_info/fallbackStratumPort"),
            user: "system_info/fallbackStratumUser",
            alive: None,
            when: Some("system_info/isUsingFallbackStratum"),
        },
        PoolSrc::Flat {
            url: "system_info/stratumURL",
            port: Some("system_info/stratumPort"),
            user: "system_info/stratumUser",
            alive: None,
            when: None,
        },
    ],
};

/// The Bitaxe model of each ASIC.
pub fn bitaxe_model(asic: &str) -> Option<&'static str> {
    Some(match asic {
        "BM1366" => "Ultra",
        "BM1368" => "Supra",
        "BM1370" => "Gamma",
        "BM1397" => "Max",
        _ => return None,
    })
}

/// A Bitaxe: AxeOS `system_info` with a Bitaxe ASIC and no fork's own device model.
pub fn is_bitaxe(v: &Value) -> bool {
    v.get("hashRate").is_some()
        && super::axeos_generic::fork_name(v).is_none()
        && v.get("ASICModel").and_then(Value::as_str).is_none_or(|a| bitaxe_model(a.trim()).is_some())
}

pub fn identify(doc: &Value) -> Identity {
    let model = s(doc, "system_info/ASICModel").map(|a| bitaxe_model(&a).map(str::to_owned).unwrap_or(a));
    Identity {
        make: Some("Bitaxe".into()),
        model,
        firmware: s(doc, "system_info/version").map(|v| format!("AxeOS {v}")),
        map: &MAP,
    }
}

pub const REQUESTS: &[HttpReq] = &[HttpReq::get("system_info", "/api/system/info")];

pub const MAKE: Make = Make {
    id: "bitaxe-axeos",
    title: "Bitaxe on AxeOS",
    map: &MAP,
    api: Api::Http(HttpApi { label: "AxeOS", requests: REQUESTS, detect: is_bitaxe, identify, login: None }),
    sim: Some(Sim {
        serve: Serve::Http,
        replies: || vec![("/api/system/info", miner_capture!("bitaxe-axeos/system_info.json"))],
        base_ths: 1.0,
        share_diff: 1024.0,
        extra: &[],
        port: None,
    }),
};
