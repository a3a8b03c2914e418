//! A simulated fleet of miners: real programs speaking the real protocols (cgminer JSON on
//! TCP with the NUL terminator and multi-commands, Whatsminer's btminer `{"cmd":...}` API,
//! AxeOS, ePIC, Braiins OS REST (with its login token) and GraphQL, Goldshell and Proto over
//! HTTP), with replies built from real captures
//! (`tests/data/miners/`, Apache-2.0, see the README there).
//!
//! Each miner listens on its own loopback address (`127.0.1.1 + i`) or port. Counters advance
//! with the [`Clock`]: accepted difficulty grows at hashrate ÷ 2^32 per second (minus a
//! reject fraction), share counters by the share difficulty, uptime by the elapsed time.
//! Per-miner variation of hashrate and power (±3 %). Faults on demand: slow replies, hang,
//! connection closed mid-reply, garbage, periodic or one-off reboot (counters and uptime
//! reset), power off (nothing listening), efficiency degrading over time.
//!
//! This is a test double for tests, benchmarks and the demo; it is never a miner.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::collect::miners::json as mj;
use crate::model::Clock;

pub use crate::model::ManualClock;

/// The simulated makes, one per capture set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimMake {
    /// Antminer S19 Pro, bmminer 49.0.1.3 (cgminer API, multi-commands).
    AntminerStock,
    /// Antminer S19k Pro on LuxOS 2025.4.8 (cgminer API + `power`).
    LuxOs,
    /// AvalonMiner 1246, Canaan cgminer 4.11.1 (`MM ID` bracket strings).
    Avalon,
    /// Whatsminer, btminer API v1 (`{"cmd":...}`, no multi-commands).
    WhatsminerV1,
    /// Whatsminer, btminer API v2.
    WhatsminerV2,
    /// Whatsminer M60S, btminer API v3 (length-prefixed JSON; always on port 4433).
    WhatsminerV3,
    /// Bitaxe Supra, AxeOS (HTTP `/api/system/info`).
    AxeOs,
    /// ePIC UMC / PowerPlay (HTTP `/summary`).
    Epic,
    /// Antminer S21 Pro on Braiins OS 26.04, REST API (`/api/v1/...`, login token).
    BraiinsRest,
    /// Braiins OS 21.09/22.08, GraphQL (`POST /graphql`).
    BraiinsGraphql,
    /// Goldshell SC5 Pro 2.2.0 (HTTP `/mcb/status`, `/mcb/cgminer?cgminercmd=...`).
    Goldshell,
    /// Proto rig (HTTP `/api/v1/...`).
    Proto,
}

impl SimMake {
    pub const ALL: [SimMake; 12] = [
        SimMake::AntminerStock,
        SimMake::LuxOs,
        SimMake::Avalon,
        SimMake::WhatsminerV1,
        SimMake::WhatsminerV2,
        SimMake::WhatsminerV3,
        SimMake::AxeOs,
        SimMake::Epic,
        SimMake::BraiinsRest,
        SimMake::BraiinsGraphql,
        SimMake::Goldshell,
        SimMake::Proto,
    ];

    /// The name used on the command line and in `tests/data/miners/`.
    pub fn name(self) -> &'static str {
        match self {
            SimMake::AntminerStock => "antminer-stock",
            SimMake::LuxOs => "luxos",
            SimMake::Avalon => "avalon",
            SimMake::WhatsminerV1 => "whatsminer-v1",
            SimMake::WhatsminerV2 => "whatsminer-v2",
            SimMake::WhatsminerV3 => "whatsminer-v3",
            SimMake::AxeOs => "bitaxe-axeos",
            SimMake::Epic => "epic-powerplay",
            SimMake::BraiinsRest => "braiins-os-rest",
            SimMake::BraiinsGraphql => "braiins-os-graphql",
            SimMake::Goldshell => "goldshell",
            SimMake::Proto => "proto",
        }
    }

    pub fn parse(s: &str) -> Option<SimMake> {
        SimMake::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A fault a miner shows until cleared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Every reply delayed by this long.
    Slow(Duration),
    /// Accepts connections and never answers.
    Hang,
    /// Sends half of the reply, then closes.
    CloseMidReply,
    /// Answers with bytes that are not a reply.
    Garbage,
    /// Reboots every period: counters and uptime restart from zero.
    RebootEvery(Duration),
    /// Powered off: nothing listens on its address.
    PowerOff,
    /// Power rises by this fraction per hour at unchanged hashrate (efficiency degrading).
    Degrade { per_hour: f64 },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub count: usize,
    /// First address; miner `i` binds `bind + i` (or `bind` with port `port + i` when `ports_layout`).
    pub bind: Ipv4Addr,
    pub port: u16,
    /// Distinct ports on one address instead of distinct addresses.
    pub ports_layout: bool,
    /// Weighted makes; miner `i` takes the `i`-th entry of the weighted cycle.
    pub mix: Vec<(SimMake, u32)>,
    /// Faults from the start, by miner index.
    pub faults: Vec<(usize, Fault)>,
    /// Per-miner ±3 % hashrate/power variation (off: every miner replays its capture's values).
    pub variation: bool,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            count: SimMake::ALL.len(),
            bind: Ipv4Addr::new(127, 0, 1, 1),
            port: 4028,
            ports_layout: false,
            mix: SimMake::ALL.iter().map(|m| (*m, 1)).collect(),
            faults: Vec::new(),
            variation: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "cannot listen on {addr}: {source} (for many loopback addresses raise `ulimit -n`; ports below 1024 need root)"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Spec(String),
}

/// Parses `--mix antminer-stock=3,luxos=1` (a bare name has weight 1).
pub fn parse_mix(s: &str) -> Result<Vec<(SimMake, u32)>, SimError> {
    let names = || SimMake::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ");
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (n, w) = p.split_once('=').unwrap_or((p, "1"));
            let m = SimMake::parse(n.trim())
                .ok_or_else(|| SimError::Spec(format!("unknown make `{n}` in --mix (known: {})", names())))?;
            let w = w.trim().parse::<u32>().map_err(|_| SimError::Spec(format!("bad weight `{w}` in --mix")))?;
            Ok((m, w))
        })
        .collect()
}

/// Parses `--faults slow=2s@3,hang@4,close@5,garbage@6,reboot=60s@7,off@8,degrade=5%@9`.
pub fn parse_faults(s: &str) -> Result<Vec<(usize, Fault)>, SimError> {
    let bad = |p: &str, why: &str| {
        SimError::Spec(format!("bad fault `{p}`: {why} (KIND[=ARG]@INDEX, KIND one of slow=DUR, hang, close, garbage, reboot=DUR, off, degrade=PCT%)"))
    };
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (kind, idx) = p.trim().rsplit_once('@').ok_or_else(|| bad(p, "missing @INDEX"))?;
            let idx: usize = idx.parse().map_err(|_| bad(p, "bad index"))?;
            let (k, arg) = kind.split_once('=').unwrap_or((kind, ""));
            let dur = |a: &str| crate::config::parse_duration(a).map_err(|_| bad(p, "bad duration"));
            let f = match k {
                "slow" => Fault::Slow(dur(arg)?),
                "hang" => Fault::Hang,
                "close" => Fault::CloseMidReply,
                "garbage" => Fault::Garbage,
                "reboot" => Fault::RebootEvery(dur(arg)?),
                "off" => Fault::PowerOff,
                "degrade" => Fault::Degrade {
                    per_hour: arg.trim_end_matches('%').parse::<f64>().map_err(|_| bad(p, "bad percentage"))? / 100.0,
                },
                _ => return Err(bad(p, "unknown kind")),
            };
            Ok((idx, f))
        })
        .collect()
}

/// How a reply field moves with time.
#[derive(Debug, Clone, Copy)]
enum Q {
    /// Scaled by the miner's hashrate factor.
    Hash,
    /// Scaled by the power factor (variation × degradation).
    Power,
    /// Capture value + seconds since boot.
    Elapsed,
    DiffAccepted,
    DiffRejected,
    SharesAccepted,
    SharesRejected,
}

/// A patch: command, path in that reply, quantity. Bracket patches name a `KEY[...]` group
/// inside the string at the path.
#[derive(Debug, Clone, Copy)]
struct Patch {
    cmd: &'static str,
    path: &'static str,
    bracket: Option<&'static str>,
    q: Q,
}

const fn p(cmd: &'static str, path: &'static str, q: Q) -> Patch {
    Patch { cmd, path, bracket: None, q }
}

enum Proto {
    Cgminer {
        multi: bool,
    },
    Btminer,
    /// btminer API v3: u32 LE length + JSON both ways.
    Framed,
    Http,
    /// Braiins OS REST: `POST /api/v1/auth/login`, then GETs with the token.
    BraiinsRest,
    /// Braiins OS GraphQL: `POST /graphql`, the reply chosen by the query.
    Graphql,
}

/// The token the simulated Braiins OS REST API hands out for the factory login.
pub const SIM_BRAIINS_TOKEN: &str = "sim-braiins-token";

struct MakeData {
    proto: Proto,
    /// Replies by command (cgminer, btminer) or by path (HTTP).
    replies: Vec<(&'static str, Value)>,
    patches: Vec<Patch>,
    /// The capture's hashrate in TH/s (drives accepted difficulty).
    base_ths: f64,
    /// Pool share difficulty (drives share counters).
    share_diff: f64,
}

macro_rules! cap {
    ($p:literal) => {
        include_str!(concat!("../../tests/data/miners/", $p))
    };
}

fn load(s: &str) -> Value {
    serde_json::from_str(s).expect("bundled capture is valid JSON")
}

const CG_COUNTERS: [Patch; 7] = [
    p("summary", "SUMMARY/0/Elapsed", Q::Elapsed),
    p("summary", "SUMMARY/0/Accepted", Q::SharesAccepted),
    p("summary", "SUMMARY/0/Rejected", Q::SharesRejected),
    p("summary", "SUMMARY/0/Difficulty Accepted", Q::DiffAccepted),
    p("summary", "SUMMARY/0/Difficulty Rejected", Q::DiffRejected),
    p("pools", "POOLS/0/Accepted", Q::SharesAccepted),
    p("pools", "POOLS/0/Difficulty Accepted", Q::DiffAccepted),
];

fn make_data(make: SimMake) -> MakeData {
    let mut patches: Vec<Patch> = Vec::new();
    let (proto, replies, base_ths, share_diff) = match make {
        SimMake::AntminerStock => {
            patches.extend(CG_COUNTERS);
            patches.extend([
                p("summary", "SUMMARY/0/GHS 5s", Q::Hash),
                p("summary", "SUMMARY/0/GHS av", Q::Hash),
                p("summary", "SUMMARY/0/GHS 30m", Q::Hash),
                p("stats", "STATS/1/GHS 5s", Q::Hash),
                p("stats", "STATS/1/GHS av", Q::Hash),
                p("stats", "STATS/1/Elapsed", Q::Elapsed),
            ]);
            (
                Proto::Cgminer { multi: true },
                vec![
                    ("version", load(cap!("antminer-stock/version.json"))),
                    ("summary", load(cap!("antminer-stock/summary.json"))),
                    ("stats", load(cap!("antminer-stock/stats.json"))),
                    ("pools", load(cap!("antminer-stock/pools.json"))),
                    ("devs", load(cap!("antminer-stock/devs.json"))),
                ],
                110.56689, // summary GHS 5s 110566.89 GH/s
                524288.0,  // pools Last Share Difficulty
            )
        }
        SimMake::LuxOs => {
            patches.extend(CG_COUNTERS);
            patches.extend([
                p("summary", "SUMMARY/0/GHS 5s", Q::Hash),
                p("summary", "SUMMARY/0/GHS av", Q::Hash),
                p("stats", "STATS/1/GHS 5s", Q::Hash),
                p("stats", "STATS/1/Elapsed", Q::Elapsed),
                p("power", "POWER/0/Watts", Q::Power),
            ]);
            (
                Proto::Cgminer { multi: true },
                vec![
                    ("version", load(cap!("luxos/version.json"))),
                    ("summary", load(cap!("luxos/summary.json"))),
                    ("stats", load(cap!("luxos/stats.json"))),
                    ("pools", load(cap!("luxos/pools.json"))),
                    ("devs", load(cap!("luxos/devs.json"))),
                    ("power", load(cap!("luxos/power.json"))),
                    ("temps", load(cap!("luxos/temps.json"))),
                    ("fans", load(cap!("luxos/fans.json"))),
                    ("profiles", load(cap!("luxos/profiles.json"))),
                    ("config", load(cap!("luxos/config.json"))),
                ],
                59.75606, // summary GHS 5s 59756.06 GH/s
                32768.0,
            )
        }
        SimMake::Avalon => {
            patches.extend(CG_COUNTERS);
            patches.extend([
                p("summary", "SUMMARY/0/MHS av", Q::Hash),
                Patch { cmd: "stats", path: "STATS/0/MM ID0", bracket: Some("GHSspd"), q: Q::Hash },
                Patch { cmd: "stats", path: "STATS/0/MM ID0", bracket: Some("Elapsed"), q: Q::Elapsed },
                p("stats", "STATS/0/Elapsed", Q::Elapsed),
            ]);
            // The A-series stats capture (hashing) with the Avalon version block; the version's
            // product name is set to the A-series model the stats come from (Ver[1246-...]).
            let mut version = load(cap!("avalon/version.json"));
            version["VERSION"][0]["PROD"] = json!("AvalonMiner 1246");
            version["VERSION"][0]["MODEL"] = json!("1246");
            let mut summary = load(cap!("avalon/summary.json"));
            // Summary from the same capture set; its average matched to the stats' GHSspd.
            summary["SUMMARY"][0]["MHS av"] = json!(81072680.0);
            (
                Proto::Cgminer { multi: true },
                vec![
                    ("version", version),
                    ("summary", summary),
                    ("stats", load(cap!("avalon/avalon_a_stats.json"))),
                    ("pools", load(cap!("avalon/pools.json"))),
                    ("devs", load(cap!("avalon/devs.json"))),
                    ("devdetails", load(cap!("avalon/devdetails.json"))),
                ],
                81.07268, // MM ID0 GHSspd[81072.68]
                262144.0,
            )
        }
        SimMake::WhatsminerV1 | SimMake::WhatsminerV2 => {
            let v1 = make == SimMake::WhatsminerV1;
            patches.extend([
                p("summary", "SUMMARY/0/Elapsed", Q::Elapsed),
                p("summary", "SUMMARY/0/Accepted", Q::SharesAccepted),
                p("summary", "SUMMARY/0/MHS av", Q::Hash),
                p("summary", "SUMMARY/0/HS RT", Q::Hash),
                p("summary", "SUMMARY/0/Power", Q::Power),
            ]);
            if v1 {
                // Fields only the v1 capture has.
                patches.extend([
                    p("summary", "SUMMARY/0/Rejected", Q::SharesRejected),
                    p("summary", "SUMMARY/0/Difficulty Accepted", Q::DiffAccepted),
                    p("summary", "SUMMARY/0/MHS 5s", Q::Hash),
                    p("summary", "SUMMARY/0/Power_RT", Q::Power),
                ]);
            }
            let replies = if v1 {
                vec![
                    ("summary", load(cap!("whatsminer-v1/summary.json"))),
                    ("devs", load(cap!("whatsminer-v1/devs.json"))),
                    ("pools", load(cap!("whatsminer-v1/pools.json"))),
                    ("get_psu", load(cap!("whatsminer-v1/get_psu.json"))),
                    ("get_version", load(cap!("whatsminer-v1/get_version.json"))),
                    ("status", load(cap!("whatsminer-v1/status.json"))),
                ]
            } else {
                vec![
                    ("summary", load(cap!("whatsminer-v2/summary.json"))),
                    ("devs", load(cap!("whatsminer-v2/devs.json"))),
                    ("pools", load(cap!("whatsminer-v2/pools.json"))),
                    ("get_psu", load(cap!("whatsminer-v2/get_psu.json"))),
                    ("get_version", load(cap!("whatsminer-v2/get_version.json"))),
                    ("get_miner_info", load(cap!("whatsminer-v2/get_miner_info.json"))),
                    ("get_error_code", load(cap!("whatsminer-v2/get_error_code.json"))),
                ]
            };
            // v1: MHS 5s 70668114.52 MH/s; v2: HS RT 124500000.0 MH/s
            (Proto::Btminer, replies, if v1 { 70.66811452 } else { 124.5 }, 65536.0)
        }
        SimMake::WhatsminerV3 => {
            patches.extend([
                p("summary", "msg/summary/hash-realtime", Q::Hash),
                p("summary", "msg/summary/hash-average", Q::Hash),
                p("summary", "msg/summary/hash-1min", Q::Hash),
                p("summary", "msg/summary/hash-15min", Q::Hash),
                p("summary", "msg/summary/power-realtime", Q::Power),
                p("summary", "msg/summary/power-5min", Q::Power),
                p("summary", "msg/summary/elapsed", Q::Elapsed),
            ]);
            (
                Proto::Framed,
                vec![
                    ("get.device.info", load(cap!("whatsminer-v3/get_device_info.json"))),
                    ("summary", load(cap!("whatsminer-v3/get_miner_status_summary.json"))),
                    ("pools", load(cap!("whatsminer-v3/get_miner_status_pools.json"))),
                    ("edevs", load(cap!("whatsminer-v3/get_miner_status_edevs.json"))),
                ],
                171.259, // hash-realtime, TH/s
                65536.0,
            )
        }
        SimMake::AxeOs => {
            patches.extend([
                p("/api/system/info", "hashRate", Q::Hash),
                p("/api/system/info", "power", Q::Power),
                p("/api/system/info", "sharesAccepted", Q::SharesAccepted),
                p("/api/system/info", "sharesRejected", Q::SharesRejected),
                p("/api/system/info", "uptimeSeconds", Q::Elapsed),
            ]);
            (Proto::Http, vec![("/api/system/info", load(cap!("bitaxe-axeos/system_info.json")))], 1.0, 1024.0)
        }
        SimMake::Epic => {
            patches.extend([
                p("/summary", "Session/Average MHs", Q::Hash),
                p("/summary", "Session/Accepted", Q::SharesAccepted),
                p("/summary", "Session/Rejected", Q::SharesRejected),
                p("/summary", "Session/Uptime", Q::Elapsed),
                p("/summary", "Power Supply Stats/Input Power", Q::Power),
            ]);
            (
                Proto::Http,
                vec![
                    ("/summary", load(cap!("epic-powerplay/summary.json"))),
                    ("/capabilities", load(cap!("epic-powerplay/capabilities.json"))),
                    ("/temps", load(cap!("epic-powerplay/temps.json"))),
                    ("/network", load(cap!("epic-powerplay/network.json"))),
                    ("/hashrate", load(cap!("epic-powerplay/chip_hashrates.json"))),
                ],
                90.07199, // Session Average MHs 90071990.0
                262144.0,
            )
        }
        SimMake::BraiinsRest => {
            let stats = "/api/v1/miner/stats";
            patches.extend([
                p(stats, "miner_stats/real_hashrate/last_5s/gigahash_per_second", Q::Hash),
                p(stats, "miner_stats/real_hashrate/last_15s/gigahash_per_second", Q::Hash),
                p(stats, "power_stats/approximated_consumption/watt", Q::Power),
                p(stats, "pool_stats/accepted_shares", Q::SharesAccepted),
                p(stats, "pool_stats/rejected_shares", Q::SharesRejected),
                p("/api/v1/miner/details", "bosminer_uptime_s", Q::Elapsed),
                p("/api/v1/pools", "0/pools/0/stats/accepted_shares", Q::SharesAccepted),
                p("/api/v1/pools", "0/pools/0/stats/rejected_shares", Q::SharesRejected),
            ]);
            (
                Proto::BraiinsRest,
                vec![
                    ("/api/v1/version", load(cap!("braiins-os-26.04/version.json"))),
                    ("/api/v1/miner/details", load(cap!("braiins-os-26.04/miner_details.json"))),
                    (stats, load(cap!("braiins-os-26.04/miner_stats.json"))),
                    ("/api/v1/miner/hw/hashboards", load(cap!("braiins-os-26.04/miner_hw_hashboards.json"))),
                    ("/api/v1/cooling/state", load(cap!("braiins-os-26.04/cooling_state.json"))),
                    ("/api/v1/performance/tuner-state", load(cap!("braiins-os-26.04/performance_tuner_state.json"))),
                    ("/api/v1/pools", load(cap!("braiins-os-26.04/pools.json"))),
                ],
                248.186_677_200_024_98, // real_hashrate last_5s, GH/s / 1000
                524288.0,               // pool_stats last_difficulty
            )
        }
        SimMake::BraiinsGraphql => {
            patches.extend([
                p("graphql:system", "data/bosminer/info/workSolver/realHashrate/mhs5S", Q::Hash),
                p("graphql:system", "data/bosminer/info/summary/power/approxConsumptionW", Q::Power),
                p("graphql:system", "data/bos/uptime/durationS", Q::Elapsed),
                p(
                    "graphql:pools",
                    "data/bosminer/info/poolGroups/0/pools/0/shares/acceptedSolutions",
                    Q::SharesAccepted,
                ),
                p(
                    "graphql:pools",
                    "data/bosminer/info/poolGroups/0/pools/0/shares/rejectedSolutions",
                    Q::SharesRejected,
                ),
            ]);
            (
                Proto::Graphql,
                vec![
                    ("graphql:system", load(cap!("braiins-os-21.09/gql_system.json"))),
                    ("graphql:pools", load(cap!("braiins-os-21.09/gql_pools.json"))),
                    ("graphql:boards", load(cap!("braiins-os-21.09/gql_boards.json"))),
                    ("graphql:tuning", load(cap!("braiins-os-21.09/gql_tuning.json"))),
                ],
                7.160_208_944_955_902, // mhs5S 7160208.94 MH/s
                65536.0,               // not in the capture; 31 shares in 1189 s at 7.16 TH/s ≈ 64 K
            )
        }
        SimMake::Goldshell => {
            let devs = "/mcb/cgminer?cgminercmd=devs";
            let summary = "/mcb/cgminer?cgminercmd=summary";
            patches.extend([p(summary, "SUMMARY/0/MHS 20s", Q::Hash), p(summary, "SUMMARY/0/Elapsed", Q::Elapsed)]);
            for path in ["DEVS/0/MHS 20s", "DEVS/1/MHS 20s", "DEVS/2/MHS 20s", "DEVS/3/MHS 20s"] {
                patches.push(p(devs, path, Q::Hash));
            }
            // The capture is a composite of several replies: split it back into them.
            let c = load(cap!("goldshell/composite_sc5pro_2_2_0.json"));
            let part = |key: &str| {
                let mut m = serde_json::Map::new();
                m.insert("STATUS".into(), json!([{"STATUS":"S","Code":9,"Msg":key,"Description":"bfgminer"}]));
                m.insert(key.into(), c.get(key).cloned().unwrap_or(Value::Null));
                Value::Object(m)
            };
            (
                Proto::Http,
                vec![
                    ("/mcb/status", c.get("status").cloned().unwrap_or(Value::Null)),
                    (devs, part("DEVS")),
                    (summary, part("SUMMARY")),
                    ("/mcb/cgminer?cgminercmd=devdetails", part("DEVDETAILS")),
                ],
                10.861_769_547, // SUMMARY MHS 20s 10861769.547 MH/s
                65536.0,        // no share counters in the capture
            )
        }
        SimMake::Proto => {
            patches.extend([
                p("/api/v1/mining", "mining-status/hashrate_ghs", Q::Hash),
                p("/api/v1/mining", "mining-status/average_hashrate_ghs", Q::Hash),
                p("/api/v1/mining", "mining-status/power_usage_watts", Q::Power),
                p("/api/v1/mining", "mining-status/mining_uptime_s", Q::Elapsed),
                p("/api/v1/mining", "mining-status/reboot_uptime_s", Q::Elapsed),
                p("/api/v1/system", "system-info/uptime_seconds", Q::Elapsed),
                p("/api/v1/pools", "pools/0/accepted", Q::SharesAccepted),
                p("/api/v1/pools", "pools/0/rejected", Q::SharesRejected),
            ]);
            (
                Proto::Http,
                vec![
                    ("/api/v1/system", load(cap!("proto/system.json"))),
                    ("/api/v1/mining", load(cap!("proto/mining.json"))),
                    ("/api/v1/cooling", load(cap!("proto/cooling.json"))),
                    ("/api/v1/pools", load(cap!("proto/pools.json"))),
                    ("/api/v1/hardware", load(cap!("proto/hardware.json"))),
                    ("/api/v1/telemetry", load(cap!("proto/telemetry_full.json"))),
                ],
                141.147_435_031_471_1, // hashrate_ghs / 1000
                1_048_576.0,           // pools difficulty
            )
        }
    };
    MakeData { proto, replies, patches, base_ths, share_diff }
}

/// Fraction of work rejected by the simulated pool.
const REJECT_FRACTION: f64 = 0.002;

#[derive(Debug)]
struct MinerState {
    fault: Option<Fault>,
    fault_since_ns: i64,
    /// Time counters count from. Before the first reboot the capture's values are the base.
    boot_ns: i64,
    rebooted: bool,
}

struct Miner {
    index: usize,
    addr: SocketAddr,
    data: Arc<MakeData>,
    hash_factor: f64,
    power_factor: f64,
    state: Mutex<MinerState>,
    wake: Notify,
}

/// Address and make of one simulated miner.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMinerInfo {
    pub index: usize,
    pub addr: SocketAddr,
    pub make: SimMake,
}

/// Connection and request counters of the whole fleet.
#[derive(Debug, Default)]
pub struct SimCounters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
}

/// A running fleet. Dropping it stops it too.
pub struct SimFleet {
    miners: Vec<Arc<Miner>>,
    info: Vec<SimMinerInfo>,
    clock: Arc<dyn Clock>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<SimCounters>,
}

impl SimFleet {
    /// Binds every miner and starts serving.
    pub async fn start(spec: FleetSpec, clock: Arc<dyn Clock>) -> Result<SimFleet, SimError> {
        if spec.mix.iter().all(|(_, w)| *w == 0) {
            return Err(SimError::Spec("--mix has no make with a weight above 0".into()));
        }
        if let Some((i, f)) = spec.faults.iter().find(|(i, _)| *i >= spec.count) {
            return Err(SimError::Spec(format!(
                "fault {f:?} for miner {i}, but the fleet has {} miners (0..{})",
                spec.count, spec.count
            )));
        }
        let cycle: Vec<SimMake> = spec.mix.iter().flat_map(|(m, w)| std::iter::repeat_n(*m, *w as usize)).collect();
        let mut datas: Vec<(SimMake, Arc<MakeData>)> = Vec::new();
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(SimCounters::default());
        let now = clock.now_ns();
        let mut fleet = SimFleet {
            miners: Vec::new(),
            info: Vec::new(),
            clock: clock.clone(),
            stop,
            tasks: Vec::new(),
            counters: counters.clone(),
        };
        for i in 0..spec.count {
            let make = cycle[i % cycle.len()];
            let data = match datas.iter().find(|(m, _)| *m == make) {
                Some((_, d)) => d.clone(),
                None => {
                    let d = Arc::new(make_data(make));
                    datas.push((make, d.clone()));
                    d
                }
            };
            let addr = if spec.ports_layout {
                let port = spec
                    .port
                    .checked_add(i as u16)
                    .filter(|_| i < 65536)
                    .ok_or_else(|| SimError::Spec("ports run past 65535".into()))?;
                SocketAddr::from((spec.bind, port))
            } else {
                let ip = u32::from(spec.bind)
                    .checked_add(i as u32)
                    .ok_or_else(|| SimError::Spec("addresses run past 255.255.255.255".into()))?;
                // Whatsminer v3 speaks its framing only on its own port.
                let port = if make == SimMake::WhatsminerV3 { 4433 } else { spec.port };
                SocketAddr::from((Ipv4Addr::from(ip), port))
            };
            let (hf, pf) = if spec.variation { variation(i) } else { (1.0, 1.0) };
            let fault = spec.faults.iter().rev().find(|(j, _)| *j == i).map(|(_, f)| *f);
            let miner = Arc::new(Miner {
                index: i,
                addr,
                data,
                hash_factor: hf,
                power_factor: pf,
                state: Mutex::new(MinerState { fault, fault_since_ns: now, boot_ns: now, rebooted: false }),
                wake: Notify::new(),
            });
            let listener = if fault == Some(Fault::PowerOff) { None } else { Some(bind(addr)?) };
            fleet.info.push(SimMinerInfo { index: i, addr, make });
            fleet.miners.push(miner.clone());
            fleet.tasks.push(tokio::spawn(serve(miner, listener, clock.clone(), stop_rx.clone(), counters.clone())));
        }
        Ok(fleet)
    }

    pub fn miners(&self) -> &[SimMinerInfo] {
        &self.info
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.info.iter().map(|m| m.addr).collect()
    }

    pub fn counters(&self) -> &SimCounters {
        &self.counters
    }

    /// Sets or clears miner `i`'s fault.
    pub fn set_fault(&self, i: usize, fault: Option<Fault>) {
        let m = &self.miners[i];
        {
            let mut st = m.state.lock().unwrap_or_else(|e| e.into_inner());
            st.fault = fault;
            st.fault_since_ns = self.clock.now_ns();
        }
        m.wake.notify_one();
    }

    /// Reboots miner `i` now: counters and uptime restart from zero.
    pub fn reboot(&self, i: usize) {
        let mut st = self.miners[i].state.lock().unwrap_or_else(|e| e.into_inner());
        st.boot_ns = self.clock.now_ns();
        st.rebooted = true;
    }

    /// Stops every miner and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Deterministic per-miner factors within ±3 %.
fn variation(i: usize) -> (f64, f64) {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let a = (h % 61) as f64 - 30.0;
    let b = ((h >> 20) % 61) as f64 - 30.0;
    (1.0 + a / 1000.0, 1.0 + b / 1000.0)
}

fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, SimError> {
    let err = |source| SimError::Bind { addr, source };
    let sock = TcpSocket::new_v4().map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(addr).map_err(err)?;
    sock.listen(1024).map_err(err)
}

async fn serve(
    miner: Arc<Miner>,
    mut listener: Option<tokio::net::TcpListener>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    counters: Arc<SimCounters>,
) {
    loop {
        let off = matches!(miner.state.lock().unwrap_or_else(|e| e.into_inner()).fault, Some(Fault::PowerOff));
        if off {
            listener = None;
        } else if listener.is_none() {
            match bind(miner.addr) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::error!("sim miner {}: {e}", miner.index);
                    return;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = miner.wake.notified() => continue,
            acc = async { listener.as_ref().expect("listening").accept().await }, if listener.is_some() => {
                if let Ok((stream, _)) = acc {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (m, c, k, s) = (miner.clone(), clock.clone(), counters.clone(), stop.clone());
                    tokio::spawn(async move { handle(m, stream, c, k, s).await });
                }
            }
        }
    }
}

async fn handle(
    miner: Arc<Miner>,
    mut stream: TcpStream,
    clock: Arc<dyn Clock>,
    counters: Arc<SimCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let framed_proto = matches!(miner.data.proto, Proto::Framed);
    let req = match tokio::time::timeout(Duration::from_secs(10), read_request(&mut stream, framed_proto)).await {
        Ok(Some(r)) => r,
        _ => return,
    };
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let fault = miner.state.lock().unwrap_or_else(|e| e.into_inner()).fault;
    match fault {
        Some(Fault::Hang) => {
            // Hold the connection open, say nothing, until the client gives up or we stop.
            let mut sink = [0u8; 256];
            tokio::select! {
                _ = stop.changed() => {}
                _ = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
            }
            return;
        }
        Some(Fault::Garbage) => {
            let mut x = 0x2545_F491_4F6C_DD1Du64 ^ miner.index as u64;
            let junk: Vec<u8> = (0..512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0xff) as u8 | 1
                })
                .collect();
            let _ = stream.write_all(&junk).await;
            return;
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let reply = miner.reply(&req, clock.now_ns());
    if fault == Some(Fault::CloseMidReply) {
        let _ = stream.write_all(&reply[..reply.len() / 2]).await;
        return;
    }
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

enum Request {
    Json(Value),
    Http { method: String, path: String, authorization: Option<String>, body: Vec<u8> },
    Other,
}

async fn read_request(stream: &mut TcpStream, framed: bool) -> Option<Request> {
    if framed {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.ok()?;
        let n = u32::from_le_bytes(len) as usize;
        if n > 64 * 1024 {
            return Some(Request::Other);
        }
        let mut body = vec![0u8; n];
        stream.read_exact(&mut body).await.ok()?;
        return Some(match mj::parse_lenient(&body) {
            Ok(v) => Request::Json(v),
            Err(_) => Request::Other,
        });
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return if buf.is_empty() { None } else { Some(Request::Other) };
        }
        buf.extend_from_slice(&chunk[..n]);
        let trimmed = buf.iter().skip_while(|b| b.is_ascii_whitespace()).copied().collect::<Vec<u8>>();
        if trimmed.first() == Some(&b'{') {
            if let Ok(v) = mj::parse_lenient(&trimmed) {
                return Some(Request::Json(v));
            }
        } else if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut parts = head.split_whitespace();
            let method = parts.next().unwrap_or("").to_owned();
            let path = parts.next().unwrap_or("").to_owned();
            if !parts.next().unwrap_or("").starts_with("HTTP/") {
                return Some(Request::Other);
            }
            let header = |name: &str| {
                head.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let authorization = header("authorization");
            let len = header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            if len > 64 * 1024 {
                return Some(Request::Other);
            }
            let mut body = buf[end + 4..].to_vec();
            while body.len() < len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
            return Some(Request::Http { method, path, authorization, body });
        } else if trimmed.first().is_some_and(|b| !b.is_ascii_alphabetic()) {
            return Some(Request::Other);
        }
        if buf.len() > 64 * 1024 {
            return Some(Request::Other);
        }
    }
}

impl Miner {
    fn reply(&self, req: &Request, now_ns: i64) -> Vec<u8> {
        let d = &self.data;
        match (&d.proto, req) {
            (Proto::Http, Request::Http { method, path, .. }) => {
                // The full path first (Goldshell's `?cgminercmd=`), then without the query.
                let path = if d.replies.iter().any(|(p, _)| *p == path.as_str()) {
                    path.as_str()
                } else {
                    path.split('?').next().unwrap_or("")
                };
                match d.replies.iter().find(|(p, _)| *p == path) {
                    Some(_) if method == "GET" => {
                        http(200, "OK", &serde_json::to_vec(&self.render(path, now_ns)).unwrap_or_default())
                    }
                    Some(_) => http(405, "Method Not Allowed", b"{\"error\":\"read-only simulator\"}"),
                    None => http(404, "Not Found", b"{\"error\":\"not found\"}"),
                }
            }
            (Proto::BraiinsRest, Request::Http { method, path, authorization, body }) => {
                let path = path.split('?').next().unwrap_or("");
                if path == "/api/v1/auth/login" {
                    if method != "POST" {
                        return http(405, "Method Not Allowed", b"{\"code\":12,\"message\":\"use POST\"}");
                    }
                    let login = mj::parse_lenient(body).unwrap_or(Value::Null);
                    let user = login.get("username").and_then(Value::as_str);
                    let pass = login.get("password").and_then(Value::as_str);
                    return if user == Some("root") && pass == Some("") {
                        http(
                            200,
                            "OK",
                            &serde_json::to_vec(&json!({"token": SIM_BRAIINS_TOKEN, "timeout_s": 3600}))
                                .unwrap_or_default(),
                        )
                    } else {
                        http(401, "Unauthorized", b"{\"code\":16,\"message\":\"invalid username or password\"}")
                    };
                }
                if authorization.as_deref() != Some(SIM_BRAIINS_TOKEN) {
                    return http(
                        401,
                        "Unauthorized",
                        b"{\"code\":16,\"message\":\"missing or invalid authorization token\"}",
                    );
                }
                match d.replies.iter().find(|(p, _)| *p == path) {
                    Some(_) if method == "GET" => {
                        http(200, "OK", &serde_json::to_vec(&self.render(path, now_ns)).unwrap_or_default())
                    }
                    Some(_) => http(405, "Method Not Allowed", b"{\"code\":12,\"message\":\"read-only simulator\"}"),
                    None => http(404, "Not Found", b"{\"code\":5,\"message\":\"not found\"}"),
                }
            }
            (Proto::Graphql, Request::Http { method, path, body, .. }) => {
                if path.split('?').next() != Some("/graphql") {
                    return http(404, "Not Found", b"404 page not found");
                }
                if method != "POST" {
                    return http(405, "Method Not Allowed", b"{\"errors\":[{\"message\":\"use POST\"}]}");
                }
                let q = mj::parse_lenient(body)
                    .ok()
                    .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                if q.trim_start().starts_with("mutation") {
                    return http(
                        400,
                        "Bad Request",
                        b"{\"errors\":[{\"message\":\"read-only simulator: no mutations\"}]}",
                    );
                }
                // The reply is the capture whose shape the query asks for.
                let key = if q.contains("poolGroups") {
                    "graphql:pools"
                } else if q.contains("childSolvers") {
                    "graphql:boards"
                } else if q.contains("autotuning") {
                    "graphql:tuning"
                } else if q.contains("workSolver") || q.contains("uptime") {
                    "graphql:system"
                } else {
                    return http(
                        400,
                        "Bad Request",
                        b"{\"errors\":[{\"message\":\"query not served by the simulator\"}]}",
                    );
                };
                http(200, "OK", &serde_json::to_vec(&self.render(key, now_ns)).unwrap_or_default())
            }
            (Proto::Http | Proto::BraiinsRest | Proto::Graphql, _) => http(400, "Bad Request", b""),
            (Proto::Cgminer { multi }, Request::Json(v)) => {
                let Some(cmd) = v.get("command").and_then(Value::as_str) else {
                    return nul(cg_error(14, "Invalid command", now_ns));
                };
                let parts: Vec<&str> = cmd.split('+').collect();
                if parts.len() == 1 {
                    return nul(match d.replies.iter().find(|(c, _)| *c == cmd) {
                        Some(_) => self.render(cmd, now_ns),
                        None => cg_error(14, "Invalid command", now_ns),
                    });
                }
                if !multi {
                    return nul(cg_error(14, "Invalid command", now_ns));
                }
                let mut out = serde_json::Map::new();
                for c in parts {
                    let r = match d.replies.iter().find(|(x, _)| *x == c) {
                        Some(_) => self.render(c, now_ns),
                        None => cg_error(14, "Invalid command", now_ns),
                    };
                    out.insert(c.to_owned(), json!([r]));
                }
                out.insert("id".into(), json!(1));
                nul(Value::Object(out))
            }
            (Proto::Btminer, Request::Json(v)) => {
                let cmd = v.get("cmd").or_else(|| v.get("command")).and_then(Value::as_str).unwrap_or("");
                nul(match d.replies.iter().find(|(c, _)| *c == cmd) {
                    Some(_) => self.render(cmd, now_ns),
                    None => {
                        json!({"STATUS":"E","When":now_ns / 1_000_000_000,"Code":14,"Msg":"invalid cmd","Description":""})
                    }
                })
            }
            (Proto::Cgminer { .. }, _) => nul(cg_error(14, "Invalid command", now_ns)),
            (Proto::Btminer, _) => {
                nul(json!({"STATUS":"E","When":now_ns / 1_000_000_000,"Code":23,"Msg":"invalid JSON","Description":""}))
            }
            (Proto::Framed, Request::Json(v)) => {
                let when = now_ns / 1_000_000_000;
                let cmd = v.get("cmd").and_then(Value::as_str).unwrap_or("");
                let out = match cmd {
                    "get.device.info" => self.render(cmd, now_ns),
                    "get.miner.status" => {
                        let param = v.get("param").and_then(Value::as_str).unwrap_or("summary");
                        let mut msg = serde_json::Map::new();
                        for section in param.split('+') {
                            if d.replies.iter().any(|(c, _)| *c == section) {
                                let r = self.render(section, now_ns);
                                if let Some(x) = r.get("msg").and_then(|m| m.get(section)) {
                                    msg.insert(section.to_owned(), x.clone());
                                }
                            }
                        }
                        json!({"code": 0, "desc": cmd, "msg": msg, "when": when})
                    }
                    _ => json!({"code": -2, "desc": cmd, "msg": "invalid command", "when": when}),
                };
                framed(out)
            }
            (Proto::Framed, _) => {
                framed(json!({"code": -1, "desc": "", "msg": "invalid request", "when": now_ns / 1_000_000_000}))
            }
        }
    }

    /// The capture for `cmd`, with the moving quantities set for `now_ns`.
    fn render(&self, cmd: &str, now_ns: i64) -> Value {
        let d = &self.data;
        let mut v = d.replies.iter().find(|(c, _)| *c == cmd).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut boot = st.boot_ns;
        let mut rebooted = st.rebooted;
        if let Some(Fault::RebootEvery(period)) = st.fault {
            let period_ns = period.as_nanos().max(1) as i64;
            let since = (now_ns - st.fault_since_ns).max(0);
            if since >= period_ns {
                boot = st.fault_since_ns + since / period_ns * period_ns;
                rebooted = true;
            }
        }
        let degrade = match st.fault {
            Some(Fault::Degrade { per_hour }) => 1.0 + per_hour * ((now_ns - st.fault_since_ns).max(0) as f64 / 3.6e12),
            _ => 1.0,
        };
        drop(st);
        let dt_s = ((now_ns - boot).max(0)) as f64 / 1e9;
        // Accepted difficulty grows at hashrate / 2^32 per second.
        let ths = d.base_ths * self.hash_factor;
        let diff = ths * 1e12 * dt_s / 4_294_967_296.0;
        let diff_acc = diff * (1.0 - REJECT_FRACTION);
        let diff_rej = diff * REJECT_FRACTION;
        for pt in d.patches.iter().filter(|p| p.cmd == cmd) {
            let Some(slot) = pointer_mut(&mut v, pt.path) else { continue };
            if let Some(key) = pt.bracket {
                if let Value::String(s) = slot {
                    if let Some(base) = mj::bracket_nums(s, key).first().and_then(|g| g.first().copied()) {
                        let new = self.moved(pt.q, base, rebooted, dt_s, diff_acc, diff_rej, degrade);
                        *s = replace_bracket(s, key, &format_num(new, pt.q));
                    }
                }
                continue;
            }
            let Some(base) = mj::num(slot) else { continue };
            let new = self.moved(pt.q, base, rebooted, dt_s, diff_acc, diff_rej, degrade);
            if new == base {
                continue; // keep the capture's own formatting and precision
            }
            *slot = match pt.q {
                Q::Elapsed | Q::SharesAccepted | Q::SharesRejected => json!(new.round() as u64),
                _ if slot.is_i64() || slot.is_u64() => json!(new.round() as i64),
                _ => json!((new * 1000.0).round() / 1000.0),
            };
        }
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn moved(&self, q: Q, base: f64, rebooted: bool, dt_s: f64, diff_acc: f64, diff_rej: f64, degrade: f64) -> f64 {
        let b = if rebooted { 0.0 } else { base };
        match q {
            Q::Hash => base * self.hash_factor,
            Q::Power => base * self.power_factor * degrade,
            Q::Elapsed => b + dt_s.floor(),
            Q::DiffAccepted => b + diff_acc.floor(),
            Q::DiffRejected => b + diff_rej.floor(),
            Q::SharesAccepted => b + (diff_acc / self.data.share_diff).floor(),
            Q::SharesRejected => b + (diff_rej / self.data.share_diff).floor(),
        }
    }
}

fn format_num(x: f64, q: Q) -> String {
    match q {
        Q::Elapsed => format!("{}", x as u64),
        _ => format!("{x:.2}"),
    }
}

fn replace_bracket(s: &str, key: &str, new: &str) -> String {
    let pat = format!("{key}[");
    let mut from = 0;
    while let Some(i) = s[from..].find(&pat).map(|i| i + from) {
        let boundary = i == 0 || matches!(s.as_bytes()[i - 1], b' ' | b'{' | b']');
        if boundary {
            if let Some(end) = s[i..].find(']') {
                return format!("{}{}{}", &s[..i + pat.len()], new, &s[i + end..]);
            }
        }
        from = i + pat.len();
    }
    s.to_owned()
}

fn pointer_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path.split('/') {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn cg_error(code: i64, msg: &str, now_ns: i64) -> Value {
    json!({"STATUS":[{"STATUS":"E","When":now_ns / 1_000_000_000,"Code":code,"Msg":msg,"Description":"sim"}],"id":1})
}

fn framed(v: Value) -> Vec<u8> {
    let b = serde_json::to_vec(&v).unwrap_or_default();
    let mut out = (b.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

fn nul(v: Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(0);
    b
}

fn http(status: u16, reason: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        assert_eq!(
            parse_mix("antminer-stock=3,luxos").unwrap(),
            vec![(SimMake::AntminerStock, 3), (SimMake::LuxOs, 1)]
        );
        assert!(parse_mix("s9=1").is_err());
        let f = parse_faults("slow=2s@3,hang@4,degrade=5%@9,off@1").unwrap();
        assert_eq!(f[0], (3, Fault::Slow(Duration::from_secs(2))));
        assert_eq!(f[1], (4, Fault::Hang));
        assert_eq!(f[2], (9, Fault::Degrade { per_hour: 0.05 }));
        assert!(parse_faults("hang").is_err());
        assert!(parse_faults("melt@1").is_err());
    }

    #[test]
    fn bracket_replace() {
        let s = "Ver[1] GHSspd[81072.68] DHspd[2.7%] Elapsed[5]";
        assert_eq!(replace_bracket(s, "GHSspd", "1.00"), "Ver[1] GHSspd[1.00] DHspd[2.7%] Elapsed[5]");
        assert_eq!(replace_bracket(s, "Elapsed", "9"), "Ver[1] GHSspd[81072.68] DHspd[2.7%] Elapsed[9]");
    }

    #[test]
    fn every_make_loads() {
        for m in SimMake::ALL {
            let d = make_data(m);
            assert!(!d.replies.is_empty() && d.base_ths > 0.0, "{m:?}");
            for p in &d.patches {
                let (_, v) = d.replies.iter().find(|(c, _)| *c == p.cmd).unwrap_or_else(|| panic!("{m:?} {}", p.cmd));
                let mut v = v.clone();
                assert!(pointer_mut(&mut v, p.path).is_some(), "{m:?}: {} {}", p.cmd, p.path);
            }
        }
    }
}
