//! InfluxDB-compatible ingest: `POST /api/v2/write` and `POST /write` into the
//! configured store, for sites without InfluxDB (agents point their v2 or v1
//! writer at the aggregator).
//!
//! Answers as InfluxDB does: 204 when every line was written; 400 naming the first
//! bad line, with nothing from that batch written (the whole body is parsed before
//! anything is stored, and the store writes a batch at once); 401 without the token
//! (checked before the body is read); 413 when the body, or the body after gzip
//! decoding (every gzip member), is larger than `[api] max_body_bytes`; 408 when the
//! body takes longer than `[api] body_timeout`; 422 when the store refuses the batch
//! by a limit (series count). A point the store can never keep is a 400, not a 503,
//! so clients do not retry it forever. Gzip decoding and parsing run on the blocking
//! pool, a bounded number of bodies at once. `org`, `bucket`, `db` and `rp`
//! are accepted and ignored: the aggregator writes into its one store.

use std::io::Read;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::{url_pairs, AppState};
use crate::model::Point;
use crate::ship::lineproto::{parse_limited, Limits, Precision};
use crate::store::StoreError;

pub fn routes(_max_body_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/api/v2/write", post(write_v2))
        .route("/write", post(write_v1))
        .layer(DefaultBodyLimit::disable())
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    V1,
    V2,
}

/// An answer in the dialect of the endpoint: v2 `{"code","message"}`, v1 `{"error"}`.
fn answer(api: Api, status: StatusCode, code: &str, message: String) -> Response {
    let body = match api {
        Api::V2 => serde_json::json!({ "code": code, "message": message }),
        Api::V1 => serde_json::json!({ "error": message }),
    };
    (status, Json(body)).into_response()
}

async fn write_v2(state: State<AppState>, query: RawQuery, headers: HeaderMap, body: Body) -> Response {
    write(Api::V2, state, query, headers, body).await
}

async fn write_v1(state: State<AppState>, query: RawQuery, headers: HeaderMap, body: Body) -> Response {
    write(Api::V1, state, query, headers, body).await
}

async fn write(
    api: Api,
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = state.max_body_bytes;
    let too_large = || {
        answer(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request too large",
            format!("request body is larger than {max} bytes ([api] max_body_bytes); send smaller batches"),
        )
    };
    let pairs = url_pairs(q.as_deref().unwrap_or(""));
    let precision_text = pairs.iter().find(|(k, _)| k == "precision").map_or("", |(_, v)| v.as_str());
    let precision: Precision = match precision_text.parse() {
        Ok(p) => p,
        Err(e) => return answer(api, StatusCode::BAD_REQUEST, "invalid", e),
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    // A body that trickles in holds a connection slot: it gets `body_timeout`.
    let raw = match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            return answer(
                api,
                StatusCode::REQUEST_TIMEOUT,
                "request timeout",
                format!("the body did not arrive within {:?} ([api] body_timeout)", state.body_timeout),
            )
        }
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    // Decoding and parsing are CPU work: they run on the blocking pool, at most
    // `parse_slots` bodies at once, so the page and the API stay responsive.
    let Ok(_slot) = state.parse_slots.clone().acquire_owned().await else {
        return answer(api, StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the aggregator is stopping".into());
    };
    let (now, limits) = (state.aggregator.now_ns(), state.line_limits);
    let parsed = tokio::task::spawn_blocking(move || decode_and_parse(&raw, gzip, max, precision, now, &limits)).await;
    let points = match parsed {
        Ok(Ok(points)) => points,
        Ok(Err(Refused::TooLarge)) => return too_large(),
        Ok(Err(Refused::Invalid(message))) => return answer(api, StatusCode::BAD_REQUEST, "invalid", message),
        Err(e) => {
            tracing::error!(error = %e, "ingest: parsing task failed");
            return answer(api, StatusCode::INTERNAL_SERVER_ERROR, "internal error", format!("parsing failed: {e}"));
        }
    };
    if points.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    match state.aggregator.store().write(&points).await {
        Ok(()) => {
            state.aggregator.forget_live_windows();
            StatusCode::NO_CONTENT.into_response()
        }
        // The points can never be stored: retrying would not help.
        Err(StoreError::Invalid(e)) => answer(
            api,
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("invalid point: {e}; nothing from this batch was written"),
        ),
        Err(StoreError::Limit(message)) => {
            tracing::warn!(%message, points = points.len(), "ingest: batch refused by a store limit");
            answer(
                api,
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable entity",
                format!("{message}; nothing from this batch was written"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, points = points.len(), "ingest: store write failed");
            answer(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the store did not accept the batch: {e}; retry later"),
            )
        }
    }
}

/// Why a body was refused before reaching the store.
enum Refused {
    TooLarge,
    Invalid(String),
}

/// Gzip (every member, as InfluxDB reads it), UTF-8 and line protocol; blocking.
fn decode_and_parse(
    raw: &[u8],
    gzip: bool,
    max: usize,
    precision: Precision,
    now_ns: i64,
    limits: &Limits,
) -> Result<Vec<Point>, Refused> {
    let decoded;
    let bytes: &[u8] = if gzip {
        let mut out = Vec::new();
        let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(max as u64 + 1);
        if let Err(e) = decoder.read_to_end(&mut out) {
            return Err(Refused::Invalid(format!("body is not valid gzip: {e}")));
        }
        if out.len() > max {
            return Err(Refused::TooLarge);
        }
        decoded = out;
        &decoded
    } else {
        raw
    };
    let text =
        std::str::from_utf8(bytes).map_err(|e| Refused::Invalid(format!("body is not UTF-8 line protocol: {e}")))?;
    parse_limited(text, precision, now_ns, limits).map_err(|e| {
        let line: String = text.lines().nth(e.line.saturating_sub(1)).unwrap_or("").chars().take(200).collect();
        Refused::Invalid(format!("unable to parse '{line}': {e}; nothing from this batch was written"))
    })
}
