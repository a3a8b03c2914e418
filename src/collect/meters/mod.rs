//! Power meters at the wall: SNMP PDUs, Redfish BMCs, Modbus TCP energy meters and
//! smart plugs. See `README.md` beside this file for the config, the metrics, the
//! devices each reader was written against and the protocol details.
//!
//! Each protocol is its own module with one [`MeterDriver`]; this module holds what
//! they share: the address form (`snmp://…`, `redfish://…`), value checks, the
//! energy-counter bookkeeping (32-bit wrap, resets) and [`MetersSource`], which
//! polls every configured meter with a per-meter timeout and bounded concurrency
//! and writes one `meter` point per channel. A meter that does not answer is a
//! point with `online = false` and no `power_w`: never a zero.

pub mod modbus;
pub mod probe;
pub mod redfish;
pub mod shelly;
pub mod snmp;
pub mod tasmota;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::collect::{Source, SourceError};
use crate::config::KeyError;
use crate::model::{schema, Point};

/// Largest power accepted from any meter (a 10 MW feeder); above it the reading is
/// kept only as `suspect_power_w` with a status saying why.
pub const MAX_POWER_W: f64 = 1e7;
/// Largest energy counter accepted, in joules (10 GWh).
pub const MAX_ENERGY_J: f64 = 3.6e13;

/// One channel of one meter, read once: an outlet, a chassis, a meter's total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelReading {
    pub channel: String,
    pub power_w: Option<f64>,
    /// Where `power_w` came from: an OID, a Redfish URI + property, a register.
    pub power_from: Option<String>,
    /// The device's energy counter in joules, as read (before wrap handling).
    pub energy_j: Option<f64>,
    pub energy_from: Option<String>,
    /// Joules at which the device's counter wraps to 0 (32-bit SNMP counters).
    #[serde(skip)]
    pub energy_wrap_j: Option<f64>,
    /// Why a value was not taken (out of range, wrong type), for the point's `status`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// A rejected power value, kept to show what the device said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspect_power_w: Option<f64>,
}

impl ChannelReading {
    pub fn new(channel: impl Into<String>) -> Self {
        ChannelReading { channel: channel.into(), ..Default::default() }
    }

    /// Takes a power value after checking it; a bad one becomes a problem, not a reading.
    pub fn set_power(&mut self, w: f64, from: impl Into<String>) {
        let from = from.into();
        match check_power(w) {
            Ok(w) => {
                self.power_w = Some(w);
                self.power_from = Some(from);
            }
            Err(why) => {
                self.problems.push(format!("{from}: {why}"));
                if w.is_finite() {
                    self.suspect_power_w = Some(w);
                }
            }
        }
    }

    /// Takes an energy counter in joules after checking it.
    pub fn set_energy(&mut self, j: f64, from: impl Into<String>) {
        let from = from.into();
        match check_energy(j) {
            Ok(j) => {
                self.energy_j = Some(j);
                self.energy_from = Some(from);
            }
            Err(why) => self.problems.push(format!("{from}: {why}")),
        }
    }
}

/// A power reading is finite, not negative and at most [`MAX_POWER_W`].
pub fn check_power(w: f64) -> Result<f64, String> {
    if !w.is_finite() {
        return Err(format!("power {w} is not a number"));
    }
    if w < 0.0 {
        return Err(format!("negative power {w} W (a load meter cannot read below 0)"));
    }
    if w > MAX_POWER_W {
        return Err(format!("power {w} W is above the {MAX_POWER_W} W any meter here can see"));
    }
    Ok(w)
}

/// An energy counter is finite, not negative and at most [`MAX_ENERGY_J`].
pub fn check_energy(j: f64) -> Result<f64, String> {
    if !j.is_finite() {
        return Err(format!("energy {j} is not a number"));
    }
    if j < 0.0 {
        return Err(format!("negative energy {j} J (a counter cannot go below 0)"));
    }
    if j > MAX_ENERGY_J {
        return Err(format!("energy {j} J is above the {MAX_ENERGY_J} J counter limit"));
    }
    Ok(j)
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct MeterError(pub String);

impl MeterError {
    pub fn new(m: impl Into<String>) -> Self {
        MeterError(m.into())
    }
}

/// One meter's protocol: read every channel once.
#[async_trait]
pub trait MeterDriver: Send + Sync {
    /// `snmp`, `redfish`, `modbus`, `shelly`, `tasmota`.
    fn kind(&self) -> &'static str;
    async fn read(&self) -> Result<Vec<ChannelReading>, MeterError>;
}

/// A meter's address: `snmp://COMMUNITY@HOST[:PORT]`, `redfish://HOST[:PORT]`,
/// `redfish+http://HOST:PORT`, `modbus://HOST[:PORT]?map=NAME`, `shelly://HOST`,
/// `tasmota://HOST`. Query parameters (`?map=…&unit=…`) are kept for the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterUrl {
    pub scheme: String,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub query: Vec<(String, String)>,
}

pub const SCHEMES: &[&str] = &["snmp", "redfish", "redfish+http", "modbus", "shelly", "tasmota"];

impl MeterUrl {
    pub fn parse(s: &str) -> Result<MeterUrl, MeterError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| MeterError::new(format!("`{s}` is not a meter address like snmp://public@192.0.2.10")))?;
        let scheme = scheme.to_ascii_lowercase();
        if !SCHEMES.contains(&scheme.as_str()) {
            return Err(MeterError::new(format!(
                "unknown meter scheme `{scheme}://` in `{s}`; use one of {}",
                SCHEMES.join(", ")
            )));
        }
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, q),
            None => (rest, ""),
        };
        let authority = authority.trim_end_matches('/');
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).map_err(|e| MeterError::new(format!("`{s}`: {e}")))?;
        if host.is_empty() {
            return Err(MeterError::new(format!("`{s}` has no host")));
        }
        let query = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.to_owned(), String::new()),
            })
            .collect();
        Ok(MeterUrl { scheme, user, host, port, query })
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `HOST:PORT` with IPv6 hosts bracketed.
    pub fn host_port(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed `[` in IPv6 address")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("`{p}` is not a port"))?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected `{after}` after the address")),
        };
        return Ok((h.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            Ok((h.to_owned(), Some(p.parse().map_err(|_| format!("`{p}` is not a port"))?)))
        }
        _ => Ok((s.to_owned(), None)),
    }
}

/// `[meters]`: every meter the agent reads, on one interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetersConfig {
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub interval: Duration,
    /// Per meter and poll: all requests of one meter together.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// Meters read at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub devices: Vec<MeterConfig>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_concurrency() -> usize {
    16
}

/// `[[meters.devices]]`: one meter.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// Tag `meter`; unique.
    pub name: String,
    /// The meter's address (see [`MeterUrl`]).
    pub url: String,
    /// SNMP: `apc-rpdu2`, `raritan-pdu2`, `sentry4` or `generic`; default `apc-rpdu2`.
    pub profile: Option<String>,
    /// SNMP `generic` profile: the operator's OIDs and scales.
    pub generic: Option<snmp::GenericOids>,
    /// SNMP v3 (authPriv or authNoPriv); v2c with the URL's community when absent.
    pub snmp_v3: Option<snmp::V3Config>,
    /// Modbus: a built-in map name or a map file; also `?map=` in the URL.
    pub map: Option<String>,
    /// Modbus unit id; default 1 (or the map's).
    pub unit: Option<u8>,
    /// Redfish and plugs: user name; the password comes from `password` or `password_file`.
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Redfish: `session` (default) or `basic`.
    pub auth: Option<redfish::AuthMode>,
    /// Redfish over TLS: trust this CA (PEM) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Redfish over TLS: accept exactly the certificate with this SHA-256 fingerprint
    /// (hex, colons allowed), as BMCs use self-signed certificates.
    pub cert_sha256: Option<String>,
    /// What each channel covers; channels not listed are still written, covering nothing named.
    #[serde(default)]
    pub channels: Vec<ChannelMap>,
}

/// `[[meters.devices.channels]]`: what one channel measures.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChannelMap {
    /// The channel as the meter names it: outlet `3`, Raritan `1.3`, Redfish chassis `1U`,
    /// a Modbus map's channel, Shelly switch `0`.
    pub channel: String,
    /// One device: a miner address (`192.0.2.21`, `192.0.2.21:4028`).
    pub miner: Option<String>,
    /// One device: a GPU host (its agent's `host`); its wall power covers its GPUs.
    pub gpu_host: Option<String>,
    /// A group: a rack, a container, a feeder, the site.
    pub group: Option<String>,
    /// Workload of this channel's energy; a miner's comes from `[workloads] miners` when absent.
    pub workload: Option<String>,
}

impl ChannelMap {
    /// (`covers_kind`, `covers`) tags.
    pub fn covers(&self) -> Option<(&'static str, &str)> {
        self.miner
            .as_deref()
            .map(|m| ("miner", m))
            .or_else(|| self.gpu_host.as_deref().map(|h| ("gpu_host", h)))
            .or_else(|| self.group.as_deref().map(|g| ("group", g)))
    }
}

impl MetersConfig {
    /// Checks the keys and builds every driver (nothing is contacted); the error's `at`
    /// is the key within `[meters]`.
    pub fn validate(&self) -> Result<(), KeyError> {
        for (key, zero) in [("interval", self.interval.is_zero()), ("timeout", self.timeout.is_zero())] {
            if zero {
                return Err(KeyError::new(key, format!("[meters] {key} must be longer than 0s")));
            }
        }
        if self.concurrency == 0 {
            return Err(KeyError::new("concurrency", "[meters] concurrency must be at least 1"));
        }
        if self.devices.is_empty() {
            return Err(KeyError::new("devices", "[meters] lists no [[meters.devices]]; add one or remove [meters]"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            let at = |key: &str| format!("devices[{i}].{key}");
            if d.name.trim().is_empty() {
                return Err(KeyError::new(at("name"), format!("[[meters.devices]] `{}` has an empty name", d.url)));
            }
            if !names.insert(d.name.as_str()) {
                return Err(KeyError::new(
                    at("name"),
                    format!("[[meters.devices]] name `{}` is used twice; names must be unique", d.name),
                ));
            }
            for (j, c) in d.channels.iter().enumerate() {
                let n = [c.miner.is_some(), c.gpu_host.is_some(), c.group.is_some()].iter().filter(|b| **b).count();
                if n > 1 {
                    return Err(KeyError::new(
                        at(&format!("channels[{j}]")),
                        format!(
                            "meter `{}` channel `{}`: give one of miner, gpu_host or group, not {n}",
                            d.name, c.channel
                        ),
                    ));
                }
            }
            build_driver(d, self.timeout).map_err(|e| KeyError::new(at("url"), format!("meter `{}`: {e}", d.name)))?;
        }
        Ok(())
    }
}

/// The driver a meter's URL names.
pub fn build_driver(cfg: &MeterConfig, timeout: Duration) -> Result<Box<dyn MeterDriver>, MeterError> {
    let url = MeterUrl::parse(&cfg.url)?;
    Ok(match url.scheme.as_str() {
        "snmp" => Box::new(snmp::SnmpMeter::new(&url, cfg, timeout)?),
        "redfish" | "redfish+http" => Box::new(redfish::RedfishMeter::new(&url, cfg, timeout)?),
        "modbus" => Box::new(modbus::ModbusMeter::new(&url, cfg)?),
        "shelly" => Box::new(shelly::ShellyMeter::new(&url, cfg, timeout)?),
        "tasmota" => Box::new(tasmota::TasmotaMeter::new(&url, cfg, timeout)?),
        other => return Err(MeterError::new(format!("unknown meter scheme {other}"))),
    })
}

/// A meter's user and password: `password`, or the first line of `password_file`,
/// read at each login so that a rotated secret is picked up and a config can be
/// checked where the secret file is absent.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

impl Credentials {
    pub fn from_config(cfg: &MeterConfig) -> Result<Option<Credentials>, MeterError> {
        match (&cfg.username, &cfg.password, &cfg.password_file) {
            (None, None, None) => Ok(None),
            (None, _, _) => Err(MeterError::new("password or password_file given without username")),
            (Some(_), Some(_), Some(_)) => Err(MeterError::new("give password or password_file, not both")),
            (Some(_), None, None) => Err(MeterError::new("username given without password or password_file")),
            (Some(u), p, f) => Ok(Some(Credentials { user: u.clone(), password: p.clone(), password_file: f.clone() })),
        }
    }

    pub fn password(&self) -> Result<String, MeterError> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        let f = self.password_file.as_ref().expect("checked in from_config");
        std::fs::read_to_string(f)
            .map(|s| s.lines().next().unwrap_or("").to_owned())
            .map_err(|e| MeterError::new(format!("cannot read password_file {}: {e}", f.display())))
    }
}

/// Turns a device's raw energy counter into a counter that only resets when the
/// device's does: a 32-bit counter that wraps past its top continues from there.
#[derive(Debug, Clone, Default)]
pub struct EnergyCounter {
    last_raw_j: Option<f64>,
    offset_j: f64,
}

/// What [`EnergyCounter::update`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterStep {
    First,
    Forward,
    /// The counter passed its top and started again; the output goes on.
    Wrapped,
    /// The counter went backwards without wrapping (reset, replaced meter): the output
    /// drops too, and consumers treat the drop as a reset.
    Reset,
}

impl EnergyCounter {
    pub fn update(&mut self, raw_j: f64, wrap_j: Option<f64>) -> (f64, CounterStep) {
        let step = match self.last_raw_j {
            None => CounterStep::First,
            Some(last) if raw_j >= last => CounterStep::Forward,
            Some(last) => match wrap_j {
                // A wrap lands near the bottom after being near the top; anything
                // else going backwards is a reset.
                Some(w) if last > w * 0.5 && raw_j < w * 0.5 && (w - last + raw_j) < w * 0.25 => {
                    self.offset_j += w;
                    CounterStep::Wrapped
                }
                _ => {
                    self.offset_j = 0.0;
                    CounterStep::Reset
                }
            },
        };
        self.last_raw_j = Some(raw_j);
        (self.offset_j + raw_j, step)
    }
}

struct Meter {
    cfg: MeterConfig,
    driver: Box<dyn MeterDriver>,
    counters: HashMap<String, EnergyCounter>,
}

/// `collect::Source` `meters`: every `[[meters.devices]]`, one `meter` point per channel.
pub struct MetersSource {
    meters: Vec<Meter>,
    timeout: Duration,
    concurrency: usize,
}

impl MetersSource {
    pub fn new(cfg: &MetersConfig) -> Result<MetersSource, MeterError> {
        let meters = cfg
            .devices
            .iter()
            .map(|d| {
                Ok(Meter {
                    cfg: d.clone(),
                    driver: build_driver(d, cfg.timeout)
                        .map_err(|e| MeterError::new(format!("meter `{}`: {e}", d.name)))?,
                    counters: HashMap::new(),
                })
            })
            .collect::<Result<_, MeterError>>()?;
        Ok(MetersSource { meters, timeout: cfg.timeout, concurrency: cfg.concurrency.max(1) })
    }

    /// A source from already built drivers (simulated meters in the demo, tests).
    pub fn with_drivers(
        parts: Vec<(MeterConfig, Box<dyn MeterDriver>)>,
        timeout: Duration,
        concurrency: usize,
    ) -> Self {
        let meters = parts.into_iter().map(|(cfg, driver)| Meter { cfg, driver, counters: HashMap::new() }).collect();
        MetersSource { meters, timeout, concurrency: concurrency.max(1) }
    }
}

#[async_trait]
impl Source for MetersSource {
    fn name(&self) -> &str {
        "meters"
    }

    async fn collect(&mut self, time_ns: i64) -> Result<Vec<Point>, SourceError> {
        let timeout = self.timeout;
        let reads: Vec<_> = self.meters.iter_mut().map(|m| read_one(m, timeout, time_ns)).collect();
        let batches: Vec<Vec<Point>> = futures::stream::iter(reads).buffer_unordered(self.concurrency).collect().await;
        Ok(batches.into_iter().flatten().collect())
    }
}

async fn read_one(m: &mut Meter, timeout: Duration, time_ns: i64) -> Vec<Point> {
    let result = match tokio::time::timeout(timeout, m.driver.read()).await {
        Ok(r) => r,
        Err(_) => Err(MeterError::new(format!(
            "no answer within {:.1} s; check the address and that the meter is reachable",
            timeout.as_secs_f64()
        ))),
    };
    meter_points(m, result, time_ns)
}

fn meter_points(m: &mut Meter, result: Result<Vec<ChannelReading>, MeterError>, time_ns: i64) -> Vec<Point> {
    use schema::meter as s;
    let kind = m.driver.kind();
    let base = |channel: &str| {
        let mut p = Point::new(s::MEASUREMENT, time_ns)
            .tag(s::TAG_METER, m.cfg.name.as_str())
            .tag(s::TAG_CHANNEL, channel)
            .tag(s::TAG_KIND, kind)
            .tag(s::TAG_BASIS, s::BASIS_METER);
        if let Some(c) = m.cfg.channels.iter().find(|c| c.channel == channel) {
            if let Some((k, v)) = c.covers() {
                p.set_tag(s::TAG_COVERS_KIND, k);
                p.set_tag(s::TAG_COVERS, v);
            }
            if let Some(w) = &c.workload {
                p.set_tag(schema::TAG_WORKLOAD, w.as_str());
            }
        }
        p
    };
    let offline = |channel: &str, why: &str| base(channel).field(s::ONLINE, false).field(s::STATUS, why.to_owned());
    match result {
        Err(e) => {
            tracing::warn!(meter = %m.cfg.name, error = %e, "meter read failed; reported offline");
            if m.cfg.channels.is_empty() {
                vec![offline("*", &e.0)]
            } else {
                m.cfg.channels.iter().map(|c| offline(&c.channel, &e.0)).collect()
            }
        }
        Ok(readings) => {
            let mut out = Vec::with_capacity(readings.len());
            for r in &readings {
                let mut p = base(&r.channel).field(s::ONLINE, true);
                let mut status: Vec<String> = r.problems.clone();
                if let Some(w) = r.power_w {
                    p.set_field(s::POWER_W, w);
                }
                if let Some(w) = r.suspect_power_w {
                    p.set_field(s::SUSPECT_POWER_W, w);
                }
                if let Some(raw) = r.energy_j {
                    let (j, step) = m.counters.entry(r.channel.clone()).or_default().update(raw, r.energy_wrap_j);
                    p.set_field(s::ENERGY_J, j);
                    match step {
                        CounterStep::Wrapped => status.push("energy counter wrapped; continued past it".into()),
                        CounterStep::Reset => {
                            status.push("energy counter went backwards (reset or replaced meter)".into())
                        }
                        _ => {}
                    }
                }
                if r.power_w.is_none() && r.energy_j.is_none() && status.is_empty() {
                    status.push("the meter answered without a power or energy value for this channel".into());
                }
                p.set_field(s::STATUS, if status.is_empty() { "ok".to_owned() } else { status.join("; ") });
                out.push(p);
            }
            for c in &m.cfg.channels {
                if !readings.iter().any(|r| r.channel == c.channel) {
                    out.push(offline(
                        &c.channel,
                        "the meter's reply has no such channel; check `channel` in the config",
                    ));
                }
            }
            out
        }
    }
}

/// Parses a JSON number that may arrive as a string (`"374.5"`); rejects other types.
pub(crate) fn json_number(v: &serde_json::Value, what: &str) -> Result<f64, String> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| format!("{what}: {n} is not a number")),
        serde_json::Value::String(s) => s.trim().parse::<f64>().map_err(|_| format!("{what}: \"{s}\" is not a number")),
        serde_json::Value::Null => Err(format!("{what} is null (no reading)")),
        other => Err(format!("{what}: expected a number, got {}", json_type(other))),
    }
}

pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Sends a JSON meter's request (its client carries the timeout) and reads a reply
/// capped at `max_bytes`; 401/403 say to check the credentials.
pub(crate) async fn get_json(
    req: reqwest::RequestBuilder,
    what: &str,
    max_bytes: usize,
) -> Result<serde_json::Value, MeterError> {
    let resp = send(req, what).await?;
    json_reply(resp, what, max_bytes).await
}

/// Sends a request; a timeout or a network error is a [`MeterError`] that says so.
pub(crate) async fn send(req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response, MeterError> {
    req.send().await.map_err(|e| {
        if e.is_timeout() {
            MeterError::new(format!("{what}: no answer within the meter's timeout"))
        } else {
            MeterError::new(format!("{what}: {}", describe_reqwest(&e)))
        }
    })
}

/// A reply's JSON body (at most `max_bytes`), or an error naming its HTTP status.
pub(crate) async fn json_reply(
    resp: reqwest::Response,
    what: &str,
    max_bytes: usize,
) -> Result<serde_json::Value, MeterError> {
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(MeterError::new(format!("{what}: HTTP {status}; check username and password")));
    }
    if !status.is_success() {
        return Err(MeterError::new(format!("{what}: HTTP {status}")));
    }
    let body = read_capped(resp, max_bytes).await.map_err(|e| MeterError::new(format!("{what}: {e}")))?;
    serde_json::from_slice(&body).map_err(|e| MeterError::new(format!("{what}: reply is not JSON ({e})")))
}

pub(crate) async fn read_capped(mut resp: reqwest::Response, max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe_reqwest(&e))? {
        if out.len() + chunk.len() > max_bytes {
            return Err(format!("reply larger than {max_bytes} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Largest JSON reply accepted from a meter.
pub(crate) const MAX_JSON_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = MeterUrl::parse("snmp://public@127.0.0.1:16161").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.user.as_deref(), u.host.as_str(), u.port),
            ("snmp", Some("public"), "127.0.0.1", Some(16161))
        );
        let u = MeterUrl::parse("modbus://[::1]:5020?map=eastron-sdm630&unit=2").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.param("map"), Some("eastron-sdm630"));
        assert_eq!(u.host_port(502), "[::1]:5020");
        assert!(MeterUrl::parse("ftp://x").unwrap_err().0.contains("unknown meter scheme"));
        assert!(MeterUrl::parse("shelly://h:notaport").is_err());
    }

    #[test]
    fn a_32_bit_counter_wraps_and_a_reset_is_a_reset() {
        let w = 4294967296.0 * 3600.0; // Wh counter
        let mut c = EnergyCounter::default();
        assert_eq!(c.update(w - 7200.0, Some(w)), (w - 7200.0, CounterStep::First));
        assert_eq!(c.update(3600.0, Some(w)), (w + 3600.0, CounterStep::Wrapped));
        assert_eq!(c.update(7200.0, Some(w)).1, CounterStep::Forward);
        // Far from the top: a reset, not a wrap.
        let mut c = EnergyCounter::default();
        c.update(1e9, Some(w));
        assert_eq!(c.update(10.0, Some(w)), (10.0, CounterStep::Reset));
        // No wrap width (64-bit or float counters): backwards is always a reset.
        let mut c = EnergyCounter::default();
        c.update(5.0, None);
        assert_eq!(c.update(1.0, None).1, CounterStep::Reset);
    }

    #[test]
    fn hostile_values_are_problems_not_readings() {
        let mut r = ChannelReading::new("1");
        r.set_power(-5.0, "x");
        r.set_power(f64::NAN, "y");
        r.set_power(1e12, "z");
        r.set_energy(-1.0, "e");
        assert_eq!(r.power_w, None);
        assert_eq!(r.energy_j, None);
        assert_eq!(r.problems.len(), 4);
        assert_eq!(r.suspect_power_w, Some(1e12));
    }

    proptest::proptest! {
        #[test]
        fn counter_output_never_decreases_except_on_reset(steps in proptest::collection::vec(0u64..(1u64 << 32), 1..50)) {
            let w = 4294967296.0;
            let mut c = EnergyCounter::default();
            let mut last = None;
            for raw in steps {
                let (out, step) = c.update(raw as f64, Some(w));
                proptest::prop_assert!(out.is_finite() && out >= 0.0);
                if let Some(l) = last {
                    if step != CounterStep::Reset { proptest::prop_assert!(out >= l); }
                }
                last = Some(out);
            }
        }

        #[test]
        fn url_parser_never_panics(s in ".{0,80}") {
            let _ = MeterUrl::parse(&s);
        }
    }
}
