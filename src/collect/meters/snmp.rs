//! SNMP PDUs (v2c, and v3 authNoPriv/authPriv) through the `snmp2` crate: outlet
//! power and outlet energy counters, walked column by column with GETBULK.
//!
//! A profile names the columns per vendor MIB (PowerNet-MIB rPDU2, Raritan PDU2-MIB,
//! ServerTech Sentry4) with the scale of each value to W or J; the `generic` profile
//! takes the operator's OIDs and scales. The channel is the table index after the
//! column (outlet `3`; Raritan `PDU.OUTLET`, Sentry4 `UNIT.CORD.OUTLET`).
//! Counter32/Unsigned32/Gauge32 energy values wrap at 2^32 raw units; the wrap width
//! goes with the reading so that the meters source continues past it.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use snmp2::{AsyncSession, Oid, Value};

use super::{ChannelReading, MeterConfig, MeterDriver, MeterError, MeterUrl};

pub const DEFAULT_PORT: u16 = 161;
/// Most rows walked per column: a bound on a hostile or looping agent.
const MAX_ROWS: usize = 1024;

/// One table column: values at `base.INDEX[.suffix]`, times `scale` to W or J.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub base: Vec<u64>,
    /// A trailing sub-identifier rows must end with (Raritan's sensor type), dropped
    /// from the channel name.
    pub suffix: Option<u64>,
    pub scale: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub power: Option<Column>,
    pub energy: Option<Column>,
}

/// The operator's OIDs (`profile = "generic"`): columns walked like a vendor table.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct GenericOids {
    /// Power column, e.g. `.1.3.6.1.4.1.99999.1.2`; rows below it are channels.
    pub power_oid: Option<String>,
    /// Raw power × `power_scale` = W.
    #[serde(default = "one")]
    pub power_scale: f64,
    pub energy_oid: Option<String>,
    /// Raw energy × `energy_scale` = J (3600 for Wh, 360000 for 0.1 kWh).
    #[serde(default = "one")]
    pub energy_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// `[meters.devices.snmp_v3]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct V3Config {
    pub user: String,
    /// `md5`, `sha1` (default), `sha224`, `sha256`, `sha384`, `sha512`.
    #[serde(default = "default_auth_protocol")]
    pub auth_protocol: String,
    pub auth_password: String,
    /// `des`, `aes128`, `aes192`, `aes256`; authNoPriv when absent.
    pub priv_protocol: Option<String>,
    pub priv_password: Option<String>,
}

fn default_auth_protocol() -> String {
    "sha1".into()
}

pub fn parse_oid(s: &str) -> Result<Vec<u64>, String> {
    let t = s.trim().trim_start_matches('.');
    let arcs: Result<Vec<u64>, _> = t.split('.').map(|a| a.parse::<u64>()).collect();
    match arcs {
        Ok(a) if a.len() >= 2 && a.iter().all(|x| *x <= u32::MAX as u64) => Ok(a),
        _ => Err(format!("`{s}` is not a numeric OID like .1.3.6.1.4.1.318.1.1.26.9.4.3.1.7")),
    }
}

pub fn oid_string(arcs: &[u64]) -> String {
    arcs.iter().map(|a| format!(".{a}")).collect()
}

fn col(base: &str, suffix: Option<u64>, scale: f64) -> Option<Column> {
    Some(Column { base: parse_oid(base).expect("built-in OID"), suffix, scale })
}

/// The built-in profiles, by name.
pub fn builtin_profile(name: &str) -> Option<Profile> {
    let p = |power, energy| Some(Profile { name: name.to_owned(), power, energy });
    match name {
        // PowerNet-MIB rPDU2OutletMeteredStatusTable: .7 Power (W), .11 Energy (0.1 kWh).
        "apc-rpdu2" => p(
            col(".1.3.6.1.4.1.318.1.1.26.9.4.3.1.7", None, 1.0),
            col(".1.3.6.1.4.1.318.1.1.26.9.4.3.1.11", None, 360_000.0),
        ),
        // PDU2-MIB measurementsOutletSensorValue.PDU.OUTLET.TYPE: activePower(5) W,
        // activeEnergy(8) Wh (outletSensorDecimalDigits 0, the firmware default).
        "raritan-pdu2" => p(
            col(".1.3.6.1.4.1.13742.6.5.4.3.1.4", Some(5), 1.0),
            col(".1.3.6.1.4.1.13742.6.5.4.3.1.4", Some(8), 3600.0),
        ),
        // Sentry4-MIB st4OutletMonitorTable: .7 st4OutletActivePower (W), .14
        // st4OutletEnergy (Wh); -1 means "not available".
        "sentry4" => {
            p(col(".1.3.6.1.4.1.1718.4.1.8.3.1.7", None, 1.0), col(".1.3.6.1.4.1.1718.4.1.8.3.1.14", None, 3600.0))
        }
        _ => None,
    }
}

pub const PROFILES: &[&str] = &["apc-rpdu2", "raritan-pdu2", "sentry4", "generic"];

pub fn profile_from_config(name: &str, generic: Option<&GenericOids>) -> Result<Profile, MeterError> {
    if name == "generic" {
        let g = generic.ok_or_else(|| {
            MeterError::new("profile \"generic\" needs [meters.devices.generic] with power_oid and/or energy_oid")
        })?;
        let mk = |oid: &Option<String>, scale: f64| -> Result<Option<Column>, MeterError> {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(MeterError::new(format!("generic SNMP scale {scale} must be a positive number")));
            }
            oid.as_deref()
                .map(|o| parse_oid(o).map(|base| Column { base, suffix: None, scale }).map_err(MeterError::new))
                .transpose()
        };
        let (power, energy) = (mk(&g.power_oid, g.power_scale)?, mk(&g.energy_oid, g.energy_scale)?);
        if power.is_none() && energy.is_none() {
            return Err(MeterError::new("generic SNMP profile: give power_oid, energy_oid or both"));
        }
        return Ok(Profile { name: "generic".into(), power, energy });
    }
    builtin_profile(name)
        .ok_or_else(|| MeterError::new(format!("unknown SNMP profile `{name}`; use one of {}", PROFILES.join(", "))))
}

/// A value from an SNMP reply, as far as a meter needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpNumber {
    /// A signed INTEGER: no wrap.
    Int(i64),
    /// Counter32 / Gauge32 / Unsigned32: wraps at 2^32.
    U32(u32),
    Counter64(u64),
}

impl SnmpNumber {
    pub fn as_f64(&self) -> f64 {
        match *self {
            SnmpNumber::Int(i) => i as f64,
            SnmpNumber::U32(u) => f64::from(u),
            SnmpNumber::Counter64(u) => u as f64,
        }
    }
    /// Raw units at which the value wraps.
    pub fn wrap(&self) -> Option<f64> {
        matches!(self, SnmpNumber::U32(_)).then_some(4294967296.0)
    }
}

/// What a varbind's value means for a meter: a number, or why not.
pub fn number_from_value(v: &Value<'_>) -> Result<SnmpNumber, String> {
    match v {
        Value::Integer(i) => Ok(SnmpNumber::Int(*i)),
        Value::Counter32(u) | Value::Unsigned32(u) => Ok(SnmpNumber::U32(*u)),
        Value::Counter64(u) => Ok(SnmpNumber::Counter64(*u)),
        Value::OctetString(s) => {
            // Some firmware sends numbers as strings ("374").
            let t = std::str::from_utf8(s).map_err(|_| "an OCTET STRING that is not text".to_string())?;
            t.trim()
                .parse::<i64>()
                .map(SnmpNumber::Int)
                .map_err(|_| format!("the string \"{}\", not a number", t.escape_debug()))
        }
        Value::NoSuchObject | Value::NoSuchInstance => Err("no such object on this agent".into()),
        Value::EndOfMibView => Err("end of the agent's MIB view".into()),
        other => Err(format!("{other:?}, not a number")),
    }
}

/// Rows of one column: (index after the base, value).
pub type Rows = Vec<(Vec<u64>, Result<SnmpNumber, String>)>;

/// Turns the walked power and energy columns into channels (pure; property-tested).
pub fn channels_from_rows(profile: &Profile, power: &Rows, energy: &Rows) -> Vec<ChannelReading> {
    let mut out: Vec<ChannelReading> = Vec::new();
    let mut at = |index: &[u64], col: &Column| -> Option<(String, usize)> {
        let idx = match col.suffix {
            Some(s) => match index.split_last() {
                Some((last, rest)) if *last == s && !rest.is_empty() => rest,
                _ => return None,
            },
            None => index,
        };
        if idx.is_empty() {
            return None;
        }
        let name = idx.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        let pos = match out.iter().position(|c| c.channel == name) {
            Some(p) => p,
            None => {
                out.push(ChannelReading::new(name.as_str()));
                out.len() - 1
            }
        };
        Some((name, pos))
    };
    let mut pending: Vec<(usize, bool, String, Result<SnmpNumber, String>, f64)> = Vec::new();
    for (c, rows, is_power) in [(&profile.power, power, true), (&profile.energy, energy, false)] {
        let Some(c) = c else { continue };
        for (index, v) in rows {
            if let Some((_, pos)) = at(index, c) {
                let mut full = c.base.clone();
                full.extend_from_slice(index);
                pending.push((pos, is_power, oid_string(&full), v.clone(), c.scale));
            }
        }
    }
    for (pos, is_power, oid, v, scale) in pending {
        let r = &mut out[pos];
        match v {
            Err(e) => r.problems.push(format!("{oid}: {e}")),
            Ok(n) if is_power => r.set_power(n.as_f64() * scale, oid),
            Ok(n) => {
                r.set_energy(n.as_f64() * scale, oid);
                if r.energy_j.is_some() {
                    r.energy_wrap_j = n.wrap().map(|w| w * scale);
                }
            }
        }
    }
    out
}

pub struct SnmpMeter {
    host_port: String,
    community: String,
    v3: Option<V3Config>,
    profile: Profile,
    request_timeout: Duration,
}

impl SnmpMeter {
    pub fn new(url: &MeterUrl, cfg: &MeterConfig, timeout: Duration) -> Result<Self, MeterError> {
        let name = cfg.profile.as_deref().or(url.param("profile")).unwrap_or("apc-rpdu2");
        let profile = profile_from_config(name, cfg.generic.as_ref())?;
        if let Some(v3) = &cfg.snmp_v3 {
            security(v3)?;
        }
        let community = url.user.clone().unwrap_or_else(|| "public".into());
        Ok(SnmpMeter {
            host_port: url.host_port(DEFAULT_PORT),
            community,
            v3: cfg.snmp_v3.clone(),
            profile,
            request_timeout: timeout,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    async fn session(&self) -> Result<AsyncSession, MeterError> {
        let io = |e: std::io::Error| MeterError::new(format!("cannot open a UDP socket to {}: {e}", self.host_port));
        match &self.v3 {
            None => AsyncSession::new_v2c(self.host_port.as_str(), self.community.as_bytes(), 1).await.map_err(io),
            Some(v3) => {
                let mut s = AsyncSession::new_v3(self.host_port.as_str(), 1, security(v3)?).await.map_err(io)?;
                tokio::time::timeout(self.request_timeout, s.init())
                    .await
                    .map_err(|_| MeterError::new(format!("{}: no SNMPv3 engine discovery reply", self.host_port)))?
                    .map_err(|e| {
                        MeterError::new(format!(
                            "{}: SNMPv3 discovery failed ({e:?}); check user, protocols and passwords",
                            self.host_port
                        ))
                    })?;
                Ok(s)
            }
        }
    }

    /// Walks one column with GETBULK; every row below `base`, at most [`MAX_ROWS`].
    async fn walk(&self, s: &mut AsyncSession, base: &[u64]) -> Result<Rows, MeterError> {
        let mut rows = Rows::new();
        let mut cursor = base.to_vec();
        loop {
            let oid =
                Oid::from(&cursor).map_err(|e| MeterError::new(format!("bad OID {}: {e:?}", oid_string(&cursor))))?;
            let pdu = tokio::time::timeout(self.request_timeout, s.getbulk(&[&oid], 0, 32))
                .await
                .map_err(|_| {
                    MeterError::new(format!("{}: no SNMP reply (community, v3 user or address wrong?)", self.host_port))
                })?
                .map_err(|e| MeterError::new(format!("{}: SNMP error {e:?}", self.host_port)))?;
            if pdu.error_status != 0 {
                return Err(MeterError::new(format!(
                    "{}: the agent answered error status {}",
                    self.host_port, pdu.error_status
                )));
            }
            let mut progressed = false;
            let mut done = false;
            for (name, value) in pdu.varbinds.clone() {
                let arcs: Vec<u64> = match name.iter() {
                    Some(it) => it.collect(),
                    None => {
                        done = true;
                        break;
                    }
                };
                if matches!(value, Value::EndOfMibView) || !arcs.starts_with(base) || arcs <= cursor {
                    done = true;
                    break;
                }
                rows.push((arcs[base.len()..].to_vec(), number_from_value(&value)));
                cursor = arcs;
                progressed = true;
                if rows.len() >= MAX_ROWS {
                    done = true;
                    break;
                }
            }
            if done || !progressed {
                return Ok(rows);
            }
        }
    }
}

pub fn security(v3: &V3Config) -> Result<snmp2::v3::Security, MeterError> {
    use snmp2::v3::{Auth, AuthProtocol, Cipher, Security};
    let auth_protocol = match v3.auth_protocol.to_ascii_lowercase().as_str() {
        "md5" => AuthProtocol::Md5,
        "sha" | "sha1" => AuthProtocol::Sha1,
        "sha224" => AuthProtocol::Sha224,
        "sha256" => AuthProtocol::Sha256,
        "sha384" => AuthProtocol::Sha384,
        "sha512" => AuthProtocol::Sha512,
        other => {
            return Err(MeterError::new(format!(
                "snmp_v3 auth_protocol `{other}`: use md5, sha1, sha224, sha256, sha384 or sha512"
            )))
        }
    };
    let auth = match (&v3.priv_protocol, &v3.priv_password) {
        (None, None) => Auth::AuthNoPriv,
        (Some(p), Some(pw)) => {
            let cipher = match p.to_ascii_lowercase().as_str() {
                "des" => Cipher::Des,
                "aes" | "aes128" => Cipher::Aes128,
                "aes192" => Cipher::Aes192,
                "aes256" => Cipher::Aes256,
                other => {
                    return Err(MeterError::new(format!(
                        "snmp_v3 priv_protocol `{other}`: use des, aes128, aes192 or aes256"
                    )))
                }
            };
            Auth::AuthPriv { cipher, privacy_password: pw.as_bytes().to_vec() }
        }
        _ => {
            return Err(MeterError::new("snmp_v3: give both priv_protocol and priv_password, or neither (authNoPriv)"))
        }
    };
    if v3.auth_password.len() < 8 {
        return Err(MeterError::new("snmp_v3 auth_password must be at least 8 characters (RFC 3414)"));
    }
    Ok(Security::new(v3.user.as_bytes(), v3.auth_password.as_bytes()).with_auth_protocol(auth_protocol).with_auth(auth))
}

#[async_trait]
impl MeterDriver for SnmpMeter {
    fn kind(&self) -> &'static str {
        "snmp"
    }

    async fn read(&self) -> Result<Vec<ChannelReading>, MeterError> {
        let mut s = self.session().await?;
        let power = match &self.profile.power {
            Some(c) => self.walk(&mut s, &c.base).await?,
            None => Rows::new(),
        };
        let energy = match &self.profile.energy {
            // Raritan keeps power and energy in one column: one walk serves both.
            Some(c) if self.profile.power.as_ref().is_some_and(|p| p.base == c.base) => power.clone(),
            Some(c) => self.walk(&mut s, &c.base).await?,
            None => Rows::new(),
        };
        if power.is_empty() && energy.is_empty() {
            return Err(MeterError::new(format!(
                "{}: the agent has no rows under the `{}` profile's OIDs; is it that make of PDU? (profiles: {})",
                self.host_port,
                self.profile.name,
                PROFILES.join(", ")
            )));
        }
        Ok(channels_from_rows(&self.profile, &power, &energy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apc_rows_become_outlets_with_32_bit_wrap() {
        let p = builtin_profile("apc-rpdu2").unwrap();
        let power: Rows = vec![(vec![1], Ok(SnmpNumber::Int(120))), (vec![2], Ok(SnmpNumber::Int(-1)))];
        let energy: Rows =
            vec![(vec![1], Ok(SnmpNumber::U32(55))), (vec![2], Err("no such object on this agent".into()))];
        let c = channels_from_rows(&p, &power, &energy);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].power_w, Some(120.0));
        assert_eq!(c[0].energy_j, Some(55.0 * 360_000.0));
        assert_eq!(c[0].energy_wrap_j, Some(4294967296.0 * 360_000.0));
        assert_eq!(c[0].power_from.as_deref(), Some(".1.3.6.1.4.1.318.1.1.26.9.4.3.1.7.1"));
        assert_eq!(c[1].power_w, None);
        assert_eq!(c[1].problems.len(), 2, "{:?}", c[1].problems);
    }

    #[test]
    fn raritan_sensor_types_split_one_column() {
        let p = builtin_profile("raritan-pdu2").unwrap();
        let rows: Rows = vec![
            (vec![1, 3, 1], Ok(SnmpNumber::U32(2))),    // rmsCurrent: ignored
            (vec![1, 3, 5], Ok(SnmpNumber::U32(230))),  // activePower
            (vec![1, 3, 8], Ok(SnmpNumber::U32(1000))), // activeEnergy, Wh
        ];
        let c = channels_from_rows(&p, &rows, &rows);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].channel, "1.3");
        assert_eq!((c[0].power_w, c[0].energy_j), (Some(230.0), Some(3.6e6)));
    }

    #[test]
    fn generic_needs_oids_and_positive_scales() {
        assert!(profile_from_config("generic", None).is_err());
        let g = GenericOids { power_oid: Some(".1.3.6.1.4.1.99999.1".into()), power_scale: 0.0, ..Default::default() };
        assert!(profile_from_config("generic", Some(&g)).unwrap_err().0.contains("positive"));
        assert!(profile_from_config("eaton", None).unwrap_err().0.contains("apc-rpdu2"));
        assert!(parse_oid("1.3.x").is_err());
    }

    #[test]
    fn values_of_the_wrong_type_are_named() {
        assert!(number_from_value(&Value::OctetString(b"abc")).unwrap_err().contains("abc"));
        assert_eq!(number_from_value(&Value::OctetString(b" 42 ")).unwrap(), SnmpNumber::Int(42));
        assert!(number_from_value(&Value::Null).is_err());
        assert!(number_from_value(&Value::IpAddress([1, 2, 3, 4])).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_rows_give_checked_channels(
            rows in proptest::collection::vec((proptest::collection::vec(0u64..5, 0..4), proptest::num::i64::ANY), 0..30),
        ) {
            for name in ["apc-rpdu2", "raritan-pdu2", "sentry4"] {
                let p = builtin_profile(name).unwrap();
                let r: Rows = rows.iter().map(|(i, v)| (i.clone(), Ok(SnmpNumber::Int(*v)))).collect();
                for c in channels_from_rows(&p, &r, &r) {
                    proptest::prop_assert!(c.power_w.is_none_or(|w| (0.0..=super::super::MAX_POWER_W).contains(&w)));
                    proptest::prop_assert!(c.energy_j.is_none_or(|j| (0.0..=super::super::MAX_ENERGY_J).contains(&j)));
                }
            }
        }

        #[test]
        fn any_bytes_as_a_string_value(b in proptest::collection::vec(proptest::num::u8::ANY, 0..20)) {
            let _ = number_from_value(&Value::OctetString(&b));
        }
    }
}
