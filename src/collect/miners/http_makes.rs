//! HTTP-only makes tried after AxeOS and ePIC: Braiins OS REST (23+, e.g. 26.04), Braiins
//! OS GraphQL (21.x), Goldshell and Proto.
//!
//! They share one reader: a list of read-only requests per make ([`Family`]), each reply
//! stored under a key of one document, read by that make's field map in
//! [`super::profiles`]. Differences between makes are data: the requests, the key a reply
//! is stored under, and the reply that identifies the make. Only after every cheaper probe
//! failed does [`probe`] run, so the cgminer path never pays for it.
//!
//! Assumptions where the captures say nothing (documented in the module README):
//! - Braiins OS REST: `POST /api/v1/auth/login` with `{"username","password"}` answers
//!   `{"token": ...}`; later requests send that token as the raw `Authorization` header value
//!   (the public Braiins OS API's REST gateway). We log in with the factory account (`root`,
//!   empty password); a miner with a password set answers 401 and is reported as such.
//! - Braiins OS GraphQL: `POST /graphql` with `{"query": ...}`, no login needed for queries.
//! - Goldshell: `GET /mcb/status` (model, firmware) and `GET /mcb/cgminer?cgminercmd=devs`
//!   / `=summary` answering cgminer-shaped JSON (`DEVS`, `SUMMARY`), or the same rows under
//!   `data`; no login.
//! - Proto: `GET /api/v1/{system,mining,cooling,pools}`, no login.

use serde_json::{json, Map, Value};

use super::wire::{self, WireError};
use super::{finish, profiles, s, strip_make, Ctx, Identity, MinerReading, ProbeError};

/// The Braiins OS factory login, used to obtain a read token.
pub const BRAIINS_DEFAULT_USER: &str = "root";
pub const BRAIINS_DEFAULT_PASSWORD: &str = "";

/// GraphQL query for `system` (uptime, version, fans, hashrate, approximate power).
pub const GQL_SYSTEM: &str = "{bos{hostname info{version{full}} uptime{durationS}} bosminer{info{fans{name rpm speed} summary{power{approxConsumptionW limitW}} workSolver{nominalMhs realHashrate{mhs5S}}}}}";
/// GraphQL query for `pools` (share counters per pool group).
pub const GQL_POOLS: &str =
    "{bosminer{info{poolGroups{name pools{active shares{acceptedSolutions rejectedSolutions} status url user}}}}}";

/// Which HTTP make answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    BraiinsRest,
    BraiinsGraphql,
    Goldshell,
    Proto,
}

impl Family {
    /// Detection order: one request each, the first that answers like the make wins.
    pub const ORDER: [Family; 4] = [Family::Proto, Family::Goldshell, Family::BraiinsGraphql, Family::BraiinsRest];
}

/// Identifies a Braiins OS REST miner from `details` (`/api/v1/miner/details`).
pub fn identify_braiins_rest(doc: &Value) -> Identity {
    let name = s(doc, "details/miner_identity/miner_model").or_else(|| s(doc, "details/miner_identity/name"));
    let (make, model) = match name {
        Some(n) if n.starts_with("Antminer") => (Some("Antminer".to_owned()), Some(strip_make(&n, "Antminer"))),
        Some(n) => (None, Some(n)),
        None => (None, None),
    };
    Identity {
        make,
        model,
        firmware: s(doc, "details/bos_version/current").map(|v| format!("Braiins OS {v}")),
        map: &profiles::BRAIINS_REST,
    }
}

/// Identifies a Braiins OS 21.x miner from the GraphQL `system` reply (no model there).
pub fn identify_braiins_gql(doc: &Value) -> Identity {
    Identity {
        make: None,
        model: None,
        firmware: s(doc, "system/data/bos/info/version/full").map(|v| format!("Braiins OS {v}")),
        map: &profiles::BRAIINS_GQL,
    }
}

/// Identifies a Goldshell from `/mcb/status` (`"model": "Goldshell-SC5Pro"`).
pub fn identify_goldshell(doc: &Value) -> Identity {
    Identity {
        make: Some("Goldshell".into()),
        model: s(doc, "status/model").map(|m| m.strip_prefix("Goldshell-").unwrap_or(&m).trim().to_owned()),
        firmware: s(doc, "status/firmware").map(|v| format!("Goldshell {v}")),
        map: &profiles::GOLDSHELL,
    }
}

/// Identifies a Proto rig from `/api/v1/system`.
pub fn identify_proto(doc: &Value) -> Identity {
    let os = match (s(doc, "system/system-info/os/name"), s(doc, "system/system-info/os/version")) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, v) => n.or(v),
    };
    Identity {
        make: s(doc, "system/system-info/manufacturer").or_else(|| Some("Proto".into())),
        model: s(doc, "system/system-info/model"),
        firmware: os,
        map: &profiles::PROTO,
    }
}

/// Why one family's requests failed: not this make (try the next) or a transport error
/// (stop: the address is gone or the deadline passed).
enum Miss {
    NotThis,
    Fatal(ProbeError),
    /// It is this make, but it refused us (e.g. a Braiins login with a password set).
    Refused(String),
}

impl Ctx<'_> {
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
        Ok((r.status, super::json::parse_lenient(&r.body).ok()))
    }

    /// A GET that must answer 200 with JSON; anything else is "not this make".
    async fn get_ok(&self, path: &str, headers: &[(&str, &str)]) -> Result<Value, Miss> {
        match self.http_json("GET", path, headers, None).await {
            Ok((200, Some(v))) => Ok(v),
            Ok(_) | Err(WireError::NotHttp) | Err(WireError::HttpStatus { .. }) => Err(Miss::NotThis),
            Err(e) => Err(Miss::Fatal(self.unreachable(e))),
        }
    }
}

async fn read_family(ctx: &Ctx<'_>, f: Family) -> Result<MinerReading, Miss> {
    let mut doc = Map::new();
    let id = match f {
        Family::Proto => {
            let sys = ctx.get_ok("/api/v1/system", &[]).await?;
            if sys.get("system-info").is_none() {
                return Err(Miss::NotThis);
            }
            doc.insert("system".into(), sys);
            for (k, path) in [("mining", "/api/v1/mining"), ("cooling", "/api/v1/cooling"), ("pools", "/api/v1/pools")]
            {
                let v =
                    ctx.get_ok(path, &[]).await.map_err(|m| refused_or(m, format!("Proto {path} did not answer")))?;
                doc.insert(k.into(), v);
            }
            identify_proto(&Value::Object(doc.clone()))
        }
        Family::Goldshell => {
            let st = ctx.get_ok("/mcb/status", &[]).await?;
            let is_goldshell = st.get("mcbversion").is_some()
                || st.get("model").and_then(Value::as_str).is_some_and(|m| m.starts_with("Goldshell"));
            if !is_goldshell {
                return Err(Miss::NotThis);
            }
            doc.insert("status".into(), st);
            for (key, cmd) in [("DEVS", "devs"), ("SUMMARY", "summary"), ("DEVDETAILS", "devdetails")] {
                let path = format!("/mcb/cgminer?cgminercmd={cmd}");
                match ctx.get_ok(&path, &[]).await {
                    Ok(v) => {
                        // cgminer shape (`DEVS: [...]`), or the rows under `data`.
                        let rows = v.get(key).or_else(|| v.get("data")).cloned();
                        if let Some(rows) = rows {
                            doc.insert(key.into(), rows);
                        }
                    }
                    Err(Miss::Fatal(e)) => return Err(Miss::Fatal(e)),
                    Err(_) if cmd == "devdetails" => {}
                    Err(m) => return Err(refused_or(m, format!("Goldshell {path} did not answer"))),
                }
            }
            identify_goldshell(&Value::Object(doc.clone()))
        }
        Family::BraiinsGraphql => {
            let sys = match ctx.http_json("POST", "/graphql", &[], Some(&json!({ "query": GQL_SYSTEM }))).await {
                Ok((200, Some(v))) if v.pointer("/data/bosminer").is_some() => v,
                Ok(_) | Err(WireError::NotHttp) | Err(WireError::HttpStatus { .. }) => return Err(Miss::NotThis),
                Err(e) => return Err(Miss::Fatal(ctx.unreachable(e))),
            };
            doc.insert("system".into(), sys);
            match ctx.http_json("POST", "/graphql", &[], Some(&json!({ "query": GQL_POOLS }))).await {
                Ok((200, Some(v))) => {
                    doc.insert("pools".into(), v);
                }
                Ok((st, _)) => tracing::debug!(miner = %ctx.addr(), "graphql pools: HTTP {st}"),
                Err(e) => return Err(Miss::Fatal(ctx.unreachable(e))),
            }
            identify_braiins_gql(&Value::Object(doc.clone()))
        }
        Family::BraiinsRest => {
            let login = json!({ "username": BRAIINS_DEFAULT_USER, "password": BRAIINS_DEFAULT_PASSWORD });
            let token = match ctx.http_json("POST", "/api/v1/auth/login", &[], Some(&login)).await {
                Ok((200, Some(v))) => match v.get("token").and_then(Value::as_str) {
                    Some(t) => t.to_owned(),
                    None => return Err(Miss::NotThis),
                },
                Ok((401 | 403, Some(v))) if v.get("message").is_some() || v.get("code").is_some() => {
                    return Err(Miss::Refused(
                        "Braiins OS REST API refused the factory login (root, empty password); the miner has a password set".into(),
                    ))
                }
                Ok(_) | Err(WireError::NotHttp) | Err(WireError::HttpStatus { .. }) => return Err(Miss::NotThis),
                Err(e) => return Err(Miss::Fatal(ctx.unreachable(e))),
            };
            let auth = [("Authorization", token.as_str())];
            for (k, path) in [
                ("details", "/api/v1/miner/details"),
                ("stats", "/api/v1/miner/stats"),
                ("cooling", "/api/v1/cooling/state"),
            ] {
                let v = ctx
                    .get_ok(path, &auth)
                    .await
                    .map_err(|m| refused_or(m, format!("Braiins OS {path} did not answer with the login token")))?;
                doc.insert(k.into(), v);
            }
            identify_braiins_rest(&Value::Object(doc.clone()))
        }
    };
    let doc = Value::Object(doc);
    Ok(finish(ctx.host, ctx.port, &id, &doc))
}

fn refused_or(m: Miss, msg: String) -> Miss {
    match m {
        Miss::NotThis => Miss::Refused(msg),
        other => other,
    }
}

/// Tries each HTTP make in [`Family::ORDER`]; `NotAMiner` when none answers like one.
pub(super) async fn probe(ctx: &Ctx<'_>) -> Result<MinerReading, ProbeError> {
    for f in Family::ORDER {
        match read_family(ctx, f).await {
            Ok(r) => return Ok(r),
            Err(Miss::NotThis) => continue,
            Err(Miss::Fatal(e)) => return Err(e),
            Err(Miss::Refused(reason)) => return Err(ctx.not_miner(reason)),
        }
    }
    Err(ctx.not_miner(
        "an HTTP server, but none of AxeOS /api/system/info, ePIC /summary, Proto /api/v1/system, \
         Goldshell /mcb/status, Braiins OS /graphql or /api/v1/auth/login",
    ))
}
