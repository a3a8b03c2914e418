//! The read sequence: which protocol to try, in which order, and how each make's requests
//! (its [`Api`] in `makes/`) are sent. The order of [`MAKES`] is the order within each protocol.
//!
//! The protocol is chosen by what answers: a cgminer-family multi-command first (one
//! connection reads version, summary, stats and pools), then Whatsminer's `{"cmd":...}`
//! API, then one connection per cgminer command; the HTTP makes when the port speaks HTTP
//! (tried first on 80, 443 and 8080, and only once per probe); the Whatsminer v3 framing on
//! its port 4433. No request changes a miner, and no credential is sent to a host before it
//! identified itself as the make the credential belongs to.

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::identify::{claim_cgminer, multi_reply_keep, reply_error, s, split_multi};
use super::json::{self, Keep};
use super::makes::{Api, HttpApi, HttpReq, Login, MAKES};
use super::reading::{finish, MinerReading, ReadOptions};
use super::wire::{self, WireError};
use super::{MULTI_COMMAND, MULTI_PARTS};

/// Why a probe found no miner.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{addr}: {cause}")]
    Unreachable { addr: String, cause: WireError },
    #[error("{addr}: not a miner API: {reason}")]
    NotAMiner { addr: String, reason: String },
}

/// What a TCP request got back.
enum TcpReply {
    /// JSON (or why the bytes were not JSON).
    Json(Result<Value, String>),
    /// An HTTP reply: the port speaks HTTP.
    Http,
}

/// Why one make's requests failed.
enum Miss {
    /// Not this make: try the next.
    NotThis,
    /// A transport error: stop (the address is gone or the deadline passed).
    Fatal(ProbeError),
    /// It is this make, but it refused us (a Braiins login with a password set).
    Refused(String),
}

pub(super) struct Ctx<'a> {
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

    /// One TCP request; its JSON reply whole, or only what `keep` reaches.
    async fn tcp_json(&self, payload: &str, keep: Option<&Keep>) -> Result<TcpReply, WireError> {
        let raw = wire::tcp_request(self.host, self.port, payload.as_bytes(), self.deadline, self.cap).await?;
        if raw.starts_with(b"HTTP/") {
            return Ok(TcpReply::Http);
        }
        let v = match keep {
            Some(k) => json::parse_kept(&raw, k),
            None => json::parse_lenient(&raw),
        };
        Ok(TcpReply::Json(v.map_err(|e| e.to_string())))
    }

    async fn cg(&self, command: &str) -> Result<Value, String> {
        match self.tcp_json(&format!("{{\"command\":\"{command}\"}}"), None).await {
            Ok(TcpReply::Json(Ok(v))) => match reply_error(&v) {
                Some(e) => Err(e),
                None => Ok(v),
            },
            Ok(TcpReply::Json(Err(e))) => Err(e),
            Ok(TcpReply::Http) => Err("the port answers HTTP".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn http_json(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Option<Value>), WireError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let body = bytes.as_deref().map(|b| ("application/json", b));
        let r =
            wire::http_request_with(self.host, self.port, method, path, headers, body, self.deadline, self.cap).await?;
        Ok((r.status, json::parse_lenient(&r.body).ok()))
    }

    async fn http_req(&self, r: &HttpReq, token: Option<&str>) -> Result<(u16, Option<Value>), WireError> {
        let auth = token.map(|t| [("Authorization", t)]);
        let headers: &[(&str, &str)] = auth.as_ref().map(|a| a.as_slice()).unwrap_or(&[]);
        match r.query {
            Some(q) => self.http_json("POST", r.path, headers, Some(&json!({ "query": q }))).await,
            None => self.http_json("GET", r.path, headers, None).await,
        }
    }
}

/// Reads one miner, detecting what it is. Errors when nothing answers or the answer is not
/// a miner's; a miner that answers with implausible values is `Ok` with `error` set.
pub async fn probe(host: &str, port: u16, opts: &ReadOptions) -> Result<MinerReading, ProbeError> {
    let ctx = Ctx { host, port, deadline: Instant::now() + opts.timeout, cap: opts.max_reply_bytes };
    // On the usual HTTP ports HTTP first; its miss is kept so that HTTP is not tried twice.
    let mut http_miss = None;
    if matches!(port, 80 | 443 | 8080) {
        match probe_http(&ctx).await {
            Err(e @ ProbeError::NotAMiner { .. }) => http_miss = Some(e),
            other => return other,
        }
    }
    if port == Api::FRAMED_PORT {
        return probe_framed(&ctx).await;
    }
    let multi = format!("{{\"command\":\"{MULTI_COMMAND}\"}}");
    let first = match ctx.tcp_json(&multi, Some(multi_reply_keep())).await {
        Ok(TcpReply::Json(r)) => r,
        Ok(TcpReply::Http) => {
            return match http_miss {
                Some(e) => Err(e),
                None => probe_http(&ctx).await,
            }
        }
        Err(e) => return Err(ctx.unreachable(e)),
    };
    let reply = first.map_err(|e| ctx.not_miner(e))?;
    if let Ok(doc) = split_multi(reply, &MULTI_PARTS) {
        return Ok(finish_cgminer(&ctx, Value::Object(doc)).await);
    }
    if let Some(r) = probe_btminer(&ctx).await? {
        return Ok(r);
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

/// Identifies the cgminer document, sends the claiming make's extra commands, reads it.
async fn finish_cgminer(ctx: &Ctx<'_>, mut doc: Value) -> MinerReading {
    let (make, id) = claim_cgminer(&doc);
    if let Api::Cgminer { extra, .. } = make.api {
        if !extra.is_empty() {
            // Only what the map reads is held while the extra commands are in flight.
            doc = json::prune(doc, &id.map.paths());
        }
        for c in extra {
            match ctx.cg(c).await {
                Ok(p) => doc[*c] = p,
                Err(e) => tracing::debug!(miner = %ctx.addr(), "{c}: {e}"),
            }
        }
    }
    finish(ctx.host, ctx.port, &id, &doc)
}

/// Whatsminer's btminer API: `get_version` (a `Msg.fw_ver` says it is one), then the make's
/// read-only commands. The btminer makes share one API; the first registered reads them.
async fn probe_btminer(ctx: &Ctx<'_>) -> Result<Option<MinerReading>, ProbeError> {
    let Some((commands, optional, identify)) = MAKES.iter().find_map(|m| match m.api {
        Api::Btminer { commands, optional, identify } => Some((commands, optional, identify)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let v = match ctx.tcp_json(r#"{"cmd":"get_version"}"#, None).await {
        Ok(TcpReply::Json(Ok(v))) if s(&v, "Msg/fw_ver").is_some() => v,
        _ => return Ok(None),
    };
    let mut doc = Map::new();
    doc.insert("get_version".into(), v);
    for c in commands {
        let r = match ctx.tcp_json(&format!("{{\"cmd\":\"{c}\"}}"), None).await {
            Ok(TcpReply::Json(Ok(r))) => match reply_error(&r) {
                None => Ok(r),
                Some(e) => Err(e),
            },
            Ok(TcpReply::Json(Err(e))) => Err(e),
            Ok(TcpReply::Http) => Err("the port answers HTTP".into()),
            Err(e) if optional.contains(c) => Err(e.to_string()),
            Err(e) => return Err(ctx.unreachable(e)),
        };
        match r {
            Ok(r) => {
                doc.insert((*c).into(), r);
            }
            Err(e) if optional.contains(c) => tracing::debug!(miner = %ctx.addr(), "{c}: {e}"),
            Err(e) => return Err(ctx.not_miner(format!("{c}: {e}"))),
        }
    }
    let doc = Value::Object(doc);
    Ok(Some(finish(ctx.host, ctx.port, &identify(&doc), &doc)))
}

/// The length-prefixed makes (Whatsminer API v3): each request's reply under its keys.
async fn probe_framed(ctx: &Ctx<'_>) -> Result<MinerReading, ProbeError> {
    let Some((requests, identify)) = MAKES.iter().find_map(|m| match m.api {
        Api::Framed { requests, identify } => Some((requests, identify)),
        _ => None,
    }) else {
        return Err(ctx.not_miner("no make speaks the length-prefixed framing"));
    };
    let mut doc = Map::new();
    for (keys, payload) in requests {
        let raw = wire::framed_request(ctx.host, ctx.port, payload.as_bytes(), ctx.deadline, ctx.cap)
            .await
            .map_err(|e| ctx.unreachable(e))?;
        let v = json::parse_lenient(&raw).map_err(|e| ctx.not_miner(e.to_string()))?;
        if v.get("code").and_then(Value::as_i64) != Some(0) {
            return Err(
                ctx.not_miner(format!("{payload}: {}", v.get("msg").map(|m| m.to_string()).unwrap_or_default()))
            );
        }
        for k in *keys {
            doc.insert((*k).into(), v.clone());
        }
    }
    let doc = Value::Object(doc);
    Ok(finish(ctx.host, ctx.port, &identify(&doc), &doc))
}

/// Replies already received in this probe, by request: makes that share a request (AxeOS
/// and its forks) cost it once.
type Seen = Vec<((&'static str, Option<&'static str>), (u16, Option<Value>))>;

/// Tries each HTTP make in [`MAKES`] order; `NotAMiner` naming what was tried when none answers.
async fn probe_http(ctx: &Ctx<'_>) -> Result<MinerReading, ProbeError> {
    let mut seen: Seen = Vec::new();
    let mut tried: Vec<String> = Vec::new();
    for m in MAKES {
        let Api::Http(api) = &m.api else { continue };
        match read_http(ctx, api, &mut seen).await {
            Ok(doc) => return Ok(finish(ctx.host, ctx.port, &(api.identify)(&doc), &doc)),
            Err(Miss::NotThis) => {
                let t = format!("{} {}", api.label, api.requests[0].path);
                if !tried.contains(&t) {
                    tried.push(t);
                }
            }
            Err(Miss::Fatal(e)) => return Err(e),
            Err(Miss::Refused(reason)) => return Err(ctx.not_miner(reason)),
        }
    }
    Err(ctx.not_miner(format!("an HTTP server, but none of {}", tried.join(", "))))
}

fn fatal_or_not_this(ctx: &Ctx<'_>, e: WireError) -> Miss {
    match e {
        WireError::NotHttp | WireError::BadHttp(_) | WireError::HttpStatus { .. } => Miss::NotThis,
        e => Miss::Fatal(ctx.unreachable(e)),
    }
}

/// One HTTP make: the identifying request (a login first only if the host's refusal is that
/// make's own), then the rest. Returns the document.
async fn read_http(ctx: &Ctx<'_>, api: &HttpApi, seen: &mut Seen) -> Result<Value, Miss> {
    let first = &api.requests[0];
    let key = (first.path, first.query);
    let i = match seen.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            let r = ctx.http_req(first, None).await.map_err(|e| fatal_or_not_this(ctx, e))?;
            seen.push((key, r));
            seen.len() - 1
        }
    };
    let mut token = None;
    let (status, body) = &mut seen[i].1;
    let first_reply = match (*status, body.as_mut()) {
        // This make: the probe ends here, so the cached reply is moved out, not copied.
        (200, Some(v)) if (api.detect)(v) => v.take(),
        (status, Some(v)) if api.login.as_ref().is_some_and(|l| (l.challenge)(status, v)) => {
            let login = api.login.as_ref().expect("checked above");
            let t = log_in(ctx, login).await?;
            let again = ctx.http_req(first, Some(&t)).await.map_err(|e| fatal_or_not_this(ctx, e));
            token = Some(t);
            match again {
                Ok((200, Some(v))) if (api.detect)(&v) => v,
                Err(Miss::Fatal(e)) => return Err(Miss::Fatal(e)),
                _ => {
                    return Err(Miss::Refused(format!(
                        "{} {} did not answer with the login token",
                        api.label, first.path
                    )))
                }
            }
        }
        _ => return Err(Miss::NotThis),
    };
    let mut doc = Map::new();
    store(&mut doc, first, first_reply);
    for r in &api.requests[1..] {
        match ctx.http_req(r, token.as_deref()).await {
            Ok((200, Some(v))) => store(&mut doc, r, v),
            Ok((st, _)) if r.optional => tracing::debug!(miner = %ctx.addr(), "{}: HTTP {st}", r.path),
            Err(e @ (WireError::NotHttp | WireError::BadHttp(_) | WireError::HttpStatus { .. })) if r.optional => {
                tracing::debug!(miner = %ctx.addr(), "{}: {e}", r.path)
            }
            Err(e @ (WireError::NotHttp | WireError::BadHttp(_) | WireError::HttpStatus { .. })) => {
                tracing::debug!(miner = %ctx.addr(), "{}: {e}", r.path);
                return Err(refused(api, r, token.is_some()));
            }
            Ok(_) => return Err(refused(api, r, token.is_some())),
            Err(e) => return Err(Miss::Fatal(ctx.unreachable(e))),
        }
    }
    Ok(Value::Object(doc))
}

fn refused(api: &HttpApi, r: &HttpReq, with_token: bool) -> Miss {
    let how = if with_token { " with the login token" } else { "" };
    Miss::Refused(format!("{} {} did not answer{how}", api.label, r.path))
}

/// Stores a reply under its key: the whole reply, or the first member of `take` it holds.
fn store(doc: &mut Map<String, Value>, r: &HttpReq, mut v: Value) {
    if r.take.is_empty() {
        doc.insert(r.key.into(), v);
    } else if let Some(part) = r.take.iter().find_map(|k| v.get_mut(*k).map(Value::take)) {
        doc.insert(r.key.into(), part);
    }
}

/// The make's token login; only called once the host identified itself as that make.
async fn log_in(ctx: &Ctx<'_>, login: &Login) -> Result<String, Miss> {
    let body = json!({ "username": login.user, "password": login.password });
    match ctx.http_json("POST", login.path, &[], Some(&body)).await {
        Ok((200, Some(v))) => v.get("token").and_then(Value::as_str).map(str::to_owned).ok_or(Miss::NotThis),
        Ok((401 | 403, Some(v))) if v.get("message").is_some() || v.get("code").is_some() => {
            Err(Miss::Refused(login.refused.into()))
        }
        Ok(_) => Err(Miss::NotThis),
        Err(e) => Err(fatal_or_not_this(ctx, e)),
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
