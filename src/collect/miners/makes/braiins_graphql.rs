//! Braiins OS 21.x GraphQL (`POST /graphql`, queries only, no login). Captures:
//! `braiins-os-21.09/`. Hashrates are MH/s. Power is `summary.power.approxConsumptionW`, the
//! firmware's approximation (as the REST API's), still `reported`; `limitW` / `powerTarget`
//! are settings and never read as power.

use serde_json::Value;

use super::{Api, HttpApi, HttpReq, Make, Serve, Sim};
use crate::collect::miners::identify::{s, Identity};
use crate::collect::miners::profiles::{Alive, FieldMap, PoolSrc, Rate, Src, Unit};
use crate::miner_capture;

/// GraphQL query for `system` (uptime, version, fans, hashrate, approximate power).
pub const GQL_SYSTEM: &str = "{bos{hostname info{version{full}} uptime{durationS}} bosminer{info{fans{name rpm speed} summary{power{approxConsumptionW limitW}} workSolver{nominalMhs realHashrate{mhs5S}}}}}";
/// GraphQL query for `pools` (share counters per pool group).
pub const GQL_POOLS: &str =
    "{bosminer{info{poolGroups{name pools{active shares{acceptedSolutions rejectedSolutions} status url user}}}}}";

pub static MAP: FieldMap = FieldMap {
    id: "braiins-os-graphql",
    hashrate: &[Rate::at("system/data/bosminer/info/workSolver/realHashrate/mhs5S", Unit::Mhs)],
    rated_hashrate: &[Rate::at("system/data/bosminer/info/workSolver/nominalMhs", Unit::Mhs)],
    power_w: &[Src::P("system/data/bosminer/info/summary/power/approxConsumptionW")],
    diff_accepted: &[],
    shares_accepted: &[Src::Sum("pools/data/bosminer/info/poolGroups/*/pools/*/shares/acceptedSolutions")],
    shares_rejected: &[Src::Sum("pools/data/bosminer/info/poolGroups/*/pools/*/shares/rejectedSolutions")],
    temps_c: &[],
    fans_rpm: &[Src::P("system/data/bosminer/info/fans/*/rpm")],
    uptime_s: &[Src::P("system/data/bos/uptime/durationS")],
    pool: &[PoolSrc::List {
        at: "pools/data/bosminer/info/poolGroups/*/pools/*",
        url: "url",
        user: "user",
        alive: Some(("status", Alive::Word("ALIVE"))),
        active: Some("active"),
        priority: None,
    }],
};

/// From the `system` reply. It names no hardware model (neither the captured 21.09 reply nor
/// the queried fields carry one), so the reading is unrated unless a meter or the REST API is used.
pub fn identify(doc: &Value) -> Identity {
    Identity {
        make: None,
        model: None,
        firmware: s(doc, "system/data/bos/info/version/full").map(|v| format!("Braiins OS {v}")),
        map: &MAP,
    }
}

pub const MAKE: Make = Make {
    id: "braiins-os-graphql",
    title: "Braiins OS 21.x (GraphQL)",
    map: &MAP,
    api: Api::Http(HttpApi {
        label: "Braiins OS",
        requests: &[
            HttpReq {
                query: Some(GQL_SYSTEM),
                sim_reply: Some("graphql:system"),
                ..HttpReq::get("system", "/graphql")
            },
            HttpReq {
                query: Some(GQL_POOLS),
                sim_reply: Some("graphql:pools"),
                optional: true,
                ..HttpReq::get("pools", "/graphql")
            },
        ],
        detect: |v| v.pointer("/data/bosminer").is_some(),
        identify,
        login: None,
    }),
    sim: Some(Sim {
        serve: Serve::Graphql,
        replies: || {
            vec![
                ("graphql:system", miner_capture!("braiins-os-21.09/gql_system.json")),
                ("graphql:pools", miner_capture!("braiins-os-21.09/gql_pools.json")),
                ("graphql:boards", miner_capture!("braiins-os-21.09/gql_boards.json")),
                ("graphql:tuning", miner_capture!("braiins-os-21.09/gql_tuning.json")),
            ]
        },
        base_ths: 7.160_208_944_955_902, // mhs5S 7160208.94 MH/s
        share_diff: 65536.0,             // not in the capture; 31 shares in 1189 s at 7.16 TH/s ≈ 64 K
        extra: &[],
        port: None,
    }),
};
