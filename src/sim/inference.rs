//! A simulated vLLM server: serves `GET /metrics` in vLLM's real layout (the
//! `vllm:` families with `model_name` and `engine` labels, as `prometheus_client`
//! renders them) and `GET /health`, with counters that advance with a [`Clock`] at
//! configured token and request rates. Counters are a pure function of the clock,
//! so a test can compute exactly what a scrape at a given time must return.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use crate::model::Clock;

/// What the simulated server serves.
#[derive(Debug, Clone)]
pub struct SimInferenceSpec {
    pub model: String,
    /// Data-parallel engines; each exposes its own series (the rates are split evenly).
    pub engines: u32,
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
    pub requests_per_s: f64,
}

impl Default for SimInferenceSpec {
    fn default() -> Self {
        SimInferenceSpec {
            model: "meta-llama/Llama-3.1-8B-Instruct".into(),
            engines: 1,
            prompt_tokens_per_s: 2000.0,
            generation_tokens_per_s: 700.0,
            requests_per_s: 1.5,
        }
    }
}

/// Counters at a moment: whole tokens and requests since the server started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimCounters {
    pub prompt_tokens: f64,
    pub generation_tokens: f64,
    pub requests: f64,
}

impl SimInferenceSpec {
    /// Totals over all engines after `elapsed_ns` (floors per engine, as real counters are integers).
    pub fn counters_at(&self, elapsed_ns: i64) -> SimCounters {
        let secs = elapsed_ns.max(0) as f64 / 1e9;
        let engines = self.engines.max(1) as f64;
        let per_engine = |rate: f64| (rate / engines * secs).floor() * engines;
        SimCounters {
            prompt_tokens: per_engine(self.prompt_tokens_per_s),
            generation_tokens: per_engine(self.generation_tokens_per_s),
            requests: per_engine(self.requests_per_s),
        }
    }

    /// The metrics page after `elapsed_ns`.
    pub fn render(&self, elapsed_ns: i64) -> String {
        let secs = elapsed_ns.max(0) as f64 / 1e9;
        let engines = self.engines.max(1);
        let per = |rate: f64| (rate / engines as f64 * secs).floor();
        let model = self.model.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        let mut family = |name: &str, help: &str, kind: &str, rows: &mut dyn FnMut(&mut String, u32)| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for e in 0..engines {
                rows(&mut out, e);
            }
        };
        family("vllm:num_requests_running", "Number of requests in model execution batches.", "gauge", &mut |o, e| {
            let _ = writeln!(o, "vllm:num_requests_running{{engine=\"{e}\",model_name=\"{model}\"}} 4.0");
        });
        family("vllm:prompt_tokens_total", "Number of prefill tokens processed.", "counter", &mut |o, e| {
            let _ = writeln!(
                o,
                "vllm:prompt_tokens_total{{engine=\"{e}\",model_name=\"{model}\"}} {:.1}",
                per(self.prompt_tokens_per_s)
            );
        });
        family("vllm:generation_tokens_total", "Number of generation tokens processed.", "counter", &mut |o, e| {
            let _ = writeln!(
                o,
                "vllm:generation_tokens_total{{engine=\"{e}\",model_name=\"{model}\"}} {:.1}",
                per(self.generation_tokens_per_s)
            );
        });
        family("vllm:request_success_total", "Count of successfully processed requests.", "counter", &mut |o, e| {
            let total = per(self.requests_per_s);
            let length = (total / 50.0).floor();
            let _ = writeln!(
                o,
                "vllm:request_success_total{{engine=\"{e}\",finished_reason=\"stop\",model_name=\"{model}\"}} {:.1}",
                total - length
            );
            let _ = writeln!(o, "vllm:request_success_total{{engine=\"{e}\",finished_reason=\"length\",model_name=\"{model}\"}} {length:.1}");
            let _ = writeln!(
                o,
                "vllm:request_success_total{{engine=\"{e}\",finished_reason=\"abort\",model_name=\"{model}\"}} 0.0"
            );
        });
        family("vllm:request_prompt_tokens", "Number of prefill tokens processed.", "histogram", &mut |o, e| {
            let (sum, count) = (per(self.prompt_tokens_per_s), per(self.requests_per_s));
            let _ = writeln!(o, "vllm:request_prompt_tokens_sum{{engine=\"{e}\",model_name=\"{model}\"}} {sum:.1}");
            for le in ["1.0", "100.0", "1000.0", "10000.0", "+Inf"] {
                let _ = writeln!(
                    o,
                    "vllm:request_prompt_tokens_bucket{{engine=\"{e}\",le=\"{le}\",model_name=\"{model}\"}} {count:.1}"
                );
            }
            let _ = writeln!(o, "vllm:request_prompt_tokens_count{{engine=\"{e}\",model_name=\"{model}\"}} {count:.1}");
        });
        out
    }
}

/// A running simulated server; stops when dropped.
pub struct SimInferenceServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SimInferenceServer {
    /// Starts on `127.0.0.1` on a free port; counters start at zero now (by `clock`).
    pub async fn start(spec: SimInferenceSpec, clock: Arc<dyn Clock>) -> std::io::Result<SimInferenceServer> {
        Self::start_on("127.0.0.1:0".parse().expect("a valid address"), spec, clock).await
    }

    /// As [`Self::start`], on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        spec: SimInferenceSpec,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<SimInferenceServer> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        let start_ns = clock.now_ns();
        let spec = Arc::new(spec);
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let (spec, clock) = (spec.clone(), clock.clone());
                    async move {
                        (
                            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                            spec.render(clock.now_ns() - start_ns),
                        )
                    }
                }),
            )
            .route("/health", get(|| async { "" }));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "simulated inference server stopped");
            }
        });
        Ok(SimInferenceServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl Drop for SimInferenceServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::inference::{extract, parse_samples, MetricNames, ServerKind};

    #[test]
    fn page_parses_and_matches_the_counters() {
        let spec = SimInferenceSpec { engines: 2, ..SimInferenceSpec::default() };
        let t = 90_500_000_000;
        let got = extract(&parse_samples(&spec.render(t)).unwrap(), &MetricNames::for_kind(ServerKind::Vllm), "x");
        let c = &got[&spec.model];
        let want = spec.counters_at(t);
        assert_eq!(c.prompt_tokens, Some(want.prompt_tokens));
        assert_eq!(c.generation_tokens, Some(want.generation_tokens));
        assert_eq!(c.requests, Some(want.requests));
        assert_eq!(want.prompt_tokens, 181000.0);
    }
}
