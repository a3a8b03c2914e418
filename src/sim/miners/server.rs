//! The simulated miners' servers: one listener per miner, cgminer JSON over TCP with the
//! NUL terminator and multi-commands, btminer `{"cmd":...}`, the v3 framing, and HTTP
//! (plain, with a token login, and GraphQL), with the faults applied on the wire.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::state::Miner;
use super::{Fault, SimCounters, SimError};
use crate::collect::miners::json as mj;
use crate::collect::miners::makes::Serve as Proto;
use crate::model::Clock;

/// The token the simulated Braiins OS REST API hands out for the factory login.
pub const SIM_BRAIINS_TOKEN: &str = "sim-braiins-token";
pub(super) fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, SimError> {
    let err = |source| SimError::Bind { addr, source };
    let sock = TcpSocket::new_v4().map_err(err)?;
    sock.set_reuseaddr(true).map_err(err)?;
    sock.bind(addr).map_err(err)?;
    sock.listen(1024).map_err(err)
}

pub(super) async fn serve(
    miner: Arc<Miner>,
    mut listener: Option<tokio::net::TcpListener>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    counters: Arc<SimCounters>,
) {
    loop {
        let off = matches!(miner.state.lock().unwrap_or_else(|e| e.into_inner()).fault, Some(Fault::PowerOff));
        if off {
            listener = None;
        } else if listener.is_none() {
            match bind(miner.addr) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::error!("sim miner {}: {e}", miner.index);
                    return;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = miner.wake.notified() => continue,
            acc = async { listener.as_ref().expect("listening").accept().await }, if listener.is_some() => {
                if let Ok((stream, _)) = acc {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (m, c, k, s) = (miner.clone(), clock.clone(), counters.clone(), stop.clone());
                    tokio::spawn(async move { handle(m, stream, c, k, s).await });
                }
            }
        }
    }
}

async fn handle(
    miner: Arc<Miner>,
    mut stream: TcpStream,
    clock: Arc<dyn Clock>,
    counters: Arc<SimCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let framed_proto = matches!(miner.data.serve, Proto::Framed);
    let req = match tokio::time::timeout(Duration::from_secs(10), read_request(&mut stream, framed_proto)).await {
        Ok(Some(r)) => r,
        _ => return,
    };
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let fault = miner.state.lock().unwrap_or_else(|e| e.into_inner()).fault;
    match fault {
        Some(Fault::Hang) => {
            // Hold the connection open, say nothing, until the client gives up or we stop.
            let mut sink = [0u8; 256];
            tokio::select! {
                _ = stop.changed() => {}
                _ = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
            }
            return;
        }
        Some(Fault::Garbage) => {
            let mut x = 0x2545_F491_4F6C_DD1Du64 ^ miner.index as u64;
            let junk: Vec<u8> = (0..512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x & 0xff) as u8 | 1
                })
                .collect();
            let _ = stream.write_all(&junk).await;
            return;
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let reply = miner.reply(&req, clock.now_ns());
    if fault == Some(Fault::CloseMidReply) {
        let _ = stream.write_all(&reply[..reply.len() / 2]).await;
        return;
    }
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

enum Request {
    Json(Value),
    Http { method: String, path: String, authorization: Option<String>, body: Vec<u8> },
    Other,
}

async fn read_request(stream: &mut TcpStream, framed: bool) -> Option<Request> {
    if framed {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.ok()?;
        let n = u32::from_le_bytes(len) as usize;
        if n > 64 * 1024 {
            return Some(Request::Other);
        }
        let mut body = vec![0u8; n];
        stream.read_exact(&mut body).await.ok()?;
        return Some(match mj::parse_lenient(&body) {
            Ok(v) => Request::Json(v),
            Err(_) => Request::Other,
        });
    }
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return if buf.is_empty() { None } else { Some(Request::Other) };
        }
        buf.extend_from_slice(&chunk[..n]);
        let trimmed = buf.iter().skip_while(|b| b.is_ascii_whitespace()).copied().collect::<Vec<u8>>();
        if trimmed.first() == Some(&b'{') {
            if let Ok(v) = mj::parse_lenient(&trimmed) {
                return Some(Request::Json(v));
            }
        } else if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut parts = head.split_whitespace();
            let method = parts.next().unwrap_or("").to_owned();
            let path = parts.next().unwrap_or("").to_owned();
            if !parts.next().unwrap_or("").starts_with("HTTP/") {
                return Some(Request::Other);
            }
            let header = |name: &str| {
                head.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let authorization = header("authorization");
            let len = header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            if len > 64 * 1024 {
                return Some(Request::Other);
            }
            let mut body = buf[end + 4..].to_vec();
            while body.len() < len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
            return Some(Request::Http { method, path, authorization, body });
        } else if trimmed.first().is_some_and(|b| !b.is_ascii_alphabetic()) {
            return Some(Request::Other);
        }
        if buf.len() > 64 * 1024 {
            return Some(Request::Other);
        }
    }
}

impl Miner {
    fn reply(&self, req: &Request, now_ns: i64) -> Vec<u8> {
        let d = &self.data;
        match (&d.serve, req) {
            (Proto::Http, Request::Http { method, path, .. }) => {
                // The full path first (Goldshell's `?cgminercmd=`), then without the query.
                let path = if d.replies.iter().any(|(p, _)| *p == path.as_str()) {
                    path.as_str()
                } else {
                    path.split('?').next().unwrap_or("")
                };
                match d.replies.iter().find(|(p, _)| *p == path) {
                    Some(_) if method == "GET" => {
                        http(200, "OK", &serde_json::to_vec(&self.render(path, now_ns)).unwrap_or_default())
                    }
                    Some(_) => http(405, "Method Not Allowed", b"{\"error\":\"read-only simulator\"}"),
                    None => http(404, "Not Found", b"{\"error\":\"not found\"}"),
                }
            }
            (Proto::HttpLogin, Request::Http { method, path, authorization, body }) => {
                let path = path.split('?').next().unwrap_or("");
                if path == "/api/v1/auth/login" {
                    if method != "POST" {
                        return http(405, "Method Not Allowed", b"{\"code\":12,\"message\":\"use POST\"}");
                    }
                    let login = mj::parse_lenient(body).unwrap_or(Value::Null);
                    let user = login.get("username").and_then(Value::as_str);
                    let pass = login.get("password").and_then(Value::as_str);
                    return if user == Some("root") && pass == Some("") {
                        http(
                            200,
                            "OK",
                            &serde_json::to_vec(&json!({"token": SIM_BRAIINS_TOKEN, "timeout_s": 3600}))
                                .unwrap_or_default(),
                        )
                    } else {
                        http(401, "Unauthorized", b"{\"code\":16,\"message\":\"invalid username or password\"}")
                    };
                }
                if authorization.as_deref() != Some(SIM_BRAIINS_TOKEN) {
                    return http(
                        401,
                        "Unauthorized",
                        b"{\"code\":16,\"message\":\"missing or invalid authorization token\"}",
                    );
                }
                match d.replies.iter().find(|(p, _)| *p == path) {
                    Some(_) if method == "GET" => {
                        http(200, "OK", &serde_json::to_vec(&self.render(path, now_ns)).unwrap_or_default())
                    }
                    Some(_) => http(405, "Method Not Allowed", b"{\"code\":12,\"message\":\"read-only simulator\"}"),
                    None => http(404, "Not Found", b"{\"code\":5,\"message\":\"not found\"}"),
                }
            }
            (Proto::Graphql, Request::Http { method, path, body, .. }) => {
                if path.split('?').next() != Some("/graphql") {
                    return http(404, "Not Found", b"404 page not found");
                }
                if method != "POST" {
                    return http(405, "Method Not Allowed", b"{\"errors\":[{\"message\":\"use POST\"}]}");
                }
                let q = mj::parse_lenient(body)
                    .ok()
                    .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                if q.trim_start().starts_with("mutation") {
                    return http(
                        400,
                        "Bad Request",
                        b"{\"errors\":[{\"message\":\"read-only simulator: no mutations\"}]}",
                    );
                }
                // The reply is the capture whose shape the query asks for.
                let key = if q.contains("poolGroups") {
                    "graphql:pools"
                } else if q.contains("childSolvers") {
                    "graphql:boards"
                } else if q.contains("autotuning") {
                    "graphql:tuning"
                } else if q.contains("workSolver") || q.contains("uptime") {
                    "graphql:system"
                } else {
                    return http(
                        400,
                        "Bad Request",
                        b"{\"errors\":[{\"message\":\"query not served by the simulator\"}]}",
                    );
                };
                http(200, "OK", &serde_json::to_vec(&self.render(key, now_ns)).unwrap_or_default())
            }
            (Proto::Http | Proto::HttpLogin | Proto::Graphql, _) => http(400, "Bad Request", b""),
            (Proto::Cgminer { multi }, Request::Json(v)) => {
                let Some(cmd) = v.get("command").and_then(Value::as_str) else {
                    return nul(cg_error(14, "Invalid command", now_ns));
                };
                let parts: Vec<&str> = cmd.split('+').collect();
                if parts.len() == 1 {
                    return nul(match d.replies.iter().find(|(c, _)| *c == cmd) {
                        Some(_) => self.render(cmd, now_ns),
                        None => cg_error(14, "Invalid command", now_ns),
                    });
                }
                if !multi {
                    return nul(cg_error(14, "Invalid command", now_ns));
                }
                let mut out = serde_json::Map::new();
                for c in parts {
                    let r = match d.replies.iter().find(|(x, _)| *x == c) {
                        Some(_) => self.render(c, now_ns),
                        None => cg_error(14, "Invalid command", now_ns),
                    };
                    out.insert(c.to_owned(), json!([r]));
                }
                out.insert("id".into(), json!(1));
                nul(Value::Object(out))
            }
            (Proto::Btminer, Request::Json(v)) => {
                let cmd = v.get("cmd").or_else(|| v.get("command")).and_then(Value::as_str).unwrap_or("");
                nul(match d.replies.iter().find(|(c, _)| *c == cmd) {
                    Some(_) => self.render(cmd, now_ns),
                    None => {
                        json!({"STATUS":"E","When":now_ns / 1_000_000_000,"Code":14,"Msg":"invalid cmd","Description":""})
                    }
                })
            }
            (Proto::Cgminer { .. }, _) => nul(cg_error(14, "Invalid command", now_ns)),
            (Proto::Btminer, _) => {
                nul(json!({"STATUS":"E","When":now_ns / 1_000_000_000,"Code":23,"Msg":"invalid JSON","Description":""}))
            }
            (Proto::Framed, Request::Json(v)) => {
                let when = now_ns / 1_000_000_000;
                let cmd = v.get("cmd").and_then(Value::as_str).unwrap_or("");
                let out = match cmd {
                    "get.device.info" => self.render(cmd, now_ns),
                    "get.miner.status" => {
                        let param = v.get("param").and_then(Value::as_str).unwrap_or("summary");
                        let mut msg = serde_json::Map::new();
                        for section in param.split('+') {
                            if d.replies.iter().any(|(c, _)| *c == section) {
                                let r = self.render(section, now_ns);
                                if let Some(x) = r.get("msg").and_then(|m| m.get(section)) {
                                    msg.insert(section.to_owned(), x.clone());
                                }
                            }
                        }
                        json!({"code": 0, "desc": cmd, "msg": msg, "when": when})
                    }
                    _ => json!({"code": -2, "desc": cmd, "msg": "invalid command", "when": when}),
                };
                framed(out)
            }
            (Proto::Framed, _) => {
                framed(json!({"code": -1, "desc": "", "msg": "invalid request", "when": now_ns / 1_000_000_000}))
            }
        }
    }
}

fn cg_error(code: i64, msg: &str, now_ns: i64) -> Value {
    json!({"STATUS":[{"STATUS":"E","When":now_ns / 1_000_000_000,"Code":code,"Msg":msg,"Description":"sim"}],"id":1})
}

fn framed(v: Value) -> Vec<u8> {
    let b = serde_json::to_vec(&v).unwrap_or_default();
    let mut out = (b.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

fn nul(v: Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(0);
    b
}

fn http(status: u16, reason: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
