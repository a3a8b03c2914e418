//! What each rule kind measures, read through the aggregator: completed windows
//! (`unprofitable`, `low_coverage`) and the latest raw readings (the rest).
//! Each evaluator returns one [`Observation`] per subject in the rule's scope;
//! subjects without data are left out, so a fresh install observes nothing.

use std::collections::BTreeMap;

use super::config::{Expected, Kind, Rule};
use super::state::{fmt_num, Missing, Observation};
use crate::aggregate::config::MarketSourceKind;
use crate::aggregate::fleet::{measured_j_per_th, metered_j_per_th, nominal_spec, EfficiencySums};
use crate::aggregate::windows::{device_id, devices_from_series, window_label};
use crate::aggregate::{rfc3339, AggregateError, Aggregator};
use crate::ledger::Columns;
use crate::model::schema::{self, agent, asic, gpu, market};
use crate::revenue::{ai_on_demand, ai_tokens};
use crate::store::{Series, SeriesQuery};

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

async fn read(
    agg: &Aggregator,
    measurement: &str,
    fields: &[&str],
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<Series>, AggregateError> {
    let q = SeriesQuery {
        measurement: measurement.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        tag_filters: vec![],
        start_ns: from_ns,
        end_ns: to_ns,
    };
    Ok(agg.store().read(&q).await?)
}

/// Revenue models whose pay follows use, so a GPU's idle power is lost money; a
/// reserved contract (`ai_contract`) pays by the hour whether the GPU works or not.
pub const PAID_BY_USE: &[&str] = &[ai_on_demand::INFO.name, ai_tokens::INFO.name];

/// How far back a miner's own efficiency baseline reaches, before the rule's window.
pub const BASELINE_NS: i64 = 6 * 3_600_000_000_000;

/// The rows of `s` whose time passes `keep`.
fn rows_where(s: &Series, keep: impl Fn(i64) -> bool) -> Series {
    let mut out = Series { tags: s.tags.clone(), fields: s.fields.clone(), ..Default::default() };
    for (t, row) in s.times_ns.iter().zip(&s.values) {
        if keep(*t) {
            out.times_ns.push(*t);
            out.values.push(row.clone());
        }
    }
    out
}

/// The `asic` series of the last `window_ns` and of the BASELINE before it.
async fn window_and_baseline(
    agg: &Aggregator,
    fields: &[&str],
    now_ns: i64,
    window_ns: i64,
) -> Result<(Vec<Series>, Vec<Series>), AggregateError> {
    let split_ns = now_ns - window_ns;
    let series = read(agg, asic::MEASUREMENT, fields, split_ns - BASELINE_NS, now_ns + 1).await?;
    Ok(series.iter().map(|s| (rows_where(s, |t| t < split_ns), rows_where(s, |t| t >= split_ns))).unzip())
}

/// Mean hashrate per miner (keyed by device id) over the readings of a miner that
/// answered (`online`): the hashrate of one that did not is `device_offline`'s to report.
fn answering_hashrate_ths(series: &[Series]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for s in series {
        let cols = Columns::new(asic::MEASUREMENT, &s.fields);
        let id = device_id(asic::MEASUREMENT, &s.tags);
        for (&t, row) in s.times_ns.iter().zip(&s.values) {
            let Some(ths) = cols.row_sample(t, row).filter(|x| x.healthy).and_then(|x| x.hashrate_ths) else {
                continue;
            };
            let e = sums.entry(id.clone()).or_default();
            (e.0, e.1) = (e.0 + ths, e.1 + 1);
        }
    }
    sums.into_iter().map(|(id, (sum, n))| (id, sum / n as f64)).collect()
}

/// One observation per miner of `recent` in the rule's scope, its labels from the
/// first series of its device id. `measure(id, tag)` gives the value and the sentence
/// before it, or `None` to leave the miner out.
fn per_miner<'a>(
    rule: &Rule,
    recent: &'a [Series],
    window_ns: i64,
    mut measure: impl FnMut(&str, &dyn Fn(&str) -> Option<&'a str>) -> Option<(f64, String)>,
) -> Vec<Observation> {
    let window =
        format!("mean of the last {} against the {} before", window_label(window_ns), window_label(BASELINE_NS));
    let mut done = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for s in recent {
        let id = device_id(asic::MEASUREMENT, &s.tags);
        let tag = |k: &str| s.tags.get(k).map(String::as_str);
        if !rule.admits(tag(schema::TAG_SITE), tag(schema::TAG_WORKLOAD), Some("asic"), Some(&id))
            || !done.insert(id.clone())
        {
            continue;
        }
        if let Some((value, what)) = measure(&id, &tag) {
            let labels = device_labels(&s.tags, s.tags.get(schema::TAG_WORKLOAD), &id);
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

fn mean(track: &[(i64, f64)]) -> Option<f64> {
    (!track.is_empty()).then(|| track.iter().map(|p| p.1).sum::<f64>() / track.len() as f64)
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
            let (before, recent) =
                window_and_baseline(agg, &[asic::POWER_W, asic::HASHRATE_THS], now_ns, window_ns).await?;
            // A miner's own measured power, else a meter channel covering it (a stock
            // miner behind a PDU outlet), which comes first; never its estimate.
            let split_ns = now_ns - window_ns;
            let meters =
                read(agg, schema::meter::MEASUREMENT, &[schema::meter::POWER_W], split_ns - BASELINE_NS, now_ns + 1)
                    .await?;
            let (meters_before, meters_recent): (Vec<Series>, Vec<Series>) =
                meters.iter().map(|s| (rows_where(s, |t| t < split_ns), rows_where(s, |t| t >= split_ns))).unzip();
            let with_meters = |own: BTreeMap<String, EfficiencySums>, metered: BTreeMap<String, EfficiencySums>| {
                let mut all = own;
                all.extend(metered.into_iter().filter(|(_, e)| e.samples > 0));
                all
            };
            let measured = with_meters(measured_j_per_th(&recent), metered_j_per_th(&recent, &meters_recent));
            let baseline = with_meters(measured_j_per_th(&before), metered_j_per_th(&before, &meters_before));
            let mut estimated = Vec::new();
            found.observations = per_miner(rule, &recent, window_ns, |id, tag| {
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
            let (before, recent) =
                window_and_baseline(agg, &[asic::HASHRATE_THS, asic::ONLINE], now_ns, window_ns).await?;
            let measured = answering_hashrate_ths(&recent);
            let baseline = answering_hashrate_ths(&before);
            found.observations = per_miner(rule, &recent, window_ns, |id, tag| {
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
            let paid_by_use: Vec<&str> = cfg
                .workloads
                .iter()
                .filter(|w| PAID_BY_USE.contains(&w.revenue_model.info().name))
                .map(|w| w.name.as_str())
                .collect();
            let series =
                read(agg, gpu::MEASUREMENT, &[gpu::POWER_W, gpu::UTIL_GPU_PCT], now_ns - window_ns, now_ns + 1).await?;
            for dev in devices_from_series(gpu::MEASUREMENT, series) {
                let t = |k: &str| dev.tags.get(k);
                let Some(workload) = t(schema::TAG_WORKLOAD).filter(|w| paid_by_use.contains(&w.as_str())) else {
                    continue;
                };
                if !rule.admits(
                    t(schema::TAG_SITE).map(String::as_str),
                    Some(workload),
                    Some("gpu"),
                    Some(&dev.tracks.id),
                ) {
                    continue;
                }
                let (Some(power_w), Some(util)) =
                    (mean(dev.tracks.track(gpu::POWER_W)), mean(dev.tracks.track(gpu::UTIL_GPU_PCT)))
                else {
                    continue;
                };
                // The power drawn while idle; 0 while the GPU works.
                let value = if util < rule.util_below_pct { power_w } else { 0.0 };
                let what = format!(
                    "GPU {} at {} % utilisation (idle below {} %) draws",
                    dev.tracks.id,
                    fmt_num(util),
                    fmt_num(rule.util_below_pct)
                );
                found.observations.push(Observation {
                    labels: device_labels(&dev.tags, Some(workload), &dev.tracks.id),
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
                let series = read(agg, measurement, fields, now_ns - window_ns, now_ns + 1).await?;
                for dev in devices_from_series(measurement, series) {
                    let t = |k: &str| dev.tags.get(k);
                    if !rule.admits(
                        t(schema::TAG_SITE).map(String::as_str),
                        t(schema::TAG_WORKLOAD).map(String::as_str),
                        Some(kind),
                        Some(&dev.tracks.id),
                    ) {
                        continue;
                    }
                    let Some(&(first_ns, _)) = dev.tracks.healthy.first() else { continue };
                    let last_good = dev.tracks.healthy.iter().rev().find(|h| h.1).map(|h| h.0);
                    let gap = t(schema::TAG_WORKLOAD)
                        .and_then(|w| cfg.workloads.iter().find(|x| &x.name == w))
                        .and_then(|w| w.max_gap)
                        .map_or(default_gap, |g| g.as_nanos() as i64);
                    let since = last_good.unwrap_or(first_ns);
                    let value = (now_ns - since) as f64 / gap as f64;
                    let what = match last_good {
                        Some(t) => format!(
                            "{kind} {} last read healthy at {}; intervals of max_gap since",
                            dev.tracks.id,
                            rfc3339(t)
                        ),
                        None => format!(
                            "{kind} {} has reported only unhealthy readings since {}; intervals of max_gap",
                            dev.tracks.id,
                            rfc3339(first_ns)
                        ),
                    };
                    found.observations.push(Observation {
                        labels: device_labels(&dev.tags, t(schema::TAG_WORKLOAD), &dev.tracks.id),
                        value,
                        window: format!("max_gap {}", window_label(gap)),
                        what,
                    });
                }
            }
        }
        Kind::AgentSilent => {
            found.missing = Missing::Keeps;
            let series =
                read(agg, agent::MEASUREMENT, &[agent::POINTS_COLLECTED], now_ns - window_ns, now_ns + 1).await?;
            let mut last: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
            for s in series.iter().filter(|s| !s.tags.contains_key(agent::TAG_SOURCE)) {
                let (Some(host), Some(&t)) = (s.tags.get(schema::TAG_HOST), s.times_ns.last()) else { continue };
                if !rule.admits(s.tags.get(schema::TAG_SITE).map(String::as_str), None, None, None) {
                    continue;
                }
                let e = last.entry(host.clone()).or_insert((t, s.tags.get(schema::TAG_SITE).cloned()));
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
            let series = read(agg, market::MEASUREMENT, &[market::BTC_USD], now_ns - window_ns, now_ns + 1).await?;
            let latest = series
                .iter()
                .filter(|s| {
                    cfg.market.source_tag.as_ref().is_none_or(|tag| s.tags.get(market::TAG_SOURCE) == Some(tag))
                })
                .filter_map(|s| s.times_ns.iter().copied().filter(|&t| t <= now_ns).max())
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
