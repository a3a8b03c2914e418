//! `GET /metrics`: the last complete window of each workload, for each window length
//! (`[aggregator] window` and `short_window`), in Prometheus text format, for sites
//! that scrape with Prometheus or VictoriaMetrics instead of reading the
//! `workload_efficiency` write-back. Behind the API token like `/api/*` (Prometheus:
//! `authorization: {credentials: TOKEN}` or `bearer_token`).
//!
//! Each window is served as the store holds it when its config stamp still
//! matches, and computed otherwise exactly as the scheduled pass writes it back
//! ([`window_point`] plus its stamp), so both agree; a window the store cannot be
//! read for answers 503 rather than a partial page.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::aggregate::windows::window_point;
use crate::aggregate::Windows;
use crate::model::prom::escape_label as escape;
use crate::model::schema::workload_efficiency as we;
use crate::model::Point;

/// Routes behind the token.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// `workload_efficiency` field → Prometheus name and help.
const METRICS: &[(&str, &str, &str)] = &[
    (we::REVENUE_USD, "wattledger_workload_revenue_usd", "Revenue in the window by the workload's model."),
    (we::ENERGY_COST_USD, "wattledger_workload_energy_cost_usd", "Facility energy times the site's price."),
    (we::PROFIT_USD, "wattledger_workload_profit_usd", "Revenue minus energy cost."),
    (we::REVENUE_USD_PER_KWH, "wattledger_workload_revenue_usd_per_kwh", "Revenue per IT kWh."),
    (we::PROFIT_USD_PER_KWH, "wattledger_workload_profit_usd_per_kwh", "Profit per IT kWh."),
    (we::ENERGY_J, "wattledger_workload_energy_joules", "Measured IT energy in the window."),
    (we::FACILITY_ENERGY_J, "wattledger_workload_facility_energy_joules", "IT energy times the site PUE."),
    (we::AVG_POWER_W, "wattledger_workload_power_watts", "Mean IT power over the window."),
    (we::COVERAGE, "wattledger_workload_coverage_ratio", "Covered device-time over devices times window, 0-1."),
    (we::DEVICES, "wattledger_workload_devices", "Devices that reported in the window."),
    (we::WINDOW_S, "wattledger_workload_window_seconds", "Window length."),
];

async fn metrics(State(state): State<AppState>) -> Response {
    let agg = &state.aggregator;
    let now = agg.now_ns();
    let short = agg.config().aggregator.short_window.as_nanos() as i64;
    let mut points: Vec<(i64, Point)> = Vec::new();
    for len in [agg.window_ns(), short] {
        if len <= 0 {
            continue;
        }
        let to = now.div_euclid(len) * len;
        let r = agg
            .compute(to - len, to, len, None, Windows::Stored { write_back: false }, |w| {
                points.push((w.window.end_ns, window_point(&w, len)))
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "/metrics: cannot compute the windows");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("cannot compute the windows: {e}\n")).into_response();
        }
    }
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], render(&points)).into_response()
}

/// The page for `(window end, workload_efficiency point)` pairs.
pub fn render(points: &[(i64, Point)]) -> String {
    let labels = |p: &Point| {
        [we::TAG_SITE, we::TAG_WORKLOAD, we::TAG_KIND, we::TAG_WINDOW]
            .iter()
            .filter_map(|k| p.tag_value(k).map(|v| format!("{k}=\"{}\"", escape(v))))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut o = String::new();
    for (field, name, help) in METRICS {
        let mut header = false;
        for (_, p) in points {
            // An absent field (per kWh without energy) is no sample, never a 0.
            let Some(v) = p.field_value(field).and_then(|v| v.as_f64()) else { continue };
            if !header {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
                header = true;
            }
            let _ = writeln!(o, "{name}{{{}}} {v}", labels(p));
        }
    }
    if !points.is_empty() {
        let name = "wattledger_workload_window_end_timestamp_seconds";
        let _ = writeln!(o, "# HELP {name} End of the window the workload's figures are for.\n# TYPE {name} gauge");
        for (end_ns, p) in points {
            let _ = writeln!(o, "{name}{{{}}} {}", labels(p), *end_ns / 1_000_000_000);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::inference::parse_samples;

    #[test]
    fn absent_per_kwh_is_no_sample() {
        let p = Point::new(we::MEASUREMENT, 0)
            .tag(we::TAG_WORKLOAD, "w\"1")
            .tag(we::TAG_WINDOW, "1h")
            .field(we::REVENUE_USD, 2.5)
            .field(we::ENERGY_J, 0.0);
        let page = render(&[(3_600_000_000_000, p)]);
        let s = parse_samples(&page).unwrap();
        assert!(s.iter().any(|x| x.name == "wattledger_workload_revenue_usd" && x.value == 2.5));
        assert!(s.iter().any(|x| x.name == "wattledger_workload_window_end_timestamp_seconds" && x.value == 3600.0));
        assert!(!page.contains("per_kwh"), "{page}");
        assert!(s.iter().all(|x| x.labels.iter().any(|(k, v)| k == "workload" && v == "w\"1")));
    }
}
