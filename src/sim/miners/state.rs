//! Simulated miner state: the replies of one make, the fields that move with time (derived
//! from the make's field map, so the simulator moves exactly what the reader reads), and
//! the counters, reboots and faults of one miner.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::Notify;

use super::Fault;
use crate::collect::miners::json as mj;
use crate::collect::miners::makes::{Make, Moves, Serve};
use crate::collect::miners::profiles::{Pick, Rate, Src};

type Q = Moves;

/// A patch: reply, concrete path in that reply, quantity. Bracket patches name a `KEY[...]`
/// group inside the string at the path.
#[derive(Debug, Clone)]
pub(super) struct Patch {
    pub cmd: &'static str,
    pub path: String,
    pub bracket: Option<&'static str>,
    pub q: Q,
}

/// One make's replies and moving fields, shared by every simulated miner of that make.
pub(super) struct MakeData {
    pub serve: Serve,
    /// Replies by command (cgminer, btminer) or by path (HTTP).
    pub replies: Vec<(&'static str, Value)>,
    pub patches: Vec<Patch>,
    /// The capture's hashrate in TH/s (drives accepted difficulty).
    pub base_ths: f64,
    /// Pool share difficulty (drives share counters).
    pub share_diff: f64,
}

impl MakeData {
    /// The make's replies, with patches for every field its map reads that moves (hashrate,
    /// power, accepted difficulty, shares, uptime) plus the make's extra moving fields.
    pub fn of(make: &'static Make) -> Option<MakeData> {
        let sim = make.sim.as_ref()?;
        let replies = (sim.replies)();
        let mut patches = Vec::new();
        let map = make.map;
        let rates = |r: &'static [Rate]| r.iter().map(|x| x.src).collect::<Vec<Src>>();
        let groups: [(Vec<Src>, Q); 6] = [
            (rates(map.hashrate), Q::Hash),
            (map.power_w.to_vec(), Q::Power),
            (map.diff_accepted.to_vec(), Q::DiffAccepted),
            (map.shares_accepted.to_vec(), Q::SharesAccepted),
            (map.shares_rejected.to_vec(), Q::SharesRejected),
            (map.uptime_s.to_vec(), Q::Elapsed),
        ];
        for (srcs, q) in groups {
            for src in srcs {
                let (doc_path, bracket, sum) = match src {
                    Src::P(p) => (p, None, false),
                    Src::Sum(p) => (p, None, true),
                    // A one-number group moves (`GHSspd[...]`); a multi-number group is left as captured.
                    Src::Br(p, key, Pick::At(0)) => (p, Some(key), false),
                    Src::Br(..) => continue,
                };
                let (doc_key, rest) = doc_path.split_once('/').unwrap_or((doc_path, ""));
                let Some((reply, prefix)) = make.sim_reply(doc_key) else { continue };
                let Some((_, v)) = replies.iter().find(|(k, _)| *k == reply) else { continue };
                let path = match prefix {
                    Some(p) => format!("{p}/{rest}"),
                    None => rest.to_owned(),
                };
                let mut found = mj::select_paths(v, &path);
                // A sum of counters grows once, in its first term; a scaled sum in every term.
                if sum && !matches!(q, Q::Hash | Q::Power) {
                    found.truncate(1);
                }
                for path in found {
                    if !patches.iter().any(|p: &Patch| p.cmd == reply && p.path == path && p.bracket == bracket) {
                        patches.push(Patch { cmd: reply, path, bracket, q });
                    }
                }
            }
        }
        for x in sim.extra {
            patches.push(Patch { cmd: x.reply, path: x.path.to_owned(), bracket: x.bracket, q: x.moves });
        }
        Some(MakeData { serve: sim.serve, replies, patches, base_ths: sim.base_ths, share_diff: sim.share_diff })
    }
}
/// Fraction of work rejected by the simulated pool.
pub(super) const REJECT_FRACTION: f64 = 0.002;

#[derive(Debug)]
pub(super) struct MinerState {
    pub(super) fault: Option<Fault>,
    pub(super) fault_since_ns: i64,
    /// Time counters count from. Before the first reboot the capture's values are the base.
    pub(super) boot_ns: i64,
    pub(super) rebooted: bool,
    /// Full-rate hashing seconds since `boot_ns` lost to `HashDrop` faults that have
    /// ended, so the difficulty counter keeps growing at the rate the miner hashed.
    pub(super) lost_hash_s: f64,
}

impl MinerState {
    pub(super) fn new(fault: Option<Fault>, now_ns: i64) -> MinerState {
        MinerState { fault, fault_since_ns: now_ns, boot_ns: now_ns, rebooted: false, lost_hash_s: 0.0 }
    }

    /// The hashrate left by the current fault (1: all of it), and the full-rate
    /// hashing seconds lost since the counters' boot at `boot_ns`, as of `now_ns`.
    fn hash_scale(&self, boot_ns: i64, now_ns: i64) -> (f64, f64) {
        let ended = if boot_ns == self.boot_ns { self.lost_hash_s } else { 0.0 };
        match self.fault {
            Some(Fault::HashDrop { fraction }) => {
                let since_ns = (now_ns - self.fault_since_ns.max(boot_ns)).max(0);
                (1.0 - fraction, ended + fraction * since_ns as f64 / 1e9)
            }
            _ => (1.0, ended),
        }
    }

    /// Changes the fault at `now_ns`, keeping what an ending `HashDrop` cost.
    pub(super) fn set_fault(&mut self, fault: Option<Fault>, now_ns: i64) {
        self.lost_hash_s = self.hash_scale(self.boot_ns, now_ns).1;
        self.fault = fault;
        self.fault_since_ns = now_ns;
    }

    /// Counters and uptime restart from zero at `now_ns`.
    pub(super) fn reboot(&mut self, now_ns: i64) {
        self.boot_ns = now_ns;
        self.rebooted = true;
        self.lost_hash_s = 0.0;
    }
}

pub(super) struct Miner {
    pub(super) index: usize,
    pub(super) addr: SocketAddr,
    pub(super) data: Arc<MakeData>,
    pub(super) hash_factor: f64,
    pub(super) power_factor: f64,
    pub(super) state: Mutex<MinerState>,
    pub(super) wake: Notify,
}

impl Miner {
    /// The capture for `cmd`, with the moving quantities set for `now_ns`.
    pub(super) fn render(&self, cmd: &str, now_ns: i64) -> Value {
        let d = &self.data;
        let mut v = d.replies.iter().find(|(c, _)| *c == cmd).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut boot = st.boot_ns;
        let mut rebooted = st.rebooted;
        if let Some(Fault::RebootEvery(period)) = st.fault {
            let period_ns = period.as_nanos().max(1) as i64;
            let since = (now_ns - st.fault_since_ns).max(0);
            if since >= period_ns {
                boot = st.fault_since_ns + since / period_ns * period_ns;
                rebooted = true;
            }
        }
        let degrade = match st.fault {
            Some(Fault::Degrade { per_hour }) => 1.0 + per_hour * ((now_ns - st.fault_since_ns).max(0) as f64 / 3.6e12),
            _ => 1.0,
        };
        let (hash_scale, lost_s) = st.hash_scale(boot, now_ns);
        drop(st);
        let dt_s = ((now_ns - boot).max(0)) as f64 / 1e9;
        // Accepted difficulty grows at hashrate / 2^32 per second.
        let ths = d.base_ths * self.hash_factor;
        let diff = ths * 1e12 * (dt_s - lost_s).max(0.0) / 4_294_967_296.0;
        let diff_acc = diff * (1.0 - REJECT_FRACTION);
        let diff_rej = diff * REJECT_FRACTION;
        for pt in d.patches.iter().filter(|p| p.cmd == cmd) {
            let Some(slot) = pointer_mut(&mut v, &pt.path) else { continue };
            if let Some(key) = pt.bracket {
                if let Value::String(s) = slot {
                    if let Some(base) = mj::bracket_nums(s, key).first().and_then(|g| g.first().copied()) {
                        let new = self.moved(pt.q, base, rebooted, dt_s, diff_acc, diff_rej, (hash_scale, degrade));
                        *s = replace_bracket(s, key, &format_num(new, pt.q));
                    }
                }
                continue;
            }
            let Some(base) = mj::num(slot) else { continue };
            let new = self.moved(pt.q, base, rebooted, dt_s, diff_acc, diff_rej, (hash_scale, degrade));
            if new == base {
                continue; // keep the capture's own formatting and precision
            }
            *slot = match pt.q {
                Q::Elapsed | Q::SharesAccepted | Q::SharesRejected => json!(new.round() as u64),
                _ if slot.is_i64() || slot.is_u64() => json!(new.round() as i64),
                _ => json!((new * 1000.0).round() / 1000.0),
            };
        }
        v
    }

    /// `scale`: the share of hashrate (and of its power) left, and the power's degradation.
    #[allow(clippy::too_many_arguments)]
    fn moved(
        &self,
        q: Q,
        base: f64,
        rebooted: bool,
        dt_s: f64,
        diff_acc: f64,
        diff_rej: f64,
        (hash_scale, degrade): (f64, f64),
    ) -> f64 {
        let b = if rebooted { 0.0 } else { base };
        match q {
            Q::Hash => base * self.hash_factor * hash_scale,
            Q::Power => base * self.power_factor * hash_scale * degrade,
            Q::Elapsed => b + dt_s.floor(),
            Q::DiffAccepted => b + diff_acc.floor(),
            Q::DiffRejected => b + diff_rej.floor(),
            Q::SharesAccepted => b + (diff_acc / self.data.share_diff).floor(),
            Q::SharesRejected => b + (diff_rej / self.data.share_diff).floor(),
        }
    }
}

fn format_num(x: f64, q: Q) -> String {
    match q {
        Q::Elapsed => format!("{}", x as u64),
        _ => format!("{x:.2}"),
    }
}

pub(super) fn replace_bracket(s: &str, key: &str, new: &str) -> String {
    let pat = format!("{key}[");
    let mut from = 0;
    while let Some(i) = s[from..].find(&pat).map(|i| i + from) {
        let boundary = i == 0 || matches!(s.as_bytes()[i - 1], b' ' | b'{' | b']');
        if boundary {
            if let Some(end) = s[i..].find(']') {
                return format!("{}{}{}", &s[..i + pat.len()], new, &s[i + end..]);
            }
        }
        from = i + pat.len();
    }
    s.to_owned()
}

pub(super) fn pointer_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path.split('/') {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}
