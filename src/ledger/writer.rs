//! The agent's side of the ledger: every device point the agent spools (and every
//! meter channel's, see [`super::LEDGER_SOURCES`]) is folded into that device's
//! [`DeviceAccumulator`], cut at every multiple of
//! `ledger_interval` since the Unix epoch, and once an interval can receive
//! nothing more its `energy_ledger` point is spooled with the raw points, in the
//! same append (so the ledger is exactly as durable as the samples it sums).
//!
//! An interval is closed when every quantity of the device has a sample at or
//! after its end (the next sample arrived), or when `max_gap` + [`LATE_MARGIN`]
//! have passed since its end (the device went silent: any later sample is across
//! a gap). An interval closed the second way is kept until the device's samples
//! pass it, and written again if a sample stamped earlier (a slow collection)
//! still adds to it.
//!
//! **The hourly roll-up.** Once every interval of a clock hour has been written
//! (with the same tags) and none of them can be written again, the hour's sums
//! go out as one `energy_ledger_hourly` point, in the same append. A reader of
//! whole hours (the aggregator over a day) then reads one point per device and
//! hour instead of sixty; an hour with any interval missing gets none, and is
//! read from the interval points.
//!
//! **What the agent does not write.** A process that starts (or restarts after a
//! crash or `kill -9`) has not seen the samples its predecessor collected, so the
//! intervals from its start to `max_gap` later, which can hold an interval
//! between the old process's last sample and the new one's first, get no ledger
//! point; nor do intervals still open at shutdown, nor those around a failed
//! spool append. The aggregator computes those from raw samples. A device that
//! appears or vanishes mid-interval is written with the time it covered.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::point::{hourly_point, ledger_point};
use super::{device_id, point_sample, Cuts, DeviceAccumulator, Rules, Sums, LEDGER_SOURCES};
use crate::config::KeyError;
use crate::model::schema::energy_ledger_hourly::HOUR_NS;
use crate::model::Point;

/// How long past `max_gap` a silent device's interval stays open, for samples
/// stamped before a slow collection finished.
pub const LATE_MARGIN: Duration = Duration::from_secs(120);

/// `[ledger]` in the agent's config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Write `energy_ledger` points (raw points are written either way).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Length of a ledger interval; intervals are aligned to multiples of it since
    /// the Unix epoch (so 60 s intervals start on the minute).
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub interval: Duration,
    /// Intervals between two samples longer than this are not integrated. Must
    /// equal the aggregator's `max_gap` for the workload, or the aggregator
    /// recomputes these intervals from raw samples.
    #[serde(default = "default_max_gap", with = "crate::config::duration")]
    pub max_gap: Duration,
    /// Utilisation thresholds whose busy time each GPU point records
    /// (`util_ge_50_s`); an `ai_on_demand` workload's `util_threshold_pct` must be
    /// one of them for its revenue to come from the ledger.
    #[serde(default = "default_thresholds")]
    pub util_thresholds_pct: Vec<f64>,
    /// Also write the hourly roll-up (`energy_ledger_hourly`); needs an
    /// `interval` that divides an hour.
    #[serde(default = "default_true")]
    pub hourly: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            enabled: true,
            interval: default_interval(),
            max_gap: default_max_gap(),
            util_thresholds_pct: default_thresholds(),
            hourly: true,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_max_gap() -> Duration {
    Duration::from_secs(90)
}
fn default_thresholds() -> Vec<f64> {
    vec![10.0, 30.0, 50.0, 80.0]
}

impl LedgerConfig {
    /// Checks the keys; the error's `at` is the key within `[ledger]`.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.interval < Duration::from_secs(1) {
            return Err(KeyError::new("interval", "[ledger] interval must be at least 1s"));
        }
        if self.hourly && HOUR_NS % self.interval.as_nanos().max(1) as i64 != 0 {
            return Err(KeyError::new("interval", format!(
                "[ledger] interval {:?} does not divide an hour, which the hourly roll-up needs: use an interval such as 60s or 5m, or set hourly = false",
                self.interval
            )));
        }
        if self.max_gap.is_zero() {
            return Err(KeyError::new("max_gap", "[ledger] max_gap must be positive"));
        }
        if let Some(t) = self.util_thresholds_pct.iter().find(|t| !(0.0..=100.0).contains(*t)) {
            return Err(KeyError::new(
                "util_thresholds_pct",
                format!("[ledger] util_thresholds_pct: {t} is not a percentage in 0..=100"),
            ));
        }
        Ok(())
    }

    pub fn rules(&self) -> Rules {
        Rules { max_gap_ns: self.max_gap.as_nanos() as i64, util_thresholds_pct: self.util_thresholds_pct.clone() }
    }
}

#[derive(Debug)]
struct Device {
    source: &'static str,
    acc: DeviceAccumulator,
    open: BTreeMap<i64, Sums>,
    tags: Vec<(String, String)>,
    /// Intervals starting before this were written or given up.
    closed_before_ns: i64,
    /// Intervals written because the device went silent, kept until its samples
    /// pass them: a sample stamped before it was written (a slow collection) still
    /// adds to it, and the point is written again (same series and time: the
    /// store keeps the last).
    silent_closed: BTreeMap<i64, (Sums, bool)>,
    last_ns: i64,
    /// Hours with written intervals, by start, until they are rolled up.
    hours: BTreeMap<i64, Hour>,
    /// Samples arrived since the last [`LedgerWriter::close`] looked at it.
    touched: bool,
    /// Before this, with nothing arrived, `close` has nothing to do for it.
    due_ns: i64,
}

/// The intervals of one device's hour written so far: the sum of those that
/// cannot change, and, as last written, those closed while the device was
/// silent (a late sample may still write them again).
#[derive(Debug)]
struct Hour {
    tags: Vec<(String, String)>,
    final_sums: Sums,
    final_intervals: usize,
    may_change: BTreeMap<i64, Sums>,
    /// An interval was written with other tags (the device moved to another
    /// workload, say): the hour is not one series' and gets no roll-up.
    mixed: bool,
}

impl Hour {
    fn record(
        hours: &mut BTreeMap<i64, Hour>,
        start_ns: i64,
        tags: &[(String, String)],
        sums: &Sums,
        may_change: bool,
    ) {
        let hour = hours.entry(start_ns.div_euclid(HOUR_NS) * HOUR_NS).or_insert_with(|| Hour {
            tags: tags.to_vec(),
            final_sums: Sums::default(),
            final_intervals: 0,
            may_change: BTreeMap::new(),
            mixed: false,
        });
        hour.mixed |= hour.tags != tags;
        if may_change {
            hour.may_change.insert(start_ns, sums.clone());
        } else {
            hour.final_sums.absorb(sums);
            hour.final_intervals += 1;
        }
    }

    /// The hour's sums and intervals, once none of them can change.
    fn total(&self) -> (Sums, usize) {
        let mut sums = self.final_sums.clone();
        self.may_change.values().for_each(|s| sums.absorb(s));
        (sums, self.final_intervals + self.may_change.len())
    }
}

/// Folds spooled points into ledger points; see the module docs.
#[derive(Debug)]
pub struct LedgerWriter {
    rules: Rules,
    cuts: Cuts,
    interval_ns: i64,
    margin_ns: i64,
    /// Intervals starting before this are not written (see the module docs).
    first_ns: i64,
    devices: HashMap<(&'static str, String), Device, foldhash::fast::RandomState>,
    /// Intervals per hour when the hourly roll-up is written.
    per_hour: Option<usize>,
    /// Parts that arrived for an interval already written (a sample stamped more
    /// than `max_gap` + [`LATE_MARGIN`] before it was spooled); not counted.
    pub late_parts: u64,
}

impl LedgerWriter {
    pub fn new(cfg: &LedgerConfig, started_ns: i64) -> Self {
        let interval_ns = cfg.interval.as_nanos() as i64;
        let mut w = LedgerWriter {
            rules: cfg.rules(),
            cuts: Cuts { grid_ns: interval_ns, list: Vec::new() },
            interval_ns,
            margin_ns: LATE_MARGIN.as_nanos() as i64,
            first_ns: 0,
            devices: HashMap::default(),
            per_hour: (cfg.hourly && HOUR_NS % interval_ns == 0).then(|| (HOUR_NS / interval_ns) as usize),
            late_parts: 0,
        };
        w.restart(started_ns);
        w
    }

    /// Forgets every open interval and sample, as a fresh process would: after a
    /// failed spool append the store will not hold what was folded in.
    pub fn restart(&mut self, now_ns: i64) {
        self.devices.clear();
        let from = now_ns + self.rules.max_gap_ns;
        self.first_ns = from.div_euclid(self.interval_ns) * self.interval_ns
            + if from.rem_euclid(self.interval_ns) == 0 { 0 } else { self.interval_ns };
    }

    /// Folds `points` (already tagged) in and returns the ledger points of the
    /// intervals this closes.
    pub fn observe(&mut self, points: &[Point], now_ns: i64) -> Vec<Point> {
        for p in points {
            let Some(source) = LEDGER_SOURCES.iter().copied().find(|m| *m == p.measurement) else { continue };
            let Some(sample) = point_sample(p) else { continue };
            let id = device_id(source, |k| p.tag_value(k));
            let dev = self.devices.entry((source, id)).or_insert_with(|| Device {
                source,
                acc: DeviceAccumulator::default(),
                open: BTreeMap::new(),
                tags: Vec::new(),
                closed_before_ns: i64::MIN,
                silent_closed: BTreeMap::new(),
                last_ns: sample.time_ns,
                hours: BTreeMap::new(),
                touched: true,
                due_ns: i64::MIN,
            });
            dev.touched = true;
            if dev.tags != p.tags {
                dev.tags = p.tags.clone();
            }
            dev.last_ns = dev.last_ns.max(sample.time_ns);
            let (interval, closed, late) = (self.interval_ns, dev.closed_before_ns, &mut self.late_parts);
            let (open, silent_closed) = (&mut dev.open, &mut dev.silent_closed);
            dev.acc.push(&sample, &self.rules, &self.cuts, |a, b, part| {
                let k = a.div_euclid(interval) * interval;
                if k >= closed {
                    open.entry(k).or_default().add_part(a, b, part);
                } else if let Some((sums, dirty)) = silent_closed.get_mut(&k) {
                    sums.add_part(a, b, part);
                    *dirty = true;
                } else {
                    *late += 1;
                }
            });
        }
        self.close(now_ns)
    }

    fn close(&mut self, now_ns: i64) -> Vec<Point> {
        let mut out = Vec::new();
        let silent_ns = self.rules.max_gap_ns + self.margin_ns;
        self.devices.retain(|_, dev| {
            // A device that received nothing can only close its first interval
            // by silence, or be dropped, and neither is due before `due_ns`: a
            // rig's thousand miners are not walked for every GPU poll.
            if !dev.touched && now_ns < dev.due_ns {
                return true;
            }
            dev.touched = false;
            let settled = dev.acc.settled_ns().unwrap_or(i64::MIN);
            while let Some((&k, _)) = dev.open.first_key_value() {
                let end = k + self.interval_ns;
                if end > settled && end + silent_ns > now_ns {
                    break;
                }
                let sums = dev.open.remove(&k).expect("first key exists");
                dev.closed_before_ns = end;
                if k >= self.first_ns {
                    let tags = dev.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                    out.push(ledger_point(dev.source, tags, k, self.interval_ns, &sums, &self.rules));
                    if self.per_hour.is_some() {
                        Hour::record(&mut dev.hours, k, &dev.tags, &sums, end > settled);
                    }
                    if end > settled {
                        dev.silent_closed.insert(k, (sums, false));
                    }
                }
            }
            for (&k, (sums, dirty)) in dev.silent_closed.iter_mut().filter(|(_, (_, d))| *d) {
                let tags = dev.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                out.push(ledger_point(dev.source, tags, k, self.interval_ns, sums, &self.rules));
                if self.per_hour.is_some() {
                    Hour::record(&mut dev.hours, k, &dev.tags, sums, true);
                }
                *dirty = false;
            }
            dev.silent_closed.retain(|&k, _| k + self.interval_ns > settled);
            if let Some(per_hour) = self.per_hour {
                // An hour is final once every interval up to its end was closed
                // and none waits for a late sample; it is rolled up if all of
                // them were written.
                let (closed, silent) = (dev.closed_before_ns, &dev.silent_closed);
                dev.hours.retain(|&h, hour| {
                    if closed < h + HOUR_NS || silent.range(h..h + HOUR_NS).next().is_some() {
                        return true;
                    }
                    let (sums, intervals) = hour.total();
                    if !hour.mixed && intervals == per_hour {
                        let tags = hour.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                        out.push(hourly_point(dev.source, tags, h, per_hour, &sums, &self.rules));
                    }
                    false
                });
            }
            dev.due_ns = match dev.open.first_key_value() {
                Some((&k, _)) => k + self.interval_ns + silent_ns,
                None => dev.last_ns + 2 * silent_ns,
            };
            // A device silent for longer than any interval can span, and any sample
            // can be late, starts afresh.
            !(dev.open.is_empty() && dev.last_ns + 2 * silent_ns <= now_ns)
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    const S: i64 = 1_000_000_000;

    fn gpu(t_s: i64, power_w: f64) -> Point {
        Point::new("gpu", t_s * S)
            .tag("host", "rig1")
            .tag("uuid", "GPU-1")
            .tag("workload", "train")
            .field("power_w", power_w)
            .field("status", "ok")
    }

    fn energy(p: &Point) -> f64 {
        p.field_value("energy_j").and_then(FieldValue::as_f64).unwrap()
    }

    #[test]
    fn one_point_per_interval_from_the_agents_start_plus_max_gap() {
        // Started at 0 s with max_gap 90 s: intervals from 120 s on are written.
        // 100 W every 10 s; each minute is 6000 J, written when the first sample
        // at or after its end arrives.
        let mut w = LedgerWriter::new(&LedgerConfig::default(), 0);
        let mut out = Vec::new();
        for t in (0..=300).step_by(10) {
            out.extend(w.observe(&[gpu(t, 100.0)], t * S));
        }
        let starts: Vec<i64> = out.iter().map(|p| p.time_ns / S).collect();
        assert_eq!(starts, [120, 180, 240]);
        for p in &out {
            assert!((energy(p) - 6000.0).abs() < 1e-9, "{p:?}");
            assert_eq!(p.tag_value("workload"), Some("train"));
            assert_eq!(p.tag_value("source"), Some("gpu"));
            assert_eq!(p.field_value("method"), Some(&FieldValue::Str("power_integral".into())));
            assert_eq!(p.field_value("samples"), Some(&FieldValue::Int(6)));
        }
    }

    #[test]
    fn a_silent_device_is_closed_and_a_late_sample_rewrites_its_point() {
        let mut w = LedgerWriter::new(&LedgerConfig::default(), -1000 * S);
        let mut out = Vec::new();
        for t in (0..=30).step_by(10) {
            out.extend(w.observe(&[gpu(t, 100.0)], t * S));
        }
        assert!(out.is_empty());
        // Silent: at 60 + 90 + 120 s the interval [0, 60) is written with what it has.
        let closed = w.observe(&[], 270 * S);
        assert_eq!(closed.len(), 1);
        assert!((energy(&closed[0]) - 3000.0).abs() < 1e-9);
        // A sample stamped at 50 s (a slow collection) arrives: the point is written again.
        let again = w.observe(&[gpu(50, 100.0)], 271 * S);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].time_ns, 0);
        assert!((energy(&again[0]) - 5000.0).abs() < 1e-9);
        assert_eq!(w.late_parts, 0);
    }

    /// An outlet as `collect::meters` writes it: online with power and its energy
    /// counter (a 32-bit device counter's wraps already continued), or offline with
    /// neither.
    fn outlet(t_s: i64, w: Option<f64>) -> Point {
        let p = Point::new("meter", t_s * S)
            .tag("host", "rig1")
            .tag("meter", "pdu-1")
            .tag("channel", "3")
            .tag("basis", "meter")
            .tag("covers_kind", "miner")
            .tag("covers", "192.0.2.10");
        match w {
            Some(w) => p.field("power_w", w).field("energy_j", 4.29e9 + w * t_s as f64).field("online", true),
            None => p.field("online", false).field("status", "timeout after 5s"),
        }
    }

    #[test]
    fn a_meter_channel_is_ledgered_from_its_counter_and_an_outage_is_a_gap() {
        // 500 W every 10 s, offline from 200 s to 310 s: its last reading before is
        // at 190 s and the next at 320 s, 130 s apart (over max_gap 90 s), so
        // [190, 320) is a gap, never 0 W.
        let mut w = LedgerWriter::new(&LedgerConfig::default(), -1000 * S);
        let mut last: BTreeMap<i64, Point> = BTreeMap::new();
        for t in (0..=900).step_by(10) {
            let p = outlet(t, (!(200..320).contains(&t)).then_some(500.0));
            for l in w.observe(&[p], t * S) {
                last.insert(l.time_ns / S, l);
            }
        }
        let covered = |p: &Point| p.field_value("covered_s").and_then(FieldValue::as_f64).unwrap();
        for start in [0, 60, 120, 360, 420] {
            let p = &last[&start];
            assert!((energy(p) - 30_000.0).abs() < 1e-6, "{p:?}");
            assert_eq!(p.field_value("method"), Some(&FieldValue::Str("counter".into())));
            assert_eq!((p.tag_value("source"), p.tag_value("basis")), (Some("meter"), Some("meter")));
            assert_eq!(p.tag_value("covers"), Some("192.0.2.10"));
        }
        // [180, 240): 10 s before the outage; [240, 300): offline readings only;
        // [300, 360): from 320 s.
        assert!((energy(&last[&180]) - 5000.0).abs() < 1e-6 && covered(&last[&180]) == 10.0);
        assert_eq!((energy(&last[&240]), covered(&last[&240])), (0.0, 0.0));
        assert_eq!(last[&240].field_value("method"), Some(&FieldValue::Str("none".into())));
        assert!((energy(&last[&300]) - 20_000.0).abs() < 1e-6 && covered(&last[&300]) == 40.0);
        assert_eq!(w.late_parts, 0);
    }

    #[test]
    fn a_whole_hour_is_rolled_up_once_and_an_hour_with_a_missing_interval_is_not() {
        // Started at 0 s: the intervals from 120 s on are written, so the hour
        // [0, 3600) lacks two and gets no roll-up; [3600, 7200) gets one, written
        // when its last interval closes, equal to the sum of its 60 points.
        let mut w = LedgerWriter::new(&LedgerConfig::default(), 0);
        let mut out = Vec::new();
        for t in (0..=7300).step_by(10) {
            out.extend(w.observe(&[gpu(t, 100.0 + (t % 70) as f64)], t * S));
        }
        let (hourly, minutes): (Vec<Point>, Vec<Point>) =
            out.into_iter().partition(|p| p.measurement == "energy_ledger_hourly");
        assert_eq!(hourly.len(), 1, "{hourly:?}");
        let h = &hourly[0];
        assert_eq!(h.time_ns, 3600 * S);
        let of_hour: Vec<&Point> = minutes.iter().filter(|p| (3600 * S..7200 * S).contains(&p.time_ns)).collect();
        assert_eq!(of_hour.len(), 60);
        let sum: f64 = of_hour.iter().map(|p| energy(p)).sum();
        assert!((energy(h) - sum).abs() <= 1e-9 * sum, "{} vs {sum}", energy(h));
        assert_eq!(h.field_value("intervals"), Some(&FieldValue::Int(60)));
        assert_eq!(h.field_value("expected_s"), Some(&FieldValue::Float(3600.0)));
        assert_eq!(h.field_value("samples"), Some(&FieldValue::Int(360)));
        assert_eq!(h.field_value("power_max_w"), Some(&FieldValue::Float(160.0)));
        assert_eq!(h.tag_value("workload"), Some("train"));
        // `hourly = false` writes the interval points only.
        let mut w = LedgerWriter::new(&LedgerConfig { hourly: false, ..LedgerConfig::default() }, 0);
        let n: usize = (0..=7300).step_by(10).map(|t| w.observe(&[gpu(t, 100.0)], t * S).len()).sum();
        assert_eq!(n, minutes.len());
    }

    #[test]
    fn an_hour_waits_for_a_silent_intervals_late_sample_and_a_workload_change_spoils_it() {
        let hourly_of = |out: Vec<Point>| -> Vec<Point> {
            out.into_iter().filter(|p| p.measurement == "energy_ledger_hourly").collect()
        };
        let mut w = LedgerWriter::new(&LedgerConfig::default(), -10_000 * S);
        let mut hourly = Vec::new();
        // Samples every 10 s up to 3590 s, then silence: [3540, 3600) is closed
        // as silent at 3600 + 210 s and may still gain a late sample.
        for t in (0..3600).step_by(10) {
            hourly.extend(hourly_of(w.observe(&[gpu(t, 100.0)], t * S)));
        }
        hourly.extend(hourly_of(w.observe(&[], 3900 * S)));
        assert!(hourly.is_empty(), "{hourly:?}");
        assert!(w.devices.values().all(|d| d.silent_closed.contains_key(&(3540 * S))));
        // The sample stamped 3600 s arrives late; the hour is final now, with it.
        hourly.extend(hourly_of(w.observe(&[gpu(3600, 100.0)], 3901 * S)));
        assert_eq!(hourly.len(), 1);
        assert!((energy(&hourly[0]) - 360_000.0).abs() < 1e-6, "{:?}", hourly[0]);
        // The device moves to another workload at 5000 s: [3600, 7200) is mixed.
        for t in (3610..7300).step_by(10) {
            let p = gpu(t, 100.0);
            let p = if t >= 5000 { p.tag("workload", "infer") } else { p };
            hourly.extend(hourly_of(w.observe(&[p], t * S)));
        }
        assert_eq!(hourly.len(), 1, "{hourly:?}");
    }

    #[test]
    fn a_restart_forgets_and_skips_the_intervals_it_cannot_have_seen() {
        let mut w = LedgerWriter::new(&LedgerConfig::default(), -1000 * S);
        for t in (0..=50).step_by(10) {
            assert!(w.observe(&[gpu(t, 100.0)], t * S).is_empty());
        }
        w.restart(55 * S);
        let mut out = Vec::new();
        for t in (60..=400).step_by(10) {
            out.extend(w.observe(&[gpu(t, 100.0)], t * S));
        }
        // 55 + 90 = 145 s: the first interval written starts at 180 s.
        assert_eq!(out.first().map(|p| p.time_ns / S), Some(180));
    }
}
