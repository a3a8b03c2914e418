//! The aggregator's HTTP side: the JSON API ([`api`]), the InfluxDB-compatible
//! ingest ([`ingest`]) and the web UI ([`ui`]), one axum router.
//!
//! [`router`] returns a stateless `Router` so that other parts (the web UI) merge
//! in with `router(state).merge(ui::router())`. Every `/api/*` route except
//! `/api/health` needs the token when `[api] token` is set; the check lives in one
//! middleware ([`require_token`]).

pub mod api;
pub mod ingest;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::aggregate::Aggregator;
use crate::config::{ConfigError, Secret};

/// What `GET /api/alerts` serves: the alert engine's current state as JSON. The
/// engine sits beside this module, not below it, so the service that runs both
/// hands its view in.
pub type AlertsView = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub aggregator: Arc<Aggregator>,
    /// `None`: no token configured, the API is open (loopback use only).
    pub token: Option<Arc<Secret>>,
    pub ingest: bool,
    pub max_body_bytes: usize,
    /// The alert engine's state, when the service runs one (`GET /api/alerts`).
    pub alerts: Option<AlertsView>,
}

impl AppState {
    /// State from the aggregator's `[api]` section.
    pub fn new(aggregator: Arc<Aggregator>) -> Result<Self, ConfigError> {
        let api = &aggregator.config().api;
        let token = aggregator.config().api_token()?.filter(|t| !t.is_empty()).map(Arc::new);
        Ok(AppState { ingest: api.ingest, max_body_bytes: api.max_body_bytes, token, aggregator, alerts: None })
    }

    /// The same state, serving these alerts.
    pub fn with_alerts(mut self, view: AlertsView) -> Self {
        self.alerts = Some(view);
        self
    }
}

/// The API and (when enabled) the ingest, with the token check applied.
pub fn router(state: AppState) -> Router {
    let protected = api::routes()
        .merge(if state.ingest { ingest::routes(state.max_body_bytes) } else { Router::new() })
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new().merge(protected).merge(api::open_routes()).merge(ui::router()).with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
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

/// Middleware: 401 unless the configured token is presented.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(expected) = &state.token {
        let ok = presented_token(&req).is_some_and(|t| same(t.as_bytes(), expected.expose().as_bytes()));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Token")],
                axum::Json(serde_json::json!({"code": "unauthorized", "message": "unauthorized access: send the [api] token as `Authorization: Token <token>` (or Bearer)"})),
            )
                .into_response();
        }
    }
    next.run(req).await
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
