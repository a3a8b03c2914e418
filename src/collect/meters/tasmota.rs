//! Tasmota plugs over HTTP: `GET /cm?cmnd=Status%208` answers
//! `{"StatusSNS": {"ENERGY": {"Total": kWh, "Power": W, …}}}`. Multi-channel devices
//! send `Power` as an array; each element is a channel (`0`, `1`, …) and `Total`
//! (the device's sum) goes with channel `0` only when there is one channel.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{get_json, json_number, ChannelReading, MeterConfig, MeterDriver, MeterError, MeterUrl, MAX_JSON_BYTES};

pub struct TasmotaMeter {
    url: String,
    client: reqwest::Client,
    auth: Option<super::Credentials>,
}

impl TasmotaMeter {
    pub fn new(url: &MeterUrl, cfg: &MeterConfig, timeout: Duration) -> Result<Self, MeterError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| MeterError::new(format!("cannot build an HTTP client: {e}")))?;
        let auth = super::Credentials::from_config(cfg)?;
        Ok(TasmotaMeter { url: format!("http://{}/cm", url.host_port(80)), client, auth })
    }
}

/// A `Status 8` reply → its channels.
pub fn parse_status8(v: &Value) -> Result<Vec<ChannelReading>, MeterError> {
    let energy = v
        .get("StatusSNS")
        .and_then(|s| s.get("ENERGY"))
        .ok_or_else(|| MeterError::new("Status 8: no StatusSNS.ENERGY in the reply (a plug without a power meter?)"))?;
    if !energy.is_object() {
        return Err(MeterError::new("Status 8: StatusSNS.ENERGY is not an object"));
    }
    let powers: Vec<&Value> = match energy.get("Power") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(p) => vec![p],
        None => vec![],
    };
    if powers.len() > 64 {
        return Err(MeterError::new(format!("Status 8: {} power channels; at most 64 are read", powers.len())));
    }
    let mut out: Vec<ChannelReading> = powers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = ChannelReading::new(i.to_string());
            match json_number(p, "ENERGY.Power") {
                Ok(w) => r.set_power(w, format!("Status 8 ENERGY.Power[{i}]")),
                Err(e) => r.problems.push(e),
            }
            r
        })
        .collect();
    if out.is_empty() {
        let mut r = ChannelReading::new("0");
        r.problems.push("no ENERGY.Power in the reply".into());
        out.push(r);
    }
    if out.len() == 1 {
        if let Some(t) = energy.get("Total") {
            match json_number(t, "ENERGY.Total") {
                Ok(kwh) => out[0].set_energy(kwh * 3.6e6, "Status 8 ENERGY.Total"),
                Err(e) => out[0].problems.push(e),
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl MeterDriver for TasmotaMeter {
    fn kind(&self) -> &'static str {
        "tasmota"
    }

    async fn read(&self) -> Result<Vec<ChannelReading>, MeterError> {
        let mut q = vec![("cmnd", "Status 8".to_owned())];
        if let Some(c) = &self.auth {
            q.push(("user", c.user.clone()));
            q.push(("password", c.password()?));
        }
        let req = self.client.get(&self.url).query(&q);
        let v = get_json(req, &format!("{} Status 8", self.url), MAX_JSON_BYTES).await?;
        parse_status8(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_and_multi_channel() {
        let v = json!({"StatusSNS":{"Time":"2026-12-02T10:00:00","ENERGY":{"TotalStartTime":"2026-01-01T00:00:00",
            "Total":12.345,"Yesterday":1.0,"Today":0.5,"Power":1450,"ApparentPower":1500,"Voltage":231,"Current":6.3}}});
        let r = parse_status8(&v).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].power_w, Some(1450.0));
        assert_eq!(r[0].energy_j, Some(12.345 * 3.6e6));
        let v = json!({"StatusSNS":{"ENERGY":{"Total":3.0,"Power":[100, 200]}}});
        let r = parse_status8(&v).unwrap();
        assert_eq!(r.iter().map(|c| c.power_w).collect::<Vec<_>>(), vec![Some(100.0), Some(200.0)]);
        assert!(r.iter().all(|c| c.energy_j.is_none()), "a device total is not one channel's energy");
    }

    #[test]
    fn hostile_replies() {
        assert!(parse_status8(&json!({"Status": {}})).is_err());
        assert!(parse_status8(&json!({"StatusSNS": {"ENERGY": "x"}})).is_err());
        let r = parse_status8(&json!({"StatusSNS":{"ENERGY":{"Power": true, "Total": -3}}})).unwrap();
        assert_eq!((r[0].power_w, r[0].energy_j), (None, None));
        assert_eq!(r[0].problems.len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) { let _ = parse_status8(&v); }
        }
    }
}
