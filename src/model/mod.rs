//! The data model every other module speaks: a [`Point`] is one InfluxDB-style row
//! (measurement, sorted tags, typed fields, a nanosecond timestamp).
//!
//! Nothing here depends on any other module of ours; collectors produce points, the
//! shipper and the stores move them, the aggregator reads them back. Measurement, tag
//! and field names live in [`schema`] and nowhere else.

pub mod schema;

use std::fmt;

/// A typed field value, as InfluxDB line protocol knows them.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    /// The value as a float, for arithmetic; `None` for strings.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Int(v) => Some(v as f64),
            FieldValue::UInt(v) => Some(v as f64),
            FieldValue::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            FieldValue::Str(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Int(v)
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::UInt(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_owned())
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Float(v) => write!(f, "{v}"),
            FieldValue::Int(v) => write!(f, "{v}i"),
            FieldValue::UInt(v) => write!(f, "{v}u"),
            FieldValue::Bool(v) => write!(f, "{v}"),
            FieldValue::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// One row: measurement, tags sorted by key (InfluxDB's canonical series key order),
/// fields in insertion order, timestamp in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    pub time_ns: i64,
}

impl Point {
    pub fn new(measurement: impl Into<String>, time_ns: i64) -> Self {
        Point { measurement: measurement.into(), tags: Vec::new(), fields: Vec::new(), time_ns }
    }

    /// Sets a tag, keeping tags sorted and unique by key. Empty values are skipped:
    /// InfluxDB drops empty tag values, so storing them would only create mismatches.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_tag(key, value);
        self
    }

    pub fn set_tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        if value.is_empty() {
            return;
        }
        match self.tags.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.tags[i].1 = value,
            Err(i) => self.tags.insert(i, (key, value)),
        }
    }

    /// Adds a field, replacing an earlier value with the same key.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.set_field(key, value);
        self
    }

    pub fn set_field(&mut self, key: impl Into<String>, value: impl Into<FieldValue>) {
        let (key, value) = (key.into(), value.into());
        if let Some(slot) = self.fields.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.fields.push((key, value));
        }
    }

    /// Adds a field only when the value is known; absent readings stay absent
    /// rather than becoming zeros.
    pub fn field_opt<V: Into<FieldValue>>(self, key: impl Into<String>, value: Option<V>) -> Self {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn field_value(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Where "now" comes from. Production uses the system clock; the demo and tests run
/// simulated time (faster than real time, or through the recent past).
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        now_ns()
    }
}

/// A clock tests and the demo can set: simulated time at any speed or in the past.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(t_ns: i64) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(t_ns))
    }
    pub fn set(&self, t_ns: i64) {
        self.0.store(t_ns, std::sync::atomic::Ordering::SeqCst)
    }
    pub fn advance(&self, d: std::time::Duration) {
        self.0.fetch_add(d.as_nanos() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Nanoseconds since the Unix epoch by the system clock.
pub fn now_ns() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.as_nanos() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_stay_sorted_and_unique() {
        let p = Point::new("gpu", 1).tag("uuid", "x").tag("gpu", "0").tag("host", "h").tag("gpu", "1");
        let keys: Vec<_> = p.tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["gpu", "host", "uuid"]);
        assert_eq!(p.tag_value("gpu"), Some("1"));
    }

    #[test]
    fn empty_tag_values_are_dropped_and_fields_replace() {
        let p = Point::new("m", 1).tag("a", "").field("f", 1.0).field("f", 2i64);
        assert!(p.tags.is_empty());
        assert_eq!(p.fields, vec![("f".to_string(), FieldValue::Int(2))]);
    }
}
