//! Braiins OS 23+ REST API (captures: `braiins-os-26.04/`, an S21 Pro). Units are explicit
//! in the keys; power is the firmware's approximation, still `reported`.
//!
//! Credentials are sent only to a host that identified itself: the first request
//! (`GET /api/v1/miner/details`) goes without any; a Braiins OS REST API answers it
//! `401` with its gRPC-gateway error body (`{"code":16,"message":…}`, 16 = unauthenticated).
//! Only then is the factory login (`root`, empty password) posted to
//! `/api/v1/auth/login`, and the reads repeated with the token as the bare
//! `Authorization` header value (as asic-rs sends it). A miner with a password set
//! refuses the login and is reported as such.

use serde_json::Value;

use super::{Api, HttpApi, HttpReq, Login, Make, Moves, Serve, Sim};
use crate::collect::miners::identify::{s, strip_make, Identity};
use crate::collect::miners::profiles::{Alive, FieldMap, PoolSrc, Rate, Src, Unit};
use crate::miner_capture;

/// The Braiins OS factory login, used to obtain a read token.
pub const BRAIINS_DEFAULT_USER: &str = "root";
pub const BRAIINS_DEFAULT_PASSWORD: &str = "";

pub static MAP: FieldMap = FieldMap {
    id: "braiins-os-rest",
    hashrate: &[
        Rate::at("stats/miner_stats/real_hashrate/last_5s/gigahash_per_second", Unit::Ghs),
        Rate::at("stats/miner_stats/real_hashrate/last_15s/gigahash_per_second", Unit::Ghs),
    ],
    rated_hashrate: &[
        Rate::at("details/sticker_hashrate/gigahash_per_second", Unit::Ghs),
        Rate::at("stats/miner_stats/nominal_hashrate/gigahash_per_second", Unit::Ghs),
    ],
    power_w: &[Src::P("stats/power_stats/approximated_consumption/watt")],
    diff_accepted: &[],
    shares_accepted: &[Src::P("stats/pool_stats/accepted_shares")],
    shares_rejected: &[Src::P("stats/pool_stats/rejected_shares")],
    temps_c: &[Src::P("cooling/highest_temperature/temperature/degree_c")],
    fans_rpm: &[Src::P("cooling/fans/*/rpm")],
    uptime_s: &[Src::P("details/bosminer_uptime_s")],
    pool: &[PoolSrc::List {
        at: "pools/*/pools/*",
        url: "url",
        user: "user",
        alive: Some(("alive", Alive::Flag)),
        active: Some("active"),
        priority: None,
    }],
};

/// From `details` (`/api/v1/miner/details`).
pub fn identify(doc: &Value) -> Identity {
    let name = s(doc, "details/miner_identity/miner_model").or_else(|| s(doc, "details/miner_identity/name"));
    let (make, model) = match name {
        Some(n) if n.starts_with("Antminer") => (Some("Antminer".to_owned()), Some(strip_make(&n, "Antminer"))),
        Some(n) => (None, Some(n)),
        None => (None, None),
    };
    Identity {
        make,
        model,
        firmware: s(doc, "details/bos_version/current").map(|v| format!("Braiins OS {v}")),
        map: &MAP,
    }
}

/// The gRPC-gateway refusal a Braiins OS REST API gives a request without a token: gRPC
/// status 16 (unauthenticated) in `code`, not an HTTP status (a generic API's
/// `{"code":401,"message":…}` is not Braiins OS and gets no credential).
pub fn challenge(status: u16, body: &Value) -> bool {
    matches!(status, 401 | 403) && body.get("code").and_then(Value::as_i64) == Some(16) && body.get("message").is_some()
}

pub const MAKE: Make = Make {
    id: "braiins-os-rest",
    title: "Braiins OS 23+ (REST API, token login)",
    map: &MAP,
    api: Api::Http(HttpApi {
        label: "Braiins OS",
        requests: &[
            HttpReq::get("details", "/api/v1/miner/details"),
            HttpReq::get("stats", "/api/v1/miner/stats"),
            HttpReq::get("cooling", "/api/v1/cooling/state"),
            // The pool in use; a refusal leaves only the pool columns empty.
            HttpReq { optional: true, ..HttpReq::get("pools", "/api/v1/pools") },
        ],
        detect: |v| v.get("miner_identity").is_some() || v.get("bos_version").is_some(),
        identify,
        login: Some(Login {
            path: "/api/v1/auth/login",
            user: BRAIINS_DEFAULT_USER,
            password: BRAIINS_DEFAULT_PASSWORD,
            challenge,
            refused:
                "Braiins OS REST API refused the factory login (root, empty password); the miner has a password set",
        }),
    }),
    sim: Some(Sim {
        serve: Serve::HttpLogin,
        replies: || {
            vec![
                ("/api/v1/version", miner_capture!("braiins-os-26.04/version.json")),
                ("/api/v1/miner/details", miner_capture!("braiins-os-26.04/miner_details.json")),
                ("/api/v1/miner/stats", miner_capture!("braiins-os-26.04/miner_stats.json")),
                ("/api/v1/miner/hw/hashboards", miner_capture!("braiins-os-26.04/miner_hw_hashboards.json")),
                ("/api/v1/cooling/state", miner_capture!("braiins-os-26.04/cooling_state.json")),
                ("/api/v1/performance/tuner-state", miner_capture!("braiins-os-26.04/performance_tuner_state.json")),
                ("/api/v1/pools", miner_capture!("braiins-os-26.04/pools.json")),
            ]
        },
        base_ths: 248.186_677_200_024_98, // real_hashrate last_5s, GH/s / 1000
        share_diff: 524288.0,             // pool_stats last_difficulty
        extra: &[
            super::extra("/api/v1/pools", "0/pools/0/stats/accepted_shares", Moves::SharesAccepted),
            super::extra("/api/v1/pools", "0/pools/0/stats/rejected_shares", Moves::SharesRejected),
        ],
        port: None,
    }),
};
