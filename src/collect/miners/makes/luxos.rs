//! LuxOS (LUXminer) on Antminer hardware: the Antminer layout plus the `power` command.
//! Captures: `luxos/` (S19k Pro, LuxOS 2025.4.8).

use serde_json::Value;

use super::antminer::{CG_EXTRA, MAP_BASE};
use super::{Api, Make, Serve, Sim};
use crate::collect::miners::identify::{cgminer_version, s, strip_make, Identity};
use crate::collect::miners::profiles::{FieldMap, Src};
use crate::miner_captures;

pub static MAP: FieldMap = FieldMap { id: "luxos", power_w: &[Src::P("power/POWER/0/Watts")], ..MAP_BASE };

/// A `LUXminer` version block.
pub fn identify(doc: &Value) -> Option<Identity> {
    let ver = cgminer_version(doc);
    let lux = s(&ver, "LUXminer")?;
    let model = s(&ver, "Type").filter(|t| t.contains("Antminer")).map(|t| strip_make(&t, "Antminer"));
    Some(Identity {
        make: model.as_ref().map(|_| "Antminer".to_owned()),
        model,
        firmware: Some(format!("LuxOS {lux}")),
        map: &MAP,
    })
}

pub const MAKE: Make = Make {
    id: "luxos",
    title: "LuxOS (LUXminer) on Antminer",
    map: &MAP,
    api: Api::Cgminer { identify, extra: &["power"] },
    sim: Some(Sim {
        serve: Serve::Cgminer { multi: true },
        replies: || {
            miner_captures!("luxos":
                "version", "summary", "stats", "pools", "devs", "power", "temps", "fans", "profiles", "config")
        },
        base_ths: 59.75606, // summary GHS 5s 59756.06 GH/s
        share_diff: 32768.0,
        extra: &CG_EXTRA,
        port: None,
    }),
};
