//! The HTTP server loop both the aggregator (`web`) and the agent's `/metrics` run: a
//! connection limit with load shedding, and a header-read timeout.
//!
//! `axum::serve` accepts without limit and never times out a connection that sends
//! nothing, so 1,000 idle sockets exhaust the process's file descriptors and
//! `accept` fails for everyone. Here:
//!
//! - at most [`ConnLimits::max_connections`] connections are served at once (also
//!   kept below the open-file limit, see [`raise_nofile_limit`]); one more is
//!   answered `503 Service Unavailable` with `Retry-After` and closed, so clients
//!   are told to come back instead of hanging;
//! - a connection must send a complete request head within
//!   [`ConnLimits::header_read_timeout`] of connecting or of its previous answer, so
//!   slowloris and idle keep-alive connections are closed and free their slot;
//! - an `accept` error (for example `EMFILE`) is logged and retried after a pause
//!   rather than spun on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a connection has to send a whole request head, counted from connecting
    /// or from the end of the previous answer (so it also bounds idle keep-alive).
    pub header_read_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits { max_connections: 4096, header_read_timeout: Duration::from_secs(10) }
    }
}

/// File descriptors kept free for everything that is not a client connection
/// (the store, outgoing HTTP, logs, connections being shed).
const FD_RESERVE: u64 = 128 + SHED_AT_ONCE as u64;

/// Raises the soft open-file limit to the hard one (as Go programs do on start),
/// and returns the soft limit now in force; `None` where it cannot be read. A
/// sandbox that forbids `setrlimit` keeps its limit (systemd's `LimitNOFILE` sets it).
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some(lim.rlim_cur as u64)
}

/// `max_connections`, lowered so that shedding starts before `accept` would fail.
fn effective_max(limits: &ConnLimits) -> usize {
    let by_fds = raise_nofile_limit().map_or(usize::MAX, |n| n.saturating_sub(FD_RESERVE).max(1) as usize);
    // 2^20 keeps the semaphore (and `acquire_many`'s u32) in range.
    limits.max_connections.clamp(1, by_fds.clamp(1, 1 << 20))
}

/// The answer past the limit, written without reading the request.
fn shed_response() -> Vec<u8> {
    let body = r#"{"error": "too many connections ([api] max_connections); retry in a second"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Connections being answered 503 at once.
const SHED_AT_ONCE: usize = 64;

async fn shed_one(mut stream: tokio::net::TcpStream, answer: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.write_all(answer).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then
/// stops accepting, lets connections finish their current request, and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = effective_max(&limits);
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            serving = max,
            "max_connections is above the open-file limit; raise LimitNOFILE (ulimit -n)"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    let shed: Arc<[u8]> = shed_response().into();
    let shed_slots = Arc::new(Semaphore::new(SHED_AT_ONCE));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing 100 ms (raise LimitNOFILE or lower max_connections)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // The 503 is written and the request read off for up to a second, so the
            // client sees the answer rather than a reset; a bounded number at once,
            // past which the connection is just closed.
            if let Ok(shedding) = shed_slots.clone().try_acquire_owned() {
                let shed = shed.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), shed_one(stream, &shed)).await;
                    drop(shedding);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection hands its slot back when it ends.
    let _ = tokio::time::timeout(Duration::from_secs(15), slots.acquire_many(max as u32)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: ConnLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        out
    }

    #[tokio::test]
    async fn connections_past_the_limit_get_503_and_slots_come_back() {
        let limits = ConnLimits { max_connections: 3, header_read_timeout: Duration::from_millis(300) };
        let (addr, _stop) = start(limits).await;
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let shed = get(addr).await;
        assert!(shed.starts_with("HTTP/1.1 503"), "{shed}");
        assert!(shed.contains("retry-after: 1"), "{shed}");
        // The idle connections are closed by the header-read timeout, freeing their slots.
        for s in &mut idle {
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            assert!(matches!(n, Ok(Ok(_)) | Ok(Err(_))), "an idle connection was not closed");
        }
        let ok = get(addr).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }

    #[tokio::test]
    async fn slowloris_is_closed_by_the_header_read_timeout() {
        let limits = ConnLimits { max_connections: 8, header_read_timeout: Duration::from_millis(300) };
        let (addr, _stop) = start(limits).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(5) {
            // One header byte every 100 ms: never a complete head.
            if s.write_all(b"x").await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => {} // hyper may answer 408 before closing
                Err(_) => {}
            }
        }
        assert!(closed, "a slowloris connection stayed open for 5 s");
    }
}
