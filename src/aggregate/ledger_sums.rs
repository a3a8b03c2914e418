//! The energy ledger summed by the store: one grouped read per workload and
//! range gives, per device and bucket, the sums of its ledger points, and what is
//! needed to tell whether those sums can stand for the whole bucket.
//!
//! Every ledger field that revenue reads is additive over time (energy, covered,
//! counter, healthy and busy seconds, samples, hash work, accepted difficulty,
//! tokens) or a maximum (`power_max_w`), so the sum of a bucket's points is the
//! bucket's amount. A bucket's sums are *usable* when its points tile it: they all
//! expect the same interval `E`, there are `bucket / E` of them (the agent starts
//! its intervals on multiples of `E`, and one series holds one point per start, so
//! that many points are exactly the intervals of the bucket), every one was written
//! with the workload's `max_gap` and carries the busy time of every threshold the
//! workload's model reads. Any other bucket of a device goes to the detail path
//! (its ledger rows and raw samples, see [`super::windows`]).
//!
//! **Whole hours from the hourly roll-up.** When buckets are whole clock hours
//! (or multiples), the `energy_ledger_hourly` points are summed instead: one per
//! device and hour rather than sixty, under the same tiling rule (an hour point
//! expects 3600 s). They are read as rows and summed here ([`Grouper`]): InfluxDB
//! spends on a grouped read per series and aggregate, not per row, so its
//! sixteen sums over 2,000 miners' hours take seconds where their rows take half
//! of one. The interval points are then read only where a device has
//! interval points but no usable roll-up: the hour still in progress, an hour
//! an agent restarted in, agents without the roll-up. Such a bucket is summed
//! from the interval points by one more grouped read when many devices need it,
//! and otherwise handed to the detail path for those devices only.

use std::collections::{BTreeMap, HashMap};

use super::windows::WorkloadPlan;
use crate::ledger::{identity_filter, series_device_id, Rules, Sums};
use crate::model::schema::{self, energy_ledger as el, energy_ledger_hourly as hourly};
use crate::model::FieldValue;
use crate::store::{Aggregate, GroupedQuery, Grouper, RowVisitor, SeriesQuery, Store, StoreError};

/// Detail reads name each device up to this many; past it they read the
/// workload's series and drop the others. Devices lacking a bucket's roll-up up
/// to this many go to the detail path; more are summed by a grouped read.
pub const NAMED_DEVICES: usize = 64;

/// The aggregates a grouped read asks for, in the order [`Bucket::decode`] reads.
fn aggregates(util_thresholds_pct: &[f64]) -> Vec<(Aggregate, String)> {
    use Aggregate::*;
    let mut a: Vec<(Aggregate, String)> = [
        (Sum, el::ENERGY_J),
        (Sum, el::COVERED_S),
        (Sum, el::COUNTER_S),
        (Sum, el::SAMPLES),
        (Max, el::POWER_MAX_W),
        (Sum, el::HEALTHY_S),
        (Sum, el::WORK_TH),
        (Sum, el::DIFF_ACCEPTED),
        (Sum, el::PROMPT_TOKENS),
        (Sum, el::GENERATION_TOKENS),
        (Count, el::EXPECTED_S),
        (Min, el::EXPECTED_S),
        (Max, el::EXPECTED_S),
        (Count, el::MAX_GAP_S),
        (Min, el::MAX_GAP_S),
        (Max, el::MAX_GAP_S),
    ]
    .iter()
    .map(|(agg, f)| (*agg, f.to_string()))
    .collect();
    for &t in util_thresholds_pct {
        a.push((Sum, el::util_ge_s(t)));
        a.push((Count, el::util_ge_s(t)));
    }
    a
}

const FIXED: usize = 16;

fn nanos(s: f64) -> i64 {
    (s * 1e9).round() as i64
}

/// One device's bucket as the store summed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub sums: Sums,
    points: u64,
    expected_ns: (i64, i64),
    max_gap: (u64, i64, i64),
    busy_points: Vec<u64>,
}

impl Bucket {
    /// Reads one grouped row (`values[k]` is aggregate `k` of [`aggregates`]).
    fn decode(values: &[Option<FieldValue>], thresholds: usize) -> Bucket {
        let num =
            |k: usize| values.get(k).and_then(Option::as_ref).and_then(FieldValue::as_f64).filter(|v| v.is_finite());
        let n = |k: usize| num(k).unwrap_or(0.0);
        let sums = Sums {
            energy_j: n(0),
            covered_ns: nanos(n(1)),
            counter_ns: nanos(n(2)),
            samples: n(3) as u64,
            max_power_w: num(4),
            healthy_ns: nanos(n(5)),
            work_th: n(6),
            diff_accepted: num(7),
            prompt_tokens: n(8),
            generation_tokens: n(9),
            busy_ns: (0..thresholds).map(|i| nanos(n(FIXED + 2 * i))).collect(),
        };
        Bucket {
            sums,
            points: n(10) as u64,
            expected_ns: (nanos(n(11)), nanos(n(12))),
            max_gap: (n(13) as u64, nanos(n(14)), nanos(n(15))),
            busy_points: (0..thresholds).map(|i| n(FIXED + 2 * i + 1) as u64).collect(),
        }
    }

    /// Whether the points tile `[start, start + len_ns)` and were written with the
    /// workload's rules (see the module doc).
    pub fn tiles(&self, len_ns: i64, rules: &Rules) -> bool {
        let (e_min, e_max) = self.expected_ns;
        let n = self.points;
        n > 0
            && e_min == e_max
            && e_min > 0
            && (n as i64).checked_mul(e_min) == Some(len_ns)
            && self.max_gap == (n, rules.max_gap_ns, rules.max_gap_ns)
            && self.busy_points.iter().all(|&b| b == n)
    }
}

/// One device's ledger over a range, from the grouped read.
#[derive(Debug, Default)]
pub struct LedgerDevice {
    /// Tags that select the device's series (its identity tags).
    pub filter: Vec<(String, String)>,
    /// The tags of its first series (its basis, group and the meter covering it).
    pub tags: BTreeMap<String, String>,
    /// Usable buckets by start: their sums stand for the whole bucket.
    pub usable: BTreeMap<i64, Sums>,
    /// Starts of buckets with ledger points that are not usable.
    pub partial: Vec<i64>,
}

impl LedgerDevice {
    /// A device known by the tags of its first series.
    fn of_series(source: &'static str, tags: &BTreeMap<String, String>) -> Self {
        LedgerDevice { filter: identity_filter(source, tags), tags: tags.clone(), ..LedgerDevice::default() }
    }

    /// Notes that the bucket at `start` holds points that do not stand for it.
    fn mark_partial(&mut self, start: i64) {
        if !self.partial.contains(&start) {
            self.partial.push(start);
        }
    }
}

/// The (source measurement, device id) of a ledger series, when its source is
/// one of `sources`.
fn series_device(sources: &[&'static str; 2], tags: &BTreeMap<String, String>) -> Option<(&'static str, String)> {
    let source = tags.get(el::TAG_SOURCE).and_then(|s| sources.iter().find(|m| **m == s.as_str()))?;
    Some((source, series_device_id(source, tags)))
}

/// A workload's ledger summed per device and bucket over `[start_ns, end_ns)`.
#[derive(Debug, Default)]
pub struct LedgerSums {
    pub start_ns: i64,
    pub end_ns: i64,
    pub bucket_ns: i64,
    /// By (source measurement, device id).
    pub devices: BTreeMap<(&'static str, String), LedgerDevice>,
}

impl LedgerSums {
    /// Buckets held (usable and partial), the measure of its memory.
    pub fn cells(&self) -> usize {
        self.devices.values().map(|d| d.usable.len() + d.partial.len()).sum()
    }
}

/// The ledger sums of `plan`'s devices over `[start_ns, end_ns)` in buckets of
/// `bucket_ns`: from the hourly roll-up where buckets are whole hours, and the
/// interval points where it is missing (see the module doc).
pub async fn read_ledger_sums(
    store: &dyn Store,
    plan: &WorkloadPlan,
    start_ns: i64,
    end_ns: i64,
    bucket_ns: i64,
) -> Result<LedgerSums, StoreError> {
    if bucket_ns % hourly::HOUR_NS != 0 || start_ns.rem_euclid(hourly::HOUR_NS) != 0 {
        return grouped_sums(store, plan, el::MEASUREMENT, start_ns, end_ns, bucket_ns).await;
    }
    let mut sums = grouped_sums(store, plan, hourly::MEASUREMENT, start_ns, end_ns, bucket_ns).await?;
    // Every device with interval points, and the buckets it has no usable roll-up for.
    let q = SeriesQuery {
        measurement: el::MEASUREMENT.into(),
        fields: Vec::new(),
        tag_filters: vec![(schema::TAG_WORKLOAD.into(), plan.name.clone())],
        start_ns,
        end_ns,
    };
    let sources = plan_sources(plan);
    let buckets: Vec<i64> =
        (start_ns..end_ns).step_by(bucket_ns as usize).filter(|b| b + bucket_ns <= end_ns).collect();
    let mut lacking: BTreeMap<i64, Vec<(&'static str, String)>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for tags in store.series_keys(&q).await? {
        let Some(key) = series_device(&sources, &tags) else { continue };
        if !seen.insert(key.clone()) {
            continue;
        }
        let dev = sums.devices.entry(key.clone()).or_insert_with(|| LedgerDevice::of_series(key.0, &tags));
        for &b in buckets.iter().filter(|b| !dev.usable.contains_key(b)) {
            lacking.entry(b).or_default().push(key.clone());
        }
    }
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for (&b, devices) in &lacking {
        if devices.len() > NAMED_DEVICES {
            match runs.last_mut() {
                Some((_, end)) if *end == b => *end = b + bucket_ns,
                _ => runs.push((b, b + bucket_ns)),
            }
        } else {
            for key in devices {
                sums.devices.get_mut(key).expect("entered above").mark_partial(b);
            }
        }
    }
    for (a, b) in runs {
        let minutes = grouped_sums(store, plan, el::MEASUREMENT, a, b, bucket_ns).await?;
        for (key, LedgerDevice { filter, tags, usable, partial }) in minutes.devices {
            let dev =
                sums.devices.entry(key).or_insert_with(|| LedgerDevice { filter, tags, ..LedgerDevice::default() });
            for (start, s) in usable {
                if let std::collections::btree_map::Entry::Vacant(e) = dev.usable.entry(start) {
                    e.insert(s);
                    dev.partial.retain(|&p| p != start);
                }
            }
            for start in partial {
                if !dev.usable.contains_key(&start) {
                    dev.mark_partial(start);
                }
            }
        }
    }
    Ok(sums)
}

/// The raw measurements whose devices a workload reads.
fn plan_sources(plan: &WorkloadPlan) -> [&'static str; 2] {
    let inputs = &plan.revenue_model.info().inputs;
    [inputs.energy_measurement, inputs.revenue_measurement]
}

/// One grouped read of `measurement` (the ledger, by the store; its roll-up, as
/// rows summed here), folded as it arrives.
async fn grouped_sums(
    store: &dyn Store,
    plan: &WorkloadPlan,
    measurement: &str,
    start_ns: i64,
    end_ns: i64,
    bucket_ns: i64,
) -> Result<LedgerSums, StoreError> {
    let rules = plan.rules();
    let q = GroupedQuery {
        measurement: measurement.into(),
        tag_filters: vec![(schema::TAG_WORKLOAD.into(), plan.name.clone())],
        start_ns,
        end_ns,
        bucket_ns,
        aggregates: aggregates(&rules.util_thresholds_pct),
    };
    let mut fold = Fold {
        sources: plan_sources(plan),
        series: HashMap::new(),
        rules,
        out: LedgerSums { start_ns, end_ns, bucket_ns, devices: BTreeMap::new() },
    };
    if measurement == hourly::MEASUREMENT {
        let mut grouper = Grouper::new(&q, &mut fold);
        store.read_each(&q.rows_query(), &mut grouper).await?;
        grouper.finish();
    } else {
        store.read_grouped(&q, &mut fold).await?;
    }
    Ok(fold.out)
}

struct Fold {
    sources: [&'static str; 2],
    /// Series number -> its device, for series of a source the workload reads.
    series: HashMap<usize, (&'static str, String)>,
    rules: Rules,
    out: LedgerSums,
}

impl RowVisitor for Fold {
    fn series(&mut self, series: usize, tags: &BTreeMap<String, String>) {
        let Some(key) = series_device(&self.sources, tags) else { return };
        self.out.devices.entry(key.clone()).or_insert_with(|| LedgerDevice::of_series(key.0, tags));
        self.series.insert(series, key);
    }

    fn row(&mut self, series: usize, time_ns: i64, values: &[Option<FieldValue>]) {
        let Some(key) = self.series.get(&series) else { return };
        let Some(dev) = self.out.devices.get_mut(key) else { return };
        let bucket = Bucket::decode(values, self.rules.util_thresholds_pct.len());
        let inside = time_ns >= self.out.start_ns && time_ns + self.out.bucket_ns <= self.out.end_ns;
        if inside && bucket.tiles(self.out.bucket_ns, &self.rules) && !dev.usable.contains_key(&time_ns) {
            // A second series of the device with the same interval (its tags
            // changed) would count it twice: the first one stands.
            dev.usable.insert(time_ns, bucket.sums);
        } else {
            dev.mark_partial(time_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn row(points: f64, expected: f64, gap: (f64, f64, f64), busy: Option<f64>) -> Vec<Option<FieldValue>> {
        let mut v: Vec<Option<FieldValue>> = vec![None; FIXED + 2];
        let f = |x: f64| Some(FieldValue::Float(x));
        v[0] = f(3600.0);
        v[1] = f(points * expected);
        v[10] = f(points);
        v[11] = f(expected);
        v[12] = f(expected);
        (v[13], v[14], v[15]) = (f(gap.0), f(gap.1), f(gap.2));
        v[FIXED] = busy.map(|_| FieldValue::Float(10.0));
        v[FIXED + 1] = busy.map(FieldValue::Float);
        v
    }

    #[test]
    fn a_bucket_is_usable_only_when_its_points_tile_it_under_the_same_rules() {
        let rules = Rules { max_gap_ns: 90 * S, util_thresholds_pct: vec![50.0] };
        let ok = Bucket::decode(&row(60.0, 60.0, (60.0, 90.0, 90.0), Some(60.0)), 1);
        assert!(ok.tiles(3600 * S, &rules));
        assert_eq!(ok.sums.covered_ns, 3600 * S);
        // 59 of 60 intervals: the missing minute must come from elsewhere.
        assert!(!Bucket::decode(&row(59.0, 60.0, (59.0, 90.0, 90.0), Some(59.0)), 1).tiles(3600 * S, &rules));
        // One point written with another max_gap.
        assert!(!Bucket::decode(&row(60.0, 60.0, (60.0, 60.0, 90.0), Some(60.0)), 1).tiles(3600 * S, &rules));
        // Points without the busy time the model reads.
        assert!(!Bucket::decode(&row(60.0, 60.0, (60.0, 90.0, 90.0), None), 1).tiles(3600 * S, &rules));
        // The same points cannot stand for a bucket of another length.
        assert!(!ok.tiles(1800 * S, &rules));
    }
}
