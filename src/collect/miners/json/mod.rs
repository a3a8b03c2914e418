//! Lenient JSON for miner replies, and the small path language the field maps use.
//!
//! Miners send JSON that is not always JSON: a trailing NUL, `}{` between objects where a
//! comma belongs (bmminer's `stats`), trailing garbage after a complete object, numbers as
//! strings (`"37603.30"`), several readings in one dashed string (`"78-50-69-70"`), and
//! whole status blocks packed into bracket strings (Avalon `Fan1[5344] PS[0 1214 ...]`).
//! Everything here is total: arbitrary bytes give an error or a value, never a panic.

use serde_json::Value;

mod keep;
pub use keep::{parse_kept, prune, Keep};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsonError {
    #[error("empty reply")]
    Empty,
    #[error("reply is not JSON: {0}")]
    Invalid(String),
}

/// Parses a reply: stops at the first NUL, tolerates `}{` and trailing garbage.
pub fn parse_lenient(raw: &[u8]) -> Result<Value, JsonError> {
    let raw = match raw.iter().position(|&b| b == 0) {
        Some(p) => &raw[..p],
        None => raw,
    };
    // Fast path: well-formed UTF-8 JSON is parsed straight from the bytes (serde_json skips
    // whitespace and checks UTF-8 itself), without a lossy copy or a second pass.
    if let Some(Ok(v)) = serde_json::Deserializer::from_slice(raw).into_iter::<Value>().next() {
        if v.is_object() || v.is_array() {
            return Ok(v);
        }
    }
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if text.is_empty() {
        return Err(JsonError::Empty);
    }
    match first_value(text) {
        Ok(v) => Ok(v),
        Err(first_err) => {
            // bmminer's stats: `[{...}{...}]`. Insert the missing commas and try again.
            if text.contains("}{") {
                if let Ok(v) = first_value(&text.replace("}{", "},{")) {
                    return Ok(v);
                }
            }
            Err(JsonError::Invalid(first_err))
        }
    }
}

/// The first complete JSON value in `text`; anything after it is ignored.
fn first_value(text: &str) -> Result<Value, String> {
    let mut it = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match it.next() {
        Some(Ok(v)) if v.is_object() || v.is_array() => Ok(v),
        Some(Ok(_)) => Err("not a JSON object".into()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("empty".into()),
    }
}

/// A number from a JSON number or a numeric string (`"37603.30"`, `" 3000 W"`, `"72%"`).
pub fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        Value::String(s) => parse_num_str(s),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn parse_num_str(s: &str) -> Option<f64> {
    let s = s.trim().trim_matches('\'');
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0) || c == 'e' || c == 'E'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    s[..end].parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Every number a value holds: a number, a numeric string, a dashed list (`"78-50-69-70"`),
/// or an array of those.
pub fn nums(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| nums(x, out)),
        Value::String(s) if is_dashed_list(s) => {
            out.extend(s.split('-').filter_map(|p| p.trim().parse::<f64>().ok()));
        }
        _ => out.extend(num(v)),
    }
}

fn is_dashed_list(s: &str) -> bool {
    let s = s.trim();
    s.contains('-')
        && !s.starts_with('-')
        && s.split('-').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// Resolves a `/`-separated path, collecting every value it reaches.
///
/// Segments: an object key; an array index; `*` (every element or value); `prefix#` (keys
/// that are `prefix` followed by digits only: `fan#` matches `fan1` but not `fan_num`);
/// `prefix*` (keys starting with `prefix`).
pub fn select<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for v in cur {
            match v {
                Value::Object(map) => {
                    if is_pattern(seg) {
                        next.extend(map.iter().filter(|(k, _)| key_matches(seg, k)).map(|(_, v)| v));
                    } else if let Some(x) = map.get(seg) {
                        next.push(x);
                    }
                }
                Value::Array(arr) => {
                    if seg == "*" {
                        next.extend(arr.iter());
                    } else if let Ok(i) = seg.parse::<usize>() {
                        next.extend(arr.get(i));
                    }
                }
                _ => {}
            }
        }
        cur = next;
    }
    cur
}

fn digits_after(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a path segment matches more than one key (`*`, `prefix#`, `prefix*`).
pub(super) fn is_pattern(seg: &str) -> bool {
    seg.ends_with(['*', '#'])
}

/// Whether the object key `key` is reached by the path segment `seg`.
pub(super) fn key_matches(seg: &str, key: &str) -> bool {
    if seg == "*" {
        true
    } else if let Some(prefix) = seg.strip_suffix('#') {
        digits_after(key, prefix)
    } else if let Some(prefix) = seg.strip_suffix('*') {
        key.starts_with(prefix)
    } else {
        key == seg
    }
}

/// The concrete paths (`/`-separated keys and indices) of every value [`select`] reaches:
/// what a writer needs to change exactly those values.
pub fn select_paths(root: &Value, path: &str) -> Vec<String> {
    let mut cur: Vec<(String, &Value)> = vec![(String::new(), root)];
    let join = |base: &str, seg: &str| if base.is_empty() { seg.to_owned() } else { format!("{base}/{seg}") };
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for (at, v) in cur {
            match v {
                Value::Object(map) => {
                    next.extend(map.iter().filter(|(k, _)| key_matches(seg, k)).map(|(k, x)| (join(&at, k), x)));
                }
                Value::Array(arr) => {
                    if seg == "*" {
                        next.extend(arr.iter().enumerate().map(|(i, x)| (join(&at, &i.to_string()), x)));
                    } else if let Ok(i) = seg.parse::<usize>() {
                        next.extend(arr.get(i).map(|x| (join(&at, seg), x)));
                    }
                }
                _ => {}
            }
        }
        cur = next;
    }
    cur.into_iter().map(|(p, _)| p).collect()
}

/// The first value at `path` that is a number (or numeric string).
pub fn first_num(root: &Value, path: &str) -> Option<f64> {
    select(root, path).into_iter().find_map(num)
}

/// The first string at `path`.
pub fn first_str<'a>(root: &'a Value, path: &str) -> Option<&'a str> {
    select(root, path).into_iter().find_map(|v| v.as_str())
}

/// Finds `NAME[...]` groups in a bracket status string (Avalon's `MM ID0`) and returns the
/// numbers inside each group whose name matches `key` (`Fan#` = `Fan` + digits). Names may
/// contain spaces (`Nonce Mask[25]`); contents never nest.
pub fn bracket_nums(s: &str, key: &str) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let name_part = &rest[..open];
        let name = name_part.rsplit(['{', ']']).next().unwrap_or(name_part).trim();
        let Some(close_rel) = rest[open + 1..].find(']') else { break };
        let contents = &rest[open + 1..open + 1 + close_rel];
        let matches = match key.strip_suffix('#') {
            Some(prefix) => digits_after(name, prefix),
            None => name == key,
        };
        if matches {
            out.push(
                contents
                    .split_whitespace()
                    .filter_map(|t| t.trim_end_matches('%').parse::<f64>().ok())
                    .filter(|x| x.is_finite())
                    .collect(),
            );
        }
        rest = &rest[open + 1 + close_rel + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_brace_and_trailing_garbage() {
        assert_eq!(parse_lenient(b"{\"a\":1}\0").unwrap(), json!({"a":1}));
        assert_eq!(parse_lenient(b"{\"a\":1}\0garbage").unwrap(), json!({"a":1}));
        assert_eq!(parse_lenient(b"{\"a\":1} trailing } junk").unwrap(), json!({"a":1}));
        assert_eq!(parse_lenient(b"{\"S\":[{\"a\":1}{\"b\":2}]}").unwrap(), json!({"S":[{"a":1},{"b":2}]}));
        assert_eq!(parse_lenient(b"\0{\"a\":1}"), Err(JsonError::Empty));
        assert!(matches!(parse_lenient(b"hello"), Err(JsonError::Invalid(_))));
        assert!(matches!(parse_lenient(b"42"), Err(JsonError::Invalid(_))));
    }

    #[test]
    fn numbers_as_strings_and_lists() {
        assert_eq!(num(&json!("37603.30")), Some(37603.30));
        assert_eq!(num(&json!("3000 W")), Some(3000.0));
        assert_eq!(num(&json!("")), None);
        assert_eq!(num(&json!("'72.5'")), Some(72.5));
        assert_eq!(num(&json!("20210322.22.REL")), None); // a version, not a number
        let mut v = Vec::new();
        nums(&json!("78-50-69-70"), &mut v);
        assert_eq!(v, vec![78.0, 50.0, 69.0, 70.0]);
    }

    #[test]
    fn paths() {
        let v = json!({"S":[{"fan1":1,"fan2":"2","fan_num":9,"GHS 5s":3}]});
        let got: Vec<f64> = select(&v, "S/*/fan#").into_iter().filter_map(num).collect();
        assert_eq!(got, vec![1.0, 2.0]);
        assert_eq!(first_num(&v, "S/0/GHS 5s"), Some(3.0));
        assert_eq!(first_num(&v, "S/1/GHS 5s"), None);
    }

    #[test]
    fn brackets() {
        let s = "'STATS':{Ver[Q-1] Fan1[5344] Fan2[5392] FanR[72%] Nonce Mask[25] PS[0 1214 1316]}";
        assert_eq!(bracket_nums(s, "Fan#"), vec![vec![5344.0], vec![5392.0]]);
        assert_eq!(bracket_nums(s, "PS"), vec![vec![0.0, 1214.0, 1316.0]]);
        assert_eq!(bracket_nums(s, "Nonce Mask"), vec![vec![25.0]]);
        assert!(bracket_nums("[[[", "x").is_empty());
    }
}
