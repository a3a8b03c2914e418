//! Redfish BMCs: chassis power and energy.
//!
//! Per chassis (`GET /redfish/v1/Chassis`, each member), in this order:
//! 1. `EnvironmentMetrics`: `PowerWatts.Reading`, `EnergykWh.Reading`.
//! 2. `Sensors`, for what (1) lacked: a `ReadingType: Power` sensor with
//!    `PhysicalContext: Chassis`; an `EnergykWh` sensor with `PhysicalContext:
//!    Chassis`, else the sum of the `PowerSupply` ones (input energy of all supplies =
//!    chassis input energy). The sensors chosen are remembered, so later polls read
//!    only those.
//! 3. The deprecated `Power` resource: the first `PowerControl[].PowerConsumedWatts`.
//!
//! Real services disagree with themselves (DMTF's own rackmount mockup gives 374 W in
//! `EnvironmentMetrics` and 344 W in `Power`): the reading says which resource it
//! came from. Only links below `/redfish/v1/` on the same service are followed.
//! Requests to one BMC go one at a time (BMCs are slow and easily overloaded); the
//! meters source bounds how many BMCs are read at once and gives each poll a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{
    get_json, json_number, json_type, ChannelReading, MeterConfig, MeterDriver, MeterError, MeterUrl, MAX_JSON_BYTES,
};

/// Most chassis and sensors looked at per BMC.
const MAX_MEMBERS: usize = 256;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `POST /redfish/v1/SessionService/Sessions`, then `X-Auth-Token` (renewed on 401).
    #[default]
    Session,
    /// HTTP basic on every request.
    Basic,
}

pub struct RedfishMeter {
    base: String,
    client: reqwest::Client,
    creds: Option<super::Credentials>,
    auth: AuthMode,
    token: Mutex<Option<String>>,
    /// Chassis URI → the sensors chosen for it (power, energy URIs).
    sensors: Mutex<HashMap<String, ChosenSensors>>,
}

#[derive(Debug, Clone, Default)]
struct ChosenSensors {
    power: Option<String>,
    energy: Vec<String>,
}

impl RedfishMeter {
    pub fn new(url: &MeterUrl, cfg: &MeterConfig, timeout: Duration) -> Result<Self, MeterError> {
        let tls = url.scheme == "redfish";
        let base =
            if tls { format!("https://{}", url.host_port(443)) } else { format!("http://{}", url.host_port(80)) };
        let client = http_client(tls, cfg, timeout)?;
        let creds = super::Credentials::from_config(cfg)?;
        Ok(RedfishMeter {
            base,
            client,
            creds,
            auth: cfg.auth.unwrap_or_default(),
            token: Mutex::new(None),
            sensors: Mutex::new(HashMap::new()),
        })
    }

    async fn login(&self) -> Result<String, MeterError> {
        let c = self.creds.as_ref().expect("login only with credentials");
        let (u, p) = (&c.user, c.password()?);
        let url = format!("{}/redfish/v1/SessionService/Sessions", self.base);
        let resp = self
            .client
            .post(&url)
            .json(&serde_json::json!({"UserName": u, "Password": p}))
            .send()
            .await
            .map_err(|e| MeterError::new(format!("{url}: {}", super::describe_reqwest(&e))))?;
        if !resp.status().is_success() {
            return Err(MeterError::new(format!(
                "{url}: HTTP {} creating a session; check username and password, or set auth = \"basic\"",
                resp.status()
            )));
        }
        let token = resp
            .headers()
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| MeterError::new(format!("{url}: the session reply has no X-Auth-Token header")))?
            .to_owned();
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(token)
    }

    /// GETs a resource of this service, authenticating as configured.
    async fn get(&self, path: &str) -> Result<Value, MeterError> {
        if !path.starts_with("/redfish/v1") || path.contains("..") {
            return Err(MeterError::new(format!(
                "refusing to follow `{path}`: not a /redfish/v1 path of this service"
            )));
        }
        let url = format!("{}{}", self.base, path);
        for attempt in 0..2 {
            let mut req = self.client.get(&url);
            match (&self.creds, self.auth) {
                (Some(c), AuthMode::Basic) => req = req.basic_auth(&c.user, Some(c.password()?)),
                (Some(_), AuthMode::Session) => {
                    let cached = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let token = match cached {
                        Some(t) => t,
                        None => self.login().await?,
                    };
                    req = req.header("X-Auth-Token", token);
                }
                (None, _) => {}
            }
            match get_json(req, &url, MAX_JSON_BYTES).await {
                Err(e)
                    if attempt == 0
                        && self.auth == AuthMode::Session
                        && self.creds.is_some()
                        && e.0.contains("HTTP 401") =>
                {
                    // The session expired: log in again once.
                    *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                r => return r,
            }
        }
        Err(MeterError::new(format!("{url}: HTTP 401 after a fresh session; check username and password")))
    }

    async fn read_chassis(&self, uri: &str) -> Result<Option<ChannelReading>, MeterError> {
        let chassis = self.get(uri).await?;
        let id = chassis
            .get("Id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri).to_owned());
        let mut r = ChannelReading::new(id);
        if let Some(env) = link(&chassis, "EnvironmentMetrics") {
            let v = self.get(&env).await?;
            environment_metrics(&v, &env, &mut r);
        }
        if r.power_w.is_none() || r.energy_j.is_none() {
            if let Some(sensors) = link(&chassis, "Sensors") {
                let chosen = self.choose_sensors(uri, &sensors).await?;
                if r.power_w.is_none() {
                    if let Some(p) = &chosen.power {
                        let v = self.get(p).await?;
                        read_sensor(&v, p, &mut r, true);
                    }
                }
                if r.energy_j.is_none() && !chosen.energy.is_empty() {
                    let mut values = Vec::new();
                    for e in &chosen.energy {
                        values.push((e.clone(), self.get(e).await?));
                    }
                    sum_energy_sensors(&values, &mut r);
                }
            }
        }
        if r.power_w.is_none() {
            if let Some(power) = link(&chassis, "Power") {
                let v = self.get(&power).await?;
                deprecated_power(&v, &power, &mut r);
            }
        }
        if r.power_w.is_none() && r.energy_j.is_none() && r.problems.is_empty() {
            return Ok(None); // a chassis without power data (a drive cage, a NIC)
        }
        Ok(Some(r))
    }

    async fn choose_sensors(&self, chassis: &str, collection: &str) -> Result<ChosenSensors, MeterError> {
        if let Some(c) = self.sensors.lock().unwrap_or_else(|e| e.into_inner()).get(chassis) {
            return Ok(c.clone());
        }
        let coll = self.get(collection).await?;
        let mut found = Vec::new();
        for m in members(&coll, collection)? {
            let s = self.get(&m).await?;
            found.push((m, s));
        }
        let chosen = pick_sensors(&found);
        self.sensors.lock().unwrap_or_else(|e| e.into_inner()).insert(chassis.to_owned(), chosen.clone());
        Ok(chosen)
    }
}

fn http_client(tls: bool, cfg: &MeterConfig, timeout: Duration) -> Result<reqwest::Client, MeterError> {
    let mut b = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    if tls {
        match (&cfg.cert_sha256, &cfg.ca_file) {
            (Some(_), Some(_)) => return Err(MeterError::new("give ca_file or cert_sha256, not both")),
            (Some(fp), None) => b = b.use_preconfigured_tls(pinned_tls(fp)?),
            (None, Some(ca)) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| MeterError::new(format!("cannot read ca_file {}: {e}", ca.display())))?;
                let cert = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| MeterError::new(format!("ca_file {} is not a PEM certificate: {e}", ca.display())))?;
                b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
            }
            (None, None) => {}
        }
    } else if cfg.cert_sha256.is_some() || cfg.ca_file.is_some() {
        return Err(MeterError::new("ca_file / cert_sha256 need TLS: use redfish://, not redfish+http://"));
    }
    b.build().map_err(|e| MeterError::new(format!("cannot build an HTTP client: {e}")))
}

/// `AB:CD:…` or `abcd…` → 32 bytes.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], MeterError> {
    let hex: String = s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    let bad =
        || MeterError::new(format!("cert_sha256 `{s}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)"));
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn pinned_tls(fp: &str) -> Result<rustls::ClientConfig, MeterError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCert { sha256: parse_fingerprint(fp)?, provider: provider.clone() });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MeterError::new(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts exactly one server certificate, by its SHA-256 fingerprint; the handshake
/// signature is still verified, so the peer must hold that certificate's key.
#[derive(Debug)]
struct PinnedCert {
    sha256: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let got = sha2::Sha256::digest(end_entity.as_ref());
        if got.as_slice() == self.sha256 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            let hex: Vec<String> = got.iter().map(|b| format!("{b:02X}")).collect();
            Err(rustls::Error::General(format!(
                "the BMC's certificate has SHA-256 {} , not the configured cert_sha256",
                hex.join(":")
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `{"X": {"@odata.id": "/redfish/v1/…"}}` → the URI.
fn link(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.get("@odata.id")?.as_str().map(str::to_owned)
}

/// A collection's member URIs (at most [`MAX_MEMBERS`]).
pub fn members(v: &Value, uri: &str) -> Result<Vec<String>, MeterError> {
    let list = v
        .get("Members")
        .ok_or_else(|| MeterError::new(format!("{uri}: not a collection (no Members)")))?
        .as_array()
        .ok_or_else(|| MeterError::new(format!("{uri}: Members is {}, not an array", json_type(&v["Members"]))))?;
    Ok(list
        .iter()
        .take(MAX_MEMBERS)
        .filter_map(|m| m.get("@odata.id").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

/// `EnvironmentMetrics`: `PowerWatts.Reading` (W) and `EnergykWh.Reading` (kWh).
pub fn environment_metrics(v: &Value, uri: &str, r: &mut ChannelReading) {
    if let Some(p) = v.get("PowerWatts").and_then(|p| p.get("Reading")) {
        match json_number(p, "PowerWatts.Reading") {
            Ok(w) => r.set_power(w, format!("{uri} PowerWatts.Reading")),
            Err(e) => r.problems.push(format!("{uri}: {e}")),
        }
    }
    if let Some(e) = v.get("EnergykWh").and_then(|p| p.get("Reading")) {
        match json_number(e, "EnergykWh.Reading") {
            Ok(kwh) => r.set_energy(kwh * 3.6e6, format!("{uri} EnergykWh.Reading")),
            Err(e) => r.problems.push(format!("{uri}: {e}")),
        }
    }
}

fn read_sensor(v: &Value, uri: &str, r: &mut ChannelReading, power: bool) {
    match v.get("Reading").map(|x| json_number(x, "Reading")) {
        Some(Ok(x)) if power => r.set_power(x, format!("{uri} Reading")),
        Some(Ok(kwh)) => r.set_energy(kwh * 3.6e6, format!("{uri} Reading")),
        Some(Err(e)) => r.problems.push(format!("{uri}: {e}")),
        None => r.problems.push(format!("{uri}: sensor has no Reading")),
    }
}

fn sum_energy_sensors(values: &[(String, Value)], r: &mut ChannelReading) {
    let mut total = 0.0;
    for (uri, v) in values {
        match v.get("Reading").map(|x| json_number(x, "Reading")) {
            Some(Ok(kwh)) if kwh >= 0.0 && kwh.is_finite() => total += kwh,
            Some(Ok(kwh)) => {
                r.problems.push(format!("{uri}: energy {kwh} kWh is not a counter value"));
                return;
            }
            Some(Err(e)) => {
                r.problems.push(format!("{uri}: {e}"));
                return;
            }
            None => {
                r.problems.push(format!("{uri}: sensor has no Reading"));
                return;
            }
        }
    }
    let from = values.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>().join(" + ");
    r.set_energy(total * 3.6e6, format!("{from} Reading"));
}

/// From the sensors of one chassis: its power sensor and its energy sensor(s).
fn pick_sensors(found: &[(String, Value)]) -> ChosenSensors {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut c = ChosenSensors::default();
    for (uri, v) in found {
        if s(v, "ReadingType") == "Power" && s(v, "PhysicalContext") == "Chassis" && c.power.is_none() {
            c.power = Some(uri.clone());
        }
    }
    let energy = |ctx: &str| -> Vec<String> {
        found
            .iter()
            .filter(|(_, v)| s(v, "ReadingType") == "EnergykWh" && s(v, "PhysicalContext") == ctx)
            .map(|(u, _)| u.clone())
            .collect()
    };
    let chassis = energy("Chassis");
    c.energy = if chassis.is_empty() { energy("PowerSupply") } else { chassis.into_iter().take(1).collect() };
    c
}

/// The deprecated `Power` resource: the first `PowerControl[]` with `PowerConsumedWatts`.
pub fn deprecated_power(v: &Value, uri: &str, r: &mut ChannelReading) {
    let Some(list) = v.get("PowerControl") else { return };
    let Some(list) = list.as_array() else {
        r.problems.push(format!("{uri}: PowerControl is {}, not an array", json_type(list)));
        return;
    };
    for (i, pc) in list.iter().enumerate().take(MAX_MEMBERS) {
        if let Some(w) = pc.get("PowerConsumedWatts") {
            match json_number(w, "PowerConsumedWatts") {
                Ok(w) => r.set_power(w, format!("{uri} PowerControl[{i}].PowerConsumedWatts")),
                Err(e) => r.problems.push(format!("{uri}: {e}")),
            }
            return;
        }
    }
}

#[async_trait]
impl MeterDriver for RedfishMeter {
    fn kind(&self) -> &'static str {
        "redfish"
    }

    async fn read(&self) -> Result<Vec<ChannelReading>, MeterError> {
        let coll = self.get("/redfish/v1/Chassis").await?;
        let mut out = Vec::new();
        for uri in members(&coll, "/redfish/v1/Chassis")? {
            if let Some(r) = self.read_chassis(&uri).await? {
                out.push(r);
            }
        }
        if out.is_empty() {
            return Err(MeterError::new(format!(
                "{}: no chassis has EnvironmentMetrics, power/energy Sensors or Power; this BMC reports no power",
                self.base
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn environment_metrics_and_fallbacks() {
        let mut r = ChannelReading::new("1U");
        environment_metrics(&json!({"PowerWatts": {"Reading": 374}, "EnergykWh": {"Reading": 1.5}}), "/e", &mut r);
        assert_eq!((r.power_w, r.energy_j), (Some(374.0), Some(1.5 * 3.6e6)));
        let mut r = ChannelReading::new("1U");
        deprecated_power(&json!({"PowerControl": [{"Name": "x"}, {"PowerConsumedWatts": 344}]}), "/p", &mut r);
        assert_eq!(r.power_w, Some(344.0));
        assert_eq!(r.power_from.as_deref(), Some("/p PowerControl[1].PowerConsumedWatts"));
    }

    #[test]
    fn hostile_json() {
        let mut r = ChannelReading::new("c");
        environment_metrics(&json!({"PowerWatts": {"Reading": "much"}, "EnergykWh": {"Reading": -4}}), "/e", &mut r);
        assert_eq!((r.power_w, r.energy_j), (None, None));
        assert_eq!(r.problems.len(), 2);
        let mut r = ChannelReading::new("c");
        deprecated_power(&json!({"PowerControl": {"a": 1}}), "/p", &mut r);
        assert!(r.problems[0].contains("not an array"));
        assert!(members(&json!({"Members": 3}), "/x").is_err());
        assert!(members(&json!([]), "/x").is_err());
    }

    #[test]
    fn supplies_are_summed_when_the_chassis_has_no_energy_sensor() {
        let s = |t: &str, ctx: &str, r: f64| json!({"ReadingType": t, "PhysicalContext": ctx, "Reading": r});
        let found = vec![
            ("/a".to_string(), s("EnergykWh", "PowerSupply", 10.0)),
            ("/b".to_string(), s("EnergykWh", "PowerSupply", 5.0)),
            ("/c".to_string(), s("Power", "Chassis", 300.0)),
            ("/d".to_string(), s("Temperature", "Chassis", 30.0)),
        ];
        let c = pick_sensors(&found);
        assert_eq!(c.power.as_deref(), Some("/c"));
        assert_eq!(c.energy, vec!["/a".to_string(), "/b".to_string()]);
        let mut r = ChannelReading::new("x");
        sum_energy_sensors(&found[..2], &mut r);
        assert_eq!(r.energy_j, Some(15.0 * 3.6e6));
        assert_eq!(r.energy_from.as_deref(), Some("/a + /b Reading"));
        // One bad supply spoils the sum: no partial energy.
        let mut r = ChannelReading::new("x");
        sum_energy_sensors(&[found[0].clone(), ("/e".into(), json!({"Reading": "x"}))], &mut r);
        assert_eq!(r.energy_j, None);
    }

    #[test]
    fn fingerprints() {
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(parse_fingerprint(&fp).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_json_never_panics(s in "\\PC{0,300}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let mut r = ChannelReading::new("c");
                environment_metrics(&v, "/e", &mut r);
                deprecated_power(&v, "/p", &mut r);
                let _ = members(&v, "/m");
                proptest::prop_assert!(r.power_w.is_none_or(|w| w >= 0.0));
            }
        }

        #[test]
        fn any_numbers(p in proptest::num::f64::ANY, e in proptest::num::f64::ANY) {
            let mut r = ChannelReading::new("c");
            environment_metrics(&json!({"PowerWatts": {"Reading": p}, "EnergykWh": {"Reading": e}}), "/e", &mut r);
            proptest::prop_assert!(r.power_w.is_none_or(|w| (0.0..=super::super::MAX_POWER_W).contains(&w)));
            proptest::prop_assert!(r.energy_j.is_none_or(|j| (0.0..=super::super::MAX_ENERGY_J).contains(&j)));
        }
    }
}
