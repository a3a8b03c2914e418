//! Make, model and firmware from a miner's own replies, and the helpers every make's
//! `identify` shares. Each make's rules are in its own file under `makes/`; the cgminer
//! family is told apart here by asking each cgminer make of [`MAKES`] in turn, the generic
//! fallback last.

use serde_json::{Map, Value};

use super::json;
use super::makes::{self, Api, Make, MAKES};
use super::profiles::FieldMap;

pub use makes::axeos::identify as identify_axeos;
pub use makes::axeos_generic::identify as identify_axeos_fork;
pub use makes::braiins_graphql::identify as identify_braiins_gql;
pub use makes::braiins_rest::identify as identify_braiins_rest;
pub use makes::epic::identify as identify_epic;
pub use makes::goldshell::identify as identify_goldshell;
pub use makes::proto::identify as identify_proto;
pub use makes::whatsminer::identify as identify_whatsminer;
pub use makes::whatsminer_v3::identify as identify_whatsminer_v3;

/// Make, model and firmware as the miner's replies say, and the field map to read it with.
#[derive(Debug, Clone)]
pub struct Identity {
    pub make: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub map: &'static FieldMap,
}

/// `name` without a leading `make` (`Antminer S19 Pro` → `S19 Pro`).
pub fn strip_make(name: &str, make: &str) -> String {
    let n = name.trim();
    n.strip_prefix(make).map(str::trim).filter(|s| !s.is_empty()).unwrap_or(n).to_owned()
}

/// The trimmed, non-empty string at `path`.
pub fn s(v: &Value, path: &str) -> Option<String> {
    json::first_str(v, path).map(|x| x.trim().trim_matches('\'').to_owned()).filter(|x| !x.is_empty())
}

/// The `version` block of a cgminer document (`version/VERSION/0`), or `null`; borrowed,
/// since every cgminer make's `identify` asks for it on the sweep's hot path.
pub fn cgminer_version(doc: &Value) -> &Value {
    static NULL: Value = Value::Null;
    doc.pointer("/version/VERSION/0").unwrap_or(&NULL)
}

/// The cgminer make that claims `doc`, and its identity; the generic fallback always claims.
pub fn claim_cgminer(doc: &Value) -> (&'static Make, Identity) {
    for m in MAKES {
        if let Api::Cgminer { identify, .. } = m.api {
            if let Some(id) = identify(doc) {
                return (m, id);
            }
        }
    }
    // Unreachable while the generic fallback is registered; kept total all the same.
    let m = &makes::cgminer_generic::MAKE;
    (m, makes::cgminer_generic::identify(doc).expect("the generic cgminer make claims every document"))
}

/// Identifies a cgminer-family miner from its `version` reply (and `stats` for Avalon
/// A-series, whose version block lacks the product name).
pub fn identify_cgminer(doc: &Value) -> Identity {
    claim_cgminer(doc).1
}

/// Whether a cgminer-style reply (or a Whatsminer `{"STATUS":"E"}`) reports an error; the message if so.
pub fn reply_error(reply: &Value) -> Option<String> {
    let status = reply.get("STATUS")?;
    let (code, msg) = match status {
        Value::Array(a) => {
            let st = a.first()?;
            (st.get("STATUS").and_then(Value::as_str).unwrap_or("S"), st.get("Msg"))
        }
        Value::String(c) => (c.as_str(), reply.get("Msg")),
        _ => return None,
    };
    if code == "E" || code == "F" {
        Some(
            msg.map(|m| m.as_str().map(str::to_owned).unwrap_or_else(|| m.to_string()))
                .unwrap_or_else(|| "error".into()),
        )
    } else {
        None
    }
}

/// Splits a multi-command reply (`{"version":[{...}],"summary":[{...}],...}`) into a document
/// keyed by command; the parts are moved, not copied. A single top-level `STATUS` means the
/// miner answered the whole multi-command with one (error) reply.
pub fn split_multi(reply: Value, commands: &[&str]) -> Result<Map<String, Value>, String> {
    if reply.get("STATUS").is_some() {
        return Err(reply_error(&reply).unwrap_or_else(|| "multi-command not supported".into()));
    }
    let mut reply = match reply {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut doc = Map::new();
    for c in commands {
        let part = match reply.remove(*c) {
            Some(Value::Array(a)) => a.into_iter().next(),
            Some(v @ Value::Object(_)) => Some(v),
            _ => None,
        };
        match part {
            Some(p) => {
                if let Some(e) = reply_error(&p) {
                    return Err(format!("{c}: {e}"));
                }
                doc.insert((*c).to_owned(), p);
            }
            None => return Err(format!("no `{c}` in the multi-command reply")),
        }
    }
    Ok(doc)
}
