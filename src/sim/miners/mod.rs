//! A simulated fleet of miners: real programs speaking the real protocols (cgminer JSON on
//! TCP with the NUL terminator and multi-commands, Whatsminer's btminer `{"cmd":...}` API,
//! AxeOS, ePIC, Braiins OS REST (with its login token) and GraphQL, Goldshell and Proto over
//! HTTP), with replies built from real captures
//! (`tests/data/miners/`, Apache-2.0, see the README there).
//!
//! Each miner listens on its own loopback address (`127.0.1.1 + i`) or port. Counters advance
//! with the [`Clock`]: accepted difficulty grows at hashrate ÷ 2^32 per second (minus a
//! reject fraction), share counters by the share difficulty, uptime by the elapsed time.
//! Per-miner variation of hashrate and power (±3 %). Faults on demand: slow replies, hang,
//! connection closed mid-reply, garbage, periodic or one-off reboot (counters and uptime
//! reset), power off (nothing listening), efficiency degrading over time.
//!
//! The makes are those of [`crate::collect::miners::makes::MAKES`] that carry simulator
//! data: each make's replies and the fields its field map reads come from its one file.
//! Here: the fleet (spec, start, faults); `server`: the listeners and protocols; `state`:
//! replies, moving fields and per-miner state.
//!
//! This is a test double for tests, benchmarks and the demo; it is never a miner.

mod server;
mod state;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::collect::miners::makes::{self, Make, MAKES};
use crate::model::Clock;
pub use server::SIM_BRAIINS_TOKEN;
use server::{bind, serve};
use state::{MakeData, Miner, MinerState};

pub use crate::model::ManualClock;

/// A simulated make: a make of [`MAKES`] that carries simulator data (its `id` is the name).
#[derive(Clone, Copy)]
pub struct SimMake(pub &'static Make);

impl PartialEq for SimMake {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for SimMake {}
impl std::hash::Hash for SimMake {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.id.hash(h)
    }
}
impl std::fmt::Debug for SimMake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimMake({})", self.0.id)
    }
}

const fn simulated_count() -> usize {
    let (mut n, mut i) = (0, 0);
    while i < MAKES.len() {
        if MAKES[i].sim.is_some() {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Handles for the makes that tests and the demo pick by hand; [`SimMake::ALL`] is the list.
#[allow(non_upper_case_globals)]
impl SimMake {
    pub const AntminerStock: SimMake = SimMake(&makes::antminer::MAKE);
    pub const LuxOs: SimMake = SimMake(&makes::luxos::MAKE);
    pub const Avalon: SimMake = SimMake(&makes::avalon::MAKE);
    pub const WhatsminerV1: SimMake = SimMake(&makes::whatsminer::MAKE_V1);
    pub const WhatsminerV2: SimMake = SimMake(&makes::whatsminer::MAKE_V2);
    pub const WhatsminerV3: SimMake = SimMake(&makes::whatsminer_v3::MAKE);
    pub const AxeOs: SimMake = SimMake(&makes::axeos::MAKE);
    pub const Epic: SimMake = SimMake(&makes::epic::MAKE);
    pub const BraiinsRest: SimMake = SimMake(&makes::braiins_rest::MAKE);
    pub const BraiinsGraphql: SimMake = SimMake(&makes::braiins_graphql::MAKE);
    pub const Goldshell: SimMake = SimMake(&makes::goldshell::MAKE);
    pub const Proto: SimMake = SimMake(&makes::proto::MAKE);
}

impl SimMake {
    /// Every simulated make, in [`MAKES`] order.
    pub const ALL: [SimMake; simulated_count()] = {
        let mut out = [SimMake(MAKES[0]); simulated_count()];
        let (mut i, mut n) = (0, 0);
        while i < MAKES.len() {
            if MAKES[i].sim.is_some() {
                out[n] = SimMake(MAKES[i]);
                n += 1;
            }
            i += 1;
        }
        out
    };

    /// The name used on the command line and in `tests/data/miners/`.
    pub fn name(self) -> &'static str {
        self.0.id
    }

    pub fn parse(s: &str) -> Option<SimMake> {
        SimMake::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A fault a miner shows until cleared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Every reply delayed by this long.
    Slow(Duration),
    /// Accepts connections and never answers.
    Hang,
    /// Sends half of the reply, then closes.
    CloseMidReply,
    /// Answers with bytes that are not a reply.
    Garbage,
    /// Reboots every period: counters and uptime restart from zero.
    RebootEvery(Duration),
    /// Powered off: nothing listens on its address.
    PowerOff,
    /// Power rises by this fraction per hour at unchanged hashrate (efficiency degrading).
    Degrade { per_hour: f64 },
    /// This fraction of the hashrate is gone, and the power it drew with it (a
    /// hashboard down): J/TH unchanged, accepted difficulty growing at the rate left.
    HashDrop { fraction: f64 },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub count: usize,
    /// First address; miner `i` binds `bind + i` (or `bind` with port `port + i` when `ports_layout`).
    pub bind: Ipv4Addr,
    pub port: u16,
    /// Distinct ports on one address instead of distinct addresses.
    pub ports_layout: bool,
    /// Weighted makes; miner `i` takes the `i`-th entry of the weighted cycle.
    pub mix: Vec<(SimMake, u32)>,
    /// Faults from the start, by miner index.
    pub faults: Vec<(usize, Fault)>,
    /// Per-miner ±3 % hashrate/power variation (off: every miner replays its capture's values).
    pub variation: bool,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            count: SimMake::ALL.len(),
            bind: Ipv4Addr::new(127, 0, 1, 1),
            port: 4028,
            ports_layout: false,
            mix: SimMake::ALL.iter().map(|m| (*m, 1)).collect(),
            faults: Vec::new(),
            variation: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "cannot listen on {addr}: {source} (for many loopback addresses raise `ulimit -n`; ports below 1024 need root)"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Spec(String),
}

/// Parses `--mix antminer-stock=3,luxos=1` (a bare name has weight 1).
pub fn parse_mix(s: &str) -> Result<Vec<(SimMake, u32)>, SimError> {
    let names = || SimMake::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ");
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (n, w) = p.split_once('=').unwrap_or((p, "1"));
            let m = SimMake::parse(n.trim())
                .ok_or_else(|| SimError::Spec(format!("unknown make `{n}` in --mix (known: {})", names())))?;
            let w = w.trim().parse::<u32>().map_err(|_| SimError::Spec(format!("bad weight `{w}` in --mix")))?;
            Ok((m, w))
        })
        .collect()
}

/// Parses `--faults slow=2s@3,hang@4,close@5,garbage@6,reboot=60s@7,off@8,degrade=5%@9,hashdrop=33%@10`.
pub fn parse_faults(s: &str) -> Result<Vec<(usize, Fault)>, SimError> {
    let bad = |p: &str, why: &str| {
        SimError::Spec(format!("bad fault `{p}`: {why} (KIND[=ARG]@INDEX, KIND one of slow=DUR, hang, close, garbage, reboot=DUR, off, degrade=PCT%, hashdrop=PCT%)"))
    };
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (kind, idx) = p.trim().rsplit_once('@').ok_or_else(|| bad(p, "missing @INDEX"))?;
            let idx: usize = idx.parse().map_err(|_| bad(p, "bad index"))?;
            let (k, arg) = kind.split_once('=').unwrap_or((kind, ""));
            let dur = |a: &str| crate::config::parse_duration(a).map_err(|_| bad(p, "bad duration"));
            let pct = |a: &str| {
                a.trim_end_matches('%').parse::<f64>().map(|n| n / 100.0).map_err(|_| bad(p, "bad percentage"))
            };
            let f = match k {
                "slow" => Fault::Slow(dur(arg)?),
                "hang" => Fault::Hang,
                "close" => Fault::CloseMidReply,
                "garbage" => Fault::Garbage,
                "reboot" => Fault::RebootEvery(dur(arg)?),
                "off" => Fault::PowerOff,
                "degrade" => Fault::Degrade { per_hour: pct(arg)? },
                "hashdrop" => match pct(arg)? {
                    f if (0.0..=1.0).contains(&f) => Fault::HashDrop { fraction: f },
                    _ => return Err(bad(p, "hashdrop is between 0% and 100%")),
                },
                _ => return Err(bad(p, "unknown kind")),
            };
            Ok((idx, f))
        })
        .collect()
}

/// Address and make of one simulated miner.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMinerInfo {
    pub index: usize,
    pub addr: SocketAddr,
    pub make: SimMake,
}

/// Connection and request counters of the whole fleet.
#[derive(Debug, Default)]
pub struct SimCounters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
}

/// A running fleet. Dropping it stops it too.
pub struct SimFleet {
    miners: Vec<Arc<Miner>>,
    info: Vec<SimMinerInfo>,
    clock: Arc<dyn Clock>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<SimCounters>,
}

impl SimFleet {
    /// Binds every miner and starts serving.
    pub async fn start(spec: FleetSpec, clock: Arc<dyn Clock>) -> Result<SimFleet, SimError> {
        if spec.mix.iter().all(|(_, w)| *w == 0) {
            return Err(SimError::Spec("--mix has no make with a weight above 0".into()));
        }
        if let Some((i, f)) = spec.faults.iter().find(|(i, _)| *i >= spec.count) {
            return Err(SimError::Spec(format!(
                "fault {f:?} for miner {i}, but the fleet has {} miners (0..{})",
                spec.count, spec.count
            )));
        }
        let cycle: Vec<SimMake> = spec.mix.iter().flat_map(|(m, w)| std::iter::repeat_n(*m, *w as usize)).collect();
        let mut datas: Vec<(SimMake, Arc<MakeData>)> = Vec::new();
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(SimCounters::default());
        let now = clock.now_ns();
        let mut fleet = SimFleet {
            miners: Vec::new(),
            info: Vec::new(),
            clock: clock.clone(),
            stop,
            tasks: Vec::new(),
            counters: counters.clone(),
        };
        for i in 0..spec.count {
            let make = cycle[i % cycle.len()];
            let data = match datas.iter().find(|(m, _)| *m == make) {
                Some((_, d)) => d.clone(),
                None => {
                    let d = Arc::new(MakeData::of(make.0).expect("SimMake::ALL holds only simulated makes"));
                    datas.push((make, d.clone()));
                    d
                }
            };
            let addr = if spec.ports_layout {
                let port = spec
                    .port
                    .checked_add(i as u16)
                    .filter(|_| i < 65536)
                    .ok_or_else(|| SimError::Spec("ports run past 65535".into()))?;
                SocketAddr::from((spec.bind, port))
            } else {
                let ip = u32::from(spec.bind)
                    .checked_add(i as u32)
                    .ok_or_else(|| SimError::Spec("addresses run past 255.255.255.255".into()))?;
                // Whatsminer v3 speaks its framing only on its own port.
                let port = make.0.sim.as_ref().and_then(|s| s.port).unwrap_or(spec.port);
                SocketAddr::from((Ipv4Addr::from(ip), port))
            };
            let (hf, pf) = if spec.variation { variation(i) } else { (1.0, 1.0) };
            let fault = spec.faults.iter().rev().find(|(j, _)| *j == i).map(|(_, f)| *f);
            let miner = Arc::new(Miner {
                index: i,
                addr,
                data,
                hash_factor: hf,
                power_factor: pf,
                state: Mutex::new(MinerState::new(fault, now)),
                wake: Notify::new(),
            });
            let listener = if fault == Some(Fault::PowerOff) { None } else { Some(bind(addr)?) };
            fleet.info.push(SimMinerInfo { index: i, addr, make });
            fleet.miners.push(miner.clone());
            fleet.tasks.push(tokio::spawn(serve(miner, listener, clock.clone(), stop_rx.clone(), counters.clone())));
        }
        Ok(fleet)
    }

    pub fn miners(&self) -> &[SimMinerInfo] {
        &self.info
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.info.iter().map(|m| m.addr).collect()
    }

    pub fn counters(&self) -> &SimCounters {
        &self.counters
    }

    /// Sets or clears miner `i`'s fault.
    pub fn set_fault(&self, i: usize, fault: Option<Fault>) {
        let m = &self.miners[i];
        m.state.lock().unwrap_or_else(|e| e.into_inner()).set_fault(fault, self.clock.now_ns());
        m.wake.notify_one();
    }

    /// Reboots miner `i` now: counters and uptime restart from zero.
    pub fn reboot(&self, i: usize) {
        self.miners[i].state.lock().unwrap_or_else(|e| e.into_inner()).reboot(self.clock.now_ns());
    }

    /// Stops every miner and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Deterministic per-miner factors within ±3 %.
fn variation(i: usize) -> (f64, f64) {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let a = (h % 61) as f64 - 30.0;
    let b = ((h >> 20) % 61) as f64 - 30.0;
    (1.0 + a / 1000.0, 1.0 + b / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        assert_eq!(
            parse_mix("antminer-stock=3,luxos").unwrap(),
            vec![(SimMake::AntminerStock, 3), (SimMake::LuxOs, 1)]
        );
        assert!(parse_mix("s9=1").is_err());
        let f = parse_faults("slow=2s@3,hang@4,degrade=5%@9,off@1").unwrap();
        assert_eq!(f[0], (3, Fault::Slow(Duration::from_secs(2))));
        assert_eq!(f[1], (4, Fault::Hang));
        assert_eq!(f[2], (9, Fault::Degrade { per_hour: 0.05 }));
        assert_eq!(parse_faults("hashdrop=25%@2").unwrap(), vec![(2, Fault::HashDrop { fraction: 0.25 })]);
        assert!(parse_faults("hashdrop=150%@2").is_err());
        assert!(parse_faults("hang").is_err());
        assert!(parse_faults("melt@1").is_err());
    }

    #[test]
    fn bracket_replace() {
        let s = "Ver[1] GHSspd[81072.68] DHspd[2.7%] Elapsed[5]";
        assert_eq!(state::replace_bracket(s, "GHSspd", "1.00"), "Ver[1] GHSspd[1.00] DHspd[2.7%] Elapsed[5]");
        assert_eq!(state::replace_bracket(s, "Elapsed", "9"), "Ver[1] GHSspd[81072.68] DHspd[2.7%] Elapsed[9]");
    }

    #[test]
    fn every_make_loads() {
        for m in SimMake::ALL {
            let d = MakeData::of(m.0).unwrap();
            assert!(!d.replies.is_empty() && d.base_ths > 0.0, "{m:?}");
            for p in &d.patches {
                let (_, v) = d.replies.iter().find(|(c, _)| *c == p.cmd).unwrap_or_else(|| panic!("{m:?} {}", p.cmd));
                let mut v = v.clone();
                assert!(state::pointer_mut(&mut v, &p.path).is_some(), "{m:?}: {} {}", p.cmd, p.path);
            }
        }
    }

    #[test]
    fn moving_fields_come_from_the_field_map() {
        use crate::collect::miners::makes::Moves;
        let has = |m: SimMake, cmd: &str, path: &str, q: Moves| {
            let d = MakeData::of(m.0).unwrap();
            assert!(
                d.patches.iter().any(|p| p.cmd == cmd && p.path == path && p.q == q),
                "{m:?}: no {cmd} {path} {q:?} in {:?}",
                d.patches
            );
        };
        // Paths as the maps name them, resolved in the simulator's own reply names.
        has(SimMake::AntminerStock, "summary", "SUMMARY/0/GHS 5s", Moves::Hash);
        has(SimMake::AntminerStock, "stats", "STATS/1/GHS 5s", Moves::Hash); // `STATS/*` expanded
        has(SimMake::AntminerStock, "summary", "SUMMARY/0/Difficulty Accepted", Moves::DiffAccepted);
        has(SimMake::LuxOs, "power", "POWER/0/Watts", Moves::Power);
        has(SimMake::Goldshell, "/mcb/cgminer?cgminercmd=devs", "DEVS/0/MHS 20s", Moves::Hash);
        has(SimMake::Goldshell, "/mcb/cgminer?cgminercmd=devs", "DEVS/3/MHS 20s", Moves::Hash);
        has(SimMake::BraiinsGraphql, "graphql:system", "data/bos/uptime/durationS", Moves::Elapsed);
        has(SimMake::AxeOs, "/api/system/info", "hashRate", Moves::Hash);
        has(SimMake::WhatsminerV3, "summary", "msg/summary/power-realtime", Moves::Power);
    }
}
