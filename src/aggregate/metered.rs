//! Meter channels in a read chunk: each channel's energy spans, from its
//! `energy_ledger` points where they can stand for their interval and from its raw
//! `meter` points (folded through the same [`DeviceAccumulator`] and rules as every
//! other device) for the rest, and the GPUs of metered hosts (of every workload)
//! that weigh a host meter's split.

use std::collections::BTreeMap;

use super::basis::{normalise, Basis, Member, Span, Target};
use crate::ledger::{series_device_id, Columns, Cuts, DeviceAccumulator, Part, Rules};
use crate::model::schema::{self, meter};
use crate::model::FieldValue;
use crate::signal::Window;
use crate::store::Series;

/// The tag that puts a device in a group (rack, container, feeder): set by the
/// agent from its `group` setting on every device point. Every device of a site
/// is also in the group named like the site.
pub const TAG_GROUP: &str = schema::TAG_GROUP;

/// The meter channels of one chunk.
#[derive(Debug, Default)]
pub struct ChunkMeters {
    /// Per device-level target, each channel's spans (normalised).
    pub devices: BTreeMap<Target, Vec<Vec<Span>>>,
    /// Per group: the channels' energy and the time every channel had energy
    /// (the least covered channel's time).
    pub groups: BTreeMap<String, (f64, i64)>,
}

/// Energy spans of each device (by id) in `series`, inside `win`, cut at `cuts`.
pub fn energy_spans(
    measurement: &str,
    series: &[Series],
    rules: &Rules,
    cuts: &Cuts,
    win: Window,
    basis: impl Fn(&BTreeMap<String, String>) -> Option<Basis>,
) -> BTreeMap<String, (BTreeMap<String, String>, Vec<Span>)> {
    energy_spans_outside(measurement, series, rules, win, basis, |_| cuts.clone(), |_, _| false)
}

/// [`energy_spans`] with each device's cuts from `cuts_of(id)`, leaving out the
/// parts starting at a time `held(id, t)` says is already accounted for.
fn energy_spans_outside(
    measurement: &str,
    series: &[Series],
    rules: &Rules,
    win: Window,
    basis: impl Fn(&BTreeMap<String, String>) -> Option<Basis>,
    cuts_of: impl Fn(&str) -> Cuts,
    held: impl Fn(&str, i64) -> bool,
) -> BTreeMap<String, (BTreeMap<String, String>, Vec<Span>)> {
    let mut by_id: BTreeMap<String, Vec<&Series>> = BTreeMap::new();
    for s in series {
        by_id.entry(series_device_id(measurement, &s.tags)).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for (id, parts) in by_id {
        let mut rows: Vec<(i64, usize, usize)> = parts
            .iter()
            .enumerate()
            .flat_map(|(k, s)| s.times_ns.iter().enumerate().map(move |(i, &t)| (t, k, i)))
            .collect();
        rows.sort_unstable();
        let cols: Vec<Columns> = parts.iter().map(|s| Columns::new(measurement, &s.fields)).collect();
        let bases: Vec<Option<Basis>> = parts.iter().map(|s| basis(&s.tags)).collect();
        let cuts = cuts_of(&id);
        let mut acc = DeviceAccumulator::default();
        let mut spans = Vec::new();
        for (t, k, i) in rows {
            let row: &[Option<FieldValue>] = &parts[k].values[i];
            let Some(sample) = cols[k].row_sample(t, row) else { continue };
            let Some(b) = bases[k] else { continue };
            acc.push(&sample, rules, &cuts, |a, z, part| {
                if let Part::Energy { joules, .. } = part {
                    if a >= win.start_ns && z <= win.end_ns && !held(&id, a) {
                        spans.push(Span { a, b: z, joules, covered_ns: z - a, basis: b });
                    }
                }
            });
        }
        normalise(&mut spans);
        out.insert(id, (parts[0].tags.clone(), spans));
    }
    out
}

/// Folds the chunk's `meter` series into spans per channel and target.
pub fn chunk_meters(series: &[Series], rules: &Rules, cuts: &Cuts, win: Window) -> ChunkMeters {
    site_meters(BTreeMap::new(), series, rules, &cuts.list, win)
}

/// A meter channel's ledger intervals that stand for themselves: channel id →
/// (its tags, one fully covered span per interval, sorted).
pub type LedgerChannels = BTreeMap<String, (BTreeMap<String, String>, Vec<Span>)>;

/// The meter channels of a chunk from both paths: each channel's `ledger` spans,
/// and its `raw` samples for every other time (cut at `edges` and at the ledger
/// spans, so no interval counts twice), per target.
pub fn site_meters(ledger: LedgerChannels, raw: &[Series], rules: &Rules, edges: &[i64], win: Window) -> ChunkMeters {
    let in_ledger = |id: &str, t: i64| {
        ledger.get(id).is_some_and(|(_, spans)| {
            let i = spans.partition_point(|s| s.a <= t);
            i > 0 && t < spans[i - 1].b
        })
    };
    let cuts_of = |id: &str| {
        let mut list = edges.to_vec();
        if let Some((_, spans)) = ledger.get(id) {
            list.extend(spans.iter().flat_map(|s| [s.a, s.b]));
        }
        list.sort_unstable();
        list.dedup();
        Cuts { grid_ns: 0, list }
    };
    let mut spans =
        energy_spans_outside(meter::MEASUREMENT, raw, rules, win, |_| Some(Basis::Meter), cuts_of, in_ledger);
    for (id, (tags, mut from_ledger)) in ledger {
        let entry = spans.entry(id).or_insert_with(|| (tags, Vec::new()));
        entry.1.append(&mut from_ledger);
        normalise(&mut entry.1);
    }
    let mut out = ChunkMeters::default();
    let mut groups: BTreeMap<String, Vec<Vec<Span>>> = BTreeMap::new();
    for (tags, s) in spans.into_values() {
        match Target::of_channel(&tags) {
            Some(Target::Group(g)) => groups.entry(g).or_default().push(s),
            Some(t) => out.devices.entry(t).or_default().push(s),
            None => {}
        }
    }
    for (g, channels) in groups {
        let joules = channels.iter().flatten().map(|s| s.joules).sum();
        let covered = channels.iter().map(|c| c.iter().map(|s| s.covered_ns).sum::<i64>()).min().unwrap_or(0);
        out.groups.insert(g, (joules, covered));
    }
    out
}

/// The members of a metered target: the workload's devices under it (`mine`,
/// with their own spans) and, for a GPU host, every other GPU of that host read
/// from `host_gpus` (device id → board spans), which only weigh the split.
pub fn members(
    target: &Target,
    mine: Vec<(String, Vec<Span>)>,
    host_gpus: &BTreeMap<String, Vec<Span>>,
) -> Vec<Member> {
    let mut out: Vec<Member> = Vec::new();
    let is_host = matches!(target, Target::GpuHost(_));
    for (id, own) in &mine {
        let weight = if is_host { host_gpus.get(id).cloned().unwrap_or_else(|| own.clone()) } else { own.clone() };
        out.push(Member { own: own.clone(), weight, mine: true });
    }
    if is_host {
        for (id, spans) in host_gpus {
            if !mine.iter().any(|(m, _)| m == id) {
                out.push(Member { own: Vec::new(), weight: spans.clone(), mine: false });
            }
        }
    }
    out
}
