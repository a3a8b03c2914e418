//! Simulated meters on loopback, speaking the real protocols: a Redfish service (a
//! DMTF mockup folder served as is, or a simulated BMC whose chassis power and energy
//! follow a [`Clock`]), a minimal SNMP v2c agent serving an APC rPDU2 outlet table, and
//! Shelly Gen2 / Tasmota plugs. Test doubles only; never the source of a number about
//! real hardware.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::model::Clock;

/// What a simulated Redfish service serves.
#[derive(Clone)]
pub enum RedfishTree {
    /// A DMTF mockup folder: `/redfish/v1/<p>` → `<dir>/<p>/index.json`.
    Mockup(PathBuf),
    /// A simulated BMC: chassis → constant wall power; `EnergykWh` is its integral
    /// since `start_ns` by the clock.
    Bmc { chassis: Vec<(String, f64)>, clock: Arc<dyn Clock>, start_ns: i64 },
}

impl RedfishTree {
    fn get(&self, path: &str) -> Option<Value> {
        let rel = path.trim_end_matches('/').strip_prefix("/redfish/v1")?.trim_start_matches('/');
        match self {
            RedfishTree::Mockup(dir) => {
                if rel.split('/').any(|s| s == ".." || s.starts_with('.')) {
                    return None;
                }
                let f = if rel.is_empty() { dir.join("index.json") } else { dir.join(rel).join("index.json") };
                serde_json::from_slice(&std::fs::read(f).ok()?).ok()
            }
            RedfishTree::Bmc { chassis, clock, start_ns } => {
                let secs = (clock.now_ns() - start_ns).max(0) as f64 / 1e9;
                let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
                match parts.as_slice() {
                    [] => Some(json!({"@odata.id": "/redfish/v1", "Id": "RootService", "RedfishVersion": "1.17.0",
                        "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
                        "SessionService": {"@odata.id": "/redfish/v1/SessionService"}})),
                    ["Chassis"] => {
                        Some(json!({"@odata.id": "/redfish/v1/Chassis", "Members@odata.count": chassis.len(),
                        "Members": chassis.iter().map(|(id, _)| json!({"@odata.id": format!("/redfish/v1/Chassis/{id}")})).collect::<Vec<_>>()}))
                    }
                    ["Chassis", id] => chassis.iter().find(|(c, _)| c == id).map(|(c, _)| {
                        json!({
                        "@odata.id": format!("/redfish/v1/Chassis/{c}"), "Id": c, "Name": "Simulated GPU node",
                        "EnvironmentMetrics": {"@odata.id": format!("/redfish/v1/Chassis/{c}/EnvironmentMetrics")}})
                    }),
                    ["Chassis", id, "EnvironmentMetrics"] => chassis.iter().find(|(c, _)| c == id).map(|(c, w)| {
                        json!({
                        "@odata.id": format!("/redfish/v1/Chassis/{c}/EnvironmentMetrics"),
                        "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
                        "PowerWatts": {"Reading": w},
                        "EnergykWh": {"Reading": w * secs / 3.6e6}})
                    }),
                    _ => None,
                }
            }
        }
    }
}

struct RedfishState {
    tree: RedfishTree,
    creds: Option<(String, String)>,
    tokens: Mutex<Vec<String>>,
    delay: Duration,
}

/// A running simulated Redfish service (plain HTTP).
pub struct SimRedfish {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimRedfish {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimRedfish {
    /// Serves `tree` on `bind` (port 0 for any). With `creds`, every GET needs HTTP
    /// basic or a session token from `POST /redfish/v1/SessionService/Sessions`.
    /// `delay` holds every reply back (a slow BMC).
    pub async fn start(
        bind: SocketAddr,
        tree: RedfishTree,
        creds: Option<(String, String)>,
        delay: Duration,
    ) -> std::io::Result<SimRedfish> {
        let state = Arc::new(RedfishState { tree, creds, tokens: Mutex::new(Vec::new()), delay });
        let app = Router::new()
            .route("/redfish/v1/SessionService/Sessions", post(redfish_login))
            .fallback(get(redfish_get))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SimRedfish { addr, task })
    }

    pub fn url(&self) -> String {
        format!("redfish+http://{}", self.addr)
    }
}

async fn redfish_login(State(st): State<Arc<RedfishState>>, Json(body): Json<Value>) -> Response {
    let ok = match &st.creds {
        Some((u, p)) => body["UserName"] == *u && body["Password"] == *p,
        None => true,
    };
    if !ok {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "bad credentials"}}))).into_response();
    }
    let mut tokens = st.tokens.lock().unwrap_or_else(|e| e.into_inner());
    let token = format!("sim-token-{}", tokens.len() + 1);
    tokens.push(token.clone());
    let mut h = HeaderMap::new();
    h.insert("x-auth-token", token.parse().expect("ascii"));
    h.insert("location", format!("/redfish/v1/SessionService/Sessions/{}", tokens.len()).parse().expect("ascii"));
    (StatusCode::CREATED, h, Json(json!({"Id": tokens.len().to_string(), "UserName": body["UserName"]})))
        .into_response()
}

fn authorized(st: &RedfishState, headers: &HeaderMap) -> bool {
    let Some((u, p)) = &st.creds else { return true };
    if let Some(t) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
        return st.tokens.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|x| x == t);
    }
    if let Some(b) = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic ")) {
        use base64_lite::decode;
        return decode(b).is_some_and(|d| d == format!("{u}:{p}").into_bytes());
    }
    false
}

async fn redfish_get(State(st): State<Arc<RedfishState>>, headers: HeaderMap, uri: Uri) -> Response {
    if !st.delay.is_zero() {
        tokio::time::sleep(st.delay).await;
    }
    if !authorized(&st, &headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "authentication required"}})))
            .into_response();
    }
    match st.tree.get(uri.path()) {
        Some(v) => Json(v).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": {"message": "no such resource"}}))).into_response(),
    }
}

/// Just enough base64 to check a basic-auth header.
mod base64_lite {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let val = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        let bytes: Vec<u8> = s.trim().bytes().filter(|c| *c != b'=').collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                n |= val(*c)? << (18 - 6 * i);
            }
            let take = match chunk.len() {
                4 => 3,
                3 => 2,
                2 => 1,
                _ => return None,
            };
            out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
        }
        Some(out)
    }
}

/// A simulated APC rPDU2: outlets with constant power (W); energy (0.1 kWh, INTEGER)
/// is the integral since `start_ns`.
#[derive(Clone)]
pub struct SimPduSpec {
    pub community: String,
    pub outlet_watts: Vec<f64>,
    pub clock: Arc<dyn Clock>,
    pub start_ns: i64,
}

const APC_TABLE: [u64; 14] = [1, 3, 6, 1, 4, 1, 318, 1, 1, 26, 9, 4, 3, 1];

impl SimPduSpec {
    fn table(&self) -> BTreeMap<Vec<u64>, i64> {
        let secs = (self.clock.now_ns() - self.start_ns).max(0) as f64 / 1e9;
        let mut t = BTreeMap::new();
        for (i, w) in self.outlet_watts.iter().enumerate() {
            let n = i as u64 + 1;
            let mut power = APC_TABLE.to_vec();
            power.extend([7, n]);
            t.insert(power, w.round() as i64);
            let mut energy = APC_TABLE.to_vec();
            energy.extend([11, n]);
            t.insert(energy, (w * secs / 360_000.0).floor() as i64);
        }
        t
    }
}

/// A running simulated SNMP v2c agent (GET, GETNEXT, GETBULK; read-only).
pub struct SimPdu {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimPdu {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimPdu {
    pub async fn start(bind: SocketAddr, spec: SimPduSpec) -> std::io::Result<SimPdu> {
        let sock = tokio::net::UdpSocket::bind(bind).await?;
        let addr = sock.local_addr()?;
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else { continue };
                if let Some(reply) = snmp_reply(&buf[..n], &spec) {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        });
        Ok(SimPdu { addr, task })
    }

    pub fn url(&self) -> String {
        format!("snmp://public@{}", self.addr)
    }
}

/// Answers one request datagram; `None` for what an agent drops (bad community, junk).
fn snmp_reply(req: &[u8], spec: &SimPduSpec) -> Option<Vec<u8>> {
    use snmp2::{MessageType, Pdu};
    let pdu = Pdu::from_bytes(req).ok()?;
    if pdu.community != spec.community.as_bytes() || pdu.version().ok()? != snmp2::Version::V2C {
        return None;
    }
    let table = spec.table();
    let asked: Vec<Vec<u64>> = pdu.varbinds.clone().filter_map(|(oid, _)| oid.iter().map(|i| i.collect())).collect();
    let next =
        |o: &Vec<u64>| table.range::<Vec<u64>, _>((std::ops::Bound::Excluded(o), std::ops::Bound::Unbounded)).next();
    let mut out: Vec<(Vec<u64>, Option<i64>)> = Vec::new();
    match pdu.message_type {
        MessageType::GetRequest => out.extend(asked.iter().map(|o| (o.clone(), table.get(o).copied()))),
        MessageType::GetNextRequest => {
            out.extend(asked.iter().map(|o| next(o).map(|(k, v)| (k.clone(), Some(*v))).unwrap_or((o.clone(), None))))
        }
        MessageType::GetBulkRequest => {
            let reps = pdu.error_index.clamp(1, 64);
            for o in &asked {
                let mut cur = o.clone();
                for _ in 0..reps {
                    match next(&cur) {
                        Some((k, v)) => {
                            out.push((k.clone(), Some(*v)));
                            cur = k.clone();
                        }
                        None => {
                            out.push((cur.clone(), None));
                            break;
                        }
                    }
                }
            }
        }
        _ => return None,
    }
    let endofmib = !matches!(pdu.message_type, MessageType::GetRequest);
    Some(ber::response(&spec.community, pdu.req_id, &out, endofmib))
}

/// The few BER encodings a v2c response needs.
mod ber {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = body.len();
        if n < 128 {
            v.push(n as u8);
        } else {
            let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
            v.push(0x80 | bytes.len() as u8);
            v.extend(bytes);
        }
        v.extend_from_slice(body);
        v
    }

    fn int(i: i64) -> Vec<u8> {
        let b = i.to_be_bytes();
        let mut s = 0;
        while s < 7 && ((b[s] == 0 && b[s + 1] & 0x80 == 0) || (b[s] == 0xff && b[s + 1] & 0x80 != 0)) {
            s += 1;
        }
        tlv(0x02, &b[s..])
    }

    fn oid(arcs: &[u64]) -> Vec<u8> {
        let mut body = Vec::new();
        if arcs.len() >= 2 {
            let mut all = vec![arcs[0] * 40 + arcs[1]];
            all.extend_from_slice(&arcs[2..]);
            for a in all {
                let mut chunk = vec![(a & 0x7f) as u8];
                let mut x = a >> 7;
                while x > 0 {
                    chunk.push(0x80 | (x & 0x7f) as u8);
                    x >>= 7;
                }
                chunk.reverse();
                body.extend(chunk);
            }
        }
        tlv(0x06, &body)
    }

    pub fn response(community: &str, req_id: i32, vbs: &[(Vec<u64>, Option<i64>)], endofmib: bool) -> Vec<u8> {
        let mut list = Vec::new();
        for (o, v) in vbs {
            let value = match v {
                Some(i) => int(*i),
                None if endofmib => vec![0x82, 0],
                None => vec![0x81, 0],
            };
            list.extend(tlv(0x30, &[oid(o), value].concat()));
        }
        let pdu = tlv(0xa2, &[int(i64::from(req_id)), int(0), int(0), tlv(0x30, &list)].concat());
        tlv(0x30, &[int(1), tlv(0x04, community.as_bytes()), pdu].concat())
    }
}

/// A simulated smart plug: Shelly Gen2 (`/rpc/Switch.GetStatus`) and Tasmota
/// (`/cm?cmnd=Status 8`) on one server, constant power, energy since `start_ns`.
#[derive(Clone)]
pub struct SimPlugSpec {
    pub watts: f64,
    pub clock: Arc<dyn Clock>,
    pub start_ns: i64,
    /// Protects the Shelly RPC as a plug with a password does: HTTP Digest with
    /// SHA-256, user `admin`.
    pub shelly_password: Option<String>,
}

/// What a Shelly plug with a password sends unauthenticated requests.
const SHELLY_REALM: &str = "shellyplugus-sim";

/// The plug's side of Shelly's digest check (RFC 7616, SHA-256, qop `auth`).
fn shelly_digest_ok(headers: &HeaderMap, uri: &Uri, password: &str, nonce: &str) -> bool {
    use sha2::{Digest, Sha256};
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(parsed) = http_auth::parse_challenges(value) else { return false };
    let Some(c) = parsed.first().filter(|c| c.scheme.eq_ignore_ascii_case("digest")) else { return false };
    let param = |k: &str| c.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.to_unescaped());
    let [Some(user), Some(realm), Some(got_nonce), Some(got_uri), Some(nc), Some(cnonce), Some(qop), Some(response)] =
        ["username", "realm", "nonce", "uri", "nc", "cnonce", "qop", "response"].map(param)
    else {
        return false;
    };
    let requested = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    if user != "admin" || realm != SHELLY_REALM || got_nonce != nonce || got_uri != requested || qop != "auth" {
        return false;
    }
    let h = |s: String| format!("{:x}", Sha256::digest(s.as_bytes()));
    let ha1 = h(format!("{user}:{realm}:{password}"));
    let ha2 = h(format!("GET:{got_uri}"));
    response == h(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
}

pub struct SimPlug {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimPlug {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimPlug {
    pub async fn start(bind: SocketAddr, spec: SimPlugSpec) -> std::io::Result<SimPlug> {
        let spec = Arc::new((spec, format!("{:08x}", rand::random::<u32>())));
        let app = Router::new()
            .route("/rpc/Switch.GetStatus", get(shelly_status))
            .route("/cm", get(tasmota_cm))
            .with_state(spec);
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(SimPlug { addr, task })
    }
}

fn plug_wh(spec: &SimPlugSpec) -> f64 {
    spec.watts * (spec.clock.now_ns() - spec.start_ns).max(0) as f64 / 3.6e12
}

async fn shelly_status(
    State(state): State<Arc<(SimPlugSpec, String)>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (spec, nonce) = (&state.0, &state.1);
    if let Some(password) = &spec.shelly_password {
        if !shelly_digest_ok(&headers, &uri, password, nonce) {
            let challenge =
                format!("Digest qop=\"auth\", realm=\"{SHELLY_REALM}\", nonce=\"{nonce}\", algorithm=SHA-256");
            return (StatusCode::UNAUTHORIZED, [(axum::http::header::WWW_AUTHENTICATE, challenge)]).into_response();
        }
    }
    if q.get("id").map(String::as_str).unwrap_or("0") != "0" {
        return (StatusCode::NOT_FOUND, Json(json!({"code": -105, "message": "Argument 'id', value 1 not found!"})))
            .into_response();
    }
    Json(json!({"id": 0, "source": "init", "output": true, "apower": spec.watts, "voltage": 230.0,
        "current": spec.watts / 230.0, "aenergy": {"total": plug_wh(&spec), "by_minute": [0.0, 0.0, 0.0],
        "minute_ts": spec.clock.now_ns() / 1_000_000_000}, "temperature": {"tC": 40.0, "tF": 104.0}}))
    .into_response()
}

async fn tasmota_cm(
    State(state): State<Arc<(SimPlugSpec, String)>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let spec = &state.0;
    if q.get("cmnd").map(|c| c.eq_ignore_ascii_case("status 8")) != Some(true) {
        return Json(json!({"Command": "Unknown"})).into_response();
    }
    Json(json!({"StatusSNS": {"Time": "2026-12-02T10:00:00", "ENERGY": {"TotalStartTime": "2026-12-01T00:00:00",
        "Total": plug_wh(&spec) / 1000.0, "Yesterday": 0.0, "Today": plug_wh(&spec) / 1000.0,
        "Power": spec.watts, "ApparentPower": spec.watts, "ReactivePower": 0, "Factor": 1.0,
        "Voltage": 230, "Current": spec.watts / 230.0}}}))
    .into_response()
}

/// `wattledger sim meters`.
#[derive(Debug, clap::Args)]
pub struct MetersArgs {
    /// Loopback address every simulated meter binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// UDP port of the SNMP PDU (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub snmp_port: u16,
    /// TCP port of the Redfish BMC.
    #[arg(long, default_value_t = 0)]
    pub redfish_port: u16,
    /// TCP port of the plug (Shelly and Tasmota APIs).
    #[arg(long, default_value_t = 0)]
    pub plug_port: u16,
    /// PDU outlet powers in W, comma-separated (one outlet per stock miner).
    #[arg(long, default_value = "3250,3250,3010,3420")]
    pub outlets: String,
    /// BMC chassis wall power in W, comma-separated (one chassis per GPU node).
    #[arg(long, default_value = "6500")]
    pub chassis: String,
    /// Plug power in W.
    #[arg(long, default_value_t = 1200.0)]
    pub plug_watts: f64,
}

fn watts_list(s: &str, what: &str) -> anyhow::Result<Vec<f64>> {
    s.split(',')
        .map(|w| {
            let v: f64 = w.trim().parse().map_err(|_| anyhow::anyhow!("--{what}: `{w}` is not a power in W"))?;
            crate::collect::meters::check_power(v).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
        })
        .collect()
}

/// Starts the three simulated meters and prints their addresses; they run until the
/// process ends.
pub async fn run_cli(a: MetersArgs) -> anyhow::Result<()> {
    use crate::model::SystemClock;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let start_ns = clock.now_ns();
    let outlet_watts = watts_list(&a.outlets, "outlets")?;
    let chassis: Vec<(String, f64)> =
        watts_list(&a.chassis, "chassis")?.into_iter().enumerate().map(|(i, w)| (format!("GPU{}", i + 1), w)).collect();
    let pdu = SimPdu::start(
        SocketAddr::new(a.bind, a.snmp_port),
        SimPduSpec { community: "public".into(), outlet_watts, clock: clock.clone(), start_ns },
    )
    .await?;
    let bmc = SimRedfish::start(
        SocketAddr::new(a.bind, a.redfish_port),
        RedfishTree::Bmc { chassis, clock: clock.clone(), start_ns },
        None,
        Duration::ZERO,
    )
    .await?;
    let plug = SimPlug::start(
        SocketAddr::new(a.bind, a.plug_port),
        SimPlugSpec { watts: a.plug_watts, clock, start_ns, shelly_password: None },
    )
    .await?;
    println!("pdu {}", pdu.url());
    println!("bmc {}", bmc.url());
    println!("plug shelly://{0} tasmota://{0}", plug.addr);
    println!("ready: simulated SNMP PDU, Redfish BMC and plug");
    // They stop when the process ends.
    std::mem::forget((pdu, bmc, plug));
    Ok(())
}

/// The mockup folder shipped with the tests (for callers that serve it).
pub fn mockup_dir(root: &Path, name: &str) -> PathBuf {
    root.join("tests/data/meters/redfish").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_basic_auth() {
        assert_eq!(base64_lite::decode("YWRtaW46cGFzc3dvcmQ=").unwrap(), b"admin:password");
        assert!(base64_lite::decode("!!!").is_none());
    }
}
