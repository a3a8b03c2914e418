//! Keeping only what a set of paths reaches, while a reply is parsed or afterwards.
//!
//! A fleet read holds each reply while the rest of its miner's requests are in flight, and
//! a miner's replies are mostly keys no field map reads (LuxOS and bmminer `stats` have
//! hundreds, the maps read a dozen). Parsing every key into a [`Value`] tree was the larger
//! part of a sweep's own CPU and of its memory (`docs/benchmarks.md`, "Miner sweep"), so
//! the probe parses the cgminer multi-command reply through a [`Keep`] of the paths that
//! identification and the cgminer makes' maps read; everything else is skipped unbuilt.
//!
//! The paths are those of [`super::select`], and a [`Keep`] keeps exactly what `select`
//! would reach: a value a path ends at whole, the containers on the way with only the
//! matching members, an array's positions as they were (a dropped element before a kept
//! one becomes `null`, from which no path reads a number or string).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{is_pattern, key_matches, parse_lenient, JsonError};

/// A compiled set of paths: a trie of their segments.
#[derive(Debug, Default)]
pub struct Keep {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// A path ends here: the value is kept whole.
    end: bool,
    /// Plain segments: object keys, and array positions when they are numbers. Looked up
    /// once per member of every object on a kept path, so with a fast hash.
    keys: HashMap<String, Node, foldhash::fast::RandomState>,
    /// `*`, `prefix#` and `prefix*` segments, tried against every key.
    patterns: Vec<(String, Node)>,
}

impl Node {
    fn child(&mut self, seg: &str) -> &mut Node {
        if is_pattern(seg) {
            match self.patterns.iter().position(|(s, _)| s == seg) {
                Some(i) => &mut self.patterns[i].1,
                None => {
                    self.patterns.push((seg.to_owned(), Node::default()));
                    &mut self.patterns.last_mut().expect("just pushed").1
                }
            }
        } else {
            self.keys.entry(seg.to_owned()).or_default()
        }
    }

    /// The children an object member named `key` goes on to.
    fn by_key<'a>(&'a self, key: &str, out: &mut Vec<&'a Node>) {
        out.extend(self.keys.get(key));
        out.extend(self.patterns.iter().filter(|(seg, _)| key_matches(seg, key)).map(|(_, n)| n));
    }

    /// The children array element `i` goes on to: its number, or `*`.
    fn by_index<'a>(&'a self, i: usize, out: &mut Vec<&'a Node>) {
        if !self.keys.is_empty() {
            out.extend(self.keys.get(i.to_string().as_str()));
        }
        out.extend(self.patterns.iter().filter(|(seg, _)| seg == "*").map(|(_, n)| n));
    }
}

impl Keep {
    /// Compiles `paths` (`/`-separated, the syntax of [`super::select`]); an empty path keeps everything.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Keep {
        let mut root = Node::default();
        for p in paths {
            let mut n = &mut root;
            for seg in p.as_ref().split('/').filter(|s| !s.is_empty()) {
                n = n.child(seg);
            }
            n.end = true;
        }
        Keep { root }
    }

    /// `root` with only what the paths reach.
    pub fn prune(&self, root: Value) -> Value {
        prune_at(root, &[&self.root]).unwrap_or(Value::Null)
    }
}

/// [`Keep::prune`] for paths used once.
pub fn prune<S: AsRef<str>>(root: Value, paths: &[S]) -> Value {
    Keep::new(paths).prune(root)
}

fn prune_at(v: Value, nodes: &[&Node]) -> Option<Value> {
    if nodes.iter().any(|n| n.end) {
        return Some(v);
    }
    let mut next = Vec::new();
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, x) in map {
                next.clear();
                nodes.iter().for_each(|n| n.by_key(&k, &mut next));
                if let Some(y) = (!next.is_empty()).then(|| prune_at(x, &next)).flatten() {
                    out.insert(k, y);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(arr) => {
            let mut out = Vec::new();
            for (i, x) in arr.into_iter().enumerate() {
                next.clear();
                nodes.iter().for_each(|n| n.by_index(i, &mut next));
                if let Some(y) = (!next.is_empty()).then(|| prune_at(x, &next)).flatten() {
                    out.resize(i, Value::Null);
                    out.push(y);
                }
            }
            Some(Value::Array(out))
        }
        // A path goes on below a number or string: it reaches nothing here.
        _ => None,
    }
}

/// [`parse_lenient`] keeping only what `keep` reaches. Well-formed replies are pruned as
/// they are parsed (a skipped member is read past, never built); the quirky ones that need
/// `parse_lenient`'s repairs are parsed whole and pruned after, with the same result.
pub fn parse_kept(raw: &[u8], keep: &Keep) -> Result<Value, JsonError> {
    let json = match raw.iter().position(|&b| b == 0) {
        Some(p) => &raw[..p],
        None => raw,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    if let Ok(Some(v)) = (Seed { nodes: vec![&keep.root] }).deserialize(&mut de) {
        if v.is_object() || v.is_array() {
            return Ok(v);
        }
    }
    parse_lenient(raw).map(|v| keep.prune(v))
}

/// Deserializes one value, keeping what `nodes` (none of them an end) go on to reach.
struct Seed<'a> {
    nodes: Vec<&'a Node>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Option<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A member's value: skipped, kept whole, or pruned further.
fn member<'de, 'a, A: MapAccess<'de>>(m: &mut A, next: Vec<&'a Node>) -> Result<Option<Value>, A::Error> {
    if next.is_empty() {
        m.next_value::<IgnoredAny>()?;
        Ok(None)
    } else if next.iter().any(|n| n.end) {
        m.next_value::<Value>().map(Some)
    } else {
        m.next_value_seed(Seed { nodes: next })
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(k)) = m.next_key()? {
            let mut next = Vec::new();
            self.nodes.iter().for_each(|n| n.by_key(&k, &mut next));
            if let Some(v) = member(&mut m, next)? {
                out.insert(k.into_owned(), v);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let mut next = Vec::new();
            self.nodes.iter().for_each(|n| n.by_index(i, &mut next));
            let v = if next.is_empty() {
                match s.next_element::<IgnoredAny>()? {
                    Some(_) => None,
                    None => break,
                }
            } else if next.iter().any(|n| n.end) {
                match s.next_element::<Value>()? {
                    Some(v) => Some(v),
                    None => break,
                }
            } else {
                match s.next_element_seed(Seed { nodes: next })? {
                    Some(v) => v,
                    None => break,
                }
            };
            if let Some(v) = v {
                out.resize(i, Value::Null);
                out.push(v);
            }
            i += 1;
        }
        Ok(Some(Value::Array(out)))
    }

    // A scalar where a path goes on below: it reaches nothing.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object key, borrowed from the reply where it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::miners::json::select;
    use serde_json::json;

    #[test]
    fn prune_keeps_what_the_paths_reach() {
        let v = json!({
            "S": [{"skip": 1}, {"fan1": 1, "fan_num": 9, "GHS 5s": "3", "deep": {"a": [1, 2]}}],
            "T": {"x": 1},
            "U": "scalar"
        });
        let paths = ["S/*/fan#", "S/1/GHS 5s", "S/1/deep", "U/below", "missing/x"];
        let p = prune(v.clone(), &paths);
        assert_eq!(p, json!({"S": [{}, {"fan1": 1, "GHS 5s": "3", "deep": {"a": [1, 2]}}]}));
        for path in paths {
            assert_eq!(select(&p, path), select(&v, path), "{path}");
        }
        assert_eq!(prune(v.clone(), &[""]), v);
        assert_eq!(prune(v, &[] as &[&str]), json!({}));
    }

    #[test]
    fn parsing_through_a_keep_equals_pruning_the_whole_parse() {
        let paths = ["S/*/fan#", "S/1/GHS 5s", "S/1/deep", "U/below", "T", "esc\\\"aped"];
        let keep = Keep::new(&paths);
        for raw in [
            &br#"{"S":[{"skip":1},{"fan1":1,"fan_num":9,"GHS 5s":"3","deep":{"a":[1,2]}}],"T":{"x":1},"U":"s"}"#[..],
            br#"{"S":[{"fan1":1}{"fan2":2}]}"#, // bmminer's missing comma: repaired
            b"{\"S\":[{\"fan1\":1}]}\0garbage", // NUL-terminated
            br#"{"S":[{"fan\u0031":7}],"T":[1,2,3]} trailing"#, // an escaped key, trailing bytes
            br#"[{"S":1},2,{"T":3}]"#,
        ] {
            let whole = prune(parse_lenient(raw).unwrap(), &paths);
            assert_eq!(parse_kept(raw, &keep).unwrap(), whole, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(parse_kept(b"42", &keep), parse_lenient(b"42"));
        assert_eq!(parse_kept(b"\0{}", &keep), Err(JsonError::Empty));
    }
}
