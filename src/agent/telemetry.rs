//! The agent's own counters: shipped as the `agent` measurement like any other
//! point, and optionally served as Prometheus `/metrics` (bound to localhost unless
//! configured otherwise; the agent opens no port by default).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::model::{schema::agent as s, Point};

/// Live counters, shared between the agent's tasks. Counters only grow; `spool_*`
/// are gauges.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Points appended to the spool (a point counts as collected only then).
    pub collected: AtomicU64,
    /// Points the sinks confirmed, each sink counting its own.
    pub shipped: AtomicU64,
    /// Points lost: deleted by the spool's size bound, or not spooled because the append failed.
    pub dropped: AtomicU64,
    /// Points the store refused (saved under the spool's `rejected/`).
    pub rejected: AtomicU64,
    pub spool_errors: AtomicU64,
    pub ship_errors: AtomicU64,
    pub spool_pending: AtomicU64,
    pub spool_bytes: AtomicU64,
    sources: Mutex<BTreeMap<String, SourceStats>>,
    sinks: Mutex<BTreeMap<String, SinkStats>>,
}

/// One sink's place in the spool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkStats {
    /// Points this sink has not confirmed yet.
    pub pending: u64,
    /// Points the spool's size bound deleted before this sink confirmed them.
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceStats {
    pub collected: u64,
    pub errors: u64,
    pub collect_latency_ms: f64,
}

/// A copy of every counter at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    pub collected: u64,
    pub shipped: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub spool_errors: u64,
    pub ship_errors: u64,
    pub spool_pending: u64,
    pub spool_bytes: u64,
    pub sources: BTreeMap<String, SourceStats>,
    pub sinks: BTreeMap<String, SinkStats>,
}

impl AgentStats {
    pub fn record_collect(&self, source: &str, points: u64, latency_ms: f64, error: bool) {
        let mut map = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let st = map.entry(source.to_owned()).or_default();
        st.collected += points;
        st.collect_latency_ms = latency_ms;
        if error {
            st.errors += 1;
        }
    }

    /// Replaces every sink's figures (read from the spool's cursors).
    pub fn set_sinks(&self, sinks: impl IntoIterator<Item = (String, SinkStats)>) {
        *self.sinks.lock().unwrap_or_else(|e| e.into_inner()) = sinks.into_iter().collect();
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            collected: self.collected.load(Relaxed),
            shipped: self.shipped.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            spool_errors: self.spool_errors.load(Relaxed),
            ship_errors: self.ship_errors.load(Relaxed),
            spool_pending: self.spool_pending.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            sources: self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            sinks: self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

impl StatsSnapshot {
    /// The `agent` points: one with the totals, one per source (tag `source`).
    pub fn to_points(&self, time_ns: i64) -> Vec<Point> {
        let i = |v: u64| v.min(i64::MAX as u64) as i64;
        let total_errors: u64 = self.sources.values().map(|s| s.errors).sum();
        let mut out = vec![Point::new(s::MEASUREMENT, time_ns)
            .field(s::POINTS_COLLECTED, i(self.collected))
            .field(s::POINTS_SHIPPED, i(self.shipped))
            .field(s::POINTS_SPOOLED, i(self.spool_pending))
            .field(s::POINTS_DROPPED, i(self.dropped))
            .field(s::POINTS_REJECTED, i(self.rejected))
            .field(s::ERRORS, i(total_errors))
            .field(s::SPOOL_ERRORS, i(self.spool_errors))
            .field(s::SHIP_ERRORS, i(self.ship_errors))
            .field(s::SPOOL_BYTES, i(self.spool_bytes))];
        for (name, st) in &self.sources {
            out.push(
                Point::new(s::MEASUREMENT, time_ns)
                    .tag(s::TAG_SOURCE, name.as_str())
                    .field(s::POINTS_COLLECTED, i(st.collected))
                    .field(s::ERRORS, i(st.errors))
                    .field(s::COLLECT_LATENCY_MS, st.collect_latency_ms),
            );
        }
        out
    }

    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut o = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP wattledger_agent_{name} {help}\n# TYPE wattledger_agent_{name} {kind}\nwattledger_agent_{name} {v}");
        };
        metric("points_collected_total", "counter", "Points appended to the spool.", self.collected);
        metric(
            "points_shipped_total",
            "counter",
            "Points the sinks confirmed, each sink counting its own.",
            self.shipped,
        );
        metric(
            "points_dropped_total",
            "counter",
            "Points lost to the spool bound or a failed spool append.",
            self.dropped,
        );
        metric("points_rejected_total", "counter", "Points the store refused.", self.rejected);
        metric("spool_errors_total", "counter", "Failed spool appends.", self.spool_errors);
        metric("ship_errors_total", "counter", "Failed write requests.", self.ship_errors);
        metric("spool_points", "gauge", "Unconfirmed points in the spool.", self.spool_pending);
        metric("spool_bytes", "gauge", "Bytes of spool segment files.", self.spool_bytes);
        if !self.sinks.is_empty() {
            let _ = writeln!(o, "# HELP wattledger_agent_sink_points_pending Points a sink has not confirmed yet.\n# TYPE wattledger_agent_sink_points_pending gauge");
            for (n, st) in &self.sinks {
                let _ = writeln!(o, "wattledger_agent_sink_points_pending{{sink=\"{}\"}} {}", escape(n), st.pending);
            }
            let _ = writeln!(o, "# HELP wattledger_agent_sink_points_dropped_total Points the spool bound deleted before a sink confirmed them.\n# TYPE wattledger_agent_sink_points_dropped_total counter");
            for (n, st) in &self.sinks {
                let _ =
                    writeln!(o, "wattledger_agent_sink_points_dropped_total{{sink=\"{}\"}} {}", escape(n), st.dropped);
            }
        }
        let _ = writeln!(o, "# HELP wattledger_agent_source_points_collected_total Points collected per source.\n# TYPE wattledger_agent_source_points_collected_total counter");
        for (n, st) in &self.sources {
            let _ = writeln!(
                o,
                "wattledger_agent_source_points_collected_total{{source=\"{}\"}} {}",
                escape(n),
                st.collected
            );
        }
        let _ = writeln!(o, "# HELP wattledger_agent_source_errors_total Failed collections per source.\n# TYPE wattledger_agent_source_errors_total counter");
        for (n, st) in &self.sources {
            let _ = writeln!(o, "wattledger_agent_source_errors_total{{source=\"{}\"}} {}", escape(n), st.errors);
        }
        let _ = writeln!(o, "# HELP wattledger_agent_source_collect_latency_ms Duration of the last collection per source.\n# TYPE wattledger_agent_source_collect_latency_ms gauge");
        for (n, st) in &self.sources {
            let _ = writeln!(
                o,
                "wattledger_agent_source_collect_latency_ms{{source=\"{}\"}} {}",
                escape(n),
                st.collect_latency_ms
            );
        }
        o
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `GET /metrics` until `stop` resolves.
pub async fn serve_metrics(
    addr: SocketAddr,
    stats: Arc<AgentStats>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on metrics_listen = {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let stats = stats.clone();
            async move {
                ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], stats.snapshot().render_prometheus())
            }
        }),
    );
    tokio::spawn(async move {
        // The same connection limit and header-read timeout as the aggregator's API.
        if let Err(e) = crate::http::serve(listener, app, crate::http::ConnLimits::default(), stop).await {
            tracing::warn!(error = %e, "agent metrics endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::inference::parse_samples;

    #[test]
    fn prometheus_page_parses_and_points_encode() {
        let st = AgentStats::default();
        st.collected.store(10, Relaxed);
        st.record_collect("inference:a\"b", 4, 12.5, true);
        let snap = st.snapshot();
        let samples = parse_samples(&snap.render_prometheus()).unwrap();
        assert!(samples.iter().any(|s| s.name == "wattledger_agent_points_collected_total" && s.value == 10.0));
        assert!(samples
            .iter()
            .any(|s| s.name == "wattledger_agent_source_errors_total" && s.labels[0].1 == "inference:a\"b"));
        let points = snap.to_points(1);
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].tag_value("source"), Some("inference:a\"b"));
        assert!(crate::ship::lineproto::encode_batch(&points).is_ok());
    }
}
