//! ePIC UMC / PowerPlay control boards (HTTP on port 4028): `GET /summary`, then
//! `GET /capabilities` for the hardware model. Captures: `epic-powerplay/`. Hashrates MH/s.

use serde_json::Value;

use super::{Api, HttpApi, HttpReq, Make, Serve, Sim};
use crate::collect::miners::identify::{s, Identity};
use crate::collect::miners::profiles::{Alive, FieldMap, PoolSrc, Rate, Src, Unit};
use crate::miner_capture;

pub static MAP: FieldMap = FieldMap {
    id: "epic-powerplay",
    hashrate: &[Rate::at("summary/Session/Average MHs", Unit::Mhs)],
    rated_hashrate: &[],
    power_w: &[Src::P("summary/Power Supply Stats/Input Power")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("summary/Session/Accepted")],
    shares_rejected: &[Src::P("summary/Session/Rejected")],
    temps_c: &[Src::P("summary/HBs/*/Temperature")],
    fans_rpm: &[Src::P("summary/Fans Rpm/Fans Speed*")],
    uptime_s: &[Src::P("summary/Session/Uptime")],
    // `Stratum` is the connection in use; `StratumConfigs` (which holds the passwords) is never read.
    pool: &[PoolSrc::Flat {
        url: "summary/Stratum/Current Pool",
        port: None,
        user: "summary/Stratum/Current User",
        alive: Some(("summary/Stratum/IsPoolConnected", Alive::Flag)),
        when: None,
    }],
};

/// The model is the hardware the board drives (`"Model": "AntMiner S19 XP"` in
/// `/capabilities`), named as the model table names it (`Antminer S19 XP`).
pub fn identify(doc: &Value) -> Identity {
    let model = s(doc, "capabilities/Model").map(|m| match m.get(..8) {
        Some(p) if p.eq_ignore_ascii_case("antminer") => format!("Antminer{}", &m[8..]),
        _ => m,
    });
    Identity {
        make: Some("ePIC".into()),
        model,
        firmware: s(doc, "summary/Software").map(|v| format!("ePIC UMC {v}")),
        map: &MAP,
    }
}

pub const MAKE: Make = Make {
    id: "epic-powerplay",
    title: "ePIC UMC / PowerPlay",
    map: &MAP,
    api: Api::Http(HttpApi {
        label: "ePIC",
        requests: &[
            HttpReq::get("summary", "/summary"),
            HttpReq { optional: true, ..HttpReq::get("capabilities", "/capabilities") },
        ],
        detect: |v| v.get("Session").is_some(),
        identify,
        login: None,
    }),
    sim: Some(Sim {
        serve: Serve::Http,
        replies: || {
            vec![
                ("/summary", miner_capture!("epic-powerplay/summary.json")),
                ("/capabilities", miner_capture!("epic-powerplay/capabilities.json")),
                ("/temps", miner_capture!("epic-powerplay/temps.json")),
                ("/network", miner_capture!("epic-powerplay/network.json")),
                ("/hashrate", miner_capture!("epic-powerplay/chip_hashrates.json")),
            ]
        },
        base_ths: 90.07199, // Session Average MHs 90071990.0
        share_diff: 262144.0,
        extra: &[],
        port: None,
    }),
};
