//! ASIC miners read through their own APIs, read-only (see `README.md` in this folder).
//!
//! - [`wire`]: one bounded request/reply over TCP or HTTP (deadline + reply cap).
//! - [`json`]: lenient JSON (NUL, `}{`, trailing garbage, numbers as strings) and paths.
//! - [`profiles`]: per-make field maps and units, read by one generic extractor.
//! - [`models`]: nominal J/TH and rated hashrate per model (estimates and sanity checks).
//! - this file: detection of make/model/firmware from the miner's replies, and the
//!   normalized [`MinerReading`].
//! - [`fleet`]: polling many miners with bounded concurrency; the `miners` [`crate::collect::Source`].
//!
//! The protocol is chosen by what answers: a cgminer-family multi-command first (one
//! connection reads version, summary, stats and pools on Antminer, LuxOS, Avalon, Braiins),
//! then Whatsminer's `{"cmd":...}` API, then HTTP APIs (AxeOS, ePIC, then the makes in
//! [`http_makes`]: Braiins OS REST/GraphQL, Goldshell, Proto) when the port speaks HTTP;
//! Whatsminer API v3 (length-prefixed JSON) on its port 4433.

pub mod fleet;
pub mod http_makes;
pub mod json;
pub mod models;
pub mod profiles;
pub mod wire;

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::model::schema::asic;
use crate::model::Point;
use profiles::FieldMap;
use wire::WireError;

/// The cgminer API port.
pub const CGMINER_PORT: u16 = 4028;
/// Default cap on one reply: far above any real miner's reply (a few to tens of KiB).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 512 * 1024;
/// The read-only multi-command sent first to a cgminer-family miner.
pub const MULTI_COMMAND: &str = "version+summary+stats+pools";

/// Where `power_w` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerSource {
    /// The miner reports it (its own sensor or firmware estimate).
    Reported,
    /// Measured hashrate × the model's nominal J/TH ([`models`]).
    Estimated,
    /// A PDU or smart-plug reading configured for this miner.
    Meter,
}

impl PowerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerSource::Reported => "reported",
            PowerSource::Estimated => "estimated",
            PowerSource::Meter => "meter",
        }
    }
}

/// One normalized reading of one miner. Units are in the names; counters are raw counters
/// (they reset when the mining process restarts). `None` = the miner does not say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinerReading {
    pub host: String,
    pub port: u16,
    pub make: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub hashrate_ths: Option<f64>,
    pub power_w: Option<f64>,
    pub power_source: Option<PowerSource>,
    pub diff_accepted: Option<f64>,
    pub shares_accepted: Option<u64>,
    pub shares_rejected: Option<u64>,
    pub temp_c_max: Option<f64>,
    pub fan_rpm_avg: Option<f64>,
    pub uptime_s: Option<u64>,
    pub online: bool,
    /// Why the miner is offline, or which value was rejected by the sanity check.
    pub error: Option<String>,
}

impl MinerReading {
    /// A reading for a miner that could not be read.
    pub fn offline(host: &str, port: u16, error: impl Into<String>) -> Self {
        MinerReading {
            host: host.to_owned(),
            port,
            make: None,
            model: None,
            firmware: None,
            hashrate_ths: None,
            power_w: None,
            power_source: None,
            diff_accepted: None,
            shares_accepted: None,
            shares_rejected: None,
            temp_c_max: None,
            fan_rpm_avg: None,
            uptime_s: None,
            online: false,
            error: Some(error.into()),
        }
    }

    /// Replaces power with a configured meter's reading (PDU outlet, smart plug).
    pub fn with_meter(mut self, power_w: f64) -> Self {
        self.power_w = Some(power_w);
        self.power_source = Some(PowerSource::Meter);
        self
    }

    /// `host:port`, the `miner` tag.
    pub fn miner_id(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `asic` point for this reading.
    pub fn to_point(&self, time_ns: i64) -> Point {
        let mut p = Point::new(asic::MEASUREMENT, time_ns).tag(asic::TAG_MINER, self.miner_id());
        if let Some(m) = &self.make {
            p = p.tag(asic::TAG_MAKE, m.as_str());
        }
        if let Some(m) = &self.model {
            p = p.tag(asic::TAG_MODEL, m.as_str());
        }
        if let Some(f) = &self.firmware {
            p = p.tag(asic::TAG_FIRMWARE, f.as_str());
        }
        if let Some(s) = self.power_source {
            p = p.tag(asic::TAG_POWER_SOURCE, s.as_str());
        }
        p.field_opt(asic::POWER_W, self.power_w)
            .field_opt(asic::HASHRATE_THS, self.hashrate_ths)
            .field_opt(asic::DIFF_ACCEPTED, self.diff_accepted)
            .field_opt(asic::SHARES_ACCEPTED, self.shares_accepted)
            .field_opt(asic::SHARES_REJECTED, self.shares_rejected)
            .field_opt(asic::TEMP_C_MAX, self.temp_c_max)
            .field_opt(asic::FAN_RPM_AVG, self.fan_rpm_avg)
            .field_opt(asic::UPTIME_S, self.uptime_s)
            .field(asic::ONLINE, self.online)
    }
}

/// Limits for reading one miner.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Budget for the whole reading of one miner, all its requests together.
    pub timeout: Duration,
    /// Cap on each reply's size in bytes.
    pub max_reply_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { timeout: Duration::from_secs(5), max_reply_bytes: DEFAULT_MAX_REPLY_BYTES }
    }
}

/// Why a probe found no miner.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{addr}: {cause}")]
    Unreachable { addr: String, cause: WireError },
    #[error("{addr}: not a miner API: {reason}")]
    NotAMiner { addr: String, reason: String },
}

/// Make, model and firmware as the miner's replies say, and the field map to read it with.
#[derive(Debug, Clone)]
pub struct Identity {
    pub make: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub map: &'static FieldMap,
}

fn strip_make(name: &str, make: &str) -> String {
    let n = name.trim();
    n.strip_prefix(make).map(str::trim).filter(|s| !s.is_empty()).unwrap_or(n).to_owned()
}

fn s(v: &Value, path: &str) -> Option<String> {
    json::first_str(v, path).map(|x| x.trim().trim_matches('\'').to_owned()).filter(|x| !x.is_empty())
}

/// Identifies a cgminer-family miner from its `version` reply (and `stats` for Avalon
/// A-series, whose version block lacks the product name).
pub fn identify_cgminer(doc: &Value) -> Identity {
    let ver = json::select(doc, "version/VERSION/0").into_iter().next().cloned().unwrap_or(Value::Null);
    let desc = s(doc, "version/STATUS/0/Description").unwrap_or_default();
    let ty = s(&ver, "Type");
    let antminer_model = ty.as_deref().filter(|t| t.contains("Antminer")).map(|t| strip_make(t, "Antminer"));
    if let Some(lux) = s(&ver, "LUXminer") {
        return Identity {
            make: antminer_model.as_ref().map(|_| "Antminer".to_owned()),
            model: antminer_model,
            firmware: Some(format!("LuxOS {lux}")),
            map: &profiles::LUXOS,
        };
    }
    if let Some(bos) = s(&ver, "BOSer").or_else(|| s(&ver, "BOSminer")).or_else(|| s(&ver, "BOSminer+")) {
        return Identity {
            make: antminer_model.as_ref().map(|_| "Antminer".to_owned()),
            model: antminer_model,
            firmware: Some(format!("Braiins OS ({bos})")),
            map: &profiles::ANTMINER,
        };
    }
    let prod = s(&ver, "PROD");
    let mm_ver = json::select(doc, "stats/STATS/*/MM ID*")
        .into_iter()
        .filter_map(|v| v.as_str())
        .find_map(|st| st.find("Ver[").map(|i| st[i + 4..].chars().take_while(|c| *c != ']').collect::<String>()));
    if prod.is_some() || ver.get("CGVERSION").is_some() || mm_ver.is_some() {
        let model = prod
            .as_deref()
            .map(|p| strip_make(&strip_make(p, "AvalonMiner"), "Avalon"))
            .or_else(|| mm_ver.as_deref().map(|v| v.split('-').next().unwrap_or(v).to_owned()));
        let fw = match (s(&ver, "CGMiner"), s(&ver, "LVERSION").or_else(|| mm_ver.clone())) {
            (Some(cg), Some(l)) => Some(format!("cgminer {cg} ({l})")),
            (None, Some(l)) => Some(l),
            (Some(cg), None) => Some(format!("cgminer {cg}")),
            (None, None) => None,
        };
        return Identity { make: Some("Avalon".into()), model, firmware: fw, map: &profiles::AVALON };
    }
    if let Some(model) = antminer_model {
        let miner = s(&ver, "Miner");
        let engine = if ver.get("BMMiner").is_some() { "bmminer" } else { "cgminer" };
        let fw = match miner {
            Some(m) => format!("{engine} {m}"),
            None => desc.clone(),
        };
        return Identity {
            make: Some("Antminer".into()),
            model: Some(model),
            firmware: Some(fw),
            map: &profiles::ANTMINER,
        };
    }
    // Some other cgminer: read it with the generic map, say what it calls itself.
    Identity { make: None, model: ty, firmware: (!desc.is_empty()).then_some(desc), map: &profiles::ANTMINER }
}

/// Identifies a Whatsminer from a document holding `get_version` (btminer API v1/v2).
pub fn identify_whatsminer(doc: &Value) -> Identity {
    Identity {
        make: Some("Whatsminer".into()),
        model: s(doc, "devdetails/DEVDETAILS/0/Model"),
        firmware: s(doc, "get_version/Msg/fw_ver").map(|fw| format!("btminer {fw}")),
        map: &profiles::WHATSMINER,
    }
}

/// Identifies a Bitaxe from AxeOS `system_info`: the model follows from the ASIC.
pub fn identify_axeos(doc: &Value) -> Identity {
    let model = s(doc, "system_info/ASICModel").map(|a| match a.as_str() {
        "BM1366" => "Ultra".to_owned(),
        "BM1368" => "Supra".to_owned(),
        "BM1370" => "Gamma".to_owned(),
        "BM1397" => "Max".to_owned(),
        _ => a,
    });
    Identity {
        make: Some("Bitaxe".into()),
        model,
        firmware: s(doc, "system_info/version").map(|v| format!("AxeOS {v}")),
        map: &profiles::AXEOS,
    }
}

/// Identifies a Whatsminer on API v3 from `get.device.info` (doc key `device_info`).
pub fn identify_whatsminer_v3(doc: &Value) -> Identity {
    Identity {
        make: Some("Whatsminer".into()),
        model: s(doc, "device_info/msg/miner/type"),
        firmware: s(doc, "device_info/msg/system/fwversion").map(|fw| format!("btminer {fw} (API v3)")),
        map: &profiles::WHATSMINER_V3,
    }
}

/// Identifies an ePIC-controlled miner from its `/summary`.
pub fn identify_epic(doc: &Value) -> Identity {
    Identity {
        make: Some("ePIC".into()),
        model: None,
        firmware: s(doc, "summary/Software").map(|v| format!("ePIC UMC {v}")),
        map: &profiles::EPIC,
    }
}

/// Applies the identity, the sanity check and the power estimate to extracted values.
pub fn finish(host: &str, port: u16, id: &Identity, doc: &Value) -> MinerReading {
    let x = profiles::extract(id.map, doc);
    let spec = match (&id.make, &id.model) {
        (Some(make), Some(model)) => models::lookup(make, model),
        _ => None,
    };
    let mut errors = Vec::new();
    let addr = format!("{host}:{port}");
    // The table first: a miner's own nominal figure can carry the same unit slip as its reading.
    let rated_ths = spec.map(|s| s.rated_ths).or(x.rated_ths);
    let hashrate_ths = match x.hashrate_ths {
        Some(h) => match check_hashrate(h, rated_ths) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(miner = %addr, make = ?id.make, model = ?id.model, "{e}; not stored");
                errors.push(e);
                None
            }
        },
        None => None,
    };
    let (mut power_w, mut power_source) = (x.power_w, x.power_w.map(|_| PowerSource::Reported));
    if let Some(p) = power_w {
        let limit = spec.map(|s| s.rated_w * 2.5).unwrap_or(MAX_PLAUSIBLE_W);
        if p > limit.min(MAX_PLAUSIBLE_W) {
            let e = format!("power {p} W implausible (limit {limit:.0} W for this model); unit slip suspected");
            tracing::warn!(miner = %addr, "{e}; not stored");
            errors.push(e);
            power_w = None;
            power_source = None;
        }
    }
    if power_w.is_none() {
        if let (Some(spec), Some(h)) = (spec, hashrate_ths) {
            power_w = Some(h * spec.j_per_th());
            power_source = Some(PowerSource::Estimated);
        }
    }
    MinerReading {
        host: host.to_owned(),
        port,
        make: id.make.clone(),
        model: id.model.clone(),
        firmware: id.firmware.clone(),
        hashrate_ths,
        power_w,
        power_source,
        diff_accepted: x.diff_accepted,
        shares_accepted: x.shares_accepted,
        shares_rejected: x.shares_rejected,
        temp_c_max: x.temp_c_max,
        fan_rpm_avg: x.fan_rpm_avg,
        uptime_s: x.uptime_s,
        online: true,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// No single miner hashes faster than this (the largest hydro units are under 1 PH/s).
pub const MAX_PLAUSIBLE_THS: f64 = 2000.0;
/// No single miner draws more than this.
pub const MAX_PLAUSIBLE_W: f64 = 20_000.0;

/// Accepts a hashrate only if it is plausible for the rated hashrate: more than 3× the
/// rating means a unit slip (GH/s read as TH/s is 1000×); less than 1/300 of it while
/// reporting anything at all means the opposite slip.
pub fn check_hashrate(h: f64, rated_ths: Option<f64>) -> Result<f64, String> {
    if !h.is_finite() || h < 0.0 {
        return Err(format!("hashrate {h} TH/s is not a number"));
    }
    if let Some(r) = rated_ths {
        if h > r * 3.0 {
            return Err(format!(
                "hashrate {h:.3} TH/s is {:.0}× the rated {r} TH/s; unit slip suspected (GH/s read as TH/s?)",
                h / r
            ));
        }
        if h > 0.0 && h < r / 300.0 {
            return Err(format!(
                "hashrate {h:.6} TH/s is 1/{:.0} of the rated {r} TH/s; unit slip suspected (TH/s read as GH/s?)",
                r / h
            ));
        }
    } else if h > MAX_PLAUSIBLE_THS {
        return Err(format!(
            "hashrate {h:.1} TH/s exceeds any single miner ({MAX_PLAUSIBLE_THS} TH/s); unit slip suspected"
        ));
    }
    Ok(h)
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
/// keyed by command. A single top-level `STATUS` means the miner answered the whole
/// multi-command with one (error) reply.
pub fn split_multi(reply: &Value, commands: &[&str]) -> Result<Map<String, Value>, String> {
    split_multi_owned(reply.clone(), commands)
}

/// [`split_multi`] taking the reply by value: the parts are moved, not copied.
pub fn split_multi_owned(reply: Value, commands: &[&str]) -> Result<Map<String, Value>, String> {
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

struct Ctx<'a> {
    host: &'a str,
    port: u16,
    deadline: Instant,
    cap: usize,
}

impl Ctx<'_> {
    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn unreachable(&self, e: WireError) -> ProbeError {
        ProbeError::Unreachable { addr: self.addr(), cause: e }
    }

    fn not_miner(&self, reason: impl Into<String>) -> ProbeError {
        ProbeError::NotAMiner { addr: self.addr(), reason: reason.into() }
    }

    async fn tcp_json(&self, payload: &str) -> Result<Result<Value, String>, WireError> {
        let raw = wire::tcp_request(self.host, self.port, payload.as_bytes(), self.deadline, self.cap).await?;
        if raw.starts_with(b"HTTP/") {
            return Err(WireError::NotHttp); // reinterpreted by the caller: the port speaks HTTP
        }
        Ok(json::parse_lenient(&raw).map_err(|e| e.to_string()))
    }

    async fn cg(&self, command: &str) -> Result<Value, String> {
        match self.tcp_json(&format!("{{\"command\":\"{command}\"}}")).await {
            Ok(Ok(v)) => match reply_error(&v) {
                Some(e) => Err(e),
                None => Ok(v),
            },
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn http_get_json(&self, path: &str) -> Result<Value, WireError> {
        let r = wire::http_request(self.host, self.port, "GET", path, None, self.deadline, self.cap).await?;
        if r.status != 200 {
            return Err(WireError::HttpStatus { status: r.status });
        }
        json::parse_lenient(&r.body).map_err(|_| WireError::NotHttp)
    }
}

/// Reads one miner, detecting what it is. Errors when nothing answers or the answer is not
/// a miner's; a miner that answers with implausible values is `Ok` with `error` set.
pub async fn probe(host: &str, port: u16, opts: &ReadOptions) -> Result<MinerReading, ProbeError> {
    let ctx = Ctx { host, port, deadline: Instant::now() + opts.timeout, cap: opts.max_reply_bytes };
    if matches!(port, 80 | 443 | 8080) {
        match probe_http(&ctx).await {
            Err(ProbeError::NotAMiner { .. }) => {}
            other => return other,
        }
    }
    if port == WHATSMINER_V3_PORT {
        return probe_whatsminer_v3(&ctx).await;
    }
    let first = match ctx.tcp_json(&format!("{{\"command\":\"{MULTI_COMMAND}\"}}")).await {
        Ok(r) => r,
        Err(WireError::NotHttp) => return probe_http(&ctx).await,
        Err(e) => return Err(ctx.unreachable(e)),
    };
    let reply = first.map_err(|e| ctx.not_miner(e))?;
    let commands = ["version", "summary", "stats", "pools"];
    if let Ok(doc) = split_multi_owned(reply, &commands) {
        return Ok(finish_cgminer(&ctx, Value::Object(doc)).await);
    }
    // Whatsminer's btminer API: read-only `get_version` then `summary`.
    if let Ok(Ok(v)) = ctx.tcp_json(r#"{"cmd":"get_version"}"#).await {
        if let Some(fw) = s(&v, "Msg/fw_ver") {
            let summary = match ctx.tcp_json(r#"{"cmd":"summary"}"#).await {
                Ok(Ok(sm)) if reply_error(&sm).is_none() => sm,
                Ok(Ok(sm)) => return Err(ctx.not_miner(format!("summary: {}", reply_error(&sm).unwrap_or_default()))),
                Ok(Err(e)) => return Err(ctx.not_miner(format!("summary: {e}"))),
                Err(e) => return Err(ctx.unreachable(e)),
            };
            let _ = fw;
            let mut doc = Map::new();
            doc.insert("get_version".into(), v);
            doc.insert("summary".into(), summary);
            let doc = Value::Object(doc);
            return Ok(finish(host, port, &identify_whatsminer(&doc), &doc));
        }
    }
    // A cgminer that rejects multi-commands: one connection per command.
    let version = ctx.cg("version").await.map_err(|e| ctx.not_miner(format!("version: {e}")))?;
    let mut doc = Map::new();
    doc.insert("version".into(), version);
    for c in ["summary", "stats", "pools"] {
        match ctx.cg(c).await {
            Ok(v) => {
                doc.insert(c.into(), v);
            }
            Err(e) => tracing::debug!(miner = %ctx.addr(), "{c}: {e}"),
        }
    }
    Ok(finish_cgminer(&ctx, Value::Object(doc)).await)
}

/// Whatsminer API v3's port; the v3 framing is only spoken there.
pub const WHATSMINER_V3_PORT: u16 = 4433;

/// Whatsminer API v3: `get.device.info` (identity) then `get.miner.status` with
/// `summary+pools`, both read-only and needing no token.
async fn probe_whatsminer_v3(ctx: &Ctx<'_>) -> Result<MinerReading, ProbeError> {
    let call = |payload: &'static str| async move {
        let raw = wire::framed_request(ctx.host, ctx.port, payload.as_bytes(), ctx.deadline, ctx.cap)
            .await
            .map_err(|e| ctx.unreachable(e))?;
        let v = json::parse_lenient(&raw).map_err(|e| ctx.not_miner(e.to_string()))?;
        match v.get("code").and_then(Value::as_i64) {
            Some(0) => Ok(v),
            _ => Err(ctx.not_miner(format!("{payload}: {}", v.get("msg").map(|m| m.to_string()).unwrap_or_default()))),
        }
    };
    let info = call(r#"{"cmd":"get.device.info"}"#).await?;
    let status = call(r#"{"cmd":"get.miner.status","param":"summary+pools"}"#).await?;
    let mut doc = Map::new();
    doc.insert("device_info".into(), info);
    doc.insert("pools".into(), status.clone());
    doc.insert("summary".into(), status);
    let doc = Value::Object(doc);
    Ok(finish(ctx.host, ctx.port, &identify_whatsminer_v3(&doc), &doc))
}

async fn finish_cgminer(ctx: &Ctx<'_>, mut doc: Value) -> MinerReading {
    let id = identify_cgminer(&doc);
    if std::ptr::eq(id.map, &profiles::LUXOS) {
        match ctx.cg("power").await {
            Ok(p) => {
                doc["power"] = p;
            }
            Err(e) => tracing::debug!(miner = %ctx.addr(), "power: {e}"),
        }
    }
    finish(ctx.host, ctx.port, &id, &doc)
}

async fn probe_http(ctx: &Ctx<'_>) -> Result<MinerReading, ProbeError> {
    match ctx.http_get_json("/api/system/info").await {
        Ok(v) if v.get("hashRate").is_some() => {
            let mut doc = Map::new();
            doc.insert("system_info".into(), v);
            let doc = Value::Object(doc);
            return Ok(finish(ctx.host, ctx.port, &identify_axeos(&doc), &doc));
        }
        Ok(_) | Err(WireError::HttpStatus { .. }) | Err(WireError::NotHttp) => {}
        Err(e) => return Err(ctx.unreachable(e)),
    }
    match ctx.http_get_json("/summary").await {
        Ok(v) if v.get("Session").is_some() => {
            let mut doc = Map::new();
            doc.insert("summary".into(), v);
            let doc = Value::Object(doc);
            Ok(finish(ctx.host, ctx.port, &identify_epic(&doc), &doc))
        }
        // Hook: the HTTP-only makes (Braiins OS REST/GraphQL, Goldshell, Proto) in `http_makes`.
        Ok(_) | Err(WireError::HttpStatus { .. }) | Err(WireError::NotHttp) => http_makes::probe(ctx).await,
        Err(e) => Err(ctx.unreachable(e)),
    }
}

/// Reads one miner; never fails: an unreachable or non-miner address gives `online = false`
/// with the reason.
pub async fn read(host: &str, port: u16, opts: &ReadOptions) -> MinerReading {
    match probe(host, port, opts).await {
        Ok(r) => r,
        Err(e) => {
            let msg = match &e {
                ProbeError::Unreachable { cause, .. } => cause.to_string(),
                ProbeError::NotAMiner { reason, .. } => format!("not a miner API: {reason}"),
            };
            // Debug here: in a range scan most addresses are empty. The fleet source logs
            // listed miners that go offline at info.
            tracing::debug!(miner = %format!("{host}:{port}"), "offline: {msg}");
            MinerReading::offline(host, port, msg)
        }
    }
}
