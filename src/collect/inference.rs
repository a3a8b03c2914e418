//! Inference servers: token and request counters from a server's Prometheus
//! text-format `/metrics` page, as the `inference` measurement (one point per
//! server and model: `prompt_tokens`, `generation_tokens`, `requests`, raw
//! counters summed over every other label such as vLLM's `engine` or
//! `finished_reason`).
//!
//! Which metric names to read depends on the server ([`ServerKind`]):
//!
//! | kind | prompt tokens | generation tokens | requests | model |
//! | --- | --- | --- | --- | --- |
//! | `vllm` (default) | `vllm:prompt_tokens_total` | `vllm:generation_tokens_total` | `vllm:request_success_total` | label `model_name` |
//! | `sglang` | `sglang:prompt_tokens_total` | `sglang:generation_tokens_total` | `sglang:num_requests_total` (newer releases) | label `model_name` |
//! | `tgi` | `tgi_request_input_length_sum` | `tgi_request_generated_tokens_sum` | `tgi_request_success` | `GET /info` `model_id` |
//!
//! Each name can be overridden per server. TGI has no token counters: the histogram
//! sums grow when a request finishes, so they are monotonic but bursty.
//!
//! Why a parser of our own: the `prometheus-parse` crate matches metric names with
//! `\w+`, so it silently drops every `vllm:`/`sglang:` sample (colons are legal in
//! Prometheus names), and it splits labels on `,` and `=` without honouring quotes;
//! `openmetrics-parser` handles the pages but is LGPL-3.0. The exposition format's
//! sample line is small and fully specified, so it is parsed here (comments, escaped
//! label values, `NaN`/`+Inf`/`1e999`, integer or float timestamps, OpenMetrics
//! exemplars, Prometheus 3 quoted UTF-8 names) and tested against captured pages of
//! all three servers. A scrape skips a malformed line (warning once per source) and
//! reads the rest, so one bad line never costs the counters; invalid UTF-8 spoils
//! only its own characters. A page with no valid sample line is an error. Every read
//! has a timeout and a body-size cap.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::collect::{Source, SourceError};
use crate::config::KeyError;
use crate::model::{schema, Point};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    #[default]
    Vllm,
    Tgi,
    Sglang,
}

/// One `[[inference]]` entry of the agent config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceServerConfig {
    /// Tag `server`; unique per agent.
    pub name: String,
    /// The metrics page, e.g. `http://127.0.0.1:8000/metrics`.
    pub url: String,
    #[serde(default)]
    pub kind: ServerKind,
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// Larger pages are refused.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Tag `model` for every point of this server, instead of the page's label.
    pub model: Option<String>,
    pub prompt_tokens_metric: Option<String>,
    pub generation_tokens_metric: Option<String>,
    pub requests_metric: Option<String>,
    /// Label holding the model name (empty string: none).
    pub model_label: Option<String>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_body() -> usize {
    4 << 20
}

impl InferenceServerConfig {
    /// Checks the keys; the error's `at` is the key within the `[[inference]]` entry.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.name.trim().is_empty() {
            return Err(KeyError::new("name", "[[inference]] name must not be empty"));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            KeyError::new("url", format!("[[inference]] {}: url `{}` is not a URL ({e})", self.name, self.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(KeyError::new("url", format!("[[inference]] {}: url must be http:// or https://", self.name)));
        }
        for (key, zero) in [
            ("interval", self.interval.is_zero()),
            ("timeout", self.timeout.is_zero()),
            ("max_body_bytes", self.max_body_bytes == 0),
        ] {
            if zero {
                return Err(KeyError::new(key, format!("[[inference]] {}: {key} must be greater than 0", self.name)));
            }
        }
        Ok(())
    }

    /// The metric names to read, the kind's defaults overridden by explicit keys.
    pub fn metric_names(&self) -> MetricNames {
        let mut n = MetricNames::for_kind(self.kind);
        if let Some(m) = &self.prompt_tokens_metric {
            n.prompt_tokens = m.clone();
        }
        if let Some(m) = &self.generation_tokens_metric {
            n.generation_tokens = m.clone();
        }
        if let Some(m) = &self.requests_metric {
            n.requests = m.clone();
        }
        if let Some(l) = &self.model_label {
            n.model_label = Some(l.clone()).filter(|l| !l.is_empty());
        }
        n
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNames {
    pub prompt_tokens: String,
    pub generation_tokens: String,
    pub requests: String,
    pub model_label: Option<String>,
}

impl MetricNames {
    pub fn for_kind(kind: ServerKind) -> MetricNames {
        let (p, g, r, l) = match kind {
            ServerKind::Vllm => (
                "vllm:prompt_tokens_total",
                "vllm:generation_tokens_total",
                "vllm:request_success_total",
                Some("model_name"),
            ),
            ServerKind::Sglang => (
                "sglang:prompt_tokens_total",
                "sglang:generation_tokens_total",
                "sglang:num_requests_total",
                Some("model_name"),
            ),
            ServerKind::Tgi => {
                ("tgi_request_input_length_sum", "tgi_request_generated_tokens_sum", "tgi_request_success", None)
            }
        };
        MetricNames {
            prompt_tokens: p.into(),
            generation_tokens: g.into(),
            requests: r.into(),
            model_label: l.map(str::to_owned),
        }
    }
}

/// One sample line of a metrics page.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses Prometheus text exposition format 0.0.4 (and OpenMetrics 1.0 text) into
/// samples. `# HELP`/`# TYPE` and other comments are skipped; a malformed sample
/// line is an error naming it. [`scan_samples`] is the lenient form a scrape uses.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, ParseError> {
    let page = scan_samples(text);
    match page.malformed.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(page.samples),
    }
}

/// A page read line by line: the samples that parsed and the lines that did not.
#[derive(Debug, Default)]
pub struct Page {
    pub samples: Vec<Sample>,
    pub malformed: Vec<ParseError>,
}

/// Reads every sample line it can; a malformed line is recorded (the first 16 of
/// them) and skipped, so one bad line never costs the counters on the others.
pub fn scan_samples(text: &str) -> Page {
    let mut page = Page::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(sample) => page.samples.push(sample),
            Err(message) if page.malformed.len() < 16 => page.malformed.push(ParseError { line: i + 1, message }),
            Err(_) => {}
        }
    }
    page
}

fn valid_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
}

/// One sample line: `name{labels} value [timestamp] [# exemplar]`, where the name
/// may also be a quoted string inside the braces (`{"my.metric",a="b"}`, the UTF-8
/// names of Prometheus 3) and the timestamp an integer (ms) or a float (OpenMetrics
/// seconds).
fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line.find(|c: char| c == '{' || c.is_ascii_whitespace()).unwrap_or(line.len());
    let mut name = line[..name_end].to_owned();
    if !name.is_empty() && !valid_metric_name(&name) {
        return Err(format!("`{}` is not a metric name", truncate(&name)));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (quoted_name, after) = parse_labels(after, &mut labels)?;
        match (quoted_name, name.is_empty()) {
            (Some(q), true) => name = q,
            (Some(_), false) => return Err(format!("`{}` has two metric names", truncate(&name))),
            (None, _) => {}
        }
        rest = after;
    }
    if name.is_empty() {
        return Err(format!("`{}` has no metric name", truncate(line)));
    }
    // An exemplar (`# {trace_id="…"} 1.0 [ts]`) follows the sample; it is not needed.
    let rest = match rest.find('#') {
        Some(i) if rest[..i].ends_with(|c: char| c.is_ascii_whitespace()) => &rest[..i],
        _ => rest,
    };
    let mut parts = rest.split_ascii_whitespace();
    let value = parts.next().ok_or_else(|| format!("`{name}` has no value"))?;
    let value = parse_value(value).ok_or_else(|| format!("`{name}`: `{}` is not a number", truncate(value)))?;
    if let Some(ts) = parts.next() {
        if ts.parse::<i64>().is_err() && !ts.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(format!("`{name}`: timestamp `{}` is not a number", truncate(ts)));
        }
    }
    if parts.next().is_some() {
        return Err(format!("`{name}`: unexpected text after the value"));
    }
    Ok(Sample { name, labels, value })
}

/// A quoted string starting after its opening `"`, with `\\`, `\"` and `\n`
/// escapes; returns it and what follows the closing quote.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    loop {
        match chars.next() {
            Some((i, '"')) => return Ok((value, &s[i + 1..])),
            Some((_, '\\')) => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, c)) => value.push(c),
                None => return Err("unterminated quoted string".into()),
            },
            Some((_, c)) => value.push(c),
            None => return Err("unterminated label value".into()),
        }
    }
}

/// Parses `k="v",k2="v2"}` and returns a quoted metric name if the braces held
/// one, and what follows the closing brace. Label names may be quoted too.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<(Option<String>, &'a str), String> {
    let mut name = None;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((name, rest));
        }
        let key = if let Some(after) = s.strip_prefix('"') {
            let (text, after) = quoted(after)?;
            let after = after.trim_start();
            if !after.starts_with('=') {
                // A quoted string on its own is the metric name.
                if name.replace(text).is_some() {
                    return Err("two quoted metric names".into());
                }
                s = after;
                if let Some(rest) = s.strip_prefix(',') {
                    s = rest;
                } else if !s.starts_with('}') {
                    return Err("expected `,` or `}` after a label".into());
                }
                continue;
            }
            s = &after[1..];
            text
        } else {
            let eq = s.find('=').ok_or("label without `=`")?;
            let key = s[..eq].trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{}` is not a label name", truncate(key)));
            }
            s = &s[eq + 1..];
            key.to_owned()
        };
        s = s.trim_start().strip_prefix('"').ok_or("label value must be quoted")?;
        let (value, after) = quoted(s)?;
        labels.push((key, value));
        s = after.trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label".into());
        }
    }
}

/// A sample value; `1e999` is +Inf, as Prometheus reads it.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ if s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) => s.parse().ok(),
        _ => None,
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Counters of one model on one server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelCounters {
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    pub requests: Option<f64>,
}

/// Sums the configured counters per model over all other labels. Samples without
/// the model label (or all of them when there is none) go to `fallback_model`.
pub fn extract(samples: &[Sample], names: &MetricNames, fallback_model: &str) -> BTreeMap<String, ModelCounters> {
    let mut out: BTreeMap<String, ModelCounters> = BTreeMap::new();
    for s in samples {
        let which = if s.name == names.prompt_tokens {
            0
        } else if s.name == names.generation_tokens {
            1
        } else if s.name == names.requests {
            2
        } else {
            continue;
        };
        if !s.value.is_finite() {
            continue;
        }
        let model = names
            .model_label
            .as_deref()
            .and_then(|l| s.labels.iter().find(|(k, _)| k == l))
            .map(|(_, v)| v.as_str())
            .unwrap_or(fallback_model);
        let c = out.entry(model.to_owned()).or_default();
        let field = match which {
            0 => &mut c.prompt_tokens,
            1 => &mut c.generation_tokens,
            _ => &mut c.requests,
        };
        *field = Some(field.unwrap_or(0.0) + s.value);
    }
    out
}

/// Scrapes one server.
pub struct InferenceSource {
    cfg: InferenceServerConfig,
    names: MetricNames,
    source_name: String,
    client: reqwest::Client,
    /// TGI's model id from `/info`, fetched once.
    tgi_model: Option<String>,
    /// A malformed line was reported already (once per source).
    warned_malformed: bool,
}

impl InferenceSource {
    pub fn new(cfg: InferenceServerConfig) -> Result<InferenceSource, SourceError> {
        let source_name = format!("inference:{}", cfg.name);
        cfg.validate().map_err(|e| SourceError::new(&source_name, e.to_string()))?;
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()
            .map_err(|e| SourceError::new(&source_name, format!("cannot build an HTTP client: {e}")))?;
        Ok(InferenceSource {
            names: cfg.metric_names(),
            cfg,
            source_name,
            client,
            tgi_model: None,
            warned_malformed: false,
        })
    }

    async fn get_capped(&self, url: &str) -> Result<String, String> {
        let mut resp = self.client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url} answered {}; is this the server's metrics URL?", resp.status()));
        }
        let cap = self.cfg.max_body_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > cap {
                return Err(format!("GET {url}: the page is larger than max_body_bytes = {cap}"));
            }
            body.extend_from_slice(&chunk);
        }
        // Invalid UTF-8 (in a comment, say) costs only the characters it spoils.
        Ok(match String::from_utf8(body) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// TGI serves one model and names it only in `GET /info`.
    async fn tgi_model_id(&mut self) -> String {
        if let Some(m) = &self.tgi_model {
            return m.clone();
        }
        let info_url = reqwest::Url::parse(&self.cfg.url).and_then(|u| u.join("/info"));
        let fetched = match info_url {
            Ok(u) => match self.get_capped(u.as_str()).await {
                Ok(body) => serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("model_id").and_then(|m| m.as_str()).map(str::to_owned)),
                Err(e) => {
                    tracing::debug!(server = %self.cfg.name, error = %e, "TGI /info unavailable");
                    None
                }
            },
            Err(_) => None,
        };
        match fetched {
            Some(m) => {
                self.tgi_model = Some(m.clone());
                m
            }
            None => "unknown".to_string(),
        }
    }
}

#[async_trait]
impl Source for InferenceSource {
    fn name(&self) -> &str {
        &self.source_name
    }

    async fn collect(&mut self, time_ns: i64) -> Result<Vec<Point>, SourceError> {
        let err = |m: String| SourceError::new(format!("inference:{}", self.cfg.name), m);
        let body = self.get_capped(&self.cfg.url.clone()).await.map_err(err)?;
        let page = scan_samples(&body);
        if let Some(first) = page.malformed.first() {
            if page.samples.is_empty() {
                return Err(SourceError::new(
                    &self.source_name,
                    format!("{}: not a Prometheus metrics page: {first}", self.cfg.url),
                ));
            }
            if !self.warned_malformed {
                self.warned_malformed = true;
                tracing::warn!(
                    server = %self.cfg.name, url = %self.cfg.url, error = %first, malformed_lines = page.malformed.len(),
                    "metrics page has malformed lines; they are skipped, the other samples are read (warned once)"
                );
            }
        }
        let samples = page.samples;
        let fallback = match (&self.cfg.model, self.cfg.kind) {
            (Some(m), _) => m.clone(),
            (None, ServerKind::Tgi) if self.names.model_label.is_none() => self.tgi_model_id().await,
            (None, _) => "unknown".to_string(),
        };
        let mut names = self.names.clone();
        if self.cfg.model.is_some() {
            names.model_label = None;
        }
        let points = extract(&samples, &names, &fallback)
            .into_iter()
            .map(|(model, c)| {
                use schema::inference as s;
                Point::new(s::MEASUREMENT, time_ns)
                    .tag(s::TAG_SERVER, self.cfg.name.as_str())
                    .tag(s::TAG_MODEL, model)
                    .field_opt(s::PROMPT_TOKENS, c.prompt_tokens)
                    .field_opt(s::GENERATION_TOKENS, c.generation_tokens)
                    .field_opt(s::REQUESTS, c.requests)
            })
            .collect();
        Ok(points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/data/inference/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    const LLAMA: &str = "meta-llama/Llama-3.1-8B-Instruct";

    #[test]
    fn vllm_page_with_colon_names() {
        let samples = parse_samples(&fixture("vllm-metrics.txt")).unwrap();
        let got = extract(&samples, &MetricNames::for_kind(ServerKind::Vllm), "unknown");
        let c = &got[LLAMA];
        assert_eq!(c.prompt_tokens, Some(764678.0));
        assert_eq!(c.generation_tokens, Some(270205.0));
        // stop + length + abort
        assert_eq!(c.requests, Some(500.0));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn sglang_page() {
        let samples = parse_samples(&fixture("sglang-metrics.txt")).unwrap();
        let got = extract(&samples, &MetricNames::for_kind(ServerKind::Sglang), "unknown");
        let c = &got[LLAMA];
        assert_eq!(c.prompt_tokens, Some(8.128902e6));
        assert_eq!(c.generation_tokens, Some(7.557572e6));
        assert_eq!(c.requests, None, "this SGLang release has no request counter");
    }

    #[test]
    fn tgi_page_has_no_model_label() {
        let samples = parse_samples(&fixture("tgi-metrics.txt")).unwrap();
        let got = extract(&samples, &MetricNames::for_kind(ServerKind::Tgi), "bigscience/bloom");
        let c = &got["bigscience/bloom"];
        assert_eq!(c.prompt_tokens, Some(192496.0));
        assert_eq!(c.generation_tokens, Some(114624.0));
        assert_eq!(c.requests, Some(392.0));
    }

    #[test]
    fn explicit_names_override_the_kind() {
        let cfg: InferenceServerConfig = toml::from_str(
            "name = \"a\"\nurl = \"http://127.0.0.1:1/metrics\"\nkind = \"vllm\"\nrequests_metric = \"vllm:num_requests_running\"\nmodel_label = \"\"\n",
        )
        .unwrap();
        let n = cfg.metric_names();
        assert_eq!(n.prompt_tokens, "vllm:prompt_tokens_total");
        assert_eq!(n.requests, "vllm:num_requests_running");
        assert_eq!(n.model_label, None);
    }

    #[test]
    fn labels_with_escapes_commas_and_equals() {
        let s = parse_samples("m{a=\"x,y=z\",b=\"q\\\"uote\\\\\\n\"} 1.5e3 1700000000000\nn NaN\n").unwrap();
        assert_eq!(s[0].labels, vec![("a".into(), "x,y=z".into()), ("b".into(), "q\"uote\\\n".into())]);
        assert_eq!(s[0].value, 1500.0);
        assert!(s[1].value.is_nan());
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        for bad in ["m{a=\"x\" 1", "m{a=x} 1", "1abc 2", "m one", "m 1 2 3", "m{a=\"x\"} ", "{a=\"b\"} 1"] {
            let err = parse_samples(&format!("# HELP m x\n{bad}\n")).unwrap_err();
            assert_eq!(err.line, 2, "{bad}: {err}");
        }
    }

    async fn serve(app: axum::Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn source(toml_text: &str) -> InferenceSource {
        InferenceSource::new(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn tgi_over_http_takes_the_model_from_info() {
        use axum::routing::get;
        let page = fixture("tgi-metrics.txt");
        let app = axum::Router::new()
            .route("/metrics", get(move || async move { page }))
            .route("/info", get(|| async { axum::Json(serde_json::json!({"model_id": "bigscience/bloom-560m"})) }));
        let addr = serve(app).await;
        let mut src = source(&format!("name = \"tgi\"\nurl = \"http://{addr}/metrics\"\nkind = \"tgi\"\n"));
        let points = src.collect(42).await.unwrap();
        assert_eq!(points.len(), 1);
        let p = &points[0];
        assert_eq!((p.tag_value("server"), p.tag_value("model")), (Some("tgi"), Some("bigscience/bloom-560m")));
        assert_eq!(p.field_value("generation_tokens").and_then(|v| v.as_f64()), Some(114624.0));
        assert_eq!(p.time_ns, 42);
    }

    #[tokio::test]
    async fn oversized_pages_hanging_servers_and_non_metrics_pages_are_errors() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/big", get(|| async { "m 1\n".repeat(10_000) }))
            .route("/hang", get(std::future::pending::<String>))
            .route("/html", get(|| async { "<html><body>hello</body></html>" }));
        let addr = serve(app).await;
        let cfg = |path: &str| {
            format!("name = \"x\"\nurl = \"http://{addr}{path}\"\ntimeout = \"300ms\"\nmax_body_bytes = 1000\n")
        };
        let err = source(&cfg("/big")).collect(0).await.unwrap_err();
        assert!(err.message.contains("max_body_bytes"), "{err}");
        let started = std::time::Instant::now();
        let err = source(&cfg("/hang")).collect(0).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        let err = source(&cfg("/html")).collect(0).await.unwrap_err();
        assert!(err.message.contains("not a Prometheus metrics page"), "{err}");
        let err = source(&cfg("/missing")).collect(0).await.unwrap_err();
        assert!(err.message.contains("404"), "{err}");
    }

    #[test]
    fn every_valid_prometheus_and_openmetrics_line_is_read() {
        let page = concat!(
            "# TYPE vllm:prompt_tokens counter\n",
            "vllm:prompt_tokens_total{model_name=\"m\"} 10 1700000000.123 # {trace_id=\"abc\"} 1.0 1700000000.1\n",
            "vllm:generation_tokens_total{model_name=\"m\"} 20 # {trace_id=\"d\"} 2\n",
            "{\"vllm:request_success_total\", model_name=\"m\", \"finished.reason\"=\"stop\"} 3\n",
            "huge_gauge 1e999\n",
            "# EOF\n",
        );
        let s = parse_samples(page).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[2].name, "vllm:request_success_total");
        assert_eq!(s[2].labels[1], ("finished.reason".into(), "stop".into()));
        assert_eq!(s[3].value, f64::INFINITY);
        let got = extract(&s, &MetricNames::for_kind(ServerKind::Vllm), "x");
        assert_eq!(
            got["m"],
            ModelCounters { prompt_tokens: Some(10.0), generation_tokens: Some(20.0), requests: Some(3.0) }
        );
    }

    #[tokio::test]
    async fn one_bad_line_or_a_non_utf8_comment_costs_no_counters() {
        use axum::routing::get;
        let mut page = b"# HELP x caf\xe9 (latin-1 in a comment)\n".to_vec();
        page.extend_from_slice(fixture("vllm-metrics.txt").as_bytes());
        page.extend_from_slice(b"unrelated_metric{le=\"0.5\" 7\nvllm:broken{model_name=\"m\"} one\n");
        let app = axum::Router::new().route("/metrics", get(move || async move { page.clone() }));
        let addr = serve(app).await;
        let mut src = source(&format!("name = \"v\"\nurl = \"http://{addr}/metrics\"\n"));
        let points = src.collect(1).await.unwrap();
        let clean = extract(
            &parse_samples(&fixture("vllm-metrics.txt")).unwrap(),
            &MetricNames::for_kind(ServerKind::Vllm),
            "unknown",
        );
        assert_eq!(points.len(), clean.len());
        for p in &points {
            let want = &clean[p.tag_value("model").unwrap()];
            assert_eq!(p.field_value("prompt_tokens").and_then(|v| v.as_f64()), want.prompt_tokens);
            assert_eq!(p.field_value("generation_tokens").and_then(|v| v.as_f64()), want.generation_tokens);
        }
        assert!(src.warned_malformed);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse_samples(&text);
        }
    }
}
