//! VolcMiner (D1, a Scrypt miner) on its ccminer-based firmware, answering the cgminer API
//! on TCP 4028. Replies: `volcminer/` (documented in asic-rs's VolcMiner backend tests).
//!
//! The hashrate is MH/s of Scrypt, not SHA-256: it is stored in TH/s like every other
//! make's, so a D1's `hashrate_ths` is about 0.0155. The replies carry no power, no rated
//! hashrate and no accepted difficulty; share counts are the pools' `Accepted`/`Rejected`.
//! Its stats put a `}{` between the two `STATS` objects, as bmminer does (the lenient
//! parser mends it).

use serde_json::Value;

use super::{Api, Make, Serve, Sim};
use crate::collect::miners::identify::{cgminer_version, s, strip_make, Identity};
use crate::collect::miners::profiles::{FieldMap, Rate, Src, Unit};
use crate::miner_captures;

pub static MAP: FieldMap = FieldMap {
    id: "volcminer",
    hashrate: &[
        Rate::at("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        Rate::at("stats/STATS/*/MHS 5s", Unit::Mhs),
        Rate::at("summary/SUMMARY/0/MHS av", Unit::Mhs),
    ],
    rated_hashrate: &[],
    power_w: &[],
    diff_accepted: &[],
    shares_accepted: &[Src::Sum("pools/POOLS/*/Accepted")],
    shares_rejected: &[Src::Sum("pools/POOLS/*/Rejected")],
    // `temp3: 0` is the missing third chain (`chain_acn3: 0`); zeros are not temperatures.
    temps_c: &[Src::P("stats/STATS/*/temp#")],
    fans_rpm: &[Src::P("stats/STATS/*/fan#")],
    uptime_s: &[Src::P("summary/SUMMARY/0/Elapsed")],
    pool: crate::collect::miners::profiles::CGMINER_POOLS,
};

/// `Type: VolcMiner …` in the version block.
pub fn identify(doc: &Value) -> Option<Identity> {
    let ver = cgminer_version(doc);
    let model = s(ver, "Type").filter(|t| t.starts_with("VolcMiner")).map(|t| strip_make(&t, "VolcMiner"))?;
    let engine = s(doc, "version/STATUS/0/Description");
    let firmware = match (s(ver, "Miner"), engine) {
        (Some(m), Some(e)) => Some(format!("VolcMiner {m} ({e})")),
        (Some(m), None) => Some(format!("VolcMiner {m}")),
        (None, e) => e,
    };
    Some(Identity { make: Some("VolcMiner".into()), model: Some(model), firmware, map: &MAP })
}

pub const MAKE: Make = Make {
    id: "volcminer",
    title: "VolcMiner (ccminer-based, Scrypt)",
    map: &MAP,
    api: Api::Cgminer { identify, extra: &[] },
    sim: Some(Sim {
        serve: Serve::Cgminer { multi: true },
        replies: || miner_captures!("volcminer": "version", "summary", "stats", "pools"),
        base_ths: 0.01549896, // summary MHS 5s 15498.96 MH/s (Scrypt)
        // Not in the replies: pool 0 accepted 101 shares in 1355 s, which at the simulator's
        // 2^32 hashes per unit of difficulty is 0.01549896e12 × 1355 / 2^32 / 101 ≈ 48.
        share_diff: 48.0,
        extra: &[],
        port: None,
    }),
};
