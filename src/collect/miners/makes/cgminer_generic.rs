//! The fallback for cgminer-family firmware no other make claims (cgminer, bmminer,
//! btminer, sgminer and bfgminer derivatives): `make = "unknown"`, the firmware's own
//! description and version string, and a field map that reads the forms such firmwares use.
//! No capture of its own: it is tested against the cgminer-family captures with their
//! identifying keys removed, and must read what the make-specific maps read.

use serde_json::Value;

use super::{Api, Make};
use crate::collect::miners::identify::{cgminer_version, s, Identity};
use crate::collect::miners::profiles::{FieldMap, Rate, Src, Unit};

/// Rates as `MHS`/`GHS`/`THS` with `5s`, `av` or `1m`, in summary or stats; power under the
/// keys these firmwares use. A power value is checked like every other (`finish`): above
/// the largest single miner it is flagged as a unit slip and not stored.
pub static MAP: FieldMap = FieldMap {
    id: "cgminer-generic",
    hashrate: &[
        Rate { src: Src::P("summary/SUMMARY/0/GHS 5s"), unit: Unit::Ghs, unit_key: Some("stats/STATS/*/rate_unit") },
        Rate { src: Src::P("stats/STATS/*/GHS 5s"), unit: Unit::Ghs, unit_key: Some("stats/STATS/*/rate_unit") },
        Rate::at("summary/SUMMARY/0/THS 5s", Unit::Ths),
        Rate::at("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        Rate::at("summary/SUMMARY/0/THS av", Unit::Ths),
        Rate::at("summary/SUMMARY/0/GHS av", Unit::Ghs),
        Rate::at("summary/SUMMARY/0/MHS av", Unit::Mhs),
        Rate::at("summary/SUMMARY/0/MHS 1m", Unit::Mhs),
    ],
    rated_hashrate: &[Rate {
        src: Src::P("stats/STATS/*/total_rateideal"),
        unit: Unit::Ghs,
        unit_key: Some("stats/STATS/*/rate_unit"),
    }],
    power_w: &[
        Src::P("stats/STATS/*/chain_power"),
        Src::P("stats/STATS/*/Power"),
        Src::P("summary/SUMMARY/0/Power"),
        Src::P("summary/SUMMARY/0/Power Realtime"),
        Src::P("summary/SUMMARY/0/PSU Input Power"),
        Src::P("stats/STATS/*/PSU Input Power"),
        Src::P("summary/SUMMARY/0/total_power"),
        Src::P("stats/STATS/*/total_power"),
    ],
    diff_accepted: &[Src::P("summary/SUMMARY/0/Difficulty Accepted")],
    shares_accepted: &[Src::P("summary/SUMMARY/0/Accepted")],
    shares_rejected: &[Src::P("summary/SUMMARY/0/Rejected")],
    temps_c: &[
        Src::P("stats/STATS/*/temp_chip#"),
        Src::P("stats/STATS/*/temp2_#"),
        Src::P("stats/STATS/*/temp#"),
        Src::P("summary/SUMMARY/0/Temperature"),
        Src::P("summary/SUMMARY/0/Chip Temp Max"),
    ],
    fans_rpm: &[
        Src::P("stats/STATS/*/fan#"),
        Src::P("summary/SUMMARY/0/Fan Speed In"),
        Src::P("summary/SUMMARY/0/Fan Speed Out"),
    ],
    uptime_s: &[Src::P("summary/SUMMARY/0/Elapsed"), Src::P("stats/STATS/*/Elapsed")],
    pool: crate::collect::miners::profiles::CGMINER_POOLS,
};

/// Always claims: `make = "unknown"`, the model as the firmware names it (`Type`, `PROD`),
/// and the firmware as it describes itself (`STATUS.Description` and its version keys).
pub fn identify(doc: &Value) -> Option<Identity> {
    let ver = cgminer_version(doc);
    let desc = s(doc, "version/STATUS/0/Description");
    let version = ["CGMiner", "BMMiner", "BFGMiner", "sgminer", "Miner", "btminer"]
        .iter()
        .find_map(|k| s(&ver, k).map(|v| format!("{k} {v}")));
    let firmware = match (desc, version) {
        (Some(d), Some(v)) if !d.contains(v.split(' ').nth(1).unwrap_or("")) => Some(format!("{d} ({v})")),
        (Some(d), _) => Some(d),
        (None, v) => v,
    };
    Some(Identity {
        make: Some("unknown".into()),
        model: s(&ver, "Type").or_else(|| s(&ver, "PROD")).or_else(|| s(&ver, "Model")),
        firmware,
        map: &MAP,
    })
}

pub const MAKE: Make = Make {
    id: "cgminer-generic",
    title: "any other cgminer-family firmware (fallback, `make = unknown`)",
    map: &MAP,
    api: Api::Cgminer { identify, extra: &[] },
    sim: None,
};
