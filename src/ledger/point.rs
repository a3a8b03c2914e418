//! The `energy_ledger` point: [`Sums`] of one device over one interval, as written
//! by the agent and read back by the aggregator (names in
//! [`crate::model::schema::energy_ledger`], documented in `docs/metrics.md`).

use super::{Rules, Sums};
use crate::model::schema::{asic, energy_ledger as el, energy_ledger_hourly as hourly, gpu, inference, meter};
use crate::model::{FieldValue, Point};

fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn nanos(s: f64) -> i64 {
    (s * 1e9).round() as i64
}

/// How an interval's energy was obtained: `counter` when all of it came from the
/// device's energy counter (NVML, a meter channel's), else `power_integral` (GPUs,
/// meter channels) or the miner's `power_source` (`reported`, `estimated`,
/// `meter`); `none` without energy.
pub fn method(source: &str, power_source: Option<&str>, sums: &Sums) -> &'static str {
    if sums.covered_ns == 0 {
        return "none";
    }
    if source == gpu::MEASUREMENT || source == meter::MEASUREMENT {
        return if sums.counter_ns == sums.covered_ns { "counter" } else { "power_integral" };
    }
    match power_source {
        Some("reported") => "reported",
        Some("estimated") => "estimated",
        Some("meter") => "meter",
        _ => "power_integral",
    }
}

/// The `basis` tag: `board` for NVML readings, a miner's `power_source`, `meter`
/// for a meter channel.
pub fn basis<'a>(source: &str, power_source: Option<&'a str>) -> Option<&'a str> {
    match source {
        s if s == gpu::MEASUREMENT => Some("board"),
        s if s == meter::MEASUREMENT => Some(meter::BASIS_METER),
        s if s == asic::MEASUREMENT => power_source,
        _ => None,
    }
}

/// The ledger point of one device's interval `[start_ns, start_ns + interval_ns)`.
/// `tags` are the device's own tags (host, uuid, workload, …).
pub fn ledger_point<'a>(
    source: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    start_ns: i64,
    interval_ns: i64,
    sums: &Sums,
    rules: &Rules,
) -> Point {
    let mut p = Point::new(el::MEASUREMENT, start_ns);
    let mut power_source = None;
    for (k, v) in tags {
        if k == asic::TAG_POWER_SOURCE {
            power_source = Some(v);
        }
        p.set_tag(k, v);
    }
    p.set_tag(el::TAG_SOURCE, source);
    if let Some(b) = basis(source, power_source) {
        p.set_tag(el::TAG_BASIS, b);
    }
    let mut p = p
        .field(el::ENERGY_J, sums.energy_j)
        .field(el::COVERED_S, seconds(sums.covered_ns))
        .field(el::EXPECTED_S, seconds(interval_ns))
        .field(el::COUNTER_S, seconds(sums.counter_ns))
        .field(el::METHOD, method(source, power_source, sums))
        .field_opt(el::POWER_MEAN_W, (sums.covered_ns > 0).then(|| sums.energy_j / seconds(sums.covered_ns)))
        .field_opt(el::POWER_MAX_W, sums.max_power_w)
        .field(el::SAMPLES, sums.samples as i64)
        .field(el::MAX_GAP_S, seconds(rules.max_gap_ns))
        .field(el::HEALTHY_S, seconds(sums.healthy_ns));
    match source {
        s if s == asic::MEASUREMENT => {
            p = p.field(el::WORK_TH, sums.work_th).field_opt(el::DIFF_ACCEPTED, sums.diff_accepted);
        }
        s if s == gpu::MEASUREMENT => {
            for (i, &t) in rules.util_thresholds_pct.iter().enumerate() {
                p.set_field(el::util_ge_s(t), seconds(sums.busy_ns.get(i).copied().unwrap_or(0)));
            }
        }
        s if s == inference::MEASUREMENT => {
            p = p.field(el::PROMPT_TOKENS, sums.prompt_tokens).field(el::GENERATION_TOKENS, sums.generation_tokens);
        }
        _ => {}
    }
    p
}

/// The `energy_ledger_hourly` point of one device's hour from `start_ns`: the
/// [`ledger_point`] of the sums of its `intervals` ledger points, expecting the hour.
pub fn hourly_point<'a>(
    source: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    start_ns: i64,
    intervals: usize,
    sums: &Sums,
    rules: &Rules,
) -> Point {
    let mut p = ledger_point(source, tags, start_ns, hourly::HOUR_NS, sums, rules);
    p.measurement = hourly::MEASUREMENT.to_string();
    p.field(hourly::INTERVALS, intervals as i64)
}

/// One ledger row read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub start_ns: i64,
    pub expected_ns: i64,
    pub max_gap_ns: Option<i64>,
    pub sums: Sums,
    /// Whether every threshold asked for had its busy-time field.
    pub busy_known: bool,
}

/// The fields a reader asks for: everything [`ledger_point`] writes, with the
/// busy-time fields of `util_thresholds_pct`.
pub fn ledger_fields(util_thresholds_pct: &[f64]) -> Vec<String> {
    let mut f: Vec<String> = [
        el::ENERGY_J,
        el::COVERED_S,
        el::EXPECTED_S,
        el::COUNTER_S,
        el::POWER_MAX_W,
        el::SAMPLES,
        el::MAX_GAP_S,
        el::HEALTHY_S,
        el::WORK_TH,
        el::DIFF_ACCEPTED,
        el::PROMPT_TOKENS,
        el::GENERATION_TOKENS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.extend(util_thresholds_pct.iter().map(|&t| el::util_ge_s(t)));
    f
}

/// Decodes rows of a series read with [`ledger_fields`]`(util_thresholds_pct)`.
#[derive(Debug, Clone)]
pub struct LedgerColumns {
    cols: Vec<Option<usize>>,
    thresholds: usize,
}

const FIXED: usize = 12;

impl LedgerColumns {
    pub fn new<S: AsRef<str>>(fields: &[S], util_thresholds_pct: &[f64]) -> Self {
        let cols = ledger_fields(util_thresholds_pct)
            .iter()
            .map(|name| fields.iter().position(|f| f.as_ref() == name))
            .collect();
        LedgerColumns { cols, thresholds: util_thresholds_pct.len() }
    }

    /// The row at `time_ns`, `None` when it lacks `expected_s` (not a ledger row).
    pub fn row(&self, time_ns: i64, row: &[Option<FieldValue>]) -> Option<LedgerRow> {
        let num = |i: usize| {
            self.cols[i]
                .and_then(|j| row.get(j))
                .and_then(Option::as_ref)
                .and_then(FieldValue::as_f64)
                .filter(|v| v.is_finite())
        };
        let expected_ns = nanos(num(2)?);
        let busy: Vec<Option<f64>> = (0..self.thresholds).map(|i| num(FIXED + i)).collect();
        let sums = Sums {
            energy_j: num(0).unwrap_or(0.0),
            covered_ns: nanos(num(1).unwrap_or(0.0)),
            counter_ns: nanos(num(3).unwrap_or(0.0)),
            max_power_w: num(4),
            samples: num(5).unwrap_or(0.0) as u64,
            healthy_ns: nanos(num(7).unwrap_or(0.0)),
            work_th: num(8).unwrap_or(0.0),
            diff_accepted: num(9),
            prompt_tokens: num(10).unwrap_or(0.0),
            generation_tokens: num(11).unwrap_or(0.0),
            busy_ns: busy.iter().map(|b| nanos(b.unwrap_or(0.0))).collect(),
        };
        Some(LedgerRow {
            start_ns: time_ns,
            expected_ns,
            max_gap_ns: num(6).map(nanos),
            sums,
            busy_known: busy.iter().all(Option::is_some),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_reads_back_as_the_sums_it_was_written_from() {
        let rules = Rules { max_gap_ns: 90_000_000_000, util_thresholds_pct: vec![50.0, 80.0] };
        let sums = Sums {
            energy_j: 42_000.5,
            covered_ns: 59_000_000_001,
            counter_ns: 59_000_000_001,
            samples: 60,
            max_power_w: Some(712.0),
            healthy_ns: 60_000_000_000,
            busy_ns: vec![30_000_000_000, 1_500_000_000],
            ..Default::default()
        };
        let p =
            ledger_point("gpu", [("host", "rig1"), ("uuid", "GPU-1")], 120_000_000_000, 60_000_000_000, &sums, &rules);
        assert_eq!(p.tag_value("source"), Some("gpu"));
        assert_eq!(p.tag_value("basis"), Some("board"));
        assert_eq!(p.field_value("method"), Some(&FieldValue::Str("counter".into())));
        assert_eq!(p.field_value("util_ge_50_s"), Some(&FieldValue::Float(30.0)));
        let fields: Vec<&str> = p.fields.iter().map(|f| f.0.as_str()).collect();
        let row: Vec<Option<FieldValue>> =
            ledger_fields(&rules.util_thresholds_pct).iter().map(|f| p.field_value(f).cloned()).collect();
        let cols = LedgerColumns::new(&ledger_fields(&rules.util_thresholds_pct), &rules.util_thresholds_pct);
        let back = cols.row(p.time_ns, &row).unwrap();
        assert!(fields.contains(&"power_mean_w"));
        assert_eq!(back.sums, sums);
        assert_eq!((back.expected_ns, back.max_gap_ns, back.busy_known), (60_000_000_000, Some(90_000_000_000), true));
        // A reader asking for a threshold the agent did not track knows it lacks it.
        let cols = LedgerColumns::new(&ledger_fields(&rules.util_thresholds_pct), &[50.0, 70.0]);
        assert!(!cols.row(p.time_ns, &row).unwrap().busy_known);
    }
}
