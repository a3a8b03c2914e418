//! The JSON API.
//!
//! - `GET /api/workloads?from=&to=`: the comparison, the same shape as
//!   `wattledger report --format json`; `from`/`to` are RFC 3339; `to` defaults
//!   to now and `from` to the start of the window 24 hours before `to`, so every
//!   window but the current one is whole and served from the store. A range
//!   longer than 400 days or outside 1678..2262 is a 400.
//! - `GET /api/workloads.csv?from=&to=`: the same comparison as CSV, one row per
//!   workload in rank order, columns [`crate::aggregate::compare::CSV_COLUMNS`] (units in the names; an empty
//!   cell where the JSON has `null`), then an `(unassigned)` row with its energy
//!   when devices are in no workload.
//! - `GET /api/workloads/{name}/windows?from=&to=`: one workload's windows.
//! - `GET /api/fleet`: every device seen recently, with its status and latest
//!   readings, and the thresholds of the GPU `idle` flag.
//! - `GET /api/devices/history?device=&from=&to=`: one device's power, efficiency
//!   and (where its workload's model earns per device) revenue, in at most 500
//!   buckets over at most 31 days (see [`crate::aggregate::device`]).
//! - `GET /api/prices?from=&to=`: BTC price, hashprice and each site's tariff over
//!   at most 31 days (see [`crate::aggregate::prices`]).
//! - `GET /api/alerts`: firing and pending alerts, recent history, delivery
//!   counters (`{"enabled": false, …}` when no alert engine runs).
//! - `GET /api/health`: liveness and store reachability (no token needed, for
//!   load balancers and probes; it reveals nothing else).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{url_pairs, AppState};
use crate::aggregate::{check_range, parse_rfc3339, rfc3339, AggregateError, TimeError, Windows};
use crate::revenue::ModelInfo;

const DAY_NS: i64 = 86_400_000_000_000;
/// Complete windows come from the store; one computed because it was missing or
/// stale is written back, so it is computed once.
const SERVE: Windows = Windows::Stored { write_back: true };

/// Routes behind the token.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/workloads", get(workloads))
        .route("/api/workloads.csv", get(workloads_csv))
        .route("/api/devices/history", get(device_history))
        .route("/api/prices", get(prices))
        .route("/api/workloads/{name}/windows", get(windows))
        .route("/api/fleet", get(fleet))
        .route("/api/models", get(models))
        .route("/api/alerts", get(alerts))
}

/// Routes open without a token.
pub fn open_routes() -> Router<AppState> {
    Router::new().route("/api/health", get(health))
}

/// An error answer: `{"error": "..."}` with a status.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<AggregateError> for ApiError {
    fn from(e: AggregateError) -> Self {
        match e {
            AggregateError::UnknownWorkload(_) | AggregateError::UnknownDevice(_) => {
                ApiError(StatusCode::NOT_FOUND, e.to_string())
            }
            AggregateError::Range(_) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            AggregateError::Store(_) => {
                tracing::warn!(error = %e, "API: store read failed");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("the store did not answer: {e}"))
            }
            other => ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// `from`/`to` from the query, defaulting to the last 24 hours.
fn range(state: &AppState, query: Option<&str>) -> Result<(i64, i64), ApiError> {
    let pairs = url_pairs(query.unwrap_or(""));
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let bad = |key: &str, e: TimeError| ApiError(StatusCode::BAD_REQUEST, format!("`{key}`: {e}"));
    let to = match get("to") {
        Some(v) => parse_rfc3339(v).map_err(|e| bad("to", e))?,
        None => state.aggregator.now_ns(),
    };
    let from = match get("from") {
        Some(v) => parse_rfc3339(v).map_err(|e| bad("from", e))?,
        None => {
            let len = state.aggregator.window_ns();
            to.saturating_sub(DAY_NS).div_euclid(len) * len
        }
    };
    if to <= from {
        return Err(ApiError(StatusCode::BAD_REQUEST, "`to` must be after `from`".into()));
    }
    check_range(from, to)?;
    Ok((from, to))
}

/// A revenue model as the page shows it: `{"name", "title", "family",
/// "efficiency_field", "efficiency_unit"}`.
#[derive(Debug, Serialize)]
pub struct ModelView {
    pub name: &'static str,
    pub title: &'static str,
    pub family: crate::revenue::Family,
    /// The comparison field holding the model's efficiency (`j_per_th`), and its unit.
    pub efficiency_field: Option<&'static str>,
    pub efficiency_unit: Option<&'static str>,
}

impl From<&'static ModelInfo> for ModelView {
    fn from(m: &'static ModelInfo) -> Self {
        ModelView {
            name: m.name,
            title: m.title,
            family: m.family,
            efficiency_field: m.efficiency.map(|e| e.field()),
            efficiency_unit: m.efficiency.map(|e| e.unit()),
        }
    }
}

/// Every registered revenue model, so the page needs no table of its own.
pub fn model_views() -> Vec<ModelView> {
    crate::revenue::REVENUE_MODELS.iter().map(|r| ModelView::from(r.info)).collect()
}

async fn models() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "models": model_views() }))
}

async fn workloads(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (from, to) = range(&state, q.as_deref())?;
    Ok(Json(state.aggregator.report(from, to, SERVE).await?).into_response())
}

async fn workloads_csv(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (from, to) = range(&state, q.as_deref())?;
    let report = state.aggregator.report(from, to, SERVE).await?;
    // A file name without colons, which some systems refuse.
    let stamp = |t: &str| t.replace(':', "");
    let disposition =
        format!("attachment; filename=\"wattledger-workloads-{}-{}.csv\"", stamp(&report.from), stamp(&report.to));
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        crate::aggregate::compare::to_csv(&report),
    )
        .into_response())
}

async fn device_history(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = url_pairs(q.as_deref().unwrap_or(""));
    let Some((_, device)) = pairs.iter().find(|(k, v)| k == "device" && !v.is_empty()) else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`device` is missing: give a device id as GET /api/fleet names it".into(),
        ));
    };
    let (from, to) = range(&state, q.as_deref())?;
    Ok(Json(state.aggregator.device_history(device, from, to).await?).into_response())
}

async fn prices(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (from, to) = range(&state, q.as_deref())?;
    Ok(Json(state.aggregator.prices(from, to).await?).into_response())
}

#[derive(Serialize)]
struct WindowRow {
    start: String,
    end: String,
    energy_j: f64,
    facility_energy_j: f64,
    revenue_usd: f64,
    energy_cost_usd: f64,
    profit_usd: f64,
    revenue_usd_per_kwh: Option<f64>,
    profit_usd_per_kwh: Option<f64>,
    coverage: f64,
    avg_power_w: f64,
    /// Joules from `energy_ledger` points, and the ledger's share of the covered
    /// device-time (the rest came from raw samples).
    ledger_energy_j: f64,
    ledger_share: Option<f64>,
    /// `energy_j` by basis, and as text (`62 % meter, 38 % estimated`).
    energy_by_basis: crate::aggregate::basis::BasisEnergy,
    energy_basis: String,
    efficiency_basis: Option<&'static str>,
    no_power_devices: usize,
    /// `meter` when a site meter measured the facility energy, else `pue`.
    facility_basis: crate::aggregate::reconcile::FacilityBasis,
}

#[derive(Serialize)]
struct WindowsAnswer {
    workload: String,
    #[serde(rename = "model")]
    revenue_model: &'static ModelInfo,
    windows: Vec<WindowRow>,
}

async fn windows(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (from, to) = range(&state, q.as_deref())?;
    let (model, rows) = state.aggregator.workload_windows(&name, from, to, SERVE).await?;
    let windows = rows
        .iter()
        .map(|w| WindowRow {
            start: rfc3339(w.window.start_ns),
            end: rfc3339(w.window.end_ns),
            energy_j: w.energy_j,
            facility_energy_j: w.facility_energy_j,
            revenue_usd: w.revenue_usd,
            energy_cost_usd: w.energy_cost_usd,
            profit_usd: w.profit_usd(),
            revenue_usd_per_kwh: w.revenue_usd_per_kwh(),
            profit_usd_per_kwh: w.profit_usd_per_kwh(),
            coverage: w.coverage(),
            avg_power_w: w.avg_power_w(),
            ledger_energy_j: w.ledger_energy_j,
            ledger_share: w.ledger_share(),
            energy_by_basis: w.basis,
            energy_basis: w.basis.label(),
            efficiency_basis: w.basis.efficiency_label(),
            no_power_devices: w.no_power_devices,
            facility_basis: w.facility_basis,
        })
        .collect();
    Ok(Json(WindowsAnswer { workload: name, revenue_model: model, windows }).into_response())
}

async fn fleet(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = state.aggregator.now_ns();
    Ok(Json(state.aggregator.fleet(now, state.idle_rule).await?).into_response())
}

async fn alerts(State(state): State<AppState>) -> Response {
    match &state.alerts {
        Some(view) => Json(view()).into_response(),
        None => Json(serde_json::json!({
            "enabled": false, "firing": [], "pending": [], "history": [], "notes": []
        }))
        .into_response(),
    }
}

async fn health(State(state): State<AppState>) -> Response {
    match state.aggregator.store().ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health: store ping failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "store unavailable"}))).into_response()
        }
    }
}
