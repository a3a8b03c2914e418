//! Per-make field maps: where each normalized quantity sits in a make's replies, and in
//! which unit. One generic extractor reads every map; each make's map is in its own file
//! under `makes/`.
//!
//! A reading is assembled into one JSON document whose top-level keys are the commands or
//! endpoints that were read (`version`, `summary`, `stats`, `pools`, `power`, `get_version`,
//! `system_info`, ...), each holding that reply. Paths below are relative to that document
//! (syntax in [`super::json::select`]).

use serde_json::Value;

use super::json::{bracket_nums, nums, select};

/// Hashrate units as miners label them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Hs,
    Khs,
    Mhs,
    Ghs,
    Ths,
}

impl Unit {
    /// Multiplier from this unit to TH/s.
    pub fn to_ths(self) -> f64 {
        match self {
            Unit::Hs => 1e-12,
            Unit::Khs => 1e-9,
            Unit::Mhs => 1e-6,
            Unit::Ghs => 1e-3,
            Unit::Ths => 1.0,
        }
    }

    /// Parses a `rate_unit` value (`"GH"`, `"TH/s"`, `"MH"`).
    pub fn parse(s: &str) -> Option<Unit> {
        let s = s.trim().to_ascii_uppercase();
        let s = s.trim_end_matches("/S").trim_end_matches('S');
        Some(match s {
            "H" => Unit::Hs,
            "KH" => Unit::Khs,
            "MH" => Unit::Mhs,
            "GH" => Unit::Ghs,
            "TH" => Unit::Ths,
            _ => return None,
        })
    }
}

/// Which numbers of a bracket group to take.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    All,
    At(usize),
    /// The first of these positions holding a value > 0 (Avalon `PS[...]` power).
    FirstPositive(&'static [usize]),
}

/// Where one quantity is found.
#[derive(Debug, Clone, Copy)]
pub enum Src {
    /// Every number at a path.
    P(&'static str),
    /// Numbers inside `KEY[...]` groups of the bracket strings found at a path.
    Br(&'static str, &'static str, Pick),
    /// The sum of every number at a path (per-board hashrates, per-pool counters).
    Sum(&'static str),
}

/// A hashrate source: its unit, optionally overridden by a unit field (`rate_unit`).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub src: Src,
    pub unit: Unit,
    pub unit_key: Option<&'static str>,
}

impl Rate {
    /// Every number at `path`, in `unit`.
    pub const fn at(path: &'static str, unit: Unit) -> Rate {
        Rate { src: Src::P(path), unit, unit_key: None }
    }
}

/// One make/firmware family's map.
#[derive(Debug)]
pub struct FieldMap {
    /// Stable id, also the simulator's make name.
    pub id: &'static str,
    /// First source with a value wins.
    pub hashrate: &'static [Rate],
    /// The miner's own nominal hashrate, for the sanity check.
    pub rated_hashrate: &'static [Rate],
    pub power_w: &'static [Src],
    pub diff_accepted: &'static [Src],
    pub shares_accepted: &'static [Src],
    pub shares_rejected: &'static [Src],
    /// All sources together; the maximum of the values above 0 °C.
    pub temps_c: &'static [Src],
    /// All sources together; the average.
    pub fans_rpm: &'static [Src],
    pub uptime_s: &'static [Src],
    /// Where the pools are reported; the first source that names a pool wins.
    pub pool: &'static [PoolSrc],
}

impl FieldMap {
    /// Every path [`extract`] reads with this map: what [`super::json::prune`] must keep.
    pub fn paths(&self) -> Vec<String> {
        let src = |s: &Src| match *s {
            Src::P(p) | Src::Sum(p) | Src::Br(p, ..) => p,
        };
        let mut out: Vec<String> = Vec::new();
        for r in self.hashrate.iter().chain(self.rated_hashrate) {
            out.push(src(&r.src).to_owned());
            out.extend(r.unit_key.map(str::to_owned));
        }
        for s in [self.power_w, self.diff_accepted, self.shares_accepted, self.shares_rejected, self.temps_c]
            .into_iter()
            .chain([self.fans_rpm, self.uptime_s])
            .flatten()
        {
            out.push(src(s).to_owned());
        }
        for p in self.pool {
            match *p {
                PoolSrc::List { at, url, user, alive, active, priority } => {
                    let keys = [Some(url), Some(user), alive.map(|(k, _)| k), active, priority];
                    out.extend(keys.into_iter().flatten().map(|k| format!("{at}/{k}")));
                }
                PoolSrc::Flat { url, port, user, alive, when } => {
                    let keys = [Some(url), port, Some(user), alive.map(|(k, _)| k), when];
                    out.extend(keys.into_iter().flatten().map(str::to_owned));
                }
            }
        }
        out
    }
}

/// How a pool's "up" state is written.
#[derive(Debug, Clone, Copy)]
pub enum Alive {
    /// A string equal to this word, ignoring case (cgminer `"Alive"`, Braiins GraphQL `"ALIVE"`).
    Word(&'static str),
    /// A boolean (or 0/1).
    Flag,
}

/// Where one make reports the pool it mines on.
#[derive(Debug, Clone, Copy)]
pub enum PoolSrc {
    /// Every object at `at` is one configured pool (cgminer `POOLS`). Keys are relative to
    /// each object. The pool in use is the first, by `priority` then list order, of those
    /// whose `active` flag is set, else of those that are alive, else of all.
    List {
        at: &'static str,
        url: &'static str,
        user: &'static str,
        alive: Option<(&'static str, Alive)>,
        active: Option<&'static str>,
        priority: Option<&'static str>,
    },
    /// One pool in flat keys (paths from the document root): AxeOS `stratumURL`, `stratumPort`,
    /// `stratumUser`. Used only when the flag at `when` is set, if `when` is given (AxeOS
    /// `isUsingFallbackStratum` for the fallback pool).
    Flat {
        url: &'static str,
        port: Option<&'static str>,
        user: &'static str,
        alive: Option<(&'static str, Alive)>,
        when: Option<&'static str>,
    },
}

/// The cgminer `pools` reply, read the same way by every cgminer-family make (and btminer v1/v2).
pub const CGMINER_POOLS: &[PoolSrc] = &[PoolSrc::List {
    at: "pools/POOLS/*",
    url: "URL",
    user: "User",
    alive: Some(("Status", Alive::Word("Alive"))),
    active: Some("Stratum Active"),
    priority: Some("Priority"),
}];

/// The pool as the firmware reports it, before [`super::reading`] strips credentials.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolRaw {
    pub url: Option<String>,
    pub user: Option<String>,
    pub alive: Option<bool>,
}

// The maps live with their makes (`makes/<make>.rs`); these names stay for callers.
pub use super::makes::antminer::MAP as ANTMINER;
pub use super::makes::avalon::MAP as AVALON;
pub use super::makes::axeos::MAP as AXEOS;
pub use super::makes::braiins_graphql::MAP as BRAIINS_GQL;
pub use super::makes::braiins_rest::MAP as BRAIINS_REST;
pub use super::makes::cgminer_generic::MAP as CGMINER_GENERIC;
pub use super::makes::epic::MAP as EPIC;
pub use super::makes::goldshell::MAP as GOLDSHELL;
pub use super::makes::luxos::MAP as LUXOS;
pub use super::makes::proto::MAP as PROTO;
pub use super::makes::whatsminer::MAP as WHATSMINER;
pub use super::makes::whatsminer_v3::MAP as WHATSMINER_V3;

/// Every make's map once, in [`super::makes::MAKES`] order.
pub fn all() -> Vec<&'static FieldMap> {
    let mut out: Vec<&'static FieldMap> = Vec::new();
    for m in super::makes::MAKES {
        if !out.iter().any(|x| std::ptr::eq(*x, m.map)) {
            out.push(m.map);
        }
    }
    out
}

/// The normalized quantities of one reading, before the sanity check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    pub hashrate_ths: Option<f64>,
    pub rated_ths: Option<f64>,
    pub power_w: Option<f64>,
    pub diff_accepted: Option<f64>,
    pub shares_accepted: Option<u64>,
    pub shares_rejected: Option<u64>,
    pub temp_c_max: Option<f64>,
    pub fan_rpm_avg: Option<f64>,
    pub uptime_s: Option<u64>,
    pub pool: Option<PoolRaw>,
}

fn values(doc: &Value, src: &Src) -> Vec<f64> {
    let mut out = Vec::new();
    match *src {
        Src::P(path) => select(doc, path).into_iter().for_each(|v| nums(v, &mut out)),
        Src::Sum(path) => {
            let mut all = Vec::new();
            select(doc, path).into_iter().for_each(|v| nums(v, &mut all));
            if !all.is_empty() {
                out.push(all.iter().sum());
            }
        }
        Src::Br(path, key, pick) => {
            for s in select(doc, path).into_iter().filter_map(|v| v.as_str()) {
                for group in bracket_nums(s, key) {
                    match pick {
                        Pick::All => out.extend(group),
                        Pick::At(i) => out.extend(group.get(i)),
                        Pick::FirstPositive(idx) => {
                            out.extend(idx.iter().filter_map(|&i| group.get(i).copied()).find(|&x| x > 0.0))
                        }
                    }
                }
            }
        }
    }
    out
}

fn first(doc: &Value, srcs: &[Src]) -> Option<f64> {
    srcs.iter().find_map(|s| values(doc, s).into_iter().next())
}

fn rate(doc: &Value, rates: &[Rate]) -> Option<f64> {
    rates.iter().find_map(|rt| {
        let v = values(doc, &rt.src).into_iter().next()?;
        let unit = rt
            .unit_key
            .and_then(|k| select(doc, k).into_iter().find_map(|u| u.as_str().and_then(Unit::parse)))
            .unwrap_or(rt.unit);
        Some(v * unit.to_ths())
    })
}

fn counter(v: Option<f64>) -> Option<u64> {
    v.filter(|x| *x >= 0.0 && *x < 1.8e19).map(|x| x as u64)
}

/// Reads every quantity of `map` from `doc`.
pub fn extract(map: &FieldMap, doc: &Value) -> Extracted {
    let temps: Vec<f64> = map.temps_c.iter().flat_map(|s| values(doc, s)).filter(|t| *t > 0.0 && *t < 250.0).collect();
    let fans: Vec<f64> = map.fans_rpm.iter().flat_map(|s| values(doc, s)).filter(|f| *f >= 0.0).collect();
    Extracted {
        hashrate_ths: rate(doc, map.hashrate).filter(|h| *h >= 0.0),
        rated_ths: rate(doc, map.rated_hashrate).filter(|h| *h > 0.0),
        power_w: first(doc, map.power_w).filter(|p| *p > 0.0),
        diff_accepted: first(doc, map.diff_accepted).filter(|d| *d >= 0.0),
        shares_accepted: counter(first(doc, map.shares_accepted)),
        shares_rejected: counter(first(doc, map.shares_rejected)),
        temp_c_max: temps.iter().copied().reduce(f64::max),
        fan_rpm_avg: (!fans.is_empty()).then(|| fans.iter().sum::<f64>() / fans.len() as f64),
        uptime_s: counter(first(doc, map.uptime_s)),
        pool: map.pool.iter().find_map(|p| pool(doc, p)),
    }
}

/// A string at `key` of `v` (a number is written out: AxeOS ports are numbers).
fn text(v: &Value, key: &str) -> Option<String> {
    select(v, key).into_iter().find_map(|x| match x {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn flag(v: &Value, key: &str, how: Alive) -> Option<bool> {
    select(v, key).into_iter().find_map(|x| match (how, x) {
        (Alive::Word(w), Value::String(s)) => Some(s.trim().eq_ignore_ascii_case(w)),
        (Alive::Flag, Value::Bool(b)) => Some(*b),
        (Alive::Flag, Value::Number(n)) => n.as_f64().map(|f| f != 0.0),
        _ => None,
    })
}

fn pool(doc: &Value, src: &PoolSrc) -> Option<PoolRaw> {
    match *src {
        PoolSrc::List { at, url, user, alive, active, priority } => {
            let entries: Vec<&Value> =
                select(doc, at).into_iter().filter(|e| text(e, url).is_some_and(|u| !u.is_empty())).collect();
            let is_alive = |e: &Value| alive.and_then(|(k, how)| flag(e, k, how));
            let is_active = |e: &Value| active.and_then(|k| flag(e, k, Alive::Flag)) == Some(true);
            let prio = |e: &Value| priority.and_then(|k| select(e, k).into_iter().find_map(super::json::num));
            let best = |keep: &dyn Fn(&Value) -> bool| {
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| keep(e))
                    .min_by(|(i, a), (j, b)| {
                        let (pa, pb) = (prio(a).unwrap_or(f64::MAX), prio(b).unwrap_or(f64::MAX));
                        pa.total_cmp(&pb).then(i.cmp(j))
                    })
                    .map(|(_, e)| *e)
            };
            let e = best(&is_active).or_else(|| best(&|e| is_alive(e) == Some(true))).or_else(|| best(&|_| true))?;
            Some(PoolRaw { url: text(e, url), user: text(e, user).filter(|u| !u.is_empty()), alive: is_alive(e) })
        }
        PoolSrc::Flat { url, port, user, alive, when } => {
            if let Some(w) = when {
                if flag(doc, w, Alive::Flag) != Some(true) {
                    return None;
                }
            }
            let host = text(doc, url).filter(|u| !u.is_empty())?;
            // A bare host with its port in its own key: `host:port`, the way stratum is addressed.
            let url = match port.and_then(|p| text(doc, p)) {
                Some(p) if !host_has_port(&host) => format!("{host}:{p}"),
                _ => host,
            };
            Some(PoolRaw {
                url: Some(url),
                user: text(doc, user).filter(|u| !u.is_empty()),
                alive: alive.and_then(|(k, how)| flag(doc, k, how)),
            })
        }
    }
}

/// Whether a URL or host already names a port (`pool:3333`, `stratum+tcp://pool:3333`).
fn host_has_port(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::miners::json::prune;
    use crate::collect::miners::makes::MAKES;

    /// Every map reads the same from every make's captured replies whether the document
    /// was pruned to the map's paths or not, and the pruning leaves something out (of LuxOS's
    /// replies, whose `stats` the probe holds while it asks for `power`, most).
    #[test]
    fn a_document_pruned_to_a_maps_paths_reads_the_same() {
        let docs: Vec<(&str, Value)> = MAKES
            .iter()
            .filter_map(|m| {
                m.sim
                    .as_ref()
                    .map(|s| (m.id, Value::Object((s.replies)().into_iter().map(|(k, v)| (k.to_owned(), v)).collect())))
            })
            .collect();
        assert!(docs.len() >= 10, "{} makes with captures", docs.len());
        for map in all() {
            for (id, doc) in &docs {
                let pruned = prune(doc.clone(), &map.paths());
                if map.id == "luxos" && *id == "luxos" {
                    assert!(pruned.to_string().len() * 4 < doc.to_string().len(), "luxos: pruning kept {pruned}");
                }
                assert_eq!(extract(map, &pruned), extract(map, doc), "map {} on {id}'s replies", map.id);
                if map.id == *id {
                    assert!(pruned.to_string().len() < doc.to_string().len(), "{id}: pruning kept everything");
                }
            }
        }
    }
}
