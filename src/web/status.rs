//! `GET /api/status` (no token needed): what kind of service this is and whether it is
//! still replaying the past, so the page can say "replaying the last day: 40 %" instead
//! of showing a half-filled range, and word its token banner for this service. It
//! reveals nothing about the data.
//!
//! Answer: `{"demo": bool, "replay": null | {"fraction": 0-1, "from", "to", "now"}}`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;

/// Routes open without a token.
pub fn open_routes() -> Router<AppState> {
    Router::new().route("/api/status", get(status))
}

async fn status(State(state): State<AppState>) -> Response {
    let replay = state.status.as_ref().map(|v| v()).unwrap_or(serde_json::Value::Null);
    Json(serde_json::json!({ "demo": state.status.is_some(), "replay": replay })).into_response()
}
