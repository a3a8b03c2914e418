//! Shelly Gen2+ plugs and relays over their RPC API: `GET /rpc/Switch.GetStatus?id=N`
//! answers `{"id":0, "apower": W, "aenergy": {"total": Wh, …}, …}`. Channels are
//! switch ids (`0`, `1`, …); `?channels=0,1` in the URL reads several, default `0`.
//!
//! A plug with a password protects its RPC with HTTP Digest authentication (SHA-256,
//! RFC 7616; the user is always `admin`): an unauthenticated request is answered 401
//! with a challenge, and the answer to it (from the `http-auth` crate) goes with
//! every later request, its nonce count rising, until the plug answers 401 again.

use std::time::Duration;

use async_trait::async_trait;
use http_auth::{PasswordClient, PasswordParams};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{
    json_number, json_reply, send, ChannelReading, MeterConfig, MeterDriver, MeterError, MeterUrl, MAX_JSON_BYTES,
};

pub struct ShellyMeter {
    base: String,
    ids: Vec<u32>,
    client: reqwest::Client,
    auth: Option<super::Credentials>,
    /// The plug's latest digest challenge, answered on each request.
    digest: Mutex<Option<PasswordClient>>,
}

impl ShellyMeter {
    pub fn new(url: &MeterUrl, cfg: &MeterConfig, timeout: Duration) -> Result<Self, MeterError> {
        let ids = match url.param("channels") {
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse::<u32>()
                        .map_err(|_| MeterError::new(format!("shelly channels: `{s}` is not a switch id")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => cfg.channels.iter().filter_map(|c| c.channel.parse().ok()).collect(),
        };
        let ids = if ids.is_empty() { vec![0] } else { ids };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| MeterError::new(format!("cannot build an HTTP client: {e}")))?;
        let auth = super::Credentials::from_config(cfg)?;
        let base = format!("http://{}", url.host_port(80));
        Ok(ShellyMeter { base, ids, client, auth, digest: Mutex::new(None) })
    }

    /// `GET path`, answering the plug's digest challenge when it has a password.
    async fn get(&self, path: &str) -> Result<Value, MeterError> {
        let what = format!("{}{path}", self.base);
        let url = format!("{}{path}", self.base);
        let Some(cred) = &self.auth else {
            return json_reply(send(self.client.get(&url), &what).await?, &what, MAX_JSON_BYTES).await;
        };
        let password = cred.password()?;
        // A known challenge is answered straight away; a 401 (no challenge yet, or a
        // stale nonce) brings a new one, answered once.
        for fresh_challenge in [false, true] {
            let mut req = self.client.get(&url);
            if let Some(client) = self.digest.lock().await.as_mut() {
                let params =
                    PasswordParams { username: &cred.user, password: &password, uri: path, method: "GET", body: None };
                let answer = client.respond(&params).map_err(|e| MeterError::new(format!("{what}: {e}")))?;
                req = req.header(reqwest::header::AUTHORIZATION, answer);
            }
            let resp = send(req, &what).await?;
            if resp.status() != reqwest::StatusCode::UNAUTHORIZED || fresh_challenge {
                return json_reply(resp, &what, MAX_JSON_BYTES).await;
            }
            let challenge = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ");
            let client = PasswordClient::try_from(challenge.as_str()).map_err(|e| {
                MeterError::new(format!("{what}: HTTP 401 without a digest challenge we can answer ({e})"))
            })?;
            *self.digest.lock().await = Some(client);
        }
        Err(MeterError::new(format!(
            "{what}: HTTP 401 after answering the plug's challenge; check username and password"
        )))
    }
}

/// One `Switch.GetStatus` reply → one channel.
pub fn parse_switch_status(v: &Value, id: u32) -> Result<ChannelReading, MeterError> {
    let obj = v.as_object().ok_or_else(|| MeterError::new("Switch.GetStatus: reply is not a JSON object"))?;
    if let Some(e) = obj.get("error") {
        return Err(MeterError::new(format!("Switch.GetStatus: the plug answered an error: {e}")));
    }
    let mut r = ChannelReading::new(id.to_string());
    let from = format!("Switch.GetStatus?id={id}");
    match obj.get("apower") {
        Some(p) => match json_number(p, "apower") {
            Ok(w) => r.set_power(w, format!("{from} apower")),
            Err(e) => r.problems.push(e),
        },
        None => r.problems.push("no `apower` in the reply (a switch without metering?)".into()),
    }
    if let Some(total) = obj.get("aenergy").and_then(|a| a.get("total")) {
        match json_number(total, "aenergy.total") {
            Ok(wh) => r.set_energy(wh * 3600.0, format!("{from} aenergy.total")),
            Err(e) => r.problems.push(e),
        }
    }
    Ok(r)
}

#[async_trait]
impl MeterDriver for ShellyMeter {
    fn kind(&self) -> &'static str {
        "shelly"
    }

    async fn read(&self) -> Result<Vec<ChannelReading>, MeterError> {
        let mut out = Vec::with_capacity(self.ids.len());
        for &id in &self.ids {
            let v = self.get(&format!("/rpc/Switch.GetStatus?id={id}")).await?;
            out.push(parse_switch_status(&v, id)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_power_and_energy() {
        let v = json!({"id":0,"source":"init","output":true,"apower":1234.5,"voltage":230.1,
            "aenergy":{"total":5000.25,"by_minute":[1.0,2.0,3.0],"minute_ts":1700000000}});
        let r = parse_switch_status(&v, 0).unwrap();
        assert_eq!(r.power_w, Some(1234.5));
        assert_eq!(r.energy_j, Some(5000.25 * 3600.0));
        assert_eq!(r.power_from.as_deref(), Some("Switch.GetStatus?id=0 apower"));
    }

    #[test]
    fn hostile_replies_are_errors_or_problems() {
        assert!(parse_switch_status(&json!([1, 2]), 0).is_err());
        assert!(parse_switch_status(&json!({"error": {"code": 404}}), 0).is_err());
        let r = parse_switch_status(&json!({"apower": "lots", "aenergy": {"total": -5}}), 0).unwrap();
        assert_eq!((r.power_w, r.energy_j), (None, None));
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(p in proptest::num::f64::ANY, e in proptest::num::f64::ANY) {
            let v = json!({"apower": p, "aenergy": {"total": e}});
            if let Ok(r) = parse_switch_status(&v, 0) {
                proptest::prop_assert!(r.power_w.is_none_or(|w| (0.0..=super::super::MAX_POWER_W).contains(&w)));
            }
        }
    }
}
