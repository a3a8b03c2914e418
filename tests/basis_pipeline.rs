//! The basis of every joule, through the real agent pipeline (sources → stamping
//! → ledger → spool → writer) in virtual time, into the embedded store, then the
//! aggregator's windows, report and the `meter_gap` rule.
//!
//! The site `s1`, one agent in group `row-1`, 20 minutes, 10-minute windows:
//! - a stock Antminer S19 Pro `192.0.2.10:4028` whose power is estimated (110 TH/s ×
//!   29.545 J/TH = 3250 W), behind PDU outlet `1` that reads 3400 W, offline from
//!   300 s to 420 s (the agent writes `online = false` and no power);
//! - a miner `192.0.2.11:4028` of an unknown model: hashrate, no power at all;
//! - GPU host `rig1`: `GPU-a` (workload `train`, 600 W board) and `GPU-b` (workload
//!   `infer`, 200 W board), behind a BMC that reads 1000 W at the wall;
//! - a site meter (group `s1`) reading 4900 W and a row meter (group `row-1`)
//!   reading 4400 W.
//!
//! The meter points are written by a scripted double of the meter source with the
//! tags and fields `collect::meters` writes (the protocols themselves are tested in
//! `tests/meters_*.rs`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{scripted, secs, Batches, VirtualClock, S, T0_NS};
use wattledger::agent::config::AgentConfig;
use wattledger::agent::Agent;
use wattledger::aggregate::compare::WindowResult;
use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::reconcile::FacilityBasis;
use wattledger::aggregate::{Aggregator, Windows};
use wattledger::alert::config::{Kind, Rule};
use wattledger::ledger::EnergyFrom;
use wattledger::model::{Clock, Point, SystemClock};
use wattledger::ship::lineproto::{parse, Precision};
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{SeriesQuery, Store};

const END_S: f64 = 1260.0;

fn miner_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    let stock = Point::new("asic", time_ns)
        .tag("miner", "192.0.2.10:4028")
        .tag("make", "Antminer")
        .tag("model", "S19 Pro")
        .tag("power_source", "estimated")
        .field("power_w", 3250.0)
        .field("hashrate_ths", 110.0)
        .field("diff_accepted", 1e9 + 25_000.0 * t)
        .field("online", true);
    let unknown = Point::new("asic", time_ns)
        .tag("miner", "192.0.2.11:4028")
        .tag("make", "Antminer")
        .tag("model", "X99")
        .field("hashrate_ths", 50.0)
        .field("diff_accepted", 1e9 + 11_000.0 * t)
        .field("online", true);
    // The stock miner misses its polls from 100 s to 220 s (its ledger
    // intervals there cover less than they expect), while its outlet answers.
    if (100.0..220.0).contains(&t) {
        vec![unknown]
    } else {
        vec![stock, unknown]
    }
}

fn gpu_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    let gpu = |i: &str, uuid: &str, w: f64| {
        Point::new("gpu", time_ns)
            .tag("gpu", i)
            .tag("uuid", uuid)
            .tag("model", "H100")
            .field("power_w", w)
            .field("energy_j", 1e6 + w * t)
            .field("util_gpu_pct", 90.0)
            .field("status", "ok")
    };
    vec![gpu("0", "GPU-a", 600.0), gpu("1", "GPU-b", 200.0)]
}

fn channel(time_ns: i64, meter: &str, ch: &str, kind: &str, covers: &str, w: Option<f64>) -> Point {
    let t = secs(time_ns);
    let p = Point::new("meter", time_ns)
        .tag("meter", meter)
        .tag("channel", ch)
        .tag("kind", kind)
        .tag("basis", "meter")
        .tag("covers_kind", kind_of(covers))
        .tag("covers", covers);
    match w {
        Some(w) => p.field("power_w", w).field("energy_j", 5e6 + w * t).field("online", true).field("status", "ok"),
        None => p.field("online", false).field("status", "timeout after 5s"),
    }
}

fn kind_of(covers: &str) -> &'static str {
    match covers {
        "192.0.2.10" => "miner",
        "rig1" => "gpu_host",
        _ => "group",
    }
}

/// The meter source's points, as `collect::meters` writes them.
fn meter_points(time_ns: i64) -> Vec<Point> {
    let t = secs(time_ns);
    let outlet = if (300.0..420.0).contains(&t) { None } else { Some(3400.0) };
    vec![
        channel(time_ns, "pdu-1", "1", "snmp", "192.0.2.10", outlet),
        channel(time_ns, "bmc-rig1", "1U", "redfish", "rig1", Some(1000.0)),
        channel(time_ns, "site", "total", "modbus", "s1", Some(4900.0)),
        channel(time_ns, "row", "total", "modbus", "row-1", Some(4400.0)),
    ]
}

fn agent_config(spool: &std::path::Path) -> AgentConfig {
    common::virtual_agent_config(
        spool,
        "group = \"row-1\"",
        r#"[gpus]
[workloads]
gpus = { "GPU-a" = "train", "GPU-b" = "infer" }
miners = { "192.0.2.0/24" = "btc" }
"#,
    )
}

async fn run_site() -> Vec<String> {
    let spool = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::starting_at(T0_NS));
    let writer = Arc::new(Batches::default());
    let sources = vec![
        scripted("miners", 10, miner_points),
        scripted("nvml", 5, gpu_points),
        scripted("meters", 7, meter_points),
    ];
    let agent = Agent::with_parts(agent_config(spool.path()), clock, sources, writer.clone()).unwrap();
    agent.run(tokio::time::sleep(Duration::from_secs_f64(END_S))).await.unwrap();
    let batches = writer.0.lock().unwrap().clone();
    batches
}

const AGGREGATOR: &str = r#"[store]
kind = "embedded"
path = "unused.db"

[sites.s1]
pue = 1.5
[sites.s1.tariff]
kind = "flat"
usd_per_kwh = 0.05

[market]
source = "static"
btc_usd = 100000.0
difficulty = 1e14
block_subsidy_btc = 3.125
fees_btc_per_block = 0.125

[[workloads]]
name = "btc"
model = "bitcoin_fpps"
pool_fee = 0.02

[[workloads]]
name = "train"
model = "ai_contract"
usd_per_gpu_hour = 2.0

[[workloads]]
name = "infer"
model = "ai_contract"
usd_per_gpu_hour = 2.0

[aggregator]
window = "10m"
max_gap = "90s"
"#;

async fn site_store() -> Arc<EmbeddedStore> {
    let store = Arc::new(EmbeddedStore::open_in_memory().unwrap());
    for b in run_site().await {
        store.write_blocking(&parse(&b, Precision::Ns).unwrap()).unwrap();
    }
    store
}

fn aggregator(store: &Arc<EmbeddedStore>, from: EnergyFrom) -> Aggregator {
    let cfg: AggregatorConfig = wattledger::config::from_str(AGGREGATOR, std::path::Path::new("test.toml")).unwrap();
    let dyn_store: Arc<dyn Store> = store.clone();
    Aggregator::new(cfg, dyn_store, Arc::new(SystemClock)).unwrap().with_energy_from(from)
}

async fn windows(agg: &Aggregator) -> Vec<WindowResult> {
    let mut out = Vec::new();
    agg.compute(T0_NS, T0_NS + 1200 * S, agg.window_ns(), None, Windows::Recompute, |w| out.push(w)).await.unwrap();
    out
}

fn find<'a>(ws: &'a [WindowResult], workload: &str, start_s: i64) -> &'a WindowResult {
    ws.iter().find(|w| w.workload == workload && w.window.start_ns == T0_NS + start_s * S).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[tokio::test(start_paused = true)]
async fn meters_replace_device_energy_by_basis_and_reconcile_the_site() {
    let store = site_store().await;
    // The agent wrote ledger points for the devices and for each meter channel.
    let q = |m: &str| SeriesQuery {
        measurement: m.into(),
        fields: vec!["energy_j".into()],
        tag_filters: vec![],
        start_ns: T0_NS,
        end_ns: T0_NS + 1300 * S,
    };
    let ledger = store.read(&q("energy_ledger")).await.unwrap();
    assert!(ledger.iter().any(|s| s.tags.get("basis").map(String::as_str) == Some("estimated")));
    let meter_ledger: std::collections::BTreeSet<&str> = ledger
        .iter()
        .filter(|s| s.tags.get("source").map(String::as_str) == Some("meter"))
        .map(|s| s.tags["meter"].as_str())
        .collect();
    assert_eq!(meter_ledger, ["bmc-rig1", "pdu-1", "row", "site"].into_iter().collect());
    let meters = store.read(&q("meter")).await.unwrap();
    assert!(meters.iter().all(|s| s.tags.get("group").map(String::as_str) == Some("row-1")), "{meters:?}");

    let auto = windows(&aggregator(&store, EnergyFrom::Auto)).await;
    let raw = windows(&aggregator(&store, EnergyFrom::Raw)).await;
    let only = windows(&aggregator(&store, EnergyFrom::Ledger)).await;

    // Second window [600 s, 1200 s): every meter answered throughout.
    // btc: the outlet's 3400 W × 600 s, all `meter`; the unknown miner has no power.
    let btc = find(&auto, "btc", 600);
    assert!(close(btc.energy_j, 3400.0 * 600.0, 1e-9), "{btc:?}");
    assert!(close(btc.basis.meter_j, btc.energy_j, 1e-12) && btc.basis.estimated_j == 0.0, "{:?}", btc.basis);
    assert_eq!((btc.devices, btc.no_power_devices), (2, 1));
    // Its time counts against coverage: one of two miners covered.
    assert!(close(btc.coverage(), 0.5, 1e-9), "{}", btc.coverage());
    // GPU host: 1000 W at the wall split 600 : 200 by board energy.
    let train = find(&auto, "train", 600);
    let infer = find(&auto, "infer", 600);
    assert!(close(train.energy_j, 750.0 * 600.0, 1e-9), "{train:?}");
    assert!(close(infer.energy_j, 250.0 * 600.0, 1e-9), "{infer:?}");
    assert!(close(train.basis.meter_j, train.energy_j, 1e-12) && train.basis.board_j == 0.0);
    // The site meter: 4900 W against 3400 + 1000 W of devices measures the facility
    // energy instead of PUE 1.5: factor 4900 / 4400.
    for w in [btc, train, infer] {
        assert_eq!(w.facility_basis, FacilityBasis::Meter, "{}", w.workload);
        assert!(close(w.facility_energy_j, w.energy_j * 4900.0 / 4400.0, 1e-9), "{w:?}");
        assert!(close(w.energy_cost_usd, w.facility_energy_j / 3.6e6 * 0.05, 1e-9), "{w:?}");
    }

    // First window [0, 600 s): the outlet was offline from 300 s to 420 s; its last
    // reading before is at 290 s and the next at 420 s, 130 s apart (over max_gap),
    // so the miner's own estimate counts for those 130 s and the meter elsewhere,
    // except from 90 s to 220 s, when the miner did not answer: no data of its own,
    // so the outlet's energy there is not attributed and its coverage shows the hole.
    let btc0 = find(&auto, "btc", 0);
    let est_s = btc0.basis.estimated_j / 3250.0;
    let meter_s = btc0.basis.meter_j / 3400.0;
    assert!((120.0..=140.0).contains(&est_s), "estimated for {est_s} s: {:?}", btc0.basis);
    assert!(close(btc0.energy_j, btc0.basis.meter_j + btc0.basis.estimated_j, 1e-12));
    assert!((465.0..=475.0).contains(&(meter_s + est_s)), "{meter_s} + {est_s}");
    assert!(close(btc0.covered_ns as f64 / 1e9, meter_s + est_s, 1e-6), "{btc0:?}");

    // The raw path gives the same energy and bases as `auto`, and as the ledger
    // alone in the second window, the one the ledger covers completely (the agent
    // wrote no ledger points for the miner's first two minutes, in which it missed
    // polls).
    for a in auto.iter().chain(only.iter().filter(|w| w.window.start_ns == T0_NS + 600 * S)) {
        let r = find(&raw, &a.workload, (a.window.start_ns - T0_NS) / S);
        assert!(close(a.energy_j, r.energy_j, 1e-9), "{}: {} vs {}", a.workload, a.energy_j, r.energy_j);
        assert!(close(a.basis.meter_j, r.basis.meter_j, 1e-9) && close(a.basis.estimated_j, r.basis.estimated_j, 1e-9));
        assert_eq!(a.covered_ns, r.covered_ns, "{}", a.workload);
    }

    // The report and the API's JSON: shares by basis, J/TH over the powered miner
    // only and labelled partly nominal (the outage's estimate), reconciliation.
    let agg = aggregator(&store, EnergyFrom::Auto);
    let report = agg.report(T0_NS, T0_NS + 1200 * S, Windows::Recompute).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let row =
        |name: &str| json["workloads"].as_array().unwrap().iter().find(|w| w["workload"] == name).unwrap().clone();
    let btc_row = row("btc");
    let label = btc_row["energy_basis"].as_str().unwrap();
    assert!(label.contains("% meter, ") && label.ends_with("% estimated"), "{label}");
    assert_eq!(btc_row["efficiency_basis"], "partly nominal");
    assert_eq!(btc_row["no_power_devices"], 1);
    let j_per_th = btc_row["j_per_th"].as_f64().unwrap();
    assert!((29.0..32.0).contains(&j_per_th), "J/TH over the stock miner only: {j_per_th}");
    assert_eq!(row("train")["energy_basis"], "100 % meter");
    assert_eq!(row("train")["facility_basis"], "meter");
    let recon = json["reconciliation"].as_array().unwrap();
    let group = |g: &str| recon.iter().find(|r| r["group"] == g).unwrap().clone();
    // Site: 500 W unexplained of 4900 W = 10.2 % where the outlet answered and the
    // miner had data; its outage (the miner's estimate, 3250 W for 3400 W drawn) and
    // the miner's missed polls (nothing of its own there) widen the gap.
    let site = group("s1");
    let pct = site["gap_pct"].as_f64().unwrap();
    let devices_j: f64 = auto.iter().map(|w| w.energy_j).sum();
    assert!(close(site["devices_energy_j"].as_f64().unwrap(), devices_j, 1e-9), "{site}");
    assert!(close(site["meter_energy_j"].as_f64().unwrap(), 4900.0 * 1200.0, 1e-9), "{site}");
    assert!(close(pct, (1.0 - devices_j / (4900.0 * 1200.0)) * 100.0, 1e-9) && pct > 500.0 / 4900.0 * 100.0, "{site}");
    assert_eq!(site["compared_windows"], 2, "{site}");
    let row1 = group("row-1");
    // Row: 4400 W, all of it explained but the first window's holes: the miner's
    // missed polls (3400 W with nothing of its own) and its estimate in the outage.
    let row_gap_j = 4400.0 * 1200.0 - devices_j;
    let holes_j = 3400.0 * (600.0 - meter_s - est_s) + (3400.0 - 3250.0) * est_s;
    assert!(close(row_gap_j, holes_j, 1e-6), "{row_gap_j} vs {holes_j}: {row1}");
    assert!(close(row1["gap_pct"].as_f64().unwrap(), row_gap_j / (4400.0 * 1200.0) * 100.0, 1e-9), "{row1}");

    // Written back: the windows carry their bases, and the gap is a point.
    agg.run_once(T0_NS + 1250 * S).await.unwrap();
    let gap = SeriesQuery {
        measurement: "meter_reconciliation".into(),
        fields: vec!["gap_pct".into(), "gap_kwh".into()],
        tag_filters: vec![("group".into(), "s1".into()), ("window".into(), "10m".into())],
        start_ns: T0_NS + 600 * S,
        end_ns: T0_NS + 601 * S,
    };
    let rows = store.read(&gap).await.unwrap();
    let kwh = rows[0].values[0][1].as_ref().and_then(|v| v.as_f64()).unwrap();
    assert!(close(kwh, 500.0 * 600.0 / 3.6e6, 1e-3), "{rows:?}");
    let pct = rows[0].values[0][0].as_ref().and_then(|v| v.as_f64()).unwrap();
    assert!(close(pct, 500.0 / 4900.0 * 100.0, 1e-3), "{rows:?}");
    let stored = agg.workload_windows("btc", T0_NS + 600 * S, T0_NS + 1200 * S, Windows::Stored { write_back: false });
    let (_, stored) = stored.await.unwrap();
    assert_eq!(stored[0].basis, btc.basis);
    assert_eq!((stored[0].no_power_devices, stored[0].facility_basis), (1, FacilityBasis::Meter));

    // meter_gap: the site's 10.2 % is under the default 15 %, over a rule's 5 %.
    let mut rule = Rule::from_default(Kind::MeterGap.default_rule());
    rule.window_s = 600.0;
    let found =
        wattledger::alert::eval::evaluate(&agg, &rule, T0_NS + 1300 * S, &mut Default::default()).await.unwrap();
    let site_obs = found.observations.iter().find(|o| o.labels.get("group").map(String::as_str) == Some("s1")).unwrap();
    assert!(close(site_obs.value, 500.0 / 4900.0 * 100.0, 1e-3), "{:?}", site_obs.value);
    assert!(site_obs.value < Kind::MeterGap.default_rule().threshold);

    // miner_efficiency reads the stock miner's outlet, not its estimate: 3400 W at
    // 110 TH/s is 30.91 J/TH, 4.6 % over the S19 Pro's nominal 29.545.
    let mut rule = Rule::from_default(Kind::MinerEfficiency.default_rule());
    rule.window_s = 600.0;
    let found =
        wattledger::alert::eval::evaluate(&agg, &rule, T0_NS + 1250 * S, &mut Default::default()).await.unwrap();
    let obs = found.observations.iter().find(|o| o.labels["device"].ends_with("192.0.2.10:4028")).unwrap();
    assert!(close(obs.value, (3400.0 / 110.0 / (3250.0 / 110.0) - 1.0) * 100.0, 1e-6), "{}", obs.value);
    assert!(found.notes.iter().all(|n| !n.contains("192.0.2.10")), "{:?}", found.notes);
}

/// The drill-down takes the meter channels covering a device as the windows do:
/// each bucket's energy is the outlet's (or the BMC's share) where they answered,
/// the device's own elsewhere, and says its basis; the buckets add up to the
/// workload's windows.
#[tokio::test(start_paused = true)]
async fn the_drill_down_applies_meters_and_says_each_buckets_basis() {
    let store = site_store().await;
    let agg = aggregator(&store, EnergyFrom::Auto);
    let ws = windows(&agg).await;
    let (from, to) = (T0_NS, T0_NS + 1200 * S);

    // The stock miner: one-minute buckets.
    let h = agg.device_history("rig1/192.0.2.10:4028", from, to).await.unwrap();
    assert_eq!((h.bucket_s, h.points.len()), (60, 20));
    assert_eq!(h.power_basis.as_deref(), Some("estimated"));
    assert!(h.notes.iter().any(|n| n.contains("pdu-1")), "{:?}", h.notes);
    for p in &h.points[10..] {
        assert_eq!(p.energy_basis.as_deref(), Some("100 % meter"), "{p:?}");
        assert!(close(p.power_w.unwrap(), 3400.0, 1e-9), "{p:?}");
        assert_eq!(p.efficiency_basis, Some("measured"));
        assert!(close(p.j_per_th.unwrap(), 3400.0 / 110.0, 1e-9), "{p:?}");
    }
    // In the outlet's outage (its readings 290 s and 420 s apart) the miner's own
    // estimate counts: J/TH there is the nominal figure.
    let outage = &h.points[6];
    assert_eq!(outage.energy_basis.as_deref(), Some("100 % estimated"), "{outage:?}");
    assert_eq!(outage.efficiency_basis, Some("nominal"));
    assert!(close(outage.power_w.unwrap(), 3250.0, 1e-9), "{outage:?}");
    // The buckets sum to the btc windows' energy and bases (the other miner has no
    // power of its own).
    let mut by_basis = wattledger::aggregate::basis::BasisEnergy::default();
    for p in h.points.iter().filter_map(|p| p.energy_by_basis.as_ref()) {
        by_basis.absorb(p);
    }
    let btc: Vec<&WindowResult> = ws.iter().filter(|w| w.workload == "btc").collect();
    let want_meter: f64 = btc.iter().map(|w| w.basis.meter_j).sum();
    let want_est: f64 = btc.iter().map(|w| w.basis.estimated_j).sum();
    assert!(close(by_basis.meter_j, want_meter, 1e-6), "{} vs {want_meter}", by_basis.meter_j);
    assert!(close(by_basis.estimated_j, want_est, 1e-6), "{} vs {want_est}", by_basis.estimated_j);
    let energy: f64 = h.points.iter().filter_map(|p| p.energy_j).sum();
    assert!(close(energy, btc.iter().map(|w| w.energy_j).sum(), 1e-6), "{energy}");

    // GPU-a: the BMC's 1000 W split 600 : 200 by board energy with GPU-b of the
    // other workload.
    let h = agg.device_history("rig1/GPU-a", from, to).await.unwrap();
    assert!(h.notes.iter().any(|n| n.contains("bmc-rig1") && n.contains("board energy")), "{:?}", h.notes);
    for p in &h.points[1..] {
        assert_eq!(p.energy_basis.as_deref(), Some("100 % meter"), "{p:?}");
        assert!(close(p.power_w.unwrap(), 750.0, 1e-9), "{p:?}");
    }
    let energy: f64 = h.points.iter().filter_map(|p| p.energy_j).sum();
    let train: f64 = ws.iter().filter(|w| w.workload == "train").map(|w| w.energy_j).sum();
    assert!(close(energy, train, 1e-6), "{energy} vs {train}");
}

/// Late data at one workload moves the site meter's facility factor of every
/// workload at the site, so the next scheduled pass writes the site's other stored
/// windows again, though none of their own values changed: the stored rows'
/// facility energy (what Grafana reads) adds up to the site meter's again.
#[tokio::test(start_paused = true)]
async fn late_data_at_one_workload_rewrites_the_sites_other_stored_windows() {
    use wattledger::model::schema::workload_efficiency as we;
    let store = site_store().await;
    let agg = aggregator(&store, EnergyFrom::Auto);
    let now = T0_NS + 1250 * S;
    agg.run_once(now).await.unwrap();
    let second = T0_NS + 600 * S;
    // The stored row of each workload's second window: (facility J, cost USD).
    let stored = || async {
        let q = SeriesQuery {
            measurement: we::MEASUREMENT.into(),
            fields: vec![we::FACILITY_ENERGY_J.into(), we::ENERGY_COST_USD.into()],
            tag_filters: vec![(we::TAG_WINDOW.into(), "10m".into())],
            start_ns: second,
            end_ns: second + 1,
        };
        let mut out = std::collections::BTreeMap::new();
        for s in store.read(&q).await.unwrap() {
            let v = |i: usize| s.values[0][i].as_ref().and_then(|v| v.as_f64()).unwrap();
            out.insert(s.tags[we::TAG_WORKLOAD].clone(), (v(0), v(1)));
        }
        assert_eq!(out.len(), 3, "{out:?}");
        out
    };
    let site_j = 4900.0 * 600.0;
    let before = stored().await;
    let facility: f64 = before.values().map(|v| v.0).sum();
    assert!(close(facility, site_j, 1e-9), "{facility} vs {site_j}");

    // A GPU of `infer` on another host of the site, written late: 100 W over the
    // second window.
    let late: Vec<Point> = (600..1200)
        .step_by(5)
        .map(|t| {
            Point::new("gpu", T0_NS + t * S)
                .tag("site", "s1")
                .tag("host", "rig2")
                .tag("group", "row-1")
                .tag("workload", "infer")
                .tag("gpu", "0")
                .tag("uuid", "GPU-z")
                .tag("model", "H100")
                .field("power_w", 100.0)
                .field("energy_j", 2e6 + 100.0 * t as f64)
                .field("util_gpu_pct", 90.0)
                .field("status", "ok")
        })
        .collect();
    store.write_blocking(&late).unwrap();
    let stats = agg.run_once(now).await.unwrap();
    let after = stored().await;
    let facility: f64 = after.values().map(|v| v.0).sum();
    assert!(close(facility, site_j, 1e-9), "{facility} vs {site_j}: {before:?} → {after:?}");
    for name in ["btc", "train"] {
        let ((f0, c0), (f1, c1)) = (before[name], after[name]);
        assert!(f1 < f0, "{name}: {f0} → {f1}");
        assert!(close(c1 / c0, f1 / f0, 1e-9), "{name}: the cost follows the facility energy");
    }
    assert!(stats.windows_written >= 3, "infer computed again, btc and train written again: {stats:?}");

    // Nothing changed since: nothing is written.
    assert_eq!(agg.run_once(now).await.unwrap().windows_written, 0);
}
