//! Polling many miners: targets (addresses and CIDR ranges), bounded concurrency, a
//! per-miner deadline, and no head-of-line blocking: every miner is its own task, so a
//! hanging or hostile miner costs one concurrency slot for at most its timeout and never
//! delays the others' results.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::Semaphore;

use super::{MinerReading, ReadOptions, CGMINER_PORT, DEFAULT_MAX_REPLY_BYTES};
use crate::collect::{Source, SourceError};
use crate::model::Point;

/// One configured target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One miner; `port` `None` means the default (4028).
    Host { host: String, port: Option<u16> },
    /// Every host address of a range, each on `port` (default 4028).
    Range { net: IpNet, port: Option<u16> },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("miner target `{target}`: {reason} (expected HOST, HOST:PORT, [IPv6]:PORT, or a CIDR range like 10.0.0.0/24, optionally with :PORT)")]
pub struct TargetError {
    pub target: String,
    pub reason: String,
}

/// The largest range expanded: a /16 of IPv4.
pub const MAX_RANGE_HOSTS: u64 = 65_536;

/// Parses `HOST`, `HOST:PORT`, `[V6]:PORT`, `CIDR` and `CIDR:PORT` (e.g. `10.0.0.0/24:4029`).
pub fn parse_target(s: &str) -> Result<Target, TargetError> {
    let err = |reason: &str| TargetError { target: s.to_owned(), reason: reason.to_owned() };
    let t = s.trim();
    if t.is_empty() {
        return Err(err("empty"));
    }
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| err("bad port"));
    if t.contains('/') {
        let (net, port) = match t.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') || n.starts_with('[') => {
                (n.trim_matches(['[', ']']), Some(parse_port(p)?))
            }
            _ => (t, None),
        };
        let net: IpNet = net.parse().map_err(|_| err("bad CIDR range"))?;
        let hosts = match net {
            IpNet::V4(n) => 1u64 << (32 - n.prefix_len()),
            IpNet::V6(n) => 1u64.checked_shl(128 - n.prefix_len() as u32).unwrap_or(u64::MAX),
        };
        if hosts > MAX_RANGE_HOSTS {
            return Err(err("range larger than a /16"));
        }
        return Ok(Target::Range { net, port });
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or_else(|| err("unclosed ["))?;
        let port = match p.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if p.is_empty() => None,
            None => return Err(err("junk after ]")),
        };
        h.parse::<IpAddr>().map_err(|_| err("bad IPv6 address"))?;
        return Ok(Target::Host { host: h.to_owned(), port });
    }
    if t.parse::<IpAddr>().is_ok() {
        return Ok(Target::Host { host: t.to_owned(), port: None });
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (t, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(err("bad host"));
    }
    Ok(Target::Host { host: host.to_owned(), port })
}

/// Parses every target; the first bad one is the error.
pub fn parse_targets(items: &[String]) -> Result<Vec<Target>, TargetError> {
    items.iter().map(|s| parse_target(s)).collect()
}

/// One address to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// From a range: report only once it has answered.
    pub from_range: bool,
}

/// Expands targets into endpoints (ranges into their host addresses), without duplicates.
/// An address that is listed is always reported (`from_range = false`), even when a range
/// given before or after it covers it too: the result does not depend on the targets' order.
pub fn expand(targets: &[Target], default_port: u16) -> Vec<Endpoint> {
    let mut seen: HashMap<(String, u16), usize> = HashMap::new();
    let mut out: Vec<Endpoint> = Vec::new();
    let mut add = |e: Endpoint, out: &mut Vec<Endpoint>| match seen.get(&(e.host.clone(), e.port)) {
        Some(&i) => out[i].from_range &= e.from_range,
        None => {
            seen.insert((e.host.clone(), e.port), out.len());
            out.push(e);
        }
    };
    for t in targets {
        match t {
            Target::Host { host, port } => {
                add(Endpoint { host: host.clone(), port: port.unwrap_or(default_port), from_range: false }, &mut out);
            }
            Target::Range { net, port } => {
                let port = port.unwrap_or(default_port);
                let hosts: Box<dyn Iterator<Item = IpAddr>> = if net.prefix_len() >= net.max_prefix_len() - 1 {
                    Box::new(net.hosts().chain(std::iter::once(net.addr())).collect::<HashSet<_>>().into_iter())
                } else {
                    Box::new(net.hosts())
                };
                let mut v: Vec<IpAddr> = hosts.collect();
                v.sort();
                for ip in v {
                    add(Endpoint { host: ip.to_string(), port, from_range: true }, &mut out);
                }
            }
        }
    }
    out
}

/// Options for polling a fleet.
#[derive(Debug, Clone, Copy)]
pub struct PollOptions {
    /// Budget per miner (all its requests).
    pub timeout: Duration,
    /// Miners read at the same time.
    pub concurrency: usize,
    /// Cap per reply, bytes.
    pub max_reply_bytes: usize,
    /// Port for targets without one.
    pub default_port: u16,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            timeout: Duration::from_secs(5),
            concurrency: 256,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            default_port: CGMINER_PORT,
        }
    }
}

impl PollOptions {
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions { timeout: self.timeout, max_reply_bytes: self.max_reply_bytes }
    }
}

/// Reads every endpoint once; results in the endpoints' order. `on_done` is called as each
/// miner finishes (for a progress bar).
pub async fn poll(endpoints: &[Endpoint], opts: &PollOptions, on_done: impl Fn(&MinerReading)) -> Vec<MinerReading> {
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let ro = opts.read_options();
    let mut set = tokio::task::JoinSet::new();
    let mut out: Vec<Option<MinerReading>> = vec![None; endpoints.len()];
    let take =
        |res: Result<(usize, MinerReading), tokio::task::JoinError>, out: &mut Vec<Option<MinerReading>>| match res {
            Ok((i, r)) => {
                on_done(&r);
                out[i] = Some(r);
            }
            Err(e) => tracing::error!("miner poll task failed: {e}"),
        };
    for (i, e) in endpoints.iter().enumerate() {
        // A task exists only while it holds a slot: memory stays bounded by `concurrency`,
        // not by the fleet size.
        let permit = match sem.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        while let Some(res) = set.try_join_next() {
            take(res, &mut out);
        }
        let (host, port) = (e.host.clone(), e.port);
        set.spawn(async move {
            let _permit = permit;
            // The outer timeout is a backstop: `read` already keeps to the deadline.
            let r = match tokio::time::timeout(ro.timeout + Duration::from_millis(250), super::read(&host, port, &ro))
                .await
            {
                Ok(r) => r,
                Err(_) => MinerReading::offline(&host, port, "no reply within the timeout"),
            };
            (i, r)
        });
    }
    while let Some(res) = set.join_next().await {
        take(res, &mut out);
    }
    out.into_iter()
        .zip(endpoints)
        .map(|(r, e)| r.unwrap_or_else(|| MinerReading::offline(&e.host, e.port, "poll task failed")))
        .collect()
}

/// The `[miners]` section of an agent config, as the agent deserializes it:
///
/// ```toml
/// [miners]
/// targets = ["10.0.0.0/24", "10.0.1.7:4029", "bitaxe-3.lan:80"]
/// timeout = "5s"          # per miner, all its requests together
/// concurrency = 256       # miners read at once
/// max_reply_bytes = 524288
/// port = 4028             # for targets without one
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinersConfig {
    pub targets: Vec<String>,
    /// How often the agent reads every miner.
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_max_reply")]
    pub max_reply_bytes: usize,
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    PollOptions::default().timeout
}
/// Gentler than a one-off scan's default: an agent polls the same LAN forever.
fn default_concurrency() -> usize {
    64
}
fn default_max_reply() -> usize {
    DEFAULT_MAX_REPLY_BYTES
}
fn default_port() -> u16 {
    CGMINER_PORT
}

impl MinersConfig {
    /// Checks the values and builds the source; errors name the bad key.
    pub fn build(&self) -> Result<MinerSource, TargetError> {
        let bad = |reason: &str| TargetError { target: "[miners]".into(), reason: reason.into() };
        if self.targets.is_empty() {
            return Err(bad("`targets` is empty"));
        }
        if self.concurrency == 0 {
            return Err(bad("`concurrency` must be at least 1"));
        }
        if self.timeout.is_zero() || self.interval.is_zero() {
            return Err(bad("`timeout` and `interval` must be above 0"));
        }
        if self.max_reply_bytes < 1024 {
            return Err(bad("`max_reply_bytes` below 1024 cannot hold a miner's reply"));
        }
        if self.port == 0 {
            return Err(bad("`port` must be 1-65535"));
        }
        let opts = PollOptions {
            timeout: self.timeout,
            concurrency: self.concurrency,
            max_reply_bytes: self.max_reply_bytes,
            default_port: self.port,
        };
        Ok(MinerSource::new(parse_targets(&self.targets)?, opts))
    }
}

/// The `miners` source: reads a fixed set of targets every collect. Addresses from ranges are
/// reported once they have answered at least once (an empty address in a /24 is not a
/// miner going offline); listed addresses are always reported, `online = false` when down.
#[derive(Debug)]
pub struct MinerSource {
    endpoints: Vec<Endpoint>,
    opts: PollOptions,
    seen: HashSet<(String, u16)>,
}

impl MinerSource {
    pub fn new(targets: Vec<Target>, opts: PollOptions) -> Self {
        let endpoints = expand(&targets, opts.default_port);
        MinerSource { endpoints, opts, seen: HashSet::new() }
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Reads once and returns the readings (what `collect` turns into points).
    pub async fn read_all(&mut self) -> Vec<MinerReading> {
        let readings = poll(&self.endpoints, &self.opts, |_| {}).await;
        readings
            .into_iter()
            .zip(&self.endpoints)
            .filter_map(|(r, e)| {
                let key = (e.host.clone(), e.port);
                if r.online {
                    self.seen.insert(key);
                    Some(r)
                } else if !e.from_range || self.seen.contains(&key) {
                    tracing::info!(miner = %r.miner_id(), "miner offline: {}", r.error.as_deref().unwrap_or("unknown"));
                    Some(r)
                } else {
                    None
                }
            })
            .collect()
    }
}

#[async_trait]
impl Source for MinerSource {
    fn name(&self) -> &str {
        "miners"
    }

    async fn collect(&mut self, time_ns: i64) -> Result<Vec<Point>, SourceError> {
        Ok(self.read_all().await.iter().map(|r| r.to_point(time_ns)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("10.0.0.5").unwrap(), Target::Host { host: "10.0.0.5".into(), port: None });
        assert_eq!(parse_target("10.0.0.5:4029").unwrap(), Target::Host { host: "10.0.0.5".into(), port: Some(4029) });
        assert_eq!(parse_target("miner-7.lan").unwrap(), Target::Host { host: "miner-7.lan".into(), port: None });
        assert_eq!(parse_target("[::1]:80").unwrap(), Target::Host { host: "::1".into(), port: Some(80) });
        assert_eq!(parse_target("::1").unwrap(), Target::Host { host: "::1".into(), port: None });
        let r = parse_target("127.0.1.0/30:4030").unwrap();
        assert_eq!(r, Target::Range { net: "127.0.1.0/30".parse().unwrap(), port: Some(4030) });
        assert!(parse_target("10.0.0.0/8").is_err());
        assert!(parse_target("10.0.0.1:0").is_err());
        assert!(parse_target("10.0.0.1:x").is_err());
        assert!(parse_target("").is_err());
        assert!(parse_target("10.0.0.300/24").is_err());
        let e = expand(&[parse_target("127.0.1.0/30").unwrap(), parse_target("127.0.1.1").unwrap()], 4028);
        let hosts: Vec<_> = e.iter().map(|e| format!("{}:{}", e.host, e.port)).collect();
        assert_eq!(hosts, ["127.0.1.1:4028", "127.0.1.2:4028"]);
        let e = expand(&[parse_target("127.0.1.9/32").unwrap()], 4028);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn a_listed_address_is_reported_whatever_the_order_of_targets() {
        let range = parse_target("127.0.1.0/30").unwrap();
        let listed = parse_target("127.0.1.2").unwrap();
        for targets in [[range.clone(), listed.clone()], [listed.clone(), range.clone()]] {
            let e = expand(&targets, 4028);
            assert_eq!(e.len(), 2, "{e:?}");
            let two = e.iter().find(|e| e.host == "127.0.1.2").unwrap();
            assert!(!two.from_range, "{targets:?}: {e:?}");
            assert!(e.iter().find(|e| e.host == "127.0.1.1").unwrap().from_range);
        }
    }

    #[tokio::test]
    async fn a_down_listed_miner_inside_an_earlier_range_is_reported() {
        // Two free loopback ports, nothing listening: every address is down.
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let port = free();
        let opts = PollOptions {
            timeout: Duration::from_millis(500),
            concurrency: 4,
            max_reply_bytes: 1 << 16,
            default_port: port,
        };
        let targets = vec![parse_target("127.0.0.0/30").unwrap(), parse_target("127.0.0.1").unwrap()];
        let mut src = MinerSource::new(targets, opts);
        let r = src.read_all().await;
        assert_eq!(r.len(), 1, "only the listed address is reported: {r:?}");
        assert_eq!((r[0].host.as_str(), r[0].port, r[0].online), ("127.0.0.1", port, false));
    }

    #[test]
    fn config_section() {
        #[derive(serde::Deserialize)]
        struct Agent {
            miners: MinersConfig,
        }
        let a: Agent =
            toml::from_str("[miners]\ntargets = [\"10.0.0.0/30\", \"10.0.1.7:4029\"]\ntimeout = \"2s\"\n").unwrap();
        assert_eq!(a.miners.timeout, Duration::from_secs(2));
        assert_eq!((a.miners.concurrency, a.miners.port, a.miners.interval), (64, 4028, Duration::from_secs(30)));
        let src = a.miners.build().unwrap();
        let eps: Vec<_> = src.endpoints().iter().map(|e| format!("{}:{}", e.host, e.port)).collect();
        assert_eq!(eps, ["10.0.0.1:4028", "10.0.0.2:4028", "10.0.1.7:4029"]);
        let bad: Result<Agent, _> = toml::from_str("[miners]\ntargets = []\ntimout = \"2s\"\n");
        assert!(bad.is_err()); // unknown key
        let empty: Agent = toml::from_str("[miners]\ntargets = []\n").unwrap();
        assert!(empty.miners.build().unwrap_err().to_string().contains("targets"));
        let wrong: Agent = toml::from_str("[miners]\ntargets = [\"10.0.0.0/33\"]\n").unwrap();
        assert!(wrong.miners.build().is_err());
    }
}
