//! Make, model and firmware from a miner's own replies, and the helpers every make's
//! `identify` shares. Each make's rules are in its own file under `makes/`; the cgminer
//! family is told apart here by asking each cgminer make of [`MAKES`] in turn, the generic
//! fallback last.

use serde_json::{Map, Value};

use super::json::{self, Keep};
use super::makes::{self, Api, Make, MAKES};
use super::profiles::FieldMap;
use super::MULTI_PARTS;

pub use makes::axeos::identify as identify_axeos;
pub use makes::axeos_generic::identify as identify_axeos_fork;
pub use makes::epic::identify as identify_epic;
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

/// What of a [`super::MULTI_COMMAND`] reply is parsed: what [`split_multi`] checks (the
/// `STATUS` blocks, `Msg`), the whole `version` reply (what every cgminer make's `identify`
/// reads) and every path of the cgminer makes' field maps within the four replies. A make
/// whose `identify` reads a reply other than `version` names that path in its map (Avalon's
/// `MM ID`). Each part may come as `[{...}]` or `{...}`, so both forms are kept.
pub fn multi_reply_keep() -> &'static Keep {
    static KEEP: std::sync::OnceLock<Keep> = std::sync::OnceLock::new();
    KEEP.get_or_init(|| {
        let mut paths = vec!["STATUS".to_owned(), "Msg".to_owned(), "version".to_owned()];
        for c in MULTI_PARTS {
            paths.extend([format!("{c}/0/STATUS"), format!("{c}/STATUS")]);
        }
        for m in MAKES.iter().filter(|m| matches!(m.api, Api::Cgminer { .. })) {
            for p in m.map.paths() {
                if let Some((c, rest)) = p.split_once('/').filter(|(c, _)| MULTI_PARTS.contains(c)) {
                    paths.push(format!("{c}/0/{rest}"));
                    paths.push(p);
                }
            }
        }
        Keep::new(&paths)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::miners::makes::Serve;
    use crate::collect::miners::{finish, MinerReading};

    fn read(raw: &[u8], keep: Option<&Keep>) -> (&'static str, MinerReading) {
        let reply = match keep {
            Some(k) => json::parse_kept(raw, k),
            None => json::parse_lenient(raw),
        };
        let doc = Value::Object(split_multi(reply.unwrap(), &MULTI_PARTS).unwrap());
        let (make, id) = claim_cgminer(&doc);
        (make.id, finish("192.0.2.1", 4028, &id, &doc))
    }

    /// Every cgminer make's captured multi-command reply, in both wire forms and with a
    /// failing part, reads the same parsed through [`multi_reply_keep`] as parsed whole.
    #[test]
    fn the_multi_reply_keep_changes_no_reading() {
        let mut seen = 0;
        for m in MAKES {
            let Some(sim) = m.sim.as_ref().filter(|s| matches!(s.serve, Serve::Cgminer { multi: true })) else {
                continue;
            };
            let replies: Map<String, Value> = (sim.replies)().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let part = |c: &str| replies.get(c).cloned().unwrap_or(Value::Null);
            let wrapped: Map<String, Value> =
                MULTI_PARTS.iter().map(|c| (c.to_string(), Value::Array(vec![part(c)]))).collect();
            let bare: Map<String, Value> = MULTI_PARTS.iter().map(|c| (c.to_string(), part(c))).collect();
            for doc in [wrapped, bare] {
                let raw = serde_json::to_vec(&doc).unwrap();
                let (whole_make, whole) = read(&raw, None);
                let (kept_make, kept) = read(&raw, Some(multi_reply_keep()));
                assert_eq!(kept_make, whole_make, "{}", m.id);
                assert_eq!(kept, whole, "{}", m.id);
                assert!(kept.hashrate_ths.is_some(), "{}: {kept:?}", m.id);
                let kept_len = json::parse_kept(&raw, multi_reply_keep()).unwrap().to_string().len();
                assert!(kept_len < raw.len(), "{}: the keep kept everything", m.id);
            }
            let mut failing = serde_json::to_value(&replies).unwrap();
            failing["stats"] = serde_json::json!([{"STATUS": [{"STATUS": "E", "Msg": "busy"}]}]);
            for c in ["version", "summary", "pools"] {
                failing[c] = Value::Array(vec![part(c)]);
            }
            let raw = serde_json::to_vec(&failing).unwrap();
            let err = |v: Value| split_multi(v, &MULTI_PARTS).unwrap_err();
            assert_eq!(err(json::parse_kept(&raw, multi_reply_keep()).unwrap()), "stats: busy");
            assert_eq!(err(json::parse_lenient(&raw).unwrap()), "stats: busy");
            seen += 1;
        }
        assert!(seen >= 3, "{seen} cgminer makes with a multi-command simulator");
    }
}
