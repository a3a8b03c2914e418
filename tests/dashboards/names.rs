//! InfluxQL names: each measurement, field and tag a query names must be in the
//! schema table of `wattledger::model::schema`.

#![allow(unused_imports)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{files::*, influx::*, read, root};

/// Names per measurement, from the table `wattledger::model::schema` exports.
pub(crate) struct Schema {
    pub(crate) tags: BTreeMap<String, BTreeSet<String>>,
    pub(crate) fields: BTreeMap<String, BTreeSet<String>>,
}

pub(crate) fn schema() -> Schema {
    use wattledger::model::schema::{COMMON_TAGS, MEASUREMENTS};
    let mut schema = Schema { tags: BTreeMap::new(), fields: BTreeMap::new() };
    for m in MEASUREMENTS {
        let tags = COMMON_TAGS.iter().chain(m.tags).map(|t| t.to_string()).collect();
        schema.tags.insert(m.name.to_string(), tags);
        schema.fields.insert(m.name.to_string(), m.fields.iter().map(|f| f.to_string()).collect());
    }
    schema
}

// InfluxQL names

#[derive(Debug, PartialEq)]
pub(crate) enum Tok {
    Quoted(String),
    Str,
    Regex,
    Word(String),
    Var,
    Punct(char),
}

pub(crate) fn tokenize(q: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let until = |i: usize, end: char| -> Result<usize, String> {
        let mut j = i + 1;
        while j < c.len() && c[j] != end {
            if c[j] == '\\' {
                j += 1;
            }
            j += 1;
        }
        if j >= c.len() {
            return Err(format!("unterminated {end} in: {q}"));
        }
        Ok(j)
    };
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' {
            let j = until(i, '"')?;
            out.push(Tok::Quoted(c[i + 1..j].iter().collect()));
            i = j + 1;
        } else if ch == '\'' {
            i = until(i, '\'')? + 1;
            out.push(Tok::Str);
        } else if ch == '/' && matches!(out.last(), Some(Tok::Punct('~'))) {
            i = until(i, '/')? + 1;
            out.push(Tok::Regex);
        } else if ch == '$' {
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Var);
        } else if ch.is_alphanumeric() || ch == '_' || ch == '.' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
            out.push(Tok::Word(c[s..i].iter().collect()));
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    Ok(out)
}

pub(crate) const KEYWORDS: &[&str] = &[
    "select", "from", "where", "and", "or", "group", "by", "fill", "none", "null", "as", "show", "tag", "values",
    "with", "key", "time", "true", "false", "limit", "order", "desc", "asc",
];
pub(crate) const FUNCTIONS: &[&str] = &[
    "mean",
    "sum",
    "count",
    "last",
    "first",
    "max",
    "min",
    "median",
    "non_negative_derivative",
    "non_negative_difference",
    "moving_average",
    "abs",
];

/// Checks that every name `q` uses exists in the schema for the measurement(s) it reads.
/// Identifiers must be double-quoted so that they can be told from keywords.
pub(crate) fn check_names(q: &str, schema: &Schema) -> Result<(), String> {
    let toks = tokenize(q)?;
    let mut measurements = Vec::new();
    let mut aliases = BTreeSet::new();
    // (name, role): role is "tag", "field" or "any".
    let mut uses: Vec<(String, &str)> = Vec::new();
    let mut in_group_by = false;
    // Parenthesis depth, and the depth a GROUP BY clause started at (it ends with the
    // subquery that holds it).
    let mut depth = 0usize;
    let mut group_by_depth = 0usize;
    for (i, t) in toks.iter().enumerate() {
        let prev = |k: usize| if i >= k { toks.get(i - k) } else { None };
        let word_is = |t: Option<&Tok>, w: &str| matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
        match t {
            Tok::Word(w) => {
                let lw = w.to_ascii_lowercase();
                let duration = w.chars().next().is_some_and(|c| c.is_ascii_digit());
                if !duration && !KEYWORDS.contains(&lw.as_str()) && !FUNCTIONS.contains(&lw.as_str()) {
                    return Err(format!("bare word `{w}` (quote identifiers, or teach this test the keyword) in: {q}"));
                }
                if lw == "by" && word_is(prev(1), "group") {
                    in_group_by = true;
                    group_by_depth = depth;
                } else if lw == "fill" || lw == "limit" || lw == "order" {
                    in_group_by = false;
                }
            }
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth = depth.saturating_sub(1);
                if depth < group_by_depth {
                    in_group_by = false;
                }
            }
            Tok::Quoted(name) => {
                if word_is(prev(1), "from") {
                    measurements.push(name.clone());
                } else if word_is(prev(1), "as") {
                    aliases.insert(name.clone());
                } else if word_is(prev(2), "key") || in_group_by {
                    uses.push((name.clone(), "tag"));
                } else if matches!(prev(1), Some(Tok::Punct('('))) && matches!(prev(2), Some(Tok::Word(_))) {
                    uses.push((name.clone(), "field"));
                } else {
                    uses.push((name.clone(), "any"));
                }
            }
            _ => {}
        }
    }
    if measurements.is_empty() {
        return Err(format!("no FROM \"measurement\" in: {q}"));
    }
    for m in &measurements {
        if !schema.fields.contains_key(m) {
            return Err(format!("measurement \"{m}\" is not in src/model/schema.rs: {q}"));
        }
    }
    for (name, role) in uses {
        let is_tag = measurements.iter().any(|m| schema.tags[m].contains(&name));
        let is_field = measurements.iter().any(|m| schema.fields[m].contains(&name)) || aliases.contains(&name);
        let ok = match role {
            "tag" => is_tag,
            "field" => is_field,
            _ => is_tag || is_field,
        };
        if !ok {
            return Err(format!("\"{name}\" is not a {role} of {measurements:?} in src/model/schema.rs: {q}"));
        }
    }
    Ok(())
}
