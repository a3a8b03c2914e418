//! Per-make field maps: where each normalized quantity sits in a make's replies, and in
//! which unit. One generic extractor reads every map; adding a make is adding data here.
//!
//! A reading is assembled into one JSON document whose top-level keys are the commands or
//! endpoints that were read (`version`, `summary`, `stats`, `pools`, `power`, `get_version`,
//! `system_info`, ...), each holding that reply. Paths below are relative to that document
//! (syntax in [`super::json::select`]).

use serde_json::Value;

use super::json::{bracket_nums, nums, select};

/// Hashrate units as miners label them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Hs,
    Khs,
    Mhs,
    Ghs,
    Ths,
}

impl Unit {
    /// Multiplier from this unit to TH/s.
    pub fn to_ths(self) -> f64 {
        match self {
            Unit::Hs => 1e-12,
            Unit::Khs => 1e-9,
            Unit::Mhs => 1e-6,
            Unit::Ghs => 1e-3,
            Unit::Ths => 1.0,
        }
    }

    /// Parses a `rate_unit` value (`"GH"`, `"TH/s"`, `"MH"`).
    pub fn parse(s: &str) -> Option<Unit> {
        let s = s.trim().to_ascii_uppercase();
        let s = s.trim_end_matches("/S").trim_end_matches('S');
        Some(match s {
            "H" => Unit::Hs,
            "KH" => Unit::Khs,
            "MH" => Unit::Mhs,
            "GH" => Unit::Ghs,
            "TH" => Unit::Ths,
            _ => return None,
        })
    }
}

/// Which numbers of a bracket group to take.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    All,
    At(usize),
    /// The first of these positions holding a value > 0 (Avalon `PS[...]` power).
    FirstPositive(&'static [usize]),
}

/// Where one quantity is found.
#[derive(Debug, Clone, Copy)]
pub enum Src {
    /// Every number at a path.
    P(&'static str),
    /// Numbers inside `KEY[...]` groups of the bracket strings found at a path.
    Br(&'static str, &'static str, Pick),
    /// The sum of every number at a path (per-board hashrates, per-pool counters).
    Sum(&'static str),
}

/// A hashrate source: its unit, optionally overridden by a unit field (`rate_unit`).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub src: Src,
    pub unit: Unit,
    pub unit_key: Option<&'static str>,
}

const fn r(path: &'static str, unit: Unit) -> Rate {
    Rate { src: Src::P(path), unit, unit_key: None }
}

/// One make/firmware family's map.
#[derive(Debug)]
pub struct FieldMap {
    /// Stable id, also the simulator's make name.
    pub id: &'static str,
    /// First source with a value wins.
    pub hashrate: &'static [Rate],
    /// The miner's own nominal hashrate, for the sanity check.
    pub rated_hashrate: &'static [Rate],
    pub power_w: &'static [Src],
    pub diff_accepted: &'static [Src],
    pub shares_accepted: &'static [Src],
    pub shares_rejected: &'static [Src],
    /// All sources together; the maximum of the values above 0 °C.
    pub temps_c: &'static [Src],
    /// All sources together; the average.
    pub fans_rpm: &'static [Src],
    pub uptime_s: &'static [Src],
}

/// Stock Antminer (bmminer / cgminer), and the fallback for any cgminer-family miner.
pub static ANTMINER: FieldMap = ANTMINER_BASE;

const ANTMINER_BASE: FieldMap = FieldMap {
    id: "antminer-stock",
    hashrate: &[
        Rate { src: Src::P("summary/SUMMARY/0/GHS 5s"), unit: Unit::Ghs, unit_key: Some("stats/STATS/*/rate_unit") },
        Rate { src: Src::P("stats/STATS/*/GHS 5s"), unit: Unit::Ghs, unit_key: Some("stats/STATS/*/rate_unit") },
        r("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        r("summary/SUMMARY/0/MHS av", Unit::Mhs),
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
};

/// LuxOS (LUXminer): Antminer layout plus the `power` command.
pub static LUXOS: FieldMap = FieldMap { id: "luxos", power_w: &[Src::P("power/POWER/0/Watts")], ..ANTMINER_BASE };

const MM: &str = "stats/STATS/*/MM ID*";

/// Canaan Avalon (cgminer 4.11 with the `MM ID` bracket strings).
pub static AVALON: FieldMap = FieldMap {
    id: "avalon",
    hashrate: &[
        Rate { src: Src::Br(MM, "GHSspd", Pick::At(0)), unit: Unit::Ghs, unit_key: None },
        r("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        r("summary/SUMMARY/0/MHS av", Unit::Mhs),
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
};

/// Whatsminer btminer API v1/v2 (`{"cmd":...}` on TCP 4028). Hashrates are MH/s.
pub static WHATSMINER: FieldMap = FieldMap {
    id: "whatsminer",
    hashrate: &[
        r("summary/SUMMARY/0/MHS 5s", Unit::Mhs),
        r("summary/SUMMARY/0/HS RT", Unit::Mhs),
        r("summary/SUMMARY/0/MHS av", Unit::Mhs),
    ],
    rated_hashrate: &[r("summary/SUMMARY/0/Factory GHS", Unit::Ghs)],
    power_w: &[Src::P("summary/SUMMARY/0/Power"), Src::P("summary/SUMMARY/0/Power_RT")],
    diff_accepted: &[Src::P("summary/SUMMARY/0/Difficulty Accepted")],
    shares_accepted: &[Src::P("summary/SUMMARY/0/Accepted")],
    shares_rejected: &[Src::P("summary/SUMMARY/0/Rejected")],
    temps_c: &[Src::P("summary/SUMMARY/0/Chip Temp Max"), Src::P("summary/SUMMARY/0/Temperature")],
    fans_rpm: &[Src::P("summary/SUMMARY/0/Fan Speed In"), Src::P("summary/SUMMARY/0/Fan Speed Out")],
    uptime_s: &[Src::P("summary/SUMMARY/0/Elapsed")],
};

/// Bitaxe AxeOS `GET /api/system/info`. `hashRate` is GH/s.
pub static AXEOS: FieldMap = FieldMap {
    id: "bitaxe-axeos",
    hashrate: &[r("system_info/hashRate", Unit::Ghs)],
    rated_hashrate: &[r("system_info/expectedHashrate", Unit::Ghs)],
    power_w: &[Src::P("system_info/power")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("system_info/sharesAccepted")],
    shares_rejected: &[Src::P("system_info/sharesRejected")],
    temps_c: &[Src::P("system_info/temp"), Src::P("system_info/vrTemp")],
    fans_rpm: &[Src::P("system_info/fanrpm")],
    uptime_s: &[Src::P("system_info/uptimeSeconds")],
};

/// ePIC UMC/PowerPlay `GET /summary` (HTTP, port 4028). Hashrates are MH/s.
pub static EPIC: FieldMap = FieldMap {
    id: "epic-powerplay",
    hashrate: &[r("summary/Session/Average MHs", Unit::Mhs)],
    rated_hashrate: &[],
    power_w: &[Src::P("summary/Power Supply Stats/Input Power")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("summary/Session/Accepted")],
    shares_rejected: &[Src::P("summary/Session/Rejected")],
    temps_c: &[Src::P("summary/HBs/*/Temperature")],
    fans_rpm: &[Src::P("summary/Fans Rpm/Fans Speed*")],
    uptime_s: &[Src::P("summary/Session/Uptime")],
};

/// Whatsminer btminer API v3 (TCP 4433): `get.miner.status` summary (`summary`) and pools
/// (`pools`). Hashrates are TH/s.
pub static WHATSMINER_V3: FieldMap = FieldMap {
    id: "whatsminer-v3",
    hashrate: &[r("summary/msg/summary/hash-realtime", Unit::Ths), r("summary/msg/summary/hash-average", Unit::Ths)],
    rated_hashrate: &[r("summary/msg/summary/factory-hash", Unit::Ths)],
    power_w: &[Src::P("summary/msg/summary/power-realtime"), Src::P("summary/msg/summary/power-5min")],
    diff_accepted: &[],
    shares_accepted: &[Src::Sum("pools/msg/pools/*/accepted")],
    shares_rejected: &[Src::Sum("pools/msg/pools/*/rejected")],
    temps_c: &[Src::P("summary/msg/summary/chip-temp-max"), Src::P("summary/msg/summary/board-temperature")],
    fans_rpm: &[Src::P("summary/msg/summary/fan-speed-in"), Src::P("summary/msg/summary/fan-speed-out")],
    uptime_s: &[Src::P("summary/msg/summary/elapsed")],
};

/// Braiins OS 23+ REST API (`/api/v1/miner/stats` = `stats`, `/api/v1/miner/details` =
/// `details`, `/api/v1/cooling/state` = `cooling`). Units are explicit in the keys.
/// Power is the firmware's approximation, still `reported`. Client: `http_makes` (login token).
pub static BRAIINS_REST: FieldMap = FieldMap {
    id: "braiins-os-rest",
    hashrate: &[
        r("stats/miner_stats/real_hashrate/last_5s/gigahash_per_second", Unit::Ghs),
        r("stats/miner_stats/real_hashrate/last_15s/gigahash_per_second", Unit::Ghs),
    ],
    rated_hashrate: &[
        r("details/sticker_hashrate/gigahash_per_second", Unit::Ghs),
        r("stats/miner_stats/nominal_hashrate/gigahash_per_second", Unit::Ghs),
    ],
    power_w: &[Src::P("stats/power_stats/approximated_consumption/watt")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("stats/pool_stats/accepted_shares")],
    shares_rejected: &[Src::P("stats/pool_stats/rejected_shares")],
    temps_c: &[Src::P("cooling/highest_temperature/temperature/degree_c")],
    fans_rpm: &[Src::P("cooling/fans/*/rpm")],
    uptime_s: &[Src::P("details/bosminer_uptime_s")],
};

/// Braiins OS 21.x GraphQL (`system` and `pools` queries). Hashrates are MH/s. Power is
/// `summary.power.approxConsumptionW`, the firmware's approximation (as the REST API's
/// `approximated_consumption`), still `reported`; `limitW` / `powerTarget` are settings and
/// never read as power.
pub static BRAIINS_GQL: FieldMap = FieldMap {
    id: "braiins-os-graphql",
    hashrate: &[r("system/data/bosminer/info/workSolver/realHashrate/mhs5S", Unit::Mhs)],
    rated_hashrate: &[r("system/data/bosminer/info/workSolver/nominalMhs", Unit::Mhs)],
    power_w: &[Src::P("system/data/bosminer/info/summary/power/approxConsumptionW")],
    diff_accepted: &[],
    shares_accepted: &[Src::Sum("pools/data/bosminer/info/poolGroups/*/pools/*/shares/acceptedSolutions")],
    shares_rejected: &[Src::Sum("pools/data/bosminer/info/poolGroups/*/pools/*/shares/rejectedSolutions")],
    temps_c: &[],
    fans_rpm: &[Src::P("system/data/bosminer/info/fans/*/rpm")],
    uptime_s: &[Src::P("system/data/bos/uptime/durationS")],
};

/// Goldshell (BFGMiner-style `devs`/`summary` under one document, as the composite captures
/// hold them). Hashrate MH/s summed over boards; no power reported.
pub static GOLDSHELL: FieldMap = FieldMap {
    id: "goldshell",
    hashrate: &[
        r("SUMMARY/0/MHS 20s", Unit::Mhs),
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
};

/// Proto rig API (`mining`, `cooling`, `pools`). GH/s. NB: the captures are simulator data.
pub static PROTO: FieldMap = FieldMap {
    id: "proto",
    hashrate: &[r("mining/mining-status/hashrate_ghs", Unit::Ghs)],
    rated_hashrate: &[r("mining/mining-status/ideal_hashrate_ghs", Unit::Ghs)],
    power_w: &[Src::P("mining/mining-status/power_usage_watts")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("pools/pools/0/accepted")],
    shares_rejected: &[Src::P("pools/pools/0/rejected")],
    temps_c: &[Src::P("mining/mining-status/average_asic_temp_c"), Src::P("mining/mining-status/average_hb_temp_c")],
    fans_rpm: &[Src::P("cooling/cooling-status/fans/*/rpm")],
    uptime_s: &[Src::P("mining/mining-status/mining_uptime_s")],
};

/// Every map, for listing and tests.
pub fn all() -> [&'static FieldMap; 11] {
    [
        &ANTMINER,
        &LUXOS,
        &AVALON,
        &WHATSMINER,
        &AXEOS,
        &EPIC,
        &WHATSMINER_V3,
        &BRAIINS_REST,
        &BRAIINS_GQL,
        &GOLDSHELL,
        &PROTO,
    ]
}

/// The normalized quantities of one reading, before the sanity check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    pub hashrate_ths: Option<f64>,
    pub rated_ths: Option<f64>,
    pub power_w: Option<f64>,
    pub diff_accepted: Option<f64>,
    pub shares_accepted: Option<u64>,
    pub shares_rejected: Option<u64>,
    pub temp_c_max: Option<f64>,
    pub fan_rpm_avg: Option<f64>,
    pub uptime_s: Option<u64>,
}

fn values(doc: &Value, src: &Src) -> Vec<f64> {
    let mut out = Vec::new();
    match *src {
        Src::P(path) => select(doc, path).into_iter().for_each(|v| nums(v, &mut out)),
        Src::Sum(path) => {
            let mut all = Vec::new();
            select(doc, path).into_iter().for_each(|v| nums(v, &mut all));
            if !all.is_empty() {
                out.push(all.iter().sum());
            }
        }
        Src::Br(path, key, pick) => {
            for s in select(doc, path).into_iter().filter_map(|v| v.as_str()) {
                for group in bracket_nums(s, key) {
                    match pick {
                        Pick::All => out.extend(group),
                        Pick::At(i) => out.extend(group.get(i)),
                        Pick::FirstPositive(idx) => {
                            out.extend(idx.iter().filter_map(|&i| group.get(i).copied()).find(|&x| x > 0.0))
                        }
                    }
                }
            }
        }
    }
    out
}

fn first(doc: &Value, srcs: &[Src]) -> Option<f64> {
    srcs.iter().find_map(|s| values(doc, s).into_iter().next())
}

fn rate(doc: &Value, rates: &[Rate]) -> Option<f64> {
    rates.iter().find_map(|rt| {
        let v = values(doc, &rt.src).into_iter().next()?;
        let unit = rt
            .unit_key
            .and_then(|k| select(doc, k).into_iter().find_map(|u| u.as_str().and_then(Unit::parse)))
            .unwrap_or(rt.unit);
        Some(v * unit.to_ths())
    })
}

fn counter(v: Option<f64>) -> Option<u64> {
    v.filter(|x| *x >= 0.0 && *x < 1.8e19).map(|x| x as u64)
}

/// Reads every quantity of `map` from `doc`.
pub fn extract(map: &FieldMap, doc: &Value) -> Extracted {
    let temps: Vec<f64> = map.temps_c.iter().flat_map(|s| values(doc, s)).filter(|t| *t > 0.0 && *t < 250.0).collect();
    let fans: Vec<f64> = map.fans_rpm.iter().flat_map(|s| values(doc, s)).filter(|f| *f >= 0.0).collect();
    Extracted {
        hashrate_ths: rate(doc, map.hashrate).filter(|h| *h >= 0.0),
        rated_ths: rate(doc, map.rated_hashrate).filter(|h| *h > 0.0),
        power_w: first(doc, map.power_w).filter(|p| *p > 0.0),
        diff_accepted: first(doc, map.diff_accepted).filter(|d| *d >= 0.0),
        shares_accepted: counter(first(doc, map.shares_accepted)),
        shares_rejected: counter(first(doc, map.shares_rejected)),
        temp_c_max: temps.iter().copied().reduce(f64::max),
        fan_rpm_avg: (!fans.is_empty()).then(|| fans.iter().sum::<f64>() / fans.len() as f64),
        uptime_s: counter(first(doc, map.uptime_s)),
    }
}
