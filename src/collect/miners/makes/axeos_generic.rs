//! The fallback for AxeOS-derived forks (NerdAxe, NerdQAxe and others) answering
//! `GET /api/system/info` with a `hashRate` but not as a Bitaxe: a fork's own device model
//! (`deviceModel`, `boardName`) or an ASIC that no Bitaxe carries. Read with the AxeOS
//! field map; `make` is the fork's own name, or `unknown`. No capture of a fork was found
//! (searched: asic-rs and pyasic sources hold only HTML titles for NerdAxe), so it is tested
//! against the AxeOS capture with a fork's keys set.

use serde_json::Value;

use super::axeos::{MAP, REQUESTS};
use super::{Api, HttpApi, Make};
use crate::collect::miners::identify::{s, Identity};

/// The fork's own name, when the reply carries one.
pub fn fork_name(v: &Value) -> Option<String> {
    ["deviceModel", "boardName"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty() && !x.eq_ignore_ascii_case("bitaxe"))
}

pub fn identify(doc: &Value) -> Identity {
    let info = doc.get("system_info").cloned().unwrap_or(Value::Null);
    Identity {
        make: Some(fork_name(&info).unwrap_or_else(|| "unknown".into())),
        model: s(doc, "system_info/ASICModel"),
        firmware: s(doc, "system_info/version").map(|v| format!("AxeOS-compatible {v}")),
        map: &MAP,
    }
}

pub const MAKE: Make = Make {
    id: "axeos-generic",
    title: "any other AxeOS-derived firmware (fallback)",
    map: &MAP,
    api: Api::Http(HttpApi {
        label: "AxeOS fork",
        requests: REQUESTS,
        detect: |v| v.get("hashRate").is_some(),
        identify,
        login: None,
    }),
    sim: None,
};
