//! Where alerts go: Prometheus Alertmanager (v2 API) and a generic webhook.
//!
//! Both sinks are driven from the [`Book`](super::state::Book): what each sink has
//! accepted is recorded on each alert, so a failed request is simply due again
//! next time and nothing is queued in memory that a restart could lose.
//!
//! - Alertmanager gets every firing alert (re-sent every `resend_interval`, with
//!   `endsAt` four resend intervals ahead so it never times a live alert out) and
//!   each resolved one once, with `endsAt` set to when it resolved. A list of URLs
//!   is an HA pair: a batch counts as delivered when one of them accepts it (they
//!   share alerts among themselves); failures of the other are counted and logged.
//! - The webhook gets one JSON body per change (firing, resolved), signed with
//!   `X-Wattledger-Signature: sha256=<hex HMAC-SHA256 of the body>`.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::state::{Alert, State};
use crate::aggregate::rfc3339;

/// The signature header of webhook bodies.
pub const SIGNATURE_HEADER: &str = "X-Wattledger-Signature";

/// `sha256=<hex>` of `body` keyed by `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// True when `header` is the signature of `body` (compared in constant time).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else { return false };
    let Some(given) = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The labels an alert is sent with.
pub fn sent_labels(a: &Alert) -> BTreeMap<String, String> {
    let mut l = a.labels.clone();
    l.insert("alertname".into(), a.alertname.clone());
    l.insert("severity".into(), a.severity.clone());
    l
}

fn annotations(a: &Alert, page_url: &str) -> BTreeMap<String, String> {
    [
        ("summary".to_string(), a.summary.clone()),
        ("value".to_string(), super::state::fmt_num(a.value)),
        ("threshold".to_string(), super::state::fmt_num(a.threshold)),
        ("unit".to_string(), a.unit.clone()),
        ("window".to_string(), a.window.clone()),
        ("page".to_string(), page_url.to_string()),
    ]
    .into()
}

/// The body of `POST /api/v2/alerts`.
pub fn alertmanager_body(alerts: &[&Alert], page_url: &str, now_ns: i64, resend: Duration) -> serde_json::Value {
    let ahead_ns = 4 * resend.as_nanos() as i64;
    let items: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let starts = a.firing_since_ns.unwrap_or(a.active_since_ns);
            let ends = match a.state {
                State::Resolved => a.resolved_ns.unwrap_or(now_ns),
                _ => now_ns + ahead_ns,
            };
            serde_json::json!({
                "labels": sent_labels(a),
                "annotations": annotations(a, page_url),
                "startsAt": rfc3339(starts),
                "endsAt": rfc3339(ends),
                "generatorURL": page_url,
            })
        })
        .collect();
    serde_json::Value::Array(items)
}

/// The webhook's JSON body for one change.
#[derive(Debug, Serialize)]
pub struct WebhookEvent<'a> {
    pub status: &'a str,
    pub alertname: &'a str,
    pub kind: &'a str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    pub threshold: f64,
    pub starts_at: String,
    pub ends_at: Option<String>,
}

pub fn webhook_body(a: &Alert, page_url: &str) -> Vec<u8> {
    let ev = WebhookEvent {
        status: a.state.as_str(),
        alertname: &a.alertname,
        kind: &a.kind,
        labels: sent_labels(a),
        annotations: annotations(a, page_url),
        value: a.value,
        threshold: a.threshold,
        starts_at: rfc3339(a.firing_since_ns.unwrap_or(a.active_since_ns)),
        ends_at: a.resolved_ns.map(rfc3339),
    };
    serde_json::to_vec(&ev).expect("plain JSON")
}

/// Counters and outage state of one sink, shown by `GET /api/alerts`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkStats {
    pub configured: bool,
    /// Requests accepted.
    pub sent: u64,
    /// Requests failed (each retry counts).
    pub failures: u64,
    pub last_error: Option<String>,
    /// Failed since this wall-clock time (RFC 3339); `None` while it works.
    pub down_since: Option<String>,
    #[serde(skip)]
    pub backoff: Duration,
    #[serde(skip)]
    pub next_try: Option<tokio::time::Instant>,
}

impl SinkStats {
    pub fn due(&self) -> bool {
        self.next_try.is_none_or(|t| tokio::time::Instant::now() >= t)
    }

    /// Records a success; logs the recovery once.
    pub fn ok(&mut self, sink: &str) {
        self.sent += 1;
        if self.down_since.take().is_some() {
            tracing::info!(sink, "alert delivery works again; what was due has been sent");
        }
        self.backoff = Duration::ZERO;
        self.next_try = None;
    }

    /// Records a failure; logs once per outage, then retries with backoff
    /// (1 s doubling to at most `max`).
    pub fn failed(&mut self, sink: &str, error: String, max: Duration) {
        self.failures += 1;
        if self.down_since.is_none() {
            tracing::warn!(sink, error = %error, "alert delivery failed; retrying with backoff (logged once until it works again)");
            self.down_since = Some(rfc3339(crate::model::now_ns()));
        } else {
            tracing::debug!(sink, error = %error, "alert delivery retry failed");
        }
        self.last_error = Some(error);
        self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), max.max(Duration::from_secs(1)));
        self.next_try = Some(tokio::time::Instant::now() + self.backoff);
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>, signature: Option<String>) -> Result<(), String> {
    let mut req = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    if let Some(s) = signature {
        req = req.header(SIGNATURE_HEADER, s);
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(format!("{url}: HTTP {status}: {}", text.chars().take(200).collect::<String>()))
}

/// Posts a batch to every Alertmanager; `Ok` when at least one accepted it.
pub async fn post_alertmanager(
    client: &reqwest::Client,
    base_urls: &[String],
    body: &serde_json::Value,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(body).expect("plain JSON");
    let mut errors = Vec::new();
    let mut accepted = false;
    for base in base_urls {
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        match post(client, &url, bytes.clone(), None).await {
            Ok(()) => accepted = true,
            Err(e) => errors.push(e),
        }
    }
    if accepted && !errors.is_empty() {
        tracing::debug!(errors = %errors.join("; "), "an Alertmanager of the pair did not accept the batch");
    }
    if accepted {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Posts one signed event to the webhook.
pub async fn post_webhook(client: &reqwest::Client, url: &str, secret: &[u8], body: Vec<u8>) -> Result<(), String> {
    let sig = sign(secret, &body);
    post(client, url, body, Some(sig)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_and_verifies() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = sign(b"k", b"{}");
        assert!(verify(b"k", b"{}", &s));
        assert!(!verify(b"k", b"{ }", &s));
        assert!(!verify(b"other", b"{}", &s));
        assert!(!verify(b"k", b"{}", "sha256=zz"));
        assert!(!verify(b"k", b"{}", &s[7..]));
    }

    #[test]
    fn backoff_doubles_to_the_bound_and_resets() {
        let mut s = SinkStats::default();
        for _ in 0..10 {
            s.failed("test", "down".into(), Duration::from_secs(30));
        }
        assert_eq!((s.failures, s.backoff), (10, Duration::from_secs(30)));
        assert!(s.down_since.is_some() && !s.due());
        s.ok("test");
        assert!(s.down_since.is_none() && s.due());
    }
}
