//! Per series and UTC hour, what the store's rows of that hour hold, summed: the
//! `fields` blob of a `series_hours` row. Reads over whole hours answer counts and
//! grouped aggregates from it instead of walking every point of the hour (one row
//! here stands for 60 ledger points or 3,600 one-second samples).
//!
//! Per field it keeps the number of values (any type) and, over the finite
//! numbers among them, their count, sum, minimum and maximum. The sum is added up
//! in the order the points were written, so it equals, to the bit, a time-ordered
//! fold of the rows (what a grouped read over the points computes) as long as the
//! series' points of the hour were written in time order and none was changed
//! afterwards. When that stops being true, `exact` is cleared and readers take
//! that series' hour from its points again; the counts stay exact in every case,
//! because a merge that overwrites a field does not add a value.

use super::{corrupt, get_varint, put_varint, RawField, StoreError};
use crate::model::FieldValue;

/// One field's summary over a series' hour.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FieldHour {
    pub id: u32,
    /// Values of any type (what `count` counts).
    pub values: u64,
    /// Finite numbers among them, and their sum, minimum and maximum (meaningful
    /// only when `numbers > 0`).
    pub numbers: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// A series' hour: see the module doc.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SeriesHour {
    /// The latest point time seen, to notice a point written out of time order.
    pub last_ns: i64,
    /// Whether the numeric summaries equal a time-ordered fold of the rows.
    pub exact: bool,
    pub fields: Vec<FieldHour>,
}

impl Default for SeriesHour {
    fn default() -> Self {
        SeriesHour { last_ns: i64::MIN, exact: true, fields: Vec::new() }
    }
}

/// The number a grouped read folds for a value: ints and uints as floats, finite
/// only; bools and strings are counted, not summed.
pub(super) fn number_of(v: &FieldValue) -> Option<f64> {
    match *v {
        FieldValue::Float(x) => Some(x),
        FieldValue::Int(x) => Some(x as f64),
        FieldValue::UInt(x) => Some(x as f64),
        FieldValue::Bool(_) | FieldValue::Str(_) => None,
    }
    .filter(|x| x.is_finite())
}

pub(super) fn raw_number(raw: &RawField<'_>) -> Option<f64> {
    match *raw {
        RawField::Float(x) => Some(f64::from_le_bytes(x)),
        RawField::Int(x) => Some(i64::from_le_bytes(x) as f64),
        RawField::UInt(x) => Some(u64::from_le_bytes(x) as f64),
        RawField::Bool(_) | RawField::Str(_) => None,
    }
    .filter(|x| x.is_finite())
}

impl SeriesHour {
    /// A new point at `time_ns`: its fields `(name id, number if any)` are added.
    pub fn add_point(&mut self, time_ns: i64, fields: impl Iterator<Item = (u32, Option<f64>)>) {
        if time_ns < self.last_ns {
            self.exact = false;
        }
        self.last_ns = self.last_ns.max(time_ns);
        for (id, number) in fields {
            self.add_value(id, number);
        }
    }

    /// A field that a merge adds to a stored point at `time_ns` (the point had no
    /// value for it).
    pub fn add_merged(&mut self, time_ns: i64, id: u32, number: Option<f64>) {
        // Other values of the field may be later than this one.
        if time_ns < self.last_ns {
            self.exact = false;
        }
        self.last_ns = self.last_ns.max(time_ns);
        self.add_value(id, number);
    }

    /// A merge that replaced a stored value by a different one: the count does not
    /// change, the sums no longer hold.
    pub fn replaced(&mut self) {
        self.exact = false;
    }

    fn add_value(&mut self, id: u32, number: Option<f64>) {
        let f = match self.fields.iter().position(|f| f.id == id) {
            Some(k) => &mut self.fields[k],
            None => {
                self.fields.push(FieldHour { id, values: 0, numbers: 0, sum: 0.0, min: 0.0, max: 0.0 });
                self.fields.last_mut().expect("pushed")
            }
        };
        f.values += 1;
        if let Some(v) = number {
            if f.numbers == 0 {
                // The first value itself, not 0 + v: a fold of rows starts so too.
                (f.sum, f.min, f.max) = (v, v, v);
            } else {
                f.sum += v;
                f.min = f.min.min(v);
                f.max = f.max.max(v);
            }
            f.numbers += 1;
        }
    }

    /// The `fields` blob: per field a varint id, varint value count, varint number
    /// count, and when that is not zero the sum, minimum and maximum (8 bytes each).
    pub fn encode_fields(&self, out: &mut Vec<u8>) {
        out.clear();
        for f in &self.fields {
            put_varint(out, u64::from(f.id));
            put_varint(out, f.values);
            put_varint(out, f.numbers);
            if f.numbers > 0 {
                for x in [f.sum, f.min, f.max] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }

    pub fn decode(last_ns: i64, exact: bool, blob: &[u8]) -> Result<SeriesHour, StoreError> {
        let mut fields = Vec::new();
        each_field(blob, |f| {
            fields.push(f);
            Ok(())
        })?;
        Ok(SeriesHour { last_ns, exact, fields })
    }
}

/// Walks a `fields` blob without collecting it.
pub(super) fn each_field(b: &[u8], mut f: impl FnMut(FieldHour) -> Result<(), StoreError>) -> Result<(), StoreError> {
    let mut pos = 0;
    while pos < b.len() {
        let id = u32::try_from(get_varint(b, &mut pos).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        let values = get_varint(b, &mut pos).ok_or_else(corrupt)?;
        let numbers = get_varint(b, &mut pos).ok_or_else(corrupt)?;
        let (mut sum, mut min, mut max) = (0.0, 0.0, 0.0);
        if numbers > 0 {
            let mut eight = || -> Result<f64, StoreError> {
                let s: [u8; 8] = b.get(pos..pos + 8).ok_or_else(corrupt)?.try_into().expect("slice of 8");
                pos += 8;
                Ok(f64::from_le_bytes(s))
            };
            (sum, min, max) = (eight()?, eight()?, eight()?);
        }
        f(FieldHour { id, values, numbers, sum, min, max })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_round_trip_and_notice_what_breaks_exactness() {
        let mut h = SeriesHour::default();
        h.add_point(10, [(1, Some(0.1)), (2, None)].into_iter());
        h.add_point(20, [(1, Some(0.2)), (3, Some(-4.0))].into_iter());
        assert!(h.exact);
        assert_eq!(h.fields[0], FieldHour { id: 1, values: 2, numbers: 2, sum: 0.1 + 0.2, min: 0.1, max: 0.2 });
        assert_eq!((h.fields[1].values, h.fields[1].numbers), (1, 0));
        let mut blob = Vec::new();
        h.encode_fields(&mut blob);
        assert_eq!(SeriesHour::decode(h.last_ns, h.exact, &blob).unwrap(), h);
        for cut in 1..blob.len() {
            let _ = SeriesHour::decode(0, true, &blob[..cut]);
        }
        // A field merged into the latest point keeps time order; into an earlier
        // point it does not.
        h.add_merged(20, 2, None);
        assert!(h.exact);
        h.add_merged(15, 4, Some(1.0));
        assert!(!h.exact);
        let mut late = SeriesHour::default();
        late.add_point(20, [(1, Some(1.0))].into_iter());
        late.add_point(10, [(1, Some(1.0))].into_iter());
        assert!(!late.exact);
        assert_eq!(late.fields[0].values, 2);
    }
}
