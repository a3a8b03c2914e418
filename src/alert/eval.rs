//! What each rule kind measures, read through the aggregator: completed windows
//! (`unprofitable`, `low_coverage`) and the latest raw readings (the rest).
//! Each evaluator returns one [`Observation`] per subject in the rule's scope;
//! subjects without data are left out, so a fresh install observes nothing.

use std::collections::BTreeMap;

use super::config::{Expected, Kind, Rule};
use super::state::{fmt_num, Missing, Observation};
use crate::aggregate::config::MarketSourceKind;
use crate::aggregate::fleet::{
    efficiency_fold, latest_fold, latest_per_device, measured_j_per_th, metered_j_per_th, nominal_spec, sum_fold,
    DeviceLatest, EfficiencySums,
};
use crate::aggregate::windows::{device_id, window_label};
use crate::aggregate::{rfc3339, AggregateError, Aggregator};
use crate::ledger::Columns;
use crate::model::schema::{self, agent, asic, gpu, market};
use crate::model::FieldValue;
use crate::store::{fold_series, SeriesQuery};

/// What an evaluation found, and how to treat subjects it did not see.
pub struct Found {
    pub observations: Vec<Observation>,
    pub missing: Missing,
    /// Facts worth showing beside the alerts (miners whose power is estimated).
    pub notes: Vec<String>,
}

fn labels(pairs: &[(&str, Option<&String>)]) -> BTreeMap<String, String> {
    pairs.iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.clone()))).collect()
}

/// One device's labels: the site and host it is tagged with, its workload, its id.
fn device_labels(
    tags: &BTreeMap<String, String>,
    workload: Option<&String>,
    device: &String,
) -> BTreeMap<String, String> {
    labels(&[
        ("site", tags.get(schema::TAG_SITE)),
        ("workload", workload),
        ("host", tags.get(schema::TAG_HOST)),
        ("device", Some(device)),
    ])
}

fn query(measurement: &str, fields: &[&str], from_ns: i64, to_ns: i64) -> SeriesQuery {
    SeriesQuery {
        measurement: measurement.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        tag_filters: vec![],
        start_ns: from_ns,
        end_ns: to_ns,
    }
}

/// Streams the rows of `measurement` in `[from_ns, to_ns)` into one state per
/// series (`fold` is made from the query's fields): what is held is one state per
/// series, however long the range and however many rows.
async fn fold<S, F>(
    agg: &Aggregator,
    measurement: &str,
    fields: &[&str],
    from_ns: i64,
    to_ns: i64,
    make: impl FnOnce(&[String]) -> F,
) -> Result<Vec<(BTreeMap<String, String>, S)>, AggregateError>
where
    S: Default + Send,
    F: FnMut(&BTreeMap<String, String>, &mut S, i64, &[Option<FieldValue>]) + Send,
{
    let q = query(measurement, fields, from_ns, to_ns);
    let f = make(&q.fields);
    Ok(fold_series(agg.store().as_ref(), &q, f).await?)
}

/// A state for the rows before a time and one for the rows from it.
#[derive(Debug, Default)]
struct Split<T> {
    before: T,
    recent: T,
}

/// The latest readings of each device of `measurement` in `[from_ns, to_ns)`.
async fn latest(
    agg: &Aggregator,
    measurement: &str,
    fields: &[&str],
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<DeviceLatest>, AggregateError> {
    let series = fold(agg, measurement, fields, from_ns, to_ns, |f| latest_fold(measurement, f)).await?;
    Ok(latest_per_device(measurement, &series))
}

/// The time of each series' last row at or before `until_ns`.
fn last_time(until_ns: i64) -> impl FnMut(&BTreeMap<String, String>, &mut Option<i64>, i64, &[Option<FieldValue>]) {
    move |_, s, t, _| {
        if t <= until_ns {
            *s = Some(s.map_or(t, |x| x.max(t)));
        }
    }
}

/// How far back a miner's own efficiency baseline reaches, before the rule's window.
pub const BASELINE_NS: i64 = 6 * 3_600_000_000_000;

/// Σ and count of the hashrate of each series' readings in which the miner
/// answered (`online`), split at `split_ns`: the hashrate of one that did not is
/// `device_offline`'s to report.
fn answering_hashrate_fold(
    fields: &[String],
    split_ns: i64,
) -> impl FnMut(&BTreeMap<String, String>, &mut Split<(f64, usize)>, i64, &[Option<FieldValue>]) + Send {
    let cols = Columns::new(asic::MEASUREMENT, fields);
    move |_, s, t, row| {
        let Some(ths) = cols.row_sample(t, row).filter(|x| x.healthy).and_then(|x| x.hashrate_ths) else { return };
        let half = if t < split_ns { &mut s.before } else { &mut s.recent };
        (half.0, half.1) = (half.0 + ths, half.1 + 1);
    }
}

/// Mean hashrate per miner (keyed by device id) from [`answering_hashrate_fold`]'s sums.
fn mean_per_miner<'a>(
    series: impl IntoIterator<Item = (&'a BTreeMap<String, String>, (f64, usize))>,
) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (tags, (sum, n)) in series.into_iter().filter(|s| s.1 .1 > 0) {
        let e = sums.entry(device_id(asic::MEASUREMENT, tags)).or_default();
        (e.0, e.1) = (e.0 + sum, e.1 + n);
    }
    sums.into_iter().map(|(id, (sum, n))| (id, sum / n as f64)).collect()
}

/// One observation per miner of `recent` in the rule's scope, its labels from the
/// first series of its device id. `measure(id, tag)` gives the value and the sentence
/// before it, or `None` to leave the miner out.
fn per_miner<'a>(
    rule: &Rule,
    series: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    window_ns: i64,
    mut measure: impl FnMut(&str, &dyn Fn(&str) -> Option<&'a str>) -> Option<(f64, String)>,
) -> Vec<Observation> {
    let window =
        format!("mean of the last {} against the {} before", window_label(window_ns), window_label(BASELINE_NS));
    let mut done = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for tags in series {
        let id = device_id(asic::MEASUREMENT, tags);
        let tag = |k: &str| tags.get(k).map(String::as_str);
        if !rule.admits(tag(schema::TAG_SITE), tag(schema::TAG_WORKLOAD), Some("asic"), Some(&id))
            || !done.insert(id.clone())
        {
            continue;
        }
        if let Some((value, what)) = measure(&id, &tag) {
            let labels = device_labels(tags, tags.get(schema::TAG_WORKLOAD), &id);
            out.push(Observation { labels, value, window: window.clone(), what });
        }
    }
    out
}

/// The larger of the shortfalls against the rated figure and the baseline, of those
/// the rule compares with.
fn worse(expected: Expected, vs_rated: Option<f64>, vs_baseline: Option<f64>) -> Option<f64> {
    let rated = vs_rated.filter(|_| expected.rated());
    let baseline = vs_baseline.filter(|_| expected.baseline());
    rated.into_iter().chain(baseline).reduce(f64::max)
}

/// Evaluates one rule at `now_ns`. `first_data_ns` keeps each workload's first data.
pub async fn evaluate(
    agg: &Aggregator,
    rule: &Rule,
    now_ns: i64,
    first_data_ns: &mut BTreeMap<String, i64>,
) -> Result<Found, AggregateError> {
    let window_ns = (rule.window_s * 1e9) as i64;
    let expected = rule.expected.unwrap_or(Expected::Either);
    let cfg = agg.config();
    let mut found = Found { observations: Vec::new(), missing: Missing::Resolves, notes: Vec::new() };
    match rule.kind {
        Kind::Unprofitable | Kind::LowCoverage => {
            // The last window of the rule's length that completed at least
            // `max_gap` ago: readings of its last moments may still be on the way.
            let settle_ns = cfg.aggregator.max_gap.as_nanos() as i64;
            let to = (now_ns - settle_ns).div_euclid(window_ns) * window_ns;
            let from = to - window_ns;
            let mut results = Vec::new();
            // A completed window as stored (computed here when it is not yet).
            let mode = crate::aggregate::Windows::Stored { write_back: false };
            agg.compute(from, to, window_ns, rule.workload.as_deref(), mode, |w| results.push(w)).await?;
            for w in results {
                if !rule.admits(Some(&w.site), Some(&w.workload), None, None) {
                    continue;
                }
                let window = format!("{} window ending {}", window_label(window_ns), rfc3339(w.window.end_ns));
                let l = labels(&[("site", Some(&w.site)), ("workload", Some(&w.workload))]);
                if rule.kind == Kind::Unprofitable {
                    if let Some(v) = w.profit_usd_per_kwh() {
                        let what = format!(
                            "workload {} earns {} USD/kWh and pays {} USD/kWh; profit per kWh",
                            w.workload,
                            fmt_num(w.revenue_usd_per_kwh().unwrap_or(0.0)),
                            fmt_num(w.revenue_usd_per_kwh().unwrap_or(0.0) - v)
                        );
                        found.observations.push(Observation { labels: l, value: v, window, what });
                    }
                    continue;
                }
                // Coverage counts only from the first window after a workload's
                // first data: the window data began in is partial by nature, and
                // the empty ones before it are not a fault.
                if w.devices > 0 {
                    first_data_ns.entry(w.workload.clone()).or_insert(w.window.end_ns);
                }
                match first_data_ns.get(&w.workload) {
                    Some(&first) if w.window.start_ns >= first => {
                        let what = format!("workload {} measured coverage", w.workload);
                        found.observations.push(Observation { labels: l, value: w.coverage(), window, what });
                    }
                    _ => {}
                }
            }
        }
        Kind::MinerEfficiency => {
            // The window against the model's nominal J/TH and against the miner's
            // own trailing baseline (the BASELINE before the window), as the rule's
            // `expected` says; the worse counts.
            let split_ns = now_ns - window_ns;
            let (from_ns, to_ns) = (split_ns - BASELINE_NS, now_ns + 1);
            // Per series and half: power and hashrate read together, and the hashrate
            // alone (what a meter's power is set against).
            type Halves = Split<(EfficiencySums, (f64, usize))>;
            let asic_fields = [asic::POWER_W, asic::HASHRATE_THS];
            let asics = fold(agg, asic::MEASUREMENT, &asic_fields, from_ns, to_ns, |f| {
                let (mut e, mut h) = (efficiency_fold(f), sum_fold(f, asic::HASHRATE_THS));
                move |tags: &BTreeMap<String, String>, s: &mut Halves, t, row: &[Option<FieldValue>]| {
                    let half = if t < split_ns { &mut s.before } else { &mut s.recent };
                    e(tags, &mut half.0, t, row);
                    h(tags, &mut half.1, t, row);
                }
            })
            .await?;
            // A miner's own measured power, else a meter channel covering it (a stock
            // miner behind a PDU outlet), which comes first; never its estimate.
            let meters = fold(agg, schema::meter::MEASUREMENT, &[schema::meter::POWER_W], from_ns, to_ns, |f| {
                let mut p = sum_fold(f, schema::meter::POWER_W);
                move |tags: &BTreeMap<String, String>, s: &mut Split<(f64, usize)>, t, row: &[Option<FieldValue>]| {
                    p(tags, if t < split_ns { &mut s.before } else { &mut s.recent }, t, row)
                }
            })
            .await?;
            let with_meters = |own: BTreeMap<String, EfficiencySums>, metered: BTreeMap<String, EfficiencySums>| {
                let mut all = own;
                all.extend(metered.into_iter().filter(|(_, e)| e.samples > 0));
                all
            };
            let measured = with_meters(
                measured_j_per_th(asics.iter().map(|(t, s)| (t, &s.recent.0))),
                metered_j_per_th(asics.iter().map(|(t, s)| (t, s.recent.1)), meters.iter().map(|(t, s)| (t, s.recent))),
            );
            let baseline = with_meters(
                measured_j_per_th(asics.iter().map(|(t, s)| (t, &s.before.0))),
                metered_j_per_th(asics.iter().map(|(t, s)| (t, s.before.1)), meters.iter().map(|(t, s)| (t, s.before))),
            );
            let mut estimated = Vec::new();
            found.observations = per_miner(rule, asics.iter().map(|(t, _)| t), window_ns, |id, tag| {
                let Some(j) = measured.get(id).and_then(|m| m.j_per_th()) else {
                    if tag(asic::TAG_POWER_SOURCE) == Some("estimated") {
                        estimated.push(id.to_string());
                    }
                    return None;
                };
                let nominal = nominal_spec(tag(asic::TAG_MAKE), tag(asic::TAG_MODEL)).map(|s| s.j_per_th());
                let own = baseline.get(id).and_then(|b| b.j_per_th());
                let vs = |base: Option<f64>| base.map(|b| (j / b - 1.0) * 100.0);
                let what = format!(
                    "miner {id} measures {} J/TH (nominal {}, own baseline {}); worse by",
                    fmt_num(j),
                    nominal.map_or("unknown".into(), fmt_num),
                    own.map_or("none yet".into(), fmt_num)
                );
                Some((worse(expected, vs(nominal), vs(own))?, what))
            });
            if !estimated.is_empty() {
                found.notes.push(format!(
                    "{} miner(s) report no power of their own (power is estimated from nominal J/TH), so their efficiency cannot show degradation: {}",
                    estimated.len(),
                    estimated.join(", ")
                ));
            }
        }
        Kind::HashrateLow => {
            // The window's mean hashrate against the model's rated hashrate and/or
            // the miner's own mean over the BASELINE before the window (`expected`);
            // the larger shortfall counts. Hashrate is always the miner's own figure, so
            // this also watches miners whose power is estimated.
            let split_ns = now_ns - window_ns;
            let fields = [asic::HASHRATE_THS, asic::ONLINE];
            let series = fold(agg, asic::MEASUREMENT, &fields, split_ns - BASELINE_NS, now_ns + 1, |f| {
                answering_hashrate_fold(f, split_ns)
            })
            .await?;
            let measured = mean_per_miner(series.iter().map(|(t, s)| (t, s.recent)));
            let baseline = mean_per_miner(series.iter().map(|(t, s)| (t, s.before)));
            found.observations = per_miner(rule, series.iter().map(|(t, _)| t), window_ns, |id, tag| {
                let &ths = measured.get(id)?;
                let rated = nominal_spec(tag(asic::TAG_MAKE), tag(asic::TAG_MODEL)).map(|s| s.rated_ths);
                let own = baseline.get(id).copied();
                let short = |base: Option<f64>| base.filter(|b| *b > 0.0).map(|b| (1.0 - ths / b) * 100.0);
                let what = format!(
                    "miner {id} hashes {} TH/s (rated {}, own baseline {}); short by",
                    fmt_num(ths),
                    rated.map_or("unknown".into(), fmt_num),
                    own.map_or("none yet".into(), fmt_num)
                );
                Some((worse(expected, short(rated), short(own))?, what))
            });
        }
        Kind::GpuIdleBurn => {
            // Idle power is lost money only where pay follows use.
            let paid_by_use: Vec<&str> =
                cfg.workloads.iter().filter(|w| w.revenue_model.info().paid_by_use).map(|w| w.name.as_str()).collect();
            let fields = [gpu::POWER_W, gpu::UTIL_GPU_PCT];
            for dev in latest(agg, gpu::MEASUREMENT, &fields, now_ns - window_ns, now_ns + 1).await? {
                let t = |k: &str| dev.tags.get(k);
                let Some(workload) = t(schema::TAG_WORKLOAD).filter(|w| paid_by_use.contains(&w.as_str())) else {
                    continue;
                };
                if !rule.admits(t(schema::TAG_SITE).map(String::as_str), Some(workload), Some("gpu"), Some(&dev.id)) {
                    continue;
                }
                let (Some(power_w), Some(util)) =
                    (dev.latest.mean(&fields, gpu::POWER_W), dev.latest.mean(&fields, gpu::UTIL_GPU_PCT))
                else {
                    continue;
                };
                // The power drawn while idle; 0 while the GPU works.
                let value = if util < rule.util_below_pct { power_w } else { 0.0 };
                let what = format!(
                    "GPU {} at {} % utilisation (idle below {} %) draws",
                    dev.id,
                    fmt_num(util),
                    fmt_num(rule.util_below_pct)
                );
                found.observations.push(Observation {
                    labels: device_labels(&dev.tags, Some(workload), &dev.id),
                    value,
                    window: format!("mean over the last {}", window_label(window_ns)),
                    what,
                });
            }
        }
        Kind::DeviceOffline => {
            found.missing = Missing::Keeps;
            let default_gap = cfg.aggregator.max_gap.as_nanos() as i64;
            for (kind, measurement, fields) in
                [("gpu", gpu::MEASUREMENT, &[gpu::STATUS][..]), ("asic", asic::MEASUREMENT, &[asic::ONLINE][..])]
            {
                for dev in latest(agg, measurement, fields, now_ns - window_ns, now_ns + 1).await? {
                    let t = |k: &str| dev.tags.get(k);
                    if !rule.admits(
                        t(schema::TAG_SITE).map(String::as_str),
                        t(schema::TAG_WORKLOAD).map(String::as_str),
                        Some(kind),
                        Some(&dev.id),
                    ) {
                        continue;
                    }
                    let Some(first_ns) = dev.latest.first_ns else { continue };
                    let last_good = dev.latest.last_healthy_ns;
                    let gap = t(schema::TAG_WORKLOAD)
                        .and_then(|w| cfg.workloads.iter().find(|x| &x.name == w))
                        .and_then(|w| w.max_gap)
                        .map_or(default_gap, |g| g.as_nanos() as i64);
                    let since = last_good.unwrap_or(first_ns);
                    let value = (now_ns - since) as f64 / gap as f64;
                    let what = match last_good {
                        Some(t) => {
                            format!("{kind} {} last read healthy at {}; intervals of max_gap since", dev.id, rfc3339(t))
                        }
                        None => format!(
                            "{kind} {} has reported only unhealthy readings since {}; intervals of max_gap",
                            dev.id,
                            rfc3339(first_ns)
                        ),
                    };
                    found.observations.push(Observation {
                        labels: device_labels(&dev.tags, t(schema::TAG_WORKLOAD), &dev.id),
                        value,
                        window: format!("max_gap {}", window_label(gap)),
                        what,
                    });
                }
            }
        }
        Kind::AgentSilent => {
            found.missing = Missing::Keeps;
            let fields = [agent::POINTS_COLLECTED];
            let series =
                fold(agg, agent::MEASUREMENT, &fields, now_ns - window_ns, now_ns + 1, |_| last_time(i64::MAX)).await?;
            let mut last: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
            for (tags, t) in series.iter().filter(|s| !s.0.contains_key(agent::TAG_SOURCE)) {
                let (Some(host), Some(t)) = (tags.get(schema::TAG_HOST), *t) else { continue };
                if !rule.admits(tags.get(schema::TAG_SITE).map(String::as_str), None, None, None) {
                    continue;
                }
                let e = last.entry(host.clone()).or_insert((t, tags.get(schema::TAG_SITE).cloned()));
                e.0 = e.0.max(t);
            }
            for (host, (t, site)) in last {
                let what = format!("agent on {host} last reported at {}; seconds since", rfc3339(t));
                let l = labels(&[("site", site.as_ref()), ("host", Some(&host))]);
                found.observations.push(Observation {
                    labels: l,
                    value: (now_ns - t) as f64 / 1e9,
                    window: format!("last {}", window_label(window_ns)),
                    what,
                });
            }
        }
        Kind::MeterGap => {
            // The last complete window of the rule's length, as for `unprofitable`,
            // over every workload: a group meter feeds several.
            let settle_ns = cfg.aggregator.max_gap.as_nanos() as i64;
            let to = (now_ns - settle_ns).div_euclid(window_ns) * window_ns;
            let mode = crate::aggregate::Windows::Stored { write_back: false };
            let gaps = agg.compute_reconciled(to - window_ns, to, window_ns, None, mode, |_| {}).await?;
            for r in gaps {
                let Some(pct) = r.gap_pct else { continue };
                if !rule.admits(Some(&r.site), None, None, None) {
                    continue;
                }
                let what = format!(
                    "group meter {} at site {} read {} kWh, its devices {} kWh; gap (% of the meter, either way)",
                    r.group,
                    r.site,
                    fmt_num(r.meter_energy_j / schema::J_PER_KWH),
                    fmt_num(r.devices_energy_j / schema::J_PER_KWH)
                );
                let l = labels(&[("site", Some(&r.site)), ("group", Some(&r.group))]);
                let window = format!("{} window ending {}", window_label(window_ns), rfc3339(r.window.end_ns));
                found.observations.push(Observation { labels: l, value: pct.abs(), window, what });
            }
        }
        Kind::MarketStale => {
            let needs_market = cfg.workloads.iter().any(|w| w.revenue_model.info().inputs.market);
            if !needs_market || cfg.market.source == MarketSourceKind::Static {
                return Ok(found);
            }
            let fields = [market::BTC_USD];
            let series =
                fold(agg, market::MEASUREMENT, &fields, now_ns - window_ns, now_ns + 1, |_| last_time(now_ns)).await?;
            let latest = series
                .iter()
                .filter(|s| cfg.market.source_tag.as_ref().is_none_or(|tag| s.0.get(market::TAG_SOURCE) == Some(tag)))
                .filter_map(|s| s.1)
                .max();
            // No market data at all yet: nothing to call stale (windows warn about it).
            if let Some(t) = latest {
                let what = format!("latest market data is from {}; seconds old", rfc3339(t));
                let source = format!("{:?}", cfg.market.source).to_lowercase();
                let l = labels(&[("source", Some(&source))]);
                found.observations.push(Observation {
                    labels: l,
                    value: (now_ns - t) as f64 / 1e9,
                    window: "latest point".into(),
                    what,
                });
            }
        }
    }
    Ok(found)
}
