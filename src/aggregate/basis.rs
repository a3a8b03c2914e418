//! The basis of every joule: what measured each device's energy, and which
//! measurement counts where several cover the same device and time.
//!
//! Bases, in priority order (the first one present for a device and time counts):
//!
//! 1. `meter`: a meter channel at the wall (PDU outlet, BMC, plug) covering the
//!    device, from the agent's `meter` points;
//! 2. `reported`: the miner's own firmware figure (at the PSU input);
//! 3. `board`: NVML board power of a GPU;
//! 4. `estimated`: measured hashrate × the model's nominal J/TH.
//!
//! A device carries one of 2–4 itself (a GPU is `board`, a miner's `power_source`
//! says `reported` or `estimated`); `meter` replaces it for exactly the time every
//! channel covering the device has energy. A meter that was offline for part of a
//! window leaves that part to the device's own basis.
//!
//! What a channel covers ([`Target`]):
//! - a **miner** address: the channel's energy is that miner's;
//! - a **GPU host**: the channel's energy is split over the host's GPUs in
//!   proportion to their board energy in the same interval (every workload a GPU of
//!   the host serves gets its share, the host's non-GPU power included); where no
//!   GPU of the host measured board energy, in equal parts over the host's GPUs;
//! - a **group** (rack, container, feeder, site) gives no device a basis: a group
//!   meter cannot tell which device drew what. It is reconciled against the devices
//!   it feeds instead ([`super::reconcile`]).
//!
//! Several channels covering one target (a server's two PSUs on two outlets) are
//! added, and only where all of them have energy. A meter's energy at a time when
//! none of the devices it covers has energy data of its own is not attributed.
//!
//! Everything here is pure: [`resolve`] works on per-device energy *spans* (a ledger
//! interval, or the range between two raw samples) of one read chunk, assuming
//! constant power inside a span.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::schema::{self, asic, gpu, meter};

/// What measured a joule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    Meter,
    Reported,
    Board,
    Estimated,
}

impl Basis {
    /// In priority order.
    pub const ALL: [Basis; 4] = [Basis::Meter, Basis::Reported, Basis::Board, Basis::Estimated];

    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Meter => "meter",
            Basis::Reported => "reported",
            Basis::Board => "board",
            Basis::Estimated => "estimated",
        }
    }

    pub fn parse(s: &str) -> Option<Basis> {
        Basis::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// A device's own basis from its raw measurement and tags: `board` for a GPU,
    /// a miner's `power_source`; `None` for anything else (an inference server has
    /// no power of its own).
    pub fn of_device(measurement: &str, tags: &BTreeMap<String, String>) -> Option<Basis> {
        match measurement {
            m if m == gpu::MEASUREMENT => Some(Basis::Board),
            m if m == asic::MEASUREMENT => tags.get(asic::TAG_POWER_SOURCE).and_then(|s| Basis::parse(s)),
            _ => None,
        }
    }
}

/// Energy by basis. Serialised as `{"meter_j": …, "reported_j": …, …}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BasisEnergy {
    pub meter_j: f64,
    pub reported_j: f64,
    pub board_j: f64,
    pub estimated_j: f64,
}

impl BasisEnergy {
    pub fn get(&self, b: Basis) -> f64 {
        match b {
            Basis::Meter => self.meter_j,
            Basis::Reported => self.reported_j,
            Basis::Board => self.board_j,
            Basis::Estimated => self.estimated_j,
        }
    }

    fn slot(&mut self, b: Basis) -> &mut f64 {
        match b {
            Basis::Meter => &mut self.meter_j,
            Basis::Reported => &mut self.reported_j,
            Basis::Board => &mut self.board_j,
            Basis::Estimated => &mut self.estimated_j,
        }
    }

    pub fn add(&mut self, b: Basis, joules: f64) {
        *self.slot(b) += joules;
    }

    pub fn absorb(&mut self, o: &BasisEnergy) {
        for b in Basis::ALL {
            self.add(b, o.get(b));
        }
    }

    pub fn total_j(&self) -> f64 {
        Basis::ALL.iter().map(|&b| self.get(b)).sum()
    }

    /// Energy measured by something (meter, firmware, NVML), not estimated.
    pub fn measured_j(&self) -> f64 {
        self.total_j() - self.estimated_j
    }

    /// Each basis's share of the energy, in priority order, leaving out bases
    /// without energy; empty without energy.
    pub fn shares(&self) -> Vec<(Basis, f64)> {
        let total = self.total_j();
        if total <= 0.0 {
            return Vec::new();
        }
        Basis::ALL.into_iter().filter(|&b| self.get(b) > 0.0).map(|b| (b, self.get(b) / total)).collect()
    }

    /// `62 % meter, 38 % estimated`; `no power reading` without energy.
    pub fn label(&self) -> String {
        let shares = self.shares();
        if shares.is_empty() {
            return "no power reading".into();
        }
        shares.iter().map(|(b, s)| format!("{:.0} % {}", s * 100.0, b.as_str())).collect::<Vec<_>>().join(", ")
    }

    /// How an efficiency computed from this energy is labelled: `measured` when
    /// none of it is estimated, `nominal` when all of it is, `partly nominal`
    /// between, `None` without energy (no power reading).
    pub fn efficiency_label(&self) -> Option<&'static str> {
        let total = self.total_j();
        if total <= 0.0 {
            None
        } else if self.estimated_j <= 0.0 {
            Some("measured")
        } else if self.estimated_j >= total {
            Some("nominal")
        } else {
            Some("partly nominal")
        }
    }
}

/// What one meter channel covers, from its `covers_kind` and `covers` tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Miner(String),
    GpuHost(String),
    Group(String),
}

impl Target {
    pub fn of_channel(tags: &BTreeMap<String, String>) -> Option<Target> {
        let covers = tags.get(meter::TAG_COVERS)?.clone();
        match tags.get(meter::TAG_COVERS_KIND).map(String::as_str) {
            Some("miner") => Some(Target::Miner(covers)),
            Some("gpu_host") => Some(Target::GpuHost(covers)),
            Some("group") => Some(Target::Group(covers)),
            _ => None,
        }
    }

    /// The device-level target a device's tags name: its miner address, or the
    /// host of a GPU. `targets` are the channels' targets; a miner channel given as
    /// a bare address (`192.0.2.21`) covers the miner at any port.
    pub fn of_device<'a>(
        measurement: &str,
        tags: &BTreeMap<String, String>,
        targets: impl IntoIterator<Item = &'a Target>,
    ) -> Option<Target> {
        let (want_miner, key) = match measurement {
            m if m == asic::MEASUREMENT => (true, tags.get(asic::TAG_MINER)?),
            m if m == gpu::MEASUREMENT => (false, tags.get(schema::TAG_HOST)?),
            _ => return None,
        };
        let host_of = |a: &str| a.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_owned());
        targets
            .into_iter()
            .find(|t| match t {
                Target::Miner(m) if want_miner => m == key || host_of(key).as_deref() == Some(m.as_str()),
                Target::GpuHost(h) if !want_miner => h == key,
                _ => false,
            })
            .cloned()
    }
}

/// Energy over `[a, b)`, of which `covered_ns` backed by measurements, with the
/// basis it was measured on. Power is taken as constant inside a span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub a: i64,
    pub b: i64,
    pub joules: f64,
    pub covered_ns: i64,
    pub basis: Basis,
}

impl Span {
    /// The part of this span inside `[x, y)` (which must lie within it).
    fn part(&self, x: i64, y: i64) -> (f64, i64) {
        let len = (self.b - self.a).max(1) as f64;
        let f = (y - x) as f64 / len;
        (self.joules * f, (self.covered_ns as f64 * f).round() as i64)
    }

    /// The share of the span backed by measurements: 1 for a span between two raw
    /// samples, less for a ledger interval with missed polls.
    fn covered_share(&self) -> f64 {
        (self.covered_ns as f64 / (self.b - self.a).max(1) as f64).clamp(0.0, 1.0)
    }
}

/// The span of `spans` (sorted by start, not overlapping) that holds `[x, y)`.
fn holding(spans: &[Span], x: i64, y: i64) -> Option<&Span> {
    let i = spans.partition_point(|s| s.a <= x);
    let s = spans.get(i.checked_sub(1)?)?;
    (s.a <= x && y <= s.b).then_some(s)
}

/// Sorts spans by start and drops any that overlap an earlier one (the same time
/// from two series of one device).
pub fn normalise(spans: &mut Vec<Span>) {
    spans.sort_by_key(|s| (s.a, s.b));
    let mut end = i64::MIN;
    spans.retain(|s| {
        let keep = s.a >= end && s.b > s.a;
        if keep {
            end = s.b;
        }
        keep
    });
}

/// One device under a metered target.
#[derive(Debug, Clone, Default)]
pub struct Member {
    /// The device's own energy (what counts where the meter does not), only for
    /// devices of the workload being computed.
    pub own: Vec<Span>,
    /// The energy that weighs its share of the meter (board energy of a GPU; a
    /// miner's own energy). Empty weights everywhere: equal shares.
    pub weight: Vec<Span>,
    /// Whether the device belongs to the workload being computed.
    pub mine: bool,
}

/// [`resolve`]'s answer for one device of the workload: its energy pieces (each
/// inside one span of the inputs, so inside one tariff segment when the inputs
/// are cut there) and the time covered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub pieces: Vec<Span>,
    pub covered_ns: i64,
}

/// The energy of the workload's devices under one metered target over
/// `[from_ns, to_ns)`: the channels' energy where every channel has some,
/// split over the members by weight, and each member's own energy elsewhere.
/// All span lists must be [`normalise`]d. Returns one entry per member, `None` for
/// members that are not `mine`.
pub fn resolve(channels: &[Vec<Span>], members: &[Member], from_ns: i64, to_ns: i64) -> Vec<Option<Resolved>> {
    let mut cuts: Vec<i64> = vec![from_ns, to_ns];
    for s in channels.iter().flatten().chain(members.iter().flat_map(|m| m.own.iter().chain(&m.weight))) {
        cuts.push(s.a.clamp(from_ns, to_ns));
        cuts.push(s.b.clamp(from_ns, to_ns));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<Option<Resolved>> = members.iter().map(|m| m.mine.then(Resolved::default)).collect();
    for w in cuts.windows(2) {
        let (x, y) = (w[0], w[1]);
        let metered: Option<Vec<(f64, i64)>> =
            channels.iter().map(|c| holding(c, x, y).map(|s| s.part(x, y))).collect();
        let metered = metered.filter(|parts| !channels.is_empty() && parts.iter().all(|p| p.1 > 0));
        // A meter's energy at a time none of its devices has energy data of its own
        // (before an agent's first readings, a miner's missed polls) is left out: the
        // devices' coverage shows that hole, as without a meter. Inside a ledger
        // interval with missed polls it is not known when the device had data, so
        // the meter counts for the interval's covered share: the same energy as raw
        // samples give when the meter's power is steady.
        let present = members
            .iter()
            .filter_map(|m| holding(&m.own, x, y).or_else(|| holding(&m.weight, x, y)))
            .map(Span::covered_share)
            .fold(0.0, f64::max);
        let metered = metered.filter(|_| present > 0.0);
        match metered {
            Some(parts) => {
                let joules: f64 = parts.iter().map(|p| p.0).sum::<f64>() * present;
                let covered = (parts.iter().map(|p| p.1).min().unwrap_or(0) as f64 * present).round() as i64;
                let weights: Vec<f64> =
                    members.iter().map(|m| holding(&m.weight, x, y).map_or(0.0, |s| s.part(x, y).0.max(0.0))).collect();
                let total: f64 = weights.iter().sum();
                for (k, r) in out.iter_mut().enumerate() {
                    let Some(r) = r else { continue };
                    let share = if total > 0.0 { weights[k] / total } else { 1.0 / members.len() as f64 };
                    r.pieces.push(Span {
                        a: x,
                        b: y,
                        joules: joules * share,
                        covered_ns: covered,
                        basis: Basis::Meter,
                    });
                    r.covered_ns += covered;
                }
            }
            None => {
                for (m, r) in members.iter().zip(out.iter_mut()) {
                    let (Some(r), Some(s)) = (r, holding(&m.own, x, y)) else { continue };
                    let (joules, covered) = s.part(x, y);
                    r.pieces.push(Span { a: x, b: y, joules, covered_ns: covered, basis: s.basis });
                    r.covered_ns += covered;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn span(a: i64, b: i64, joules: f64, basis: Basis) -> Span {
        Span { a: a * S, b: b * S, joules, covered_ns: (b - a) * S, basis }
    }

    #[test]
    fn shares_and_labels() {
        let mut e = BasisEnergy::default();
        assert_eq!(e.label(), "no power reading");
        assert_eq!(e.efficiency_label(), None);
        e.add(Basis::Meter, 62.0);
        e.add(Basis::Estimated, 38.0);
        assert_eq!(e.label(), "62 % meter, 38 % estimated");
        assert_eq!(e.efficiency_label(), Some("partly nominal"));
        assert_eq!(e.measured_j(), 62.0);
        let nominal = BasisEnergy { estimated_j: 1.0, ..Default::default() };
        assert_eq!(nominal.efficiency_label(), Some("nominal"));
    }

    #[test]
    fn a_meter_outage_falls_back_for_that_part_only() {
        // A stock miner estimated at 3250 W over [0, 100 s); its outlet reads 3400 W
        // over [0, 40 s) and [70, 100 s) and is offline in between.
        //   meter:     3400 × 70 = 238,000 J
        //   estimated: 3250 × 30 =  97,500 J
        let own = vec![span(0, 100, 325_000.0, Basis::Estimated)];
        let channel = vec![span(0, 40, 136_000.0, Basis::Meter), span(70, 100, 102_000.0, Basis::Meter)];
        let m = Member { weight: own.clone(), own, mine: true };
        let r = resolve(&[channel], &[m], 0, 100 * S).remove(0).unwrap();
        let mut e = BasisEnergy::default();
        for p in &r.pieces {
            e.add(p.basis, p.joules);
        }
        assert!((e.meter_j - 238_000.0).abs() < 1e-6, "{e:?}");
        assert!((e.estimated_j - 97_500.0).abs() < 1e-6, "{e:?}");
        assert_eq!(r.covered_ns, 100 * S);
    }

    #[test]
    fn a_host_meter_is_split_by_board_energy_and_needs_every_channel() {
        // Two PSUs (two outlets) of one GPU host: 600 W + 400 W over [0, 10 s).
        // GPU a (this workload) draws 300 W of board power, GPU b (another
        // workload) 100 W: a gets 3/4 of 10 kJ = 7500 J. From 10 s the second
        // outlet is silent: a's own board energy counts (300 W × 10 s).
        let a_board = vec![span(0, 20, 6000.0, Basis::Board)];
        let b_board = vec![span(0, 20, 2000.0, Basis::Board)];
        let channels = vec![vec![span(0, 20, 12_000.0, Basis::Meter)], vec![span(0, 10, 4000.0, Basis::Meter)]];
        let members = vec![
            Member { own: a_board.clone(), weight: a_board, mine: true },
            Member { own: vec![], weight: b_board, mine: false },
        ];
        let r = resolve(&channels, &members, 0, 20 * S);
        assert!(r[1].is_none());
        let a = r[0].as_ref().unwrap();
        let meter: f64 = a.pieces.iter().filter(|p| p.basis == Basis::Meter).map(|p| p.joules).sum();
        let board: f64 = a.pieces.iter().filter(|p| p.basis == Basis::Board).map(|p| p.joules).sum();
        assert!((meter - 7500.0).abs() < 1e-9 && (board - 3000.0).abs() < 1e-9, "{a:?}");
    }

    #[test]
    fn a_meter_counts_for_the_covered_share_of_a_ledger_interval_with_missed_polls() {
        // A 60 s ledger interval of a miner that answered for 40 s of it (3250 W
        // estimated), under an outlet reading 3400 W throughout: the outlet counts
        // for 40 s, as raw samples with a 20 s hole give.
        let own = vec![Span { a: 0, b: 60 * S, joules: 3250.0 * 40.0, covered_ns: 40 * S, basis: Basis::Estimated }];
        let channels = vec![vec![span(0, 60, 3400.0 * 60.0, Basis::Meter)]];
        let members = vec![Member { weight: own.clone(), own, mine: true }];
        let r = resolve(&channels, &members, 0, 60 * S);
        let r = r[0].as_ref().unwrap();
        let joules: f64 = r.pieces.iter().map(|p| p.joules).sum();
        assert!((joules - 3400.0 * 40.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.covered_ns, 40 * S);
        assert!(r.pieces.iter().all(|p| p.basis == Basis::Meter));
    }

    #[test]
    fn device_targets_match_miner_addresses_and_gpu_hosts() {
        let tags = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let targets = [Target::Miner("192.0.2.21".into()), Target::GpuHost("rig-1".into())];
        let m = tags(&[("miner", "192.0.2.21:4028")]);
        assert_eq!(Target::of_device("asic", &m, &targets), Some(Target::Miner("192.0.2.21".into())));
        let g = tags(&[("host", "rig-1"), ("uuid", "GPU-1")]);
        assert_eq!(Target::of_device("gpu", &g, &targets), Some(Target::GpuHost("rig-1".into())));
        let other = tags(&[("miner", "192.0.2.22:4028")]);
        assert_eq!(Target::of_device("asic", &other, &targets), None);
    }
}
