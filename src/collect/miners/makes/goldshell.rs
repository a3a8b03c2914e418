//! Goldshell (`/mcb/status`, then BFGMiner-style `devs`/`summary` through
//! `/mcb/cgminer?cgminercmd=...`, no login). Captures: `goldshell/` (pyasic's sanitized
//! composites). Hashrate MH/s summed over boards; no power reported.

use serde_json::{json, Value};

use super::{Api, HttpApi, HttpReq, Make, Serve, Sim};
use crate::collect::miners::identify::{s, Identity};
use crate::collect::miners::profiles::{FieldMap, Rate, Src, Unit};
use crate::miner_capture;

pub static MAP: FieldMap = FieldMap {
    id: "goldshell",
    hashrate: &[
        Rate::at("SUMMARY/0/MHS 20s", Unit::Mhs),
        Rate { src: Src::Sum("DEVS/*/MHS 20s"), unit: Unit::Mhs, unit_key: None },
    ],
    rated_hashrate: &[],
    power_w: &[],
    diff_accepted: &[],
    shares_accepted: &[Src::Sum("DEVS/*/Accepted")],
    shares_rejected: &[Src::Sum("DEVS/*/Rejected")],
    temps_c: &[Src::P("DEVS/*/tstemp-#")],
    fans_rpm: &[Src::P("DEVS/*/fan#")],
    uptime_s: &[Src::P("SUMMARY/0/Elapsed")],
    // `/mcb/pools` is not read: no capture of it was found.
    pool: &[],
};

/// From `/mcb/status` (`"model": "Goldshell-SC5Pro"`).
pub fn identify(doc: &Value) -> Identity {
    Identity {
        make: Some("Goldshell".into()),
        model: s(doc, "status/model").map(|m| m.strip_prefix("Goldshell-").unwrap_or(&m).trim().to_owned()),
        firmware: s(doc, "status/firmware").map(|v| format!("Goldshell {v}")),
        map: &MAP,
    }
}

fn detect(st: &Value) -> bool {
    st.get("mcbversion").is_some()
        || st.get("model").and_then(Value::as_str).is_some_and(|m| m.starts_with("Goldshell"))
}

/// cgminer shape (`DEVS: [...]`), or the same rows under `data`.
const fn cg(key: &'static str, path: &'static str, take: &'static [&'static str], optional: bool) -> HttpReq {
    HttpReq { key, path, query: None, take, optional, sim_reply: None }
}

pub const MAKE: Make = Make {
    id: "goldshell",
    title: "Goldshell",
    map: &MAP,
    api: Api::Http(HttpApi {
        label: "Goldshell",
        requests: &[
            HttpReq::get("status", "/mcb/status"),
            cg("DEVS", "/mcb/cgminer?cgminercmd=devs", &["DEVS", "data"], false),
            cg("SUMMARY", "/mcb/cgminer?cgminercmd=summary", &["SUMMARY", "data"], false),
            cg("DEVDETAILS", "/mcb/cgminer?cgminercmd=devdetails", &["DEVDETAILS", "data"], true),
        ],
        detect,
        identify,
        login: None,
    }),
    sim: Some(Sim {
        serve: Serve::Http,
        replies: || {
            // The capture is a composite of several replies: split it back into them.
            let c = miner_capture!("goldshell/composite_sc5pro_2_2_0.json");
            let part = |key: &str| {
                let mut m = serde_json::Map::new();
                m.insert("STATUS".into(), json!([{"STATUS":"S","Code":9,"Msg":key,"Description":"bfgminer"}]));
                m.insert(key.into(), c.get(key).cloned().unwrap_or(Value::Null));
                Value::Object(m)
            };
            vec![
                ("/mcb/status", c.get("status").cloned().unwrap_or(Value::Null)),
                ("/mcb/cgminer?cgminercmd=devs", part("DEVS")),
                ("/mcb/cgminer?cgminercmd=summary", part("SUMMARY")),
                ("/mcb/cgminer?cgminercmd=devdetails", part("DEVDETAILS")),
            ]
        },
        base_ths: 10.861_769_547, // SUMMARY MHS 20s 10861769.547 MH/s
        share_diff: 65536.0,      // no share counters in the capture
        extra: &[],
        port: None,
    }),
};
