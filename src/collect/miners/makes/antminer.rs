//! Stock Antminer (bmminer / cgminer) on the cgminer API, and Braiins OS answering the
//! cgminer API (BOSer / BOSminer). Captures: `antminer-stock/` (S19 Pro, bmminer 49.0.1.3).

use serde_json::Value;

use super::{extra, Api, Make, Moves, Serve, Sim};
use crate::collect::miners::identify::{cgminer_version, s, strip_make, Identity};
use crate::collect::miners::profiles::{FieldMap, Rate, Src, Unit};
use crate::miner_captures;

/// The Antminer layout, shared by the makes that keep it (LuxOS).
pub const MAP_BASE: FieldMap = FieldMap {
    id: "antminer-stock",
    hashrate: &[
        Rate { src: Src::P("summary/SUMMARY/0/GHS 5s"), unit: Unit::Ghs, unit_key: Some("stats/STATS/*/rate_unit") },
        Rate { src: Src::P("stats/STATS/*/GHS 5s"), unit: Unit::Ghs, unit_key: Some("stats/STATS/*/rate_unit") },
        Rate::at("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        Rate::at("summary/SUMMARY/0/MHS av", Unit::Mhs),
    ],
    rated_hashrate: &[Rate {
        src: Src::P("stats/STATS/*/total_rateideal"),
        unit: Unit::Ghs,
        unit_key: Some("stats/STATS/*/rate_unit"),
    }],
    power_w: &[Src::P("stats/STATS/*/chain_power"), Src::P("stats/STATS/*/Power")],
    diff_accepted: &[Src::P("summary/SUMMARY/0/Difficulty Accepted")],
    shares_accepted: &[Src::P("summary/SUMMARY/0/Accepted")],
    shares_rejected: &[Src::P("summary/SUMMARY/0/Rejected")],
    temps_c: &[Src::P("stats/STATS/*/temp_chip#"), Src::P("stats/STATS/*/temp2_#")],
    fans_rpm: &[Src::P("stats/STATS/*/fan#")],
    uptime_s: &[Src::P("summary/SUMMARY/0/Elapsed"), Src::P("stats/STATS/*/Elapsed")],
    pool: crate::collect::miners::profiles::CGMINER_POOLS,
};

pub static MAP: FieldMap = MAP_BASE;

/// cgminer counters every cgminer-family capture moves besides the map's own fields.
pub const CG_EXTRA: [super::Extra; 4] = [
    extra("summary", "SUMMARY/0/Difficulty Rejected", Moves::DiffRejected),
    extra("pools", "POOLS/0/Accepted", Moves::SharesAccepted),
    extra("pools", "POOLS/0/Difficulty Accepted", Moves::DiffAccepted),
    extra("summary", "SUMMARY/0/GHS av", Moves::Hash),
];

/// `Type: Antminer …` (stock), or a Braiins OS `BOSer`/`BOSminer` version block.
pub fn identify(doc: &Value) -> Option<Identity> {
    let ver = cgminer_version(doc);
    let ty = s(&ver, "Type");
    let model = ty.as_deref().filter(|t| t.contains("Antminer")).map(|t| strip_make(t, "Antminer"));
    if s(&ver, "LUXminer").is_some() {
        return None;
    }
    if let Some(bos) = s(&ver, "BOSer").or_else(|| s(&ver, "BOSminer")).or_else(|| s(&ver, "BOSminer+")) {
        return Some(Identity {
            make: model.as_ref().map(|_| "Antminer".to_owned()),
            model,
            firmware: Some(format!("Braiins OS ({bos})")),
            map: &MAP,
        });
    }
    if super::avalon::is_avalon(doc) {
        return None;
    }
    let model = model?;
    let engine = if ver.get("BMMiner").is_some() { "bmminer" } else { "cgminer" };
    let fw = match s(&ver, "Miner") {
        Some(m) => format!("{engine} {m}"),
        None => s(doc, "version/STATUS/0/Description").unwrap_or_default(),
    };
    Some(Identity { make: Some("Antminer".into()), model: Some(model), firmware: Some(fw), map: &MAP })
}

pub const MAKE: Make = Make {
    id: "antminer-stock",
    title: "Antminer, stock bmminer/cgminer (and Braiins OS on the cgminer API)",
    map: &MAP,
    api: Api::Cgminer { identify, extra: &[] },
    sim: Some(Sim {
        serve: Serve::Cgminer { multi: true },
        replies: || miner_captures!("antminer-stock": "version", "summary", "stats", "pools", "devs"),
        base_ths: 110.56689,  // summary GHS 5s 110566.89 GH/s
        share_diff: 524288.0, // pools Last Share Difficulty
        extra: &[
            CG_EXTRA[0],
            CG_EXTRA[1],
            CG_EXTRA[2],
            CG_EXTRA[3],
            extra("summary", "SUMMARY/0/GHS 30m", Moves::Hash),
            extra("stats", "STATS/1/GHS av", Moves::Hash),
        ],
        port: None,
    }),
};
