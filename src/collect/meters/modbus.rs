//! Modbus TCP energy meters (site, feeder, container meters) through `tokio-modbus`.
//!
//! What to read is data, not code: a register map (TOML) names, per channel, the
//! power and energy registers with their table (`holding`/`input`), type, word order
//! and scale to W or J. Built-in maps live in `maps/`; `map = "/path/to/map.toml"`
//! loads the operator's own (the generic form, see the README). The energy register
//! is what counts: the aggregator integrates energy counters first and power only
//! where no counter exists.

use std::net::SocketAddr;

use async_trait::async_trait;
use serde::Deserialize;
use tokio_modbus::prelude::*;

use super::{ChannelReading, MeterConfig, MeterDriver, MeterError, MeterUrl};

/// Built-in maps: name → TOML.
pub const BUILTIN_MAPS: &[(&str, &str)] = &[
    ("eastron-sdm630", include_str!("maps/eastron-sdm630.toml")),
    ("carlo-gavazzi-em340", include_str!("maps/carlo-gavazzi-em340.toml")),
];

pub const DEFAULT_PORT: u16 = 502;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegisterMap {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Modbus unit (slave) id; the meter config's `unit` overrides it.
    #[serde(default = "default_unit")]
    pub unit: u8,
    pub channels: Vec<MapChannel>,
}

fn default_unit() -> u8 {
    1
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MapChannel {
    pub channel: String,
    pub power: Option<Register>,
    pub energy: Option<Register>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Register {
    pub table: Table,
    /// Zero-based register address (30053 in a data sheet's 3xxxx numbering is 52).
    pub address: u16,
    #[serde(rename = "type")]
    pub kind: RegType,
    #[serde(default)]
    pub word_order: WordOrder,
    /// Multiplies the raw value into W (power) or J (energy).
    #[serde(default = "default_scale")]
    pub scale: f64,
}

fn default_scale() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Holding,
    Input,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum RegType {
    U16,
    I16,
    U32,
    I32,
    F32,
    U64,
    F64,
}

impl RegType {
    pub fn words(self) -> u16 {
        match self {
            RegType::U16 | RegType::I16 => 1,
            RegType::U32 | RegType::I32 | RegType::F32 => 2,
            RegType::U64 | RegType::F64 => 4,
        }
    }
}

/// `big`: the most significant word first (Modbus's own byte order, most meters);
/// `little`: the least significant word first (Carlo Gavazzi, some Schneider).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    #[default]
    Big,
    Little,
}

impl RegisterMap {
    pub fn from_toml(text: &str, origin: &str) -> Result<RegisterMap, MeterError> {
        let m: RegisterMap =
            toml::from_str(text).map_err(|e| MeterError::new(format!("register map {origin}: {e}")))?;
        if m.channels.is_empty() {
            return Err(MeterError::new(format!("register map {origin} has no [[channels]]")));
        }
        for c in &m.channels {
            if c.power.is_none() && c.energy.is_none() {
                return Err(MeterError::new(format!(
                    "register map {origin}: channel `{}` has neither power nor energy",
                    c.channel
                )));
            }
            for r in [c.power, c.energy].into_iter().flatten() {
                if !r.scale.is_finite() || r.scale <= 0.0 {
                    return Err(MeterError::new(format!(
                        "register map {origin}: scale {} must be a positive number",
                        r.scale
                    )));
                }
                if r.address.checked_add(r.kind.words() - 1).is_none() {
                    return Err(MeterError::new(format!(
                        "register map {origin}: address {} runs past 65535",
                        r.address
                    )));
                }
            }
        }
        Ok(m)
    }

    /// A built-in map by name, or a map file by path.
    pub fn load(name_or_path: &str) -> Result<RegisterMap, MeterError> {
        if let Some((_, text)) = BUILTIN_MAPS.iter().find(|(n, _)| *n == name_or_path) {
            return RegisterMap::from_toml(text, name_or_path);
        }
        if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
            let text = std::fs::read_to_string(name_or_path)
                .map_err(|e| MeterError::new(format!("cannot read register map {name_or_path}: {e}")))?;
            return RegisterMap::from_toml(&text, name_or_path);
        }
        let names: Vec<&str> = BUILTIN_MAPS.iter().map(|(n, _)| *n).collect();
        Err(MeterError::new(format!(
            "unknown register map `{name_or_path}`; use one of {} or a path to a map file",
            names.join(", ")
        )))
    }
}

/// Decodes one register value from its words (hostile input: any words, any map).
pub fn decode(words: &[u16], reg: &Register) -> Result<f64, String> {
    let n = reg.kind.words() as usize;
    if words.len() != n {
        return Err(format!("expected {n} registers, got {}", words.len()));
    }
    let mut w: Vec<u16> = words.to_vec();
    if reg.word_order == WordOrder::Little {
        w.reverse();
    }
    let wide = w.iter().fold(0u64, |acc, x| (acc << 16) | u64::from(*x));
    let raw = match reg.kind {
        RegType::U16 => f64::from(w[0]),
        RegType::I16 => f64::from(w[0] as i16),
        RegType::U32 => wide as u32 as f64,
        RegType::I32 => f64::from(wide as u32 as i32),
        RegType::F32 => f64::from(f32::from_bits(wide as u32)),
        RegType::U64 => wide as f64,
        RegType::F64 => f64::from_bits(wide),
    };
    if !raw.is_finite() {
        return Err(format!("register value is not a number ({raw})"));
    }
    Ok(raw * reg.scale)
}

pub struct ModbusMeter {
    host_port: String,
    unit: u8,
    map: RegisterMap,
}

impl ModbusMeter {
    pub fn new(url: &MeterUrl, cfg: &MeterConfig) -> Result<Self, MeterError> {
        let name = cfg.map.as_deref().or(url.param("map")).ok_or_else(|| {
            MeterError::new("a Modbus meter needs a register map: `map = \"eastron-sdm630\"` or modbus://HOST?map=NAME")
        })?;
        let map = RegisterMap::load(name)?;
        let unit = match url.param("unit") {
            Some(u) => u.parse().map_err(|_| MeterError::new(format!("unit `{u}` is not a Modbus unit id (0-255)")))?,
            None => cfg.unit.unwrap_or(map.unit),
        };
        Ok(ModbusMeter { host_port: url.host_port(DEFAULT_PORT), unit, map })
    }

    pub fn map(&self) -> &RegisterMap {
        &self.map
    }
}

fn describe(reg: &Register) -> String {
    let t = match reg.table {
        Table::Holding => "holding",
        Table::Input => "input",
    };
    format!("{t} register {} ({:?}, {:?} word order, ×{})", reg.address, reg.kind, reg.word_order, reg.scale)
}

async fn read_words(ctx: &mut client::Context, reg: &Register) -> Result<Vec<u16>, String> {
    let r = match reg.table {
        Table::Holding => ctx.read_holding_registers(reg.address, reg.kind.words()).await,
        Table::Input => ctx.read_input_registers(reg.address, reg.kind.words()).await,
    };
    match r {
        Ok(Ok(w)) => Ok(w),
        Ok(Err(code)) => Err(format!("the meter answered exception {code:?}; check the map's table and address")),
        Err(e) => Err(e.to_string()),
    }
}

#[async_trait]
impl MeterDriver for ModbusMeter {
    fn kind(&self) -> &'static str {
        "modbus"
    }

    async fn read(&self) -> Result<Vec<ChannelReading>, MeterError> {
        let addr: SocketAddr = tokio::net::lookup_host(&self.host_port)
            .await
            .map_err(|e| MeterError::new(format!("cannot resolve {}: {e}", self.host_port)))?
            .next()
            .ok_or_else(|| MeterError::new(format!("{} has no address", self.host_port)))?;
        let mut ctx = tcp::connect_slave(addr, Slave(self.unit))
            .await
            .map_err(|e| MeterError::new(format!("cannot connect to Modbus TCP {addr}: {e}")))?;
        let mut out = Vec::with_capacity(self.map.channels.len());
        for c in &self.map.channels {
            let mut r = ChannelReading::new(c.channel.as_str());
            if let Some(reg) = &c.power {
                let words = read_words(&mut ctx, reg)
                    .await
                    .map_err(|e| MeterError::new(format!("{addr} {}: {e}", describe(reg))))?;
                match decode(&words, reg) {
                    Ok(w) => r.set_power(w, describe(reg)),
                    Err(e) => r.problems.push(format!("{}: {e}", describe(reg))),
                }
            }
            if let Some(reg) = &c.energy {
                let words = read_words(&mut ctx, reg)
                    .await
                    .map_err(|e| MeterError::new(format!("{addr} {}: {e}", describe(reg))))?;
                match decode(&words, reg) {
                    Ok(j) => {
                        r.set_energy(j, describe(reg));
                        if reg.kind == RegType::U32 {
                            r.energy_wrap_j = Some(4294967296.0 * reg.scale);
                        }
                    }
                    Err(e) => r.problems.push(format!("{}: {e}", describe(reg))),
                }
            }
            out.push(r);
        }
        let _ = ctx.disconnect().await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(kind: RegType, word_order: WordOrder, scale: f64) -> Register {
        Register { table: Table::Holding, address: 0, kind, word_order, scale }
    }

    #[test]
    fn builtin_maps_load() {
        for (name, _) in BUILTIN_MAPS {
            let m = RegisterMap::load(name).unwrap();
            assert!(
                m.channels.iter().all(|c| c.energy.is_some()),
                "{name}: every built-in map reads the energy register"
            );
        }
        assert!(RegisterMap::load("nope").unwrap_err().0.contains("eastron-sdm630"));
    }

    #[test]
    fn both_word_orders() {
        let f = 1234.5f32.to_bits();
        let (hi, lo) = ((f >> 16) as u16, f as u16);
        assert_eq!(decode(&[hi, lo], &reg(RegType::F32, WordOrder::Big, 1.0)).unwrap(), 1234.5);
        assert_eq!(decode(&[lo, hi], &reg(RegType::F32, WordOrder::Little, 1.0)).unwrap(), 1234.5);
        // EM340: int32 low word first, tenths.
        let v: i32 = 123_456;
        let words = [(v as u32 & 0xffff) as u16, (v as u32 >> 16) as u16];
        assert_eq!(decode(&words, &reg(RegType::I32, WordOrder::Little, 0.1)).unwrap(), 12345.6);
        assert_eq!(decode(&[0xffff, 0xfffe], &reg(RegType::I32, WordOrder::Big, 1.0)).unwrap(), -2.0);
        assert!(decode(&[0x7fc0, 0], &reg(RegType::F32, WordOrder::Big, 1.0)).is_err(), "NaN");
        assert!(decode(&[1], &reg(RegType::U32, WordOrder::Big, 1.0)).is_err());
    }

    #[test]
    fn bad_maps_are_named() {
        let e = RegisterMap::from_toml("name='x'\n[[channels]]\nchannel='a'\n", "m.toml").unwrap_err();
        assert!(e.0.contains("neither power nor energy"), "{e}");
        let e = RegisterMap::from_toml(
            "name='x'\n[[channels]]\nchannel='a'\npower={table='input',address=65535,type='u32'}\n",
            "m.toml",
        )
        .unwrap_err();
        assert!(e.0.contains("65535"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(words in proptest::collection::vec(proptest::num::u16::ANY, 0..6), k in 0usize..7, little: bool) {
            let kinds = [RegType::U16, RegType::I16, RegType::U32, RegType::I32, RegType::F32, RegType::U64, RegType::F64];
            let r = reg(kinds[k], if little { WordOrder::Little } else { WordOrder::Big }, 0.1);
            if let Ok(v) = decode(&words, &r) { proptest::prop_assert!(v.is_finite()); }
        }
    }
}
