//! Shelly Gen2+ plugs and relays over their RPC API: `GET /rpc/Switch.GetStatus?id=N`
//! answers `{"id":0, "apower": W, "aenergy": {"total": Wh, …}, …}`. Channels are
//! switch ids (`0`, `1`, …); `?channels=0,1` in the URL reads several, default `0`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{get_json, json_number, ChannelReading, MeterConfig, MeterDriver, MeterError, MeterUrl, MAX_JSON_BYTES};

pub struct ShellyMeter {
    base: String,
    ids: Vec<u32>,
    client: reqwest::Client,
    auth: Option<super::Credentials>,
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
        Ok(ShellyMeter { base: format!("http://{}", url.host_port(80)), ids, client, auth })
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
            let mut req = self.client.get(format!("{}/rpc/Switch.GetStatus?id={id}", self.base));
            if let Some(c) = &self.auth {
                // Gen2 uses digest auth; reqwest speaks basic only, which plugs without
                // a password ignore. A protected plug answers 401 (reported as such).
                req = req.basic_auth(&c.user, Some(c.password()?));
            }
            let v = get_json(req, &format!("{} Switch.GetStatus", self.base), MAX_JSON_BYTES).await?;
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
