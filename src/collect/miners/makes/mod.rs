//! One file per make: each exports one [`Make`] descriptor, and [`MAKES`] lists them.
//!
//! A descriptor holds everything about one make (or one firmware family of a make): its
//! id (also the fixture folder and the simulator's make name), how it is found and read
//! ([`Api`]: the requests and `identify`), its field map with units
//! ([`super::profiles::FieldMap`]), and the simulator's replies ([`Sim`]). The simulator
//! moves the very fields the field map reads (it derives its patches from the map), so
//! there is one table of paths per make, not two.
//!
//! [`MAKES`] is the registration: its order is the probe order within each protocol, the
//! simulator's list of makes, what the property tests iterate over, and the tables in
//! `README.md` (checked by a test). Adding a make is one file here, one fixture folder in
//! `tests/data/miners/` and one line in [`MAKES`] (see `docs/extending.md`).

use serde_json::Value;

use super::identify::Identity;
use super::profiles::FieldMap;

pub mod antminer;
pub mod avalon;
pub mod axeos;
pub mod axeos_generic;
pub mod braiins_graphql;
pub mod braiins_rest;
pub mod cgminer_generic;
pub mod epic;
pub mod goldshell;
pub mod luxos;
pub mod proto;
pub mod volcminer;
pub mod whatsminer;
pub mod whatsminer_v3;

/// Every make, in probe order within each protocol. Fallbacks come last in their protocol.
pub const MAKES: &[&Make] = &[
    &antminer::MAKE,
    &luxos::MAKE,
    &avalon::MAKE,
    &volcminer::MAKE,
    &whatsminer::MAKE_V1,
    &whatsminer::MAKE_V2,
    &whatsminer_v3::MAKE,
    &axeos::MAKE,
    &epic::MAKE,
    &proto::MAKE,
    &goldshell::MAKE,
    &braiins_graphql::MAKE,
    &braiins_rest::MAKE,
    &cgminer_generic::MAKE,
    &axeos_generic::MAKE,
];

/// One make (or firmware family).
#[derive(Debug)]
pub struct Make {
    /// Stable id: the fixture folder under `tests/data/miners/` and the simulator's make name.
    pub id: &'static str,
    /// What it is, for people (README tables).
    pub title: &'static str,
    /// The field map its document is read with.
    pub map: &'static FieldMap,
    /// How it is found and read.
    pub api: Api,
    /// The simulator's replies; `None` for a fallback that has no capture of its own.
    pub sim: Option<Sim>,
}

/// How a make is found and which requests read it.
#[derive(Debug)]
pub enum Api {
    /// cgminer family: identified from the one multi-command document
    /// (`version+summary+stats+pools`); `identify` says `None` when the document is not this
    /// make's. `extra`: single read-only commands sent after identification (LuxOS `power`).
    Cgminer { identify: fn(&Value) -> Option<Identity>, extra: &'static [&'static str] },
    /// Whatsminer btminer API v1/v2 (`{"cmd":...}` on 4028): `get_version` identifies (a
    /// `Msg.fw_ver`), then `commands` are read; those in `optional` may be refused.
    Btminer { commands: &'static [&'static str], optional: &'static [&'static str], identify: fn(&Value) -> Identity },
    /// Whatsminer API v3 framing (u32 LE length + JSON) on [`Api::FRAMED_PORT`]: each request's
    /// reply is stored under every listed document key.
    Framed { requests: &'static [(&'static [&'static str], &'static str)], identify: fn(&Value) -> Identity },
    /// An HTTP API.
    Http(HttpApi),
}

impl Api {
    /// Whatsminer API v3's port; the v3 framing is only spoken there.
    pub const FRAMED_PORT: u16 = 4433;
}

/// An HTTP make: the first request identifies it (`detect` on its reply), the rest read it.
#[derive(Debug)]
pub struct HttpApi {
    /// Name in messages (`Goldshell /mcb/status did not answer`).
    pub label: &'static str,
    pub requests: &'static [HttpReq],
    pub detect: fn(&Value) -> bool,
    pub identify: fn(&Value) -> Identity,
    /// A token login, attempted only after the host identified itself as this make.
    pub login: Option<Login>,
}

/// One read-only HTTP request; its reply is stored under `key` of the document.
#[derive(Debug)]
pub struct HttpReq {
    pub key: &'static str,
    pub path: &'static str,
    /// A GraphQL query: sent as `POST path {"query": ...}`; `None` = `GET path`.
    pub query: Option<&'static str>,
    /// Store only this member of the reply (the first present of these), not the whole reply.
    pub take: &'static [&'static str],
    /// May fail without failing the reading.
    pub optional: bool,
    /// The simulator's name for this reply when it is not `path` (GraphQL replies chosen by query).
    pub sim_reply: Option<&'static str>,
}

impl HttpReq {
    pub const fn get(key: &'static str, path: &'static str) -> HttpReq {
        HttpReq { key, path, query: None, take: &[], optional: false, sim_reply: None }
    }
}

/// A token login: `POST path {"username","password"}` answering `{"token": ...}`, the token
/// then sent as the bare `Authorization` header value.
#[derive(Debug)]
pub struct Login {
    pub path: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    /// Whether the unauthenticated first request's refusal (status, JSON body) is this
    /// make's own; only then are credentials sent.
    pub challenge: fn(u16, &Value) -> bool,
    /// The reason given when the login itself is refused.
    pub refused: &'static str,
}

/// How the simulator serves a make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    Cgminer {
        multi: bool,
    },
    Btminer,
    Framed,
    Http,
    /// HTTP with a token login (Braiins OS REST).
    HttpLogin,
    /// `POST /graphql`, the reply chosen by the query.
    Graphql,
}

/// How a reply field moves with time in the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moves {
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

/// A reply field that moves but is not read by the field map (`GHS av`, `Difficulty Rejected`).
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    pub reply: &'static str,
    pub path: &'static str,
    /// A `KEY[...]` group inside the string at `path` (Avalon).
    pub bracket: Option<&'static str>,
    pub moves: Moves,
}

pub const fn extra(reply: &'static str, path: &'static str, moves: Moves) -> Extra {
    Extra { reply, path, bracket: None, moves }
}

/// The simulator's data for a make: replies built from its captures.
#[derive(Debug)]
pub struct Sim {
    pub serve: Serve,
    /// Replies by command (cgminer, btminer, framed) or by path (HTTP).
    pub replies: fn() -> Vec<(&'static str, Value)>,
    /// The capture's hashrate in TH/s (drives accepted difficulty).
    pub base_ths: f64,
    /// Pool share difficulty (drives share counters).
    pub share_diff: f64,
    pub extra: &'static [Extra],
    /// A port the make always listens on (Whatsminer v3: 4433), whatever the fleet's port.
    pub port: Option<u16>,
}

impl Make {
    /// The simulator reply and member prefix holding document key `key`: for the HTTP makes
    /// the request's path (or its `sim_reply`), for the TCP makes the command itself.
    pub fn sim_reply(&self, key: &'static str) -> Option<(&'static str, Option<&'static str>)> {
        match &self.api {
            Api::Http(h) => h
                .requests
                .iter()
                .find(|r| r.key == key)
                .map(|r| (r.sim_reply.unwrap_or(r.path), r.take.first().copied())),
            _ => Some((key, None)),
        }
    }
}

impl Api {
    /// The protocol and the identifying request, for people.
    pub fn describe(&self) -> String {
        match self {
            Api::Cgminer { extra, .. } if extra.is_empty() => format!("cgminer TCP, `{}`", super::MULTI_COMMAND),
            Api::Cgminer { extra, .. } => format!("cgminer TCP, `{}` + `{}`", super::MULTI_COMMAND, extra.join("`, `")),
            Api::Btminer { commands, .. } => format!("btminer TCP, `get_version` + `{}`", commands.join("`, `")),
            Api::Framed { requests, .. } => format!(
                "v3 framing, TCP {}, {}",
                Api::FRAMED_PORT,
                requests.iter().map(|(_, p)| format!("`{p}`")).collect::<Vec<_>>().join(" + ")
            ),
            Api::Http(h) => {
                let paths: Vec<String> = h
                    .requests
                    .iter()
                    .map(|r| match r.query {
                        Some(_) => format!("`POST {}`", r.path),
                        None => format!("`{}`", r.path),
                    })
                    .collect();
                let login = if h.login.is_some() { " (token login once identified)" } else { "" };
                format!("HTTP, {}{login}", paths.join(", "))
            }
        }
    }
}

/// The table of makes in `README.md` (between `<!-- makes:begin -->` and `<!-- makes:end -->`),
/// generated from [`MAKES`]; a test keeps the README equal to it.
pub fn readme_table() -> String {
    let mut out = String::from("| id | make | requests | field map | simulated |\n|---|---|---|---|---|\n");
    for m in MAKES {
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            m.id,
            m.title,
            m.api.describe(),
            m.map.id,
            if m.sim.is_some() { "yes" } else { "no (fallback, no capture of its own)" }
        ));
    }
    out
}

/// Looks a make up by id.
pub fn by_id(id: &str) -> Option<&'static Make> {
    MAKES.iter().copied().find(|m| m.id == id)
}

/// Parses a bundled capture (a bug if it does not parse: the captures are in the tree).
pub fn load(s: &str) -> Value {
    serde_json::from_str(s).expect("bundled capture is valid JSON")
}

/// `include_str!` of a capture under `tests/data/miners/`; its path may be given in pieces.
#[macro_export]
#[doc(hidden)]
macro_rules! miner_capture {
    ($($p:literal),+) => {
        $crate::collect::miners::makes::load(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/miners/",
            $($p),+
        )))
    };
}

/// The replies of a cgminer-family make whose captures are named after their commands:
/// `miner_captures!("luxos": "version", "summary")` is
/// `vec![("version", miner_capture!("luxos/version.json")), ("summary", …)]`.
#[macro_export]
#[doc(hidden)]
macro_rules! miner_captures {
    ($dir:literal: $($cmd:literal),+ $(,)?) => {
        vec![$(($cmd, $crate::miner_capture!($dir, "/", $cmd, ".json"))),+]
    };
}
