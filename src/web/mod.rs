//! The aggregator's HTTP side: the JSON API ([`api`]), the InfluxDB-compatible
//! ingest ([`ingest`]) and the web UI ([`ui`]), one axum router, served by
//! [`crate::http::serve`] (connection limit, load shedding, header-read timeout).
//!
//! [`router`] returns a stateless `Router` so that other parts (the web UI) merge
//! in with `router(state).merge(ui::router())`.
//!
//! # Auth
//!
//! Three tokens, each optional: `[api] token` opens everything; `read_token` opens
//! the JSON API (what the page reads) and nothing else; `write_token` opens the
//! ingest and nothing else. A side with no token that applies is open, which the
//! aggregator allows only on a loopback `listen` unless `allow_unauthenticated =
//! true` (see [`crate::aggregate::config::AggregatorConfig::unauthenticated_exposure`]).
//! The Prometheus `/metrics` ([`metrics`]) is read like the API. `/api/health`,
//! `/api/status` ([`status`]) and the page's static files need no token. The checks live in two
//! middlewares ([`require_read`], [`require_write`]).

pub mod api;
pub mod ingest;
pub mod metrics;
pub mod status;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::aggregate::fleet::{IdleRule, IDLE_GPU};
use crate::aggregate::Aggregator;
use crate::config::{ConfigError, Secret};
use crate::ship::lineproto::Limits;

/// What `GET /api/alerts` serves: the alert engine's current state as JSON. The
/// engine sits beside this module, not below it, so the service that runs both
/// hands its view in.
pub type AlertsView = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The demo's replay progress for `GET /api/status` (`null` once live); only the demo sets one.
pub type ReplayView = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub aggregator: Arc<Aggregator>,
    /// Tokens accepted on the JSON API; empty: the API is open.
    pub read_tokens: Arc<Vec<Secret>>,
    /// Tokens accepted on the ingest; empty: the ingest is open.
    pub write_tokens: Arc<Vec<Secret>>,
    pub ingest: bool,
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    pub line_limits: Limits,
    /// Bounds how many bodies are decoded and parsed at once, off the runtime.
    pub parse_slots: Arc<tokio::sync::Semaphore>,
    /// The alert engine's state, when the service runs one (`GET /api/alerts`).
    pub alerts: Option<AlertsView>,
    /// Set by the demo: its replay progress (`GET /api/status`).
    pub status: Option<ReplayView>,
    /// When `GET /api/fleet` flags a GPU idle: the alert engine's `gpu_idle_burn`
    /// rule where the service runs one, else its defaults.
    pub idle_rule: IdleRule,
}

impl AppState {
    /// State from the aggregator's `[api]` section.
    pub fn new(aggregator: Arc<Aggregator>) -> Result<Self, ConfigError> {
        let cfg = aggregator.config();
        let api = &cfg.api;
        let nonempty = |t: Option<Secret>| t.filter(|t| !t.is_empty());
        let all = nonempty(cfg.api_token()?);
        let read = nonempty(cfg.api_read_token()?);
        let write = nonempty(cfg.api_write_token()?);
        let read_tokens = Arc::new(all.iter().chain(read.iter()).cloned().collect::<Vec<_>>());
        let write_tokens = Arc::new(all.iter().chain(write.iter()).cloned().collect::<Vec<_>>());
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(AppState {
            ingest: api.ingest,
            max_body_bytes: api.max_body_bytes,
            body_timeout: api.body_timeout,
            line_limits: api.line_limits(),
            parse_slots: Arc::new(tokio::sync::Semaphore::new(cpus.max(1))),
            read_tokens,
            write_tokens,
            aggregator,
            alerts: None,
            status: None,
            idle_rule: IDLE_GPU,
        })
    }

    /// The same state, serving these alerts.
    pub fn with_alerts(mut self, view: AlertsView) -> Self {
        self.alerts = Some(view);
        self
    }

    /// The same state, flagging idle GPUs by `rule`.
    pub fn with_idle_rule(mut self, rule: IdleRule) -> Self {
        self.idle_rule = rule;
        self
    }

    /// The same state, reporting the demo's replay progress.
    pub fn with_replay(mut self, view: ReplayView) -> Self {
        self.status = Some(view);
        self
    }
}

/// The API and (when enabled) the ingest, with the token checks applied.
pub fn router(state: AppState) -> Router {
    let read = api::routes()
        .merge(metrics::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_read));
    let write = if state.ingest {
        ingest::routes(state.max_body_bytes)
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_write))
    } else {
        Router::new()
    };
    Router::new()
        .merge(read)
        .merge(write)
        .merge(api::open_routes())
        .merge(status::open_routes())
        .merge(ui::router())
        .with_state(state)
}

/// Serves [`router`] on `listener` within the `[api]` connection limits until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.aggregator.config().api.conn_limits();
    crate::http::serve(listener, router(state), limits, shutdown).await
}

/// The token a request presents: `Authorization: Bearer …` or `Token …`, or the
/// `token` (browser page) or `p` (InfluxDB 1.x clients) query parameter.
fn presented_token(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        for scheme in ["Bearer ", "Token ", "bearer ", "token "] {
            if let Some(t) = v.strip_prefix(scheme) {
                return Some(t.trim().to_string());
            }
        }
    }
    let query = req.uri().query()?;
    url_pairs(query).into_iter().find(|(k, _)| k == "token" || k == "p").map(|(_, v)| v)
}

/// Decoded `key=value` pairs of a query string.
pub(crate) fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares without an early exit, so timing does not reveal the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 401 unless `tokens` is empty or one of them is presented.
fn check(tokens: &[Secret], which: &str, req: &Request) -> Option<Response> {
    if tokens.is_empty() {
        return None;
    }
    let presented = presented_token(req);
    // Every token is compared, so timing does not say which one nearly matched.
    let ok =
        presented.is_some_and(|t| tokens.iter().fold(false, |acc, e| acc | same(t.as_bytes(), e.expose().as_bytes())));
    if ok {
        return None;
    }
    let message =
        format!("unauthorized access: send the [api] token (or {which}) as `Authorization: Token <token>` (or Bearer)");
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Token")],
            axum::Json(serde_json::json!({"code": "unauthorized", "message": message})),
        )
            .into_response(),
    )
}

/// Middleware for the JSON API: `token` or `read_token`.
pub async fn require_read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state.read_tokens, "read_token", &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// Middleware for the ingest: `token` or `write_token`.
pub async fn require_write(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state.write_tokens, "write_token", &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode() {
        assert_eq!(
            url_pairs("from=2026-01-01T00%3A00%3A00%2B01%3A00&token=a+b&x"),
            vec![
                ("from".to_string(), "2026-01-01T00:00:00+01:00".to_string()),
                ("token".to_string(), "a b".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
