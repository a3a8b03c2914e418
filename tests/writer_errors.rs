//! The writers' response handling, against a small local HTTP server of our own that
//! answers the way InfluxDB does when things go wrong (401, 403, 400, 404, 413,
//! 429/503 with Retry-After, 500) and records every request it gets. InfluxDB 2.x/3.x
//! cannot be installed here, so this is where the v2 error paths are checked; the
//! success paths are proven against the real servers in `influx_real.rs`.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use wattledger::config::Secret;
use wattledger::ship::influx::{Auth, InfluxWriter, RetryPolicy, Target, WriterOptions};
use wattledger::ship::{WriteError, Writer};

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

/// Status, headers and body of one scripted answer.
type Reply = (u16, Vec<(&'static str, String)>, &'static str);

/// What the server answers: a fixed script of responses (the last one repeats), or
/// 413 for any body with more than `max_lines` lines.
#[derive(Clone)]
enum Script {
    Replies(Vec<Reply>),
    MaxLines(usize),
}

#[derive(Clone)]
struct Server {
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn handle(State(s): State<Server>, uri: Uri, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out).expect("valid gzip body");
        out
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    };
    let lines = wattledger::ship::lineproto::split_lines(&body).len();
    s.seen.lock().unwrap().push(Seen { path: uri.path().into(), query: q.unwrap_or_default(), headers, body });
    let mut script = s.script.lock().unwrap();
    match &mut *script {
        Script::MaxLines(max) => {
            if lines > *max {
                (StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"Request Entity Too Large"}"#).into_response()
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
        Script::Replies(replies) => {
            let (status, headers, body) = if replies.len() > 1 { replies.remove(0) } else { replies[0].clone() };
            let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
    }
}

async fn start(script: Script) -> (Server, SocketAddr) {
    let server = Server { script: Arc::new(Mutex::new(script)), seen: Arc::default() };
    let app = axum::Router::new().fallback(handle).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, addr)
}

fn replies(r: Vec<Reply>) -> Script {
    Script::Replies(r)
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_elapsed: Duration::from_secs(10),
    }
}

fn v2(addr: SocketAddr, retry: RetryPolicy) -> InfluxWriter {
    InfluxWriter::new(
        &format!("http://{addr}/"),
        Target::V2 { org: Some("my org".into()), bucket: "wl bucket".into() },
        Auth::Token(Secret::new("s3cret-token")),
        WriterOptions { timeout: Duration::from_secs(5), gzip: true, retry },
    )
    .unwrap()
}

fn v1(addr: SocketAddr) -> InfluxWriter {
    InfluxWriter::new(
        &format!("http://{addr}"),
        Target::V1 { database: "wl".into(), retention_policy: Some("autogen".into()) },
        Auth::Basic { username: "writer".into(), password: Secret::new("pw") },
        WriterOptions { timeout: Duration::from_secs(5), gzip: false, retry: fast_retry() },
    )
    .unwrap()
}

const BODY: &str = "gpu,host=a power_w=250.5 1700000000000000000\ngpu,host=b power_w=1.0 1700000000000000000\n";

#[tokio::test]
async fn v2_request_has_the_documented_shape() {
    let (server, addr) = start(replies(vec![(204, vec![], "")])).await;
    let w = v2(addr, fast_retry());
    w.write_lines(BODY).await.unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/v2/write");
    assert_eq!(seen[0].query, "org=my+org&bucket=wl+bucket&precision=ns");
    assert_eq!(seen[0].headers["authorization"], "Token s3cret-token");
    assert_eq!(seen[0].headers["content-encoding"], "gzip");
    assert_eq!(seen[0].body, BODY);
    assert_eq!(w.describe(), format!("influxdb v2 http://{addr} org=my org bucket=wl bucket"));
    assert!(!w.describe().contains("s3cret"));
}

#[tokio::test]
async fn v1_request_has_the_documented_shape() {
    let (server, addr) = start(replies(vec![(204, vec![], "")])).await;
    v1(addr).write_lines(BODY).await.unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen[0].path, "/write");
    assert_eq!(seen[0].query, "db=wl&rp=autogen&precision=ns");
    // "writer:pw" in base64.
    assert_eq!(seen[0].headers["authorization"], "Basic d3JpdGVyOnB3");
    assert!(seen[0].headers.get("content-encoding").is_none());
    assert_eq!(seen[0].body, BODY);
}

#[tokio::test]
async fn auth_failures_are_not_retried() {
    for status in [401u16, 403] {
        let (server, addr) =
            start(replies(vec![(status, vec![], r#"{"code":"unauthorized","message":"unauthorized access"}"#)])).await;
        let err = v2(addr, fast_retry()).write_lines(BODY).await.unwrap_err();
        assert!(matches!(err, WriteError::Auth { status: s, .. } if s == status), "{err}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("unauthorized access") && text.contains("[store]"), "{text}");
        assert_eq!(server.seen.lock().unwrap().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn bad_request_is_reported_with_the_server_message_and_not_retried() {
    let (server, addr) =
        start(replies(vec![(400, vec![], r#"{"error":"unable to parse 'x': missing fields"}"#)])).await;
    let err = v1(addr).write_lines("x\n").await.unwrap_err();
    assert!(matches!(err, WriteError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("unable to parse 'x': missing fields"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    // v2 style body, and a 422 (points outside the retention period) alike.
    let (_, addr) = start(replies(vec![(422, vec![], r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: points beyond retention policy dropped=1"}"#)])).await;
    let err = v2(addr, fast_retry()).write_lines(BODY).await.unwrap_err();
    assert!(err.to_string().contains("beyond retention policy"), "{err}");
}

#[tokio::test]
async fn not_found_says_how_to_create_the_database() {
    let (_, addr) = start(replies(vec![(404, vec![], r#"{"error":"database not found: \"wl\""}"#)])).await;
    let err = v1(addr).write_lines(BODY).await.unwrap_err();
    assert!(matches!(err, WriteError::NotFound { .. }));
    assert!(err.to_string().contains("CREATE DATABASE"), "{err}");
}

#[tokio::test]
async fn too_large_batches_are_split_until_they_fit() {
    let (server, addr) = start(Script::MaxLines(3)).await;
    let mut body = String::new();
    for i in 0..10 {
        // A string field with a newline must not be cut in two.
        body.push_str(&format!("m,host=h{i} note=\"line one\nline two\",v={i}i {i}\n"));
    }
    v2(addr, fast_retry()).write_lines(&body).await.unwrap();
    let seen = server.seen.lock().unwrap().clone();
    let accepted: String = seen.iter().filter(|s| s.body.lines().count() <= 6).map(|s| s.body.clone()).collect();
    assert_eq!(accepted, body, "every line delivered exactly once, in order");
    assert_eq!(seen[0].body, body, "the whole batch was tried first");
    // 10 -> 5+5 -> (2+3)+(2+3): 1 + 2 + 4 requests.
    assert_eq!(seen.len(), 7);
}

#[tokio::test]
async fn a_single_line_too_large_is_rejected() {
    let (server, addr) = start(Script::MaxLines(0)).await;
    let err = v2(addr, fast_retry()).write_lines("a v=1 1\nb v=2 2\n").await.unwrap_err();
    assert!(matches!(err, WriteError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("single line"), "{err}");
    assert_eq!(server.seen.lock().unwrap().len(), 2, "whole batch, then its first line");
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    for status in [429u16, 503] {
        let (server, addr) =
            start(replies(vec![(status, vec![("retry-after", "1".into())], "slow down"), (204, vec![], "")])).await;
        let started = Instant::now();
        v2(addr, fast_retry()).write_lines(BODY).await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(950), "{status}: waited only {waited:?}");
        assert!(waited < Duration::from_secs(3), "{status}: waited {waited:?}");
        let seen = server.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].body, BODY, "the same batch is resent");
    }
}

#[tokio::test]
async fn retry_after_beyond_the_time_budget_gives_up_at_once() {
    let (server, addr) = start(replies(vec![(429, vec![("retry-after", "3600".into())], "")])).await;
    let started = Instant::now();
    let err = v2(addr, fast_retry()).write_lines(BODY).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("HTTP 429"), "{err}");
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let (server, addr) = start(replies(vec![(500, vec![], r#"{"error":"timeout"}"#)])).await;
    let err = v2(addr, fast_retry()).write_lines(BODY).await.unwrap_err();
    assert!(matches!(err, WriteError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("gave up after 4 attempts"), "{err}");
    assert_eq!(server.seen.lock().unwrap().len(), 4, "1 attempt + 3 retries");
    // Recovery within the budget succeeds.
    let (server, addr) = start(replies(vec![(503, vec![], ""), (502, vec![], ""), (204, vec![], "")])).await;
    v2(addr, fast_retry()).write_lines(BODY).await.unwrap();
    assert_eq!(server.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn network_errors_are_retried_with_backoff_then_reported() {
    // A port that was just free: nothing listens there.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let retry = RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(10),
    };
    let started = Instant::now();
    let err = v2(addr, retry).write_lines(BODY).await.unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("cannot reach") && text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    // Two backoffs of 50..100 ms each.
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
}

#[tokio::test]
async fn empty_bodies_send_nothing() {
    let (server, addr) = start(replies(vec![(204, vec![], "")])).await;
    v2(addr, fast_retry()).write_lines("\n  \n").await.unwrap();
    assert!(server.seen.lock().unwrap().is_empty());
}
