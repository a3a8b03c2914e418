//! Canaan Avalon on Canaan's cgminer 4.11 (`MM ID` bracket strings). Captures: `avalon/`
//! (A-series stats `Ver[1246-...]` and the Q-series version block).

use serde_json::{json, Value};

use super::antminer::CG_EXTRA;
use super::{Api, Extra, Make, Moves, Serve, Sim};
use crate::collect::miners::identify::{cgminer_version, s, strip_make, Identity};
use crate::collect::miners::json;
use crate::collect::miners::profiles::{FieldMap, Pick, Rate, Src, Unit};
use crate::miner_capture;

const MM: &str = "stats/STATS/*/MM ID*";

pub static MAP: FieldMap = FieldMap {
    id: "avalon",
    hashrate: &[
        Rate { src: Src::Br(MM, "GHSspd", Pick::At(0)), unit: Unit::Ghs, unit_key: None },
        Rate::at("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        Rate::at("summary/SUMMARY/0/MHS av", Unit::Mhs),
    ],
    rated_hashrate: &[],
    power_w: &[Src::Br(MM, "WALLPOWER", Pick::At(0)), Src::Br(MM, "PS", Pick::FirstPositive(&[4, 5]))],
    diff_accepted: &[Src::P("summary/SUMMARY/0/Difficulty Accepted")],
    shares_accepted: &[Src::P("summary/SUMMARY/0/Accepted")],
    shares_rejected: &[Src::P("summary/SUMMARY/0/Rejected")],
    temps_c: &[
        Src::Br(MM, "TMax", Pick::All),
        Src::Br(MM, "MTmax", Pick::All),
        Src::Br(MM, "HBOTemp", Pick::All),
        Src::Br(MM, "OTemp", Pick::All),
    ],
    fans_rpm: &[Src::Br(MM, "Fan#", Pick::All)],
    uptime_s: &[Src::P("summary/SUMMARY/0/Elapsed"), Src::P("stats/STATS/0/Elapsed")],
    pool: crate::collect::miners::profiles::CGMINER_POOLS,
};

fn mm_ver(doc: &Value) -> Option<String> {
    json::select(doc, "stats/STATS/*/MM ID*")
        .into_iter()
        .filter_map(|v| v.as_str())
        .find_map(|st| st.find("Ver[").map(|i| st[i + 4..].chars().take_while(|c| *c != ']').collect::<String>()))
}

/// `PROD` or `CGVERSION` in the version block, or an `MM ID` `Ver[...]` in stats (A-series
/// version blocks lack the product name).
pub fn is_avalon(doc: &Value) -> bool {
    let ver = cgminer_version(doc);
    s(&ver, "PROD").is_some() || ver.get("CGVERSION").is_some() || mm_ver(doc).is_some()
}

pub fn identify(doc: &Value) -> Option<Identity> {
    let ver = cgminer_version(doc);
    if s(&ver, "LUXminer").is_some() || s(&ver, "BOSer").is_some() || !is_avalon(doc) {
        return None;
    }
    let prod = s(&ver, "PROD");
    let mm = mm_ver(doc);
    let model = prod
        .as_deref()
        .map(|p| strip_make(&strip_make(p, "AvalonMiner"), "Avalon"))
        .or_else(|| mm.as_deref().map(|v| v.split('-').next().unwrap_or(v).to_owned()));
    let fw = match (s(&ver, "CGMiner"), s(&ver, "LVERSION").or(mm)) {
        (Some(cg), Some(l)) => Some(format!("cgminer {cg} ({l})")),
        (None, Some(l)) => Some(l),
        (Some(cg), None) => Some(format!("cgminer {cg}")),
        (None, None) => None,
    };
    Some(Identity { make: Some("Avalon".into()), model, firmware: fw, map: &MAP })
}

pub const MAKE: Make = Make {
    id: "avalon",
    title: "Canaan Avalon (cgminer 4.11, `MM ID` strings)",
    map: &MAP,
    api: Api::Cgminer { identify, extra: &[] },
    sim: Some(Sim {
        serve: Serve::Cgminer { multi: true },
        replies: || {
            // The A-series stats capture (hashing) with the Avalon version block; the version's
            // product name is set to the A-series model the stats come from (Ver[1246-...]).
            let mut version = miner_capture!("avalon/version.json");
            version["VERSION"][0]["PROD"] = json!("AvalonMiner 1246");
            version["VERSION"][0]["MODEL"] = json!("1246");
            let mut summary = miner_capture!("avalon/summary.json");
            // Summary from the same capture set; its average matched to the stats' GHSspd.
            summary["SUMMARY"][0]["MHS av"] = json!(81072680.0);
            vec![
                ("version", version),
                ("summary", summary),
                ("stats", miner_capture!("avalon/avalon_a_stats.json")),
                ("pools", miner_capture!("avalon/pools.json")),
                ("devs", miner_capture!("avalon/devs.json")),
                ("devdetails", miner_capture!("avalon/devdetails.json")),
            ]
        },
        base_ths: 81.07268, // MM ID0 GHSspd[81072.68]
        share_diff: 262144.0,
        extra: &[
            CG_EXTRA[0],
            CG_EXTRA[1],
            CG_EXTRA[2],
            Extra { reply: "stats", path: "STATS/0/MM ID0", bracket: Some("Elapsed"), moves: Moves::Elapsed },
        ],
        port: None,
    }),
};
