//! Writers for InfluxDB's two write APIs, over one HTTP client:
//!
//! * **v1**: `POST /write?db=&rp=&precision=ns`, user and password by HTTP Basic auth
//!   (InfluxDB 1.x; 2.x and 3.x also answer it through their v1 compatibility API);
//! * **v2**: `POST /api/v2/write?org=&bucket=&precision=ns` with
//!   `Authorization: Token` (InfluxDB 1.8+, 2.x, 3.x, Cloud, VictoriaMetrics, and
//!   wattledger's own ingest).
//!
//! # Why reqwest and not the `influxdb2` crate
//!
//! The `influxdb2` crate (0.5) was evaluated: it is built on reqwest 0.11 / hyper 0.14
//! (a second, older HTTP stack beside the reqwest 0.12 we already use), gzips only
//! its own `DataPoint` stream and not raw line protocol, turns every non-204 answer
//! into one opaque `Http { status, text }` error without Retry-After, has no retry or
//! batch splitting, and speaks no v1 `/write` and no InfluxQL, so it could cover
//! neither InfluxDB 1.x nor the reads. The two write endpoints are one POST each;
//! writing them here keeps one HTTP stack and gives exact control of the response
//! handling below.
//!
//! # Response handling (both APIs)
//!
//! | answer | what happens |
//! | --- | --- |
//! | 2xx | done |
//! | 400, 422 and other 4xx | [`WriteError::Rejected`] with the server's message; not retried |
//! | 401, 403 | [`WriteError::Auth`]; not retried |
//! | 404 | [`WriteError::NotFound`] (database, bucket or API missing) |
//! | 413 | the batch is split in halves at line boundaries and each half is sent; a single line still too large is `Rejected` |
//! | 429, 503 | retried after the server's `Retry-After` (seconds or HTTP date), else with backoff |
//! | other 5xx, network errors, timeouts | retried with exponential backoff and full jitter |
//!
//! Retries are bounded by [`RetryPolicy`] (attempts and total time); when they run
//! out the batch fails with [`WriteError::Unavailable`], which is retryable, so the
//! caller's spool keeps it. Bodies are gzipped unless disabled.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;

use super::lineproto;
use super::route::{routed_writer, validate_routes};
use super::{WriteError, Writer};
use crate::config::{ConfigError, KeyError, Secret};

/// Write API: `v1` (`/write`, InfluxDB 1.x) or `v2` (`/api/v2/write`, InfluxDB
/// 1.8+, 2.x, 3.x, Cloud, VictoriaMetrics and wattledger's own ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriteApi {
    V1,
    #[default]
    V2,
}

/// Where an InfluxDB-compatible server is and how to reach it: the keys an
/// `influxdb_v1` / `influxdb_v2` sink and the aggregator's `[store]` share.
/// `section` names the config section in error messages.
#[derive(Debug, Clone)]
pub struct InfluxConn {
    pub section: String,
    pub url: Option<String>,
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<std::path::PathBuf>,
    pub timeout: Duration,
    pub gzip: bool,
    pub max_retries: u32,
    pub max_retry_time: Duration,
}

/// Builds an [`InfluxConn`] from a config section that names the shared keys the same way
/// (`[[sinks]]` of an InfluxDB type, `[store]`); only the section name and the URL differ.
macro_rules! influx_conn {
    ($cfg:expr, $section:expr, $url:expr) => {
        $crate::ship::influx::InfluxConn {
            section: $section,
            url: $url,
            database: $cfg.database.clone(),
            retention_policy: $cfg.retention_policy.clone(),
            org: $cfg.org.clone(),
            bucket: $cfg.bucket.clone(),
            token: $cfg.token.clone(),
            token_file: $cfg.token_file.clone(),
            username: $cfg.username.clone(),
            password: $cfg.password.clone(),
            password_file: $cfg.password_file.clone(),
            timeout: $cfg.timeout,
            gzip: $cfg.gzip,
            max_retries: $cfg.max_retries,
            max_retry_time: $cfg.max_retry_time,
        }
    };
}
pub(crate) use influx_conn;

/// How long to keep trying one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles on each retry up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts after this much time since the first attempt, and no wait
    /// (not even a server's Retry-After) reaches past it.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): exponential, full jitter in
    /// its upper half, so that many agents recovering together do not stampede.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << retry.min(20));
        let cap = exp.min(self.max_backoff);
        let half = cap / 2;
        half + cap.saturating_sub(half).mul_f64(rand::random::<f64>())
    }
}

/// How a request authenticates.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// `Authorization: Token ...` (InfluxDB 2.x/3.x/Cloud tokens, also accepted by
    /// their v1 compatibility endpoints).
    Token(Secret),
    /// HTTP Basic with a username and password (InfluxDB 1.x users, 2.x v1 auth).
    Basic { username: String, password: Secret },
}

impl Auth {
    /// From the connection keys: a token, or a username with a password, or nothing.
    pub fn from_conn(cfg: &InfluxConn) -> Result<Auth, ConfigError> {
        let sec = cfg.section.as_str();
        let token = Secret::resolve("token", cfg.token.as_ref(), cfg.token_file.as_deref())?;
        let password = Secret::resolve("password", cfg.password.as_ref(), cfg.password_file.as_deref())?;
        match (token, &cfg.username, password) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                Err(ConfigError::Invalid(format!("{sec}: set either `token` or `username` and `password`, not both")))
            }
            (Some(t), None, None) => Ok(Auth::Token(t)),
            (None, Some(u), Some(p)) => Ok(Auth::Basic { username: u.clone(), password: p }),
            (None, Some(_), None) => Err(ConfigError::Invalid(format!(
                "{sec}: `username` is set but `password` (or `password_file`) is not"
            ))),
            (None, None, Some(_)) => {
                Err(ConfigError::Invalid(format!("{sec}: `password` is set but `username` is not")))
            }
            (None, None, None) => Ok(Auth::None),
        }
    }

    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Token(t) => req.header(reqwest::header::AUTHORIZATION, format!("Token {}", t.expose())),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("none"),
            Auth::Token(_) => f.write_str("token"),
            Auth::Basic { username, .. } => write!(f, "user {username}"),
        }
    }
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub enum Target {
    V1 { database: String, retention_policy: Option<String> },
    V2 { org: Option<String>, bucket: String },
}

/// Settings shared by both APIs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub timeout: Duration,
    pub gzip: bool,
    pub retry: RetryPolicy,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { timeout: Duration::from_secs(10), gzip: true, retry: RetryPolicy::default() }
    }
}

/// An HTTP client for one InfluxDB-compatible server; the InfluxQL reader shares it.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("wattledger/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::Invalid(format!("cannot build the HTTP client: {e}")))
}

/// Checks and normalises a base URL (`http://host:8086`, maybe with a path prefix).
pub fn base_url(url: &str) -> Result<String, ConfigError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| ConfigError::Invalid(format!("[store] url `{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid(format!("[store] url `{url}` must start with http:// or https://")));
    }
    if parsed.query().is_some() {
        return Err(ConfigError::Invalid(format!(
            "[store] url `{url}` must not have a query; put the database or bucket in their own keys"
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// A [`Writer`] for InfluxDB's v1 or v2 write API.
pub struct InfluxWriter {
    client: reqwest::Client,
    url: String,
    auth: Auth,
    target: Target,
    options: WriterOptions,
    server: String,
}

impl InfluxWriter {
    pub fn new(url: &str, target: Target, auth: Auth, options: WriterOptions) -> Result<Self, ConfigError> {
        let base = base_url(url)?;
        let server = match &target {
            Target::V1 { database, retention_policy } => match retention_policy {
                Some(rp) => format!("influxdb v1 {base} db={database} rp={rp}"),
                None => format!("influxdb v1 {base} db={database}"),
            },
            Target::V2 { org, bucket } => match org {
                Some(org) => format!("influxdb v2 {base} org={org} bucket={bucket}"),
                None => format!("influxdb v2 {base} bucket={bucket}"),
            },
        };
        let endpoint = match target {
            Target::V1 { .. } => "/write",
            Target::V2 { .. } => "/api/v2/write",
        };
        Ok(InfluxWriter {
            client: http_client(options.timeout)?,
            url: format!("{base}{endpoint}"),
            auth,
            target,
            options,
            server,
        })
    }

    /// From connection keys and the API to write with.
    pub fn from_conn(cfg: &InfluxConn, api: WriteApi) -> Result<Self, ConfigError> {
        let sec = cfg.section.as_str();
        let url = cfg.url.as_deref().filter(|u| !u.is_empty()).ok_or_else(|| {
            ConfigError::Invalid(format!("{sec} `url` is required, e.g. url = \"http://127.0.0.1:8086\""))
        })?;
        let target = match api {
            WriteApi::V1 => Target::V1 {
                database: cfg
                    .database
                    .clone()
                    .ok_or_else(|| ConfigError::Invalid(format!("{sec} `database` is required for the v1 API")))?,
                retention_policy: cfg.retention_policy.clone(),
            },
            WriteApi::V2 => Target::V2 {
                org: cfg.org.clone(),
                bucket: cfg.bucket.clone().or_else(|| cfg.database.clone()).ok_or_else(|| {
                    ConfigError::Invalid(format!("{sec} `bucket` (or `database`) is required for the v2 API"))
                })?,
            },
        };
        let options = WriterOptions {
            timeout: cfg.timeout,
            gzip: cfg.gzip,
            retry: RetryPolicy {
                max_retries: cfg.max_retries,
                max_elapsed: cfg.max_retry_time,
                ..RetryPolicy::default()
            },
        };
        InfluxWriter::new(url, target, Auth::from_conn(cfg)?, options)
    }

    fn query_params(&self) -> Vec<(&'static str, &str)> {
        let mut q = Vec::with_capacity(3);
        match &self.target {
            Target::V1 { database, retention_policy } => {
                q.push(("db", database.as_str()));
                if let Some(rp) = retention_policy {
                    q.push(("rp", rp.as_str()));
                }
            }
            Target::V2 { org, bucket } => {
                if let Some(org) = org {
                    q.push(("org", org.as_str()));
                }
                q.push(("bucket", bucket.as_str()));
            }
        }
        q.push(("precision", "ns"));
        q
    }

    /// One batch with retries; a 413 comes back as `Sent::TooLarge` for the caller
    /// to split.
    async fn send_with_retries(&self, body: &str) -> Result<Sent, WriteError> {
        let payload = self.payload(body)?;
        let policy = self.options.retry;
        let started = Instant::now();
        let mut retry = 0u32;
        loop {
            let outcome = self.send_once(payload.clone()).await;
            let wait = match outcome {
                Attempt::Done(r) => return r,
                Attempt::Retry { message, retry_after } => {
                    let elapsed = started.elapsed();
                    let wait = retry_after.unwrap_or_else(|| policy.backoff(retry));
                    if retry >= policy.max_retries || elapsed + wait > policy.max_elapsed {
                        return Err(WriteError::Unavailable {
                            server: self.server.clone(),
                            message: format!(
                                "{message} (gave up after {} attempt{} in {:.1}s)",
                                retry + 1,
                                if retry == 0 { "" } else { "s" },
                                elapsed.as_secs_f64()
                            ),
                        });
                    }
                    tracing::debug!(server = %self.server, %message, wait_ms = wait.as_millis() as u64, "write failed; retrying");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    fn payload(&self, body: &str) -> Result<bytes::Bytes, WriteError> {
        if !self.options.gzip {
            return Ok(bytes::Bytes::copy_from_slice(body.as_bytes()));
        }
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), flate2::Compression::fast());
        enc.write_all(body.as_bytes())
            .and_then(|_| enc.finish())
            .map(bytes::Bytes::from)
            .map_err(|e| WriteError::Unavailable { server: self.server.clone(), message: format!("gzip failed: {e}") })
    }

    async fn send_once(&self, payload: bytes::Bytes) -> Attempt {
        let mut req = self
            .client
            .post(&self.url)
            .query(&self.query_params())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(payload);
        if self.options.gzip {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let resp = match self.auth.apply(req).send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    message: format!("cannot reach {}: {}", self.url, error_chain(&e)),
                    retry_after: None,
                }
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Done(Ok(Sent::Ok));
        }
        let retry_after = retry_after(resp.headers());
        let message = server_message(resp).await;
        let server = self.server.clone();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Attempt::Done(Err(WriteError::Auth { server, status: status.as_u16(), message }))
            }
            StatusCode::NOT_FOUND => {
                Attempt::Done(Err(WriteError::NotFound { server, message: not_found_hint(&self.target, &message) }))
            }
            StatusCode::PAYLOAD_TOO_LARGE => Attempt::Done(Ok(Sent::TooLarge(message))),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Attempt::Retry { message: format!("HTTP {}: {message}", status.as_u16()), retry_after }
            }
            s if s.is_server_error() => {
                Attempt::Retry { message: format!("HTTP {}: {message}", status.as_u16()), retry_after: None }
            }
            s => {
                Attempt::Done(Err(WriteError::Rejected { server, message: format!("HTTP {}: {message}", s.as_u16()) }))
            }
        }
    }

    /// Sends `body`; on 413 halves it at line boundaries, depth first, until the
    /// parts fit or a single line is left. A stack of line ranges instead of
    /// recursion keeps the future small.
    async fn write_splitting(&self, body: &str) -> Result<(), WriteError> {
        let message = match self.send_with_retries(body).await? {
            Sent::Ok => return Ok(()),
            Sent::TooLarge(message) => message,
        };
        let lines = lineproto::split_lines(body);
        let too_large = |line: &str, message: &str| WriteError::Rejected {
            server: self.server.clone(),
            message: format!("a single line of {} bytes is too large for the server (HTTP 413: {message})", line.len()),
        };
        if lines.len() <= 1 {
            return Err(too_large(body.trim_end(), &message));
        }
        tracing::debug!(server = %self.server, lines = lines.len(), %message, "batch too large; splitting");
        let mid = lines.len() / 2;
        let mut pending = vec![(mid, lines.len()), (0, mid)];
        while let Some((start, end)) = pending.pop() {
            match self.send_with_retries(&join_lines(&lines[start..end])).await? {
                Sent::Ok => {}
                Sent::TooLarge(message) if end - start == 1 => return Err(too_large(lines[start], &message)),
                Sent::TooLarge(_) => {
                    let mid = start + (end - start) / 2;
                    pending.push((mid, end));
                    pending.push((start, mid));
                }
            }
        }
        Ok(())
    }
}

enum Sent {
    Ok,
    TooLarge(String),
}

enum Attempt {
    Done(Result<Sent, WriteError>),
    Retry { message: String, retry_after: Option<Duration> },
}

fn join_lines(lines: &[&str]) -> String {
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    body
}

fn not_found_hint(target: &Target, message: &str) -> String {
    match target {
        Target::V1 { database, .. } => format!(
            "{message}; create the database first, e.g. `influx -execute 'CREATE DATABASE \"{database}\"'` or POST /query with q=CREATE DATABASE \"{database}\""
        ),
        Target::V2 { bucket, .. } => format!(
            "{message}; check that bucket `{bucket}` and the org exist (`influx bucket create -n {bucket}`) and that the server has the /api/v2/write endpoint (InfluxDB 1.8+ or 2.x)"
        ),
    }
}

/// A reqwest error with its causes (`connection refused`), which its own `Display`
/// leaves out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// The server's explanation: InfluxDB answers `{"error": "..."}` (v1) or
/// `{"code": "...", "message": "..."}` (v2); anything else is shown as text, cut
/// to a readable length.
pub async fn server_message(resp: reqwest::Response) -> String {
    const LIMIT: usize = 4096;
    let mut resp = resp;
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.extend_from_slice(&chunk);
        if buf.len() >= LIMIT {
            buf.truncate(LIMIT);
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        for key in ["error", "message"] {
            if let Some(m) = v.get(key).and_then(|m| m.as_str()) {
                return m.to_string();
            }
        }
    }
    if text.is_empty() {
        "(no message)".into()
    } else {
        text
    }
}

#[async_trait]
impl Writer for InfluxWriter {
    async fn write_lines(&self, body: &str) -> Result<(), WriteError> {
        if body.trim().is_empty() {
            return Ok(());
        }
        self.write_splitting(body).await
    }

    fn describe(&self) -> String {
        self.server.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        for retry in 0..8 {
            let cap = Duration::from_millis(100 * (1 << retry)).min(Duration::from_secs(1));
            let d = p.backoff(retry);
            assert!(d >= cap / 2 && d <= cap, "retry {retry}: {d:?} outside [{:?}, {cap:?}]", cap / 2);
        }
        assert!(p.backoff(u32::MAX) <= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(60);
        h.insert(reqwest::header::RETRY_AFTER, httpdate::fmt_http_date(soon).parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(55) && d <= Duration::from_secs(60), "{d:?}");
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(base_url("http://127.0.0.1:8086/").unwrap(), "http://127.0.0.1:8086");
        assert!(base_url("127.0.0.1:8086").is_err());
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("http://x/?db=a").is_err());
    }
}

/// An `influxdb_v1` or `influxdb_v2` entry of `[[sinks]]`: the API comes from the
/// sink's `type`, the keys are the connection's.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSinkConfig {
    /// Names the sink in logs, metrics and its spool cursor (`ack.<name>`);
    /// defaults to the type.
    pub name: Option<String>,
    pub url: String,
    /// v1: the database (required); v2: the bucket when `bucket` is absent.
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<std::path::PathBuf>,
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    #[serde(default = "default_true")]
    pub gzip: bool,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default = "default_max_retry_time", with = "crate::config::duration")]
    pub max_retry_time: Duration,
    /// v1: measurements written to another retention policy than
    /// `retention_policy`, e.g. `{ energy_ledger = "forever" }` (see `route`).
    #[serde(default)]
    pub retention_policies: std::collections::BTreeMap<String, String>,
    /// v2: measurements written to another bucket than `bucket`.
    #[serde(default)]
    pub buckets: std::collections::BTreeMap<String, String>,
}

pub fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn default_max_retries() -> u32 {
    4
}
pub fn default_max_retry_time() -> Duration {
    Duration::from_secs(30)
}
pub fn default_true() -> bool {
    true
}

impl InfluxSinkConfig {
    pub fn conn(&self, section: &str) -> InfluxConn {
        influx_conn!(self, section.to_string(), Some(self.url.clone()))
    }

    /// The sink's writer: one [`InfluxWriter`], or a [`RoutedWriter`] over one per
    /// retention policy (v1) or bucket (v2) when measurements are routed.
    pub fn writer(&self, section: &str, api: WriteApi) -> Result<Arc<dyn Writer>, ConfigError> {
        let routes = match api {
            WriteApi::V1 => &self.retention_policies,
            WriteApi::V2 => &self.buckets,
        };
        routed_writer(&self.conn(section), api, routes)
    }

    /// What can be checked before secrets are read: the URL and the target keys.
    /// Checks the keys; the error's `at` is the key within the sink's section.
    pub fn validate(&self, section: &str, api: WriteApi) -> Result<(), KeyError> {
        base_url(&self.url).map_err(|e| KeyError::new("url", format!("{section} {e}")))?;
        match api {
            WriteApi::V1 if !self.buckets.is_empty() => {
                return Err(KeyError::new("buckets", format!("{section} `buckets` is for type = \"influxdb_v2\"; a v1 sink routes measurements with `retention_policies`")))
            }
            WriteApi::V2 if !self.retention_policies.is_empty() => {
                return Err(KeyError::new("retention_policies", format!("{section} `retention_policies` is for type = \"influxdb_v1\"; a v2 sink routes measurements with `buckets`")))
            }
            _ => {}
        }
        validate_routes(section, "retention_policies", &self.retention_policies)?;
        validate_routes(section, "buckets", &self.buckets)?;
        match api {
            WriteApi::V1 if self.database.is_none() => {
                Err(KeyError::new("database", format!("{section} `database` is required for type = \"influxdb_v1\"")))
            }
            WriteApi::V2 if self.bucket.is_none() && self.database.is_none() => {
                Err(KeyError::new("bucket", format!("{section} `bucket` is required for type = \"influxdb_v2\"")))
            }
            _ => Ok(()),
        }
    }

    /// Checks that the server answers `/ping` (InfluxDB 1.x/2.x/3.x, VictoriaMetrics
    /// and wattledger's ingest all do). Credentials are checked on the first write:
    /// `/ping` takes none, and a test write would leave a point behind.
    pub async fn healthcheck(&self) -> Result<String, String> {
        let base = base_url(&self.url).map_err(|e| e.to_string())?;
        let client = http_client(self.timeout).map_err(|e| e.to_string())?;
        match client.get(format!("{base}/ping")).send().await {
            Ok(r) if r.status().is_success() => {
                Ok(format!("{base} answers /ping; credentials are checked on the first write"))
            }
            Ok(r) => Err(format!("{base}/ping answered HTTP {}; is this an InfluxDB-compatible server?", r.status())),
            Err(e) => Err(format!("{base} does not answer: {}; check `url` and that the server runs", error_chain(&e))),
        }
    }
}
