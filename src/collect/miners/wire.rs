//! Bytes on the wire: one request, one bounded reply.
//!
//! Every call takes an absolute deadline (so a miner's whole reading fits in one timeout,
//! however many requests it needs) and a reply-size cap (so a hostile or broken miner
//! cannot make us buffer without bound). Nothing here knows what a miner is.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Why a request got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no reply within the timeout ({stage})")]
    Timeout { stage: &'static str },
    #[error("reply larger than the {cap}-byte cap")]
    TooLarge { cap: usize },
    #[error("connection closed without a reply")]
    Empty,
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    #[error("not an HTTP reply")]
    NotHttp,
    /// An HTTP reply that cannot be read: what is wrong with it.
    #[error("malformed HTTP reply: {0}")]
    BadHttp(&'static str),
    #[error("HTTP {status}")]
    HttpStatus { status: u16 },
}

async fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, WireError> {
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect((host, port)))
        .await
        .map_err(|_| WireError::Timeout { stage: "connect" })?
        .map_err(WireError::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects and sends the whole request, both within `deadline`; every client starts so.
async fn connect_and_send(host: &str, port: u16, request: &[u8], deadline: Instant) -> Result<TcpStream, WireError> {
    let mut stream = connect(host, port, deadline).await?;
    tokio::time::timeout_at(deadline, stream.write_all(request))
        .await
        .map_err(|_| WireError::Timeout { stage: "send" })?
        .map_err(WireError::Io)?;
    Ok(stream)
}

/// Sends `payload` and reads until the peer closes, sends a NUL byte (cgminer's terminator),
/// or `cap` bytes arrived. Returns the bytes before the NUL.
pub async fn tcp_request(
    host: &str,
    port: u16,
    payload: &[u8],
    deadline: Instant,
    cap: usize,
) -> Result<Vec<u8>, WireError> {
    let mut stream = connect_and_send(host, port, payload, deadline).await?;
    // Read straight into the reply buffer (no separate chunk to zero and copy from).
    let mut buf: Vec<u8> = Vec::with_capacity(8192.min(cap.max(1)));
    loop {
        if buf.capacity() - buf.len() < 2048 {
            // Doubling, but never past what the cap allows (+1 byte to see an overflow).
            let room = cap.saturating_add(1).saturating_sub(buf.len()).max(1);
            buf.reserve(buf.capacity().max(8192).min(room));
        }
        let before = buf.len();
        let n = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf))
            .await
            .map_err(|_| WireError::Timeout { stage: "read" })?;
        let n = match n {
            Ok(n) => n,
            // A reset after a complete reply is still a reply.
            Err(e) if !buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(WireError::Io(e)),
        };
        if n == 0 {
            break;
        }
        if let Some(pos) = buf[before..].iter().position(|&b| b == 0) {
            buf.truncate(before + pos);
            if buf.len() > cap {
                return Err(WireError::TooLarge { cap });
            }
            return Ok(buf);
        }
        if buf.len() > cap {
            return Err(WireError::TooLarge { cap });
        }
    }
    if buf.is_empty() {
        return Err(WireError::Empty);
    }
    Ok(buf)
}

/// Whatsminer API v3 framing: a little-endian u32 length, then that many bytes of JSON, in
/// both directions. The announced length is checked against `cap` before anything is read.
pub async fn framed_request(
    host: &str,
    port: u16,
    payload: &[u8],
    deadline: Instant,
    cap: usize,
) -> Result<Vec<u8>, WireError> {
    let len = u32::try_from(payload.len()).map_err(|_| WireError::TooLarge { cap: u32::MAX as usize })?;
    let mut req = len.to_le_bytes().to_vec();
    req.extend_from_slice(payload);
    let mut stream = connect_and_send(host, port, &req, deadline).await?;
    let mut len = [0u8; 4];
    match tokio::time::timeout_at(deadline, stream.read_exact(&mut len)).await {
        Err(_) => return Err(WireError::Timeout { stage: "read" }),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Empty),
        Ok(Err(e)) => return Err(WireError::Io(e)),
        Ok(Ok(_)) => {}
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > cap {
        return Err(WireError::TooLarge { cap });
    }
    let mut body = vec![0u8; n];
    tokio::time::timeout_at(deadline, stream.read_exact(&mut body))
        .await
        .map_err(|_| WireError::Timeout { stage: "read" })?
        .map_err(WireError::Io)?;
    Ok(body)
}

/// One HTTP reply, body already de-chunked.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A minimal HTTP/1.1 client (`Connection: close`) for miners' local web APIs: the whole
/// exchange is bounded by `deadline` and `cap`, which general-purpose clients do not offer
/// per request without extra machinery. Plain HTTP only: miners' APIs are plain HTTP on the LAN.
pub async fn http_request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    deadline: Instant,
    cap: usize,
) -> Result<HttpReply, WireError> {
    http_request_with(host, port, method, path, &[], body, deadline, cap).await
}

/// [`http_request`] with extra request headers (an API token). Header names and values
/// holding CR or LF are dropped rather than sent.
#[allow(clippy::too_many_arguments)]
pub async fn http_request_with(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
    deadline: Instant,
    cap: usize,
) -> Result<HttpReply, WireError> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: wattledger\r\n");
    for (k, v) in headers.iter().filter(|(k, v)| !(k.contains(['\r', '\n']) || v.contains(['\r', '\n']))) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((ctype, b)) = body {
        req.push_str(&format!("Content-Type: {ctype}\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut payload = req.into_bytes();
    if let Some((_, b)) = body {
        payload.extend_from_slice(b);
    }
    let mut stream = connect_and_send(host, port, &payload, deadline).await?;
    // Headers are capped too; the body cap is checked as it arrives.
    let mut buf = Vec::with_capacity(4096);
    // On the heap: thousands of these futures may be alive at once.
    let mut chunk = vec![0u8; 16384];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| WireError::Timeout { stage: "read" })?
            .map_err(WireError::Io)?;
        if n == 0 {
            break;
        }
        if buf.len().saturating_add(n) > cap.saturating_add(16384) {
            return Err(WireError::TooLarge { cap });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(done) = http_complete(&buf) {
            if done {
                break;
            }
        }
    }
    parse_http(&buf, cap)
}

/// `Some(true)` when `buf` holds a complete reply with a known length. Lengths come from the
/// peer: every sum saturates, so `Content-Length: 18446744073709551615` is merely incomplete.
pub fn http_complete(buf: &[u8]) -> Option<bool> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            let len: usize = v.trim().parse().ok()?;
            return Some(buf.len() >= head_end.saturating_add(len));
        }
    }
    if head.contains("transfer-encoding: chunked") {
        return Some(find(&buf[head_end..], b"0\r\n\r\n").is_some());
    }
    Some(false)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a complete HTTP/1.x reply (status, headers, body with Content-Length, chunked, or to EOF).
pub fn parse_http(buf: &[u8], cap: usize) -> Result<HttpReply, WireError> {
    if buf.is_empty() {
        return Err(WireError::Empty);
    }
    if !buf.starts_with(b"HTTP/1.") {
        return Err(WireError::NotHttp);
    }
    let head_end = find(buf, b"\r\n\r\n").ok_or(WireError::BadHttp("no end of the header"))? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status: u16 =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(WireError::BadHttp("no status code"))?;
    let lower = head.to_ascii_lowercase();
    let raw = &buf[head_end..];
    let body = if lower.contains("transfer-encoding: chunked") {
        dechunk(raw, cap)?
    } else {
        let len =
            lower.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
        match len {
            Some(len) => raw[..len.min(raw.len())].to_vec(),
            None => raw.to_vec(),
        }
    };
    if body.len() > cap {
        return Err(WireError::TooLarge { cap });
    }
    Ok(HttpReply { status, body })
}

/// De-chunks a chunked body. Chunk sizes come from the peer (up to 16 hex digits here):
/// checked against `cap` with saturating sums, never added unchecked.
pub fn dechunk(mut raw: &[u8], cap: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    while let Some(eol) = find(raw, b"\r\n") {
        let size_txt = String::from_utf8_lossy(&raw[..eol]);
        // A size that does not fit in usize is larger than any cap.
        let size = match usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => {
                return Err(WireError::TooLarge { cap })
            }
            Err(_) => return Err(WireError::BadHttp("a chunk size that is not hexadecimal")),
        };
        raw = &raw[eol + 2..];
        if size == 0 {
            break;
        }
        if out.len().saturating_add(size) > cap {
            return Err(WireError::TooLarge { cap });
        }
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take]);
        raw = &raw[take..];
        raw = raw.strip_prefix(b"\r\n").unwrap_or(raw);
    }
    Ok(out)
}

/// A deadline `timeout` from now.
pub fn deadline_in(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_content_length_and_chunked() {
        let r = parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}xx", 100).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"{}".as_slice()));
        let r = parse_http(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(r.body, b"{\"a\":1}");
        assert!(matches!(parse_http(b"{\"STATUS\":1}", 100), Err(WireError::NotHttp)));
        assert!(matches!(parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 2", 100), Err(WireError::BadHttp(_))));
        assert!(matches!(parse_http(b"HTTP/1.1 abc\r\n\r\n", 100), Err(WireError::BadHttp(_))));
        assert!(matches!(parse_http(b"HTTP/1.1 200 OK\r\n\r\n0123456789", 5), Err(WireError::TooLarge { .. })));
    }
}
