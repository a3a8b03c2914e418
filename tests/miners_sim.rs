//! The simulated fleet read end to end over real loopback sockets: every make through the
//! library, a few through the `wattledger probe` binary, counters moving with simulated
//! time, faults, and fleet polling with hostile miners among good ones.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wattledger::collect::miners::fleet::{self, MinerSource, PollOptions};
use wattledger::collect::miners::{self, PowerSource, ProbeError, ReadOptions};
use wattledger::collect::Source;
use wattledger::sim::miners::{Fault, FleetSpec, ManualClock, SimFleet, SimMake};

const T0: i64 = 1_764_000_000_000_000_000;

/// A loopback block of our own: the second octet from the process id, so that two test runs
/// on one machine (a CI run beside a developer's) do not fight over addresses.
fn block(third: u8) -> [u8; 4] {
    [127, 100 + (std::process::id() % 150) as u8, third, 1]
}

fn ip(third: u8, host: u8) -> String {
    let b = block(third);
    format!("{}.{}.{}.{}", b[0], b[1], b[2], host)
}
const TWO_32: f64 = 4_294_967_296.0;

fn spec(first: [u8; 4], makes: &[SimMake]) -> FleetSpec {
    FleetSpec {
        count: makes.len(),
        bind: Ipv4Addr::from(first),
        port: 4028,
        ports_layout: false,
        mix: makes.iter().map(|m| (*m, 1)).collect(),
        faults: Vec::new(),
        variation: false,
    }
}

fn ro(timeout_ms: u64) -> ReadOptions {
    ReadOptions { timeout: Duration::from_millis(timeout_ms), max_reply_bytes: 1 << 20 }
}

fn close(a: Option<f64>, b: f64) {
    let a = a.unwrap_or_else(|| panic!("expected {b}, got None"));
    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "got {a}, expected {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_make_reads_back_its_capture_and_counters_advance() {
    let clock = Arc::new(ManualClock::new(T0));
    let fleet = SimFleet::start(spec(block(2), &SimMake::ALL), clock.clone()).await.unwrap();
    let a = fleet.addrs();
    // The fleet holds one miner of each simulated make, in `SimMake::ALL` order.
    let at = |id: &str| SimMake::ALL.iter().position(|m| m.name() == id).unwrap_or_else(|| panic!("no make {id}"));
    let r = |id: &str| {
        let i = at(id);
        let h = a[i].ip().to_string();
        let p = a[i].port();
        async move { miners::probe(&h, p, &ro(3000)).await.unwrap() }
    };
    // At T0 every miner replays its capture: the numbers of the fixture tests.
    let ant = r("antminer-stock").await;
    assert_eq!((ant.make.as_deref(), ant.model.as_deref()), (Some("Antminer"), Some("S19 Pro")));
    close(ant.hashrate_ths, 110.56689);
    close(ant.diff_accepted, 1305083904.0);
    assert_eq!(ant.uptime_s, Some(50474));
    assert_eq!(ant.power_source, Some(PowerSource::Estimated));
    let lux = r("luxos").await;
    assert_eq!(lux.firmware.as_deref(), Some("LuxOS 2025.4.8.220305-57b389c7"));
    close(lux.power_w, 1051.0);
    close(lux.hashrate_ths, 59.75606);
    let ava = r("avalon").await;
    assert_eq!((ava.make.as_deref(), ava.model.as_deref()), (Some("Avalon"), Some("1246")));
    close(ava.hashrate_ths, 81.07268);
    close(ava.power_w, 3189.0);
    let wm1 = r("whatsminer-v1").await;
    assert_eq!(wm1.firmware.as_deref(), Some("btminer 20210322.22.REL"));
    close(wm1.hashrate_ths, 70.66811452);
    close(wm1.power_w, 3417.0);
    let wm2 = r("whatsminer-v2").await;
    close(wm2.hashrate_ths, 124.5);
    let axe = r("bitaxe-axeos").await;
    assert_eq!(axe.make.as_deref(), Some("Bitaxe"));
    close(axe.hashrate_ths, 1.0);
    let wm3 = r("whatsminer-v3").await;
    assert_eq!(a[at("whatsminer-v3")].port(), 4433);
    assert_eq!((wm3.make.as_deref(), wm3.model.as_deref()), (Some("Whatsminer"), Some("M60S_VK40")));
    assert_eq!(wm3.firmware.as_deref(), Some("btminer 20251209.16.Rel2 (API v3)"));
    close(wm3.hashrate_ths, 171.259); // hash-realtime, TH/s
    close(wm3.power_w, 3156.0);
    assert_eq!(wm3.uptime_s, Some(50000));
    let epic = r("epic-powerplay").await;
    assert_eq!(epic.make.as_deref(), Some("ePIC"));
    close(epic.hashrate_ths, 90.07199);
    let volc = r("volcminer").await;
    assert_eq!((volc.make.as_deref(), volc.model.as_deref()), (Some("VolcMiner"), Some("D1")));
    close(volc.hashrate_ths, 0.01549896); // 15498.96 MH/s of Scrypt
    assert_eq!((volc.power_w, volc.shares_accepted), (None, Some(101)));

    // Ten minutes later: uptime +600 s; accepted difficulty + hashrate × 600 / 2^32 × (1 - 0.002).
    clock.advance(Duration::from_secs(600));
    let ant2 = r("antminer-stock").await;
    assert_eq!(ant2.uptime_s, Some(50474 + 600));
    let grown = (110.56689e12 * 600.0 / TWO_32 * 0.998).floor();
    close(ant2.diff_accepted, 1305083904.0 + grown);
    // Shares: one per 524288 of accepted difficulty.
    assert_eq!(ant2.shares_accepted, Some(4057 + (110.56689e12 * 600.0 / TWO_32 * 0.998 / 524288.0).floor() as u64));
    let wm1b = r("whatsminer-v1").await;
    close(wm1b.diff_accepted, 158334976.0 + (70.66811452e12 * 600.0 / TWO_32 * 0.998).floor());
    // VolcMiner's shares are the pools' `Accepted`: one per 48 of the difficulty its hashrate does.
    let volc2 = r("volcminer").await;
    assert_eq!(volc2.shares_accepted, Some(101 + (0.01549896e12 * 600.0 / TWO_32 * 0.998 / 48.0).floor() as u64));
    assert_eq!(volc2.uptime_s, Some(1355 + 600));
    let axe2 = r("bitaxe-axeos").await;
    assert_eq!(axe2.uptime_s, Some(4 + 600));

    // Reboot: counters and uptime restart from zero.
    fleet.reboot(0);
    clock.advance(Duration::from_secs(10));
    let ant3 = r("antminer-stock").await;
    assert_eq!(ant3.uptime_s, Some(10));
    close(ant3.diff_accepted, (110.56689e12 * 10.0 / TWO_32 * 0.998).floor());
    assert_eq!(ant3.shares_accepted, Some(0)); // 256,942 < 524,288: no share yet
    fleet.stop().await;
}

/// The pool in use per simulated make, from its capture: (url, worker, alive).
fn expected_pool(id: &str) -> Option<(&'static str, &'static str, Option<bool>)> {
    Some(match id {
        // cgminer `POOLS`: the `Stratum Active` entry, Status "Alive".
        "antminer-stock" => ("stratum+tcp://btc.global.luxor.tech:700", "satokierepair.H04YK", Some(true)),
        "luxos" => ("stratum+tcp://ca.stratum.braiins.com:3333", "asic-rs.user1", Some(true)),
        "avalon" => ("stratum+tcp://pool.example.com:4444", "worker1", Some(true)),
        "volcminer" => ("stratum+tcp://pool.invalid:3333", "worker", Some(true)),
        "whatsminer-v1" | "whatsminer-v2" | "whatsminer-v3" => {
            ("stratum+tcp://btc.example.pool:3333", "asic-rs.test", Some(true))
        }
        // AxeOS `stratumURL` + `stratumPort`; AxeOS says nothing about the connection.
        "bitaxe-axeos" => ("btc.example.pool:3333", "asic-rs.test", None),
        // ePIC `Stratum`: `Current Pool`, `Current User`, `IsPoolConnected`.
        "epic-powerplay" => ("mine.ocean.xyz:3334", "randomuser.randomworker-0x81x19", Some(true)),
        "proto" => ("stratum+tcp://pool-a.example.com:3333", "worker-a", None),
        "braiins-os-graphql" => ("stratum+tcp://btc1.example.pool:3333", "asic-rs.test", Some(true)),
        "braiins-os-rest" => ("stratum+tcp://example.pool.com:3333", "asic_rs.test", Some(true)),
        _ => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulated_make_serves_its_pool_and_no_password_is_read() {
    let clock = Arc::new(ManualClock::new(T0));
    let fleet = SimFleet::start(spec(block(7), &SimMake::ALL), clock.clone()).await.unwrap();
    for (m, addr) in SimMake::ALL.iter().zip(fleet.addrs()) {
        let r = miners::probe(&addr.ip().to_string(), addr.port(), &ro(3000)).await.unwrap();
        let got = r.pool_url.as_deref().map(|u| (u, r.pool_user.as_deref().unwrap_or(""), r.pool_alive));
        assert_eq!(got, expected_pool(m.name()), "{}", m.name());
        // Avalon's `pools` carries `"Password": "x"`, ePIC's `StratumConfigs` `"password": "password"`:
        // neither reaches the reading or its point.
        let json = serde_json::to_string(&r).unwrap();
        let point = format!("{:?}", r.to_point(T0));
        for shipped in [&json, &point] {
            assert!(!shipped.to_lowercase().contains("password"), "{}: {shipped}", m.name());
        }
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_power_off_degrade_hashdrop_and_hostile_replies() {
    let clock = Arc::new(ManualClock::new(T0));
    let makes = [SimMake::LuxOs, SimMake::AntminerStock, SimMake::AntminerStock, SimMake::WhatsminerV2];
    let fleet = SimFleet::start(spec(block(3), &makes), clock.clone()).await.unwrap();
    let a = fleet.addrs();
    let host = |i: usize| a[i].ip().to_string();

    // Efficiency degrading: +10 %/h of power at the same hashrate. 1051 W × 1.1 = 1156.1 → 1156.
    fleet.set_fault(0, Some(Fault::Degrade { per_hour: 0.10 }));
    clock.advance(Duration::from_secs(3600));
    let lux = miners::probe(&host(0), 4028, &ro(3000)).await.unwrap();
    close(lux.power_w, 1156.0);
    close(lux.hashrate_ths, 59.75606);

    // Power off: nothing listens; the probe says unreachable, a fleet read says offline.
    fleet.set_fault(1, Some(Fault::PowerOff));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = miners::probe(&host(1), 4028, &ro(1000)).await.unwrap_err();
    assert!(matches!(e, ProbeError::Unreachable { .. }), "{e}");
    let off = miners::read(&host(1), 4028, &ro(1000)).await;
    assert!(!off.online && off.error.as_deref().unwrap().contains("connect"), "{off:?}");
    fleet.set_fault(1, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(miners::probe(&host(1), 4028, &ro(3000)).await.unwrap().online);

    // A hashboard down: a third of the hashrate and of the power gone, accepted
    // difficulty growing at the rate left; back up, it grows at the full rate again
    // and never steps back (no false counter reset).
    let at = |i: usize| {
        let h = host(i);
        async move { miners::probe(&h, 4028, &ro(3000)).await }
    };
    let before = at(1).await.unwrap();
    let (h0, p0, d0) = (before.hashrate_ths.unwrap(), before.power_w.unwrap(), before.diff_accepted.unwrap());
    fleet.set_fault(1, Some(Fault::HashDrop { fraction: 1.0 / 3.0 }));
    clock.advance(Duration::from_secs(600));
    let down = at(1).await.unwrap();
    assert!((down.hashrate_ths.unwrap() - h0 * 2.0 / 3.0).abs() < 1e-3, "{down:?}");
    let d1 = down.diff_accepted.unwrap();
    let grown = |d: f64, secs: f64, share: f64| d + h0 * 1e12 * secs * share / TWO_32 * 0.998;
    assert!((d1 - grown(d0, 600.0, 2.0 / 3.0)).abs() < 2.0, "{d1} after {d0}");
    assert!((down.power_w.unwrap() - p0 * 2.0 / 3.0).abs() <= 1.0, "{down:?}");
    fleet.set_fault(1, None);
    clock.advance(Duration::from_secs(600));
    let up = at(1).await.unwrap();
    close(up.hashrate_ths, h0);
    let d2 = up.diff_accepted.unwrap();
    assert!((d2 - grown(d1, 600.0, 1.0)).abs() < 2.0, "{d2} after {d1}");

    // Closed mid-reply and garbage: not a miner's reply, offline with the reason.
    fleet.set_fault(2, Some(Fault::CloseMidReply));
    let half = miners::read(&host(2), 4028, &ro(1000)).await;
    assert!(!half.online && half.error.as_deref().unwrap().contains("not a miner"), "{half:?}");
    fleet.set_fault(3, Some(Fault::Garbage));
    let junk = miners::read(&host(3), 4028, &ro(1000)).await;
    assert!(!junk.online, "{junk:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_poll_good_miners_are_not_held_up_by_hanging_or_garbage_ones() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut s = spec(block(4), &[SimMake::AntminerStock, SimMake::WhatsminerV1, SimMake::AxeOs]);
    s.count = 12;
    s.faults = vec![(3, Fault::Hang), (7, Fault::Garbage), (10, Fault::Slow(Duration::from_secs(30)))];
    let fleet = SimFleet::start(s, clock).await.unwrap();
    let targets: Vec<String> = fleet.addrs().iter().map(|a| a.to_string()).collect();
    let eps = fleet::expand(&fleet::parse_targets(&targets).unwrap(), 4028);
    let opts = PollOptions { timeout: Duration::from_millis(1500), concurrency: 4, ..PollOptions::default() };
    let started = Instant::now();
    let done: Arc<Mutex<Vec<(String, Duration, bool)>>> = Arc::default();
    let d2 = done.clone();
    let readings =
        fleet::poll(&eps, &opts, move |r| d2.lock().unwrap().push((r.host.clone(), started.elapsed(), r.online))).await;
    let total = started.elapsed();
    assert_eq!(readings.len(), 12);
    for (i, r) in readings.iter().enumerate() {
        let bad = [3, 7, 10].contains(&i);
        assert_eq!(r.online, !bad, "miner {i}: {r:?}");
    }
    // Every good miner finished well before the hanging ones' timeout, even with only 4 slots.
    for (host, at, online) in done.lock().unwrap().iter() {
        if *online {
            assert!(*at < Duration::from_millis(1000), "{host} took {at:?}");
        }
    }
    assert!(total < Duration::from_millis(1500 + 1200), "whole poll took {total:?}");

    // The source: one point per listed miner, offline ones included.
    let mut src = MinerSource::new(fleet::parse_targets(&targets).unwrap(), opts);
    assert_eq!(src.name(), "miners");
    let points = src.collect(7).await.unwrap();
    assert_eq!(points.len(), 12);
    let offline =
        points.iter().filter(|p| p.field_value("online") == Some(&wattledger::model::FieldValue::Bool(false))).count();
    assert_eq!(offline, 3);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_cap_bounds_memory_against_an_endless_reply() {
    use tokio::io::AsyncWriteExt;
    let host = ip(5, 1);
    let l = tokio::net::TcpListener::bind(format!("{host}:0")).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let chunk = vec![b'{'; 65536];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let opts = ReadOptions { timeout: Duration::from_secs(5), max_reply_bytes: 100_000 };
    let r = miners::read(&host, port, &opts).await;
    assert!(!r.online);
    assert!(r.error.as_deref().unwrap().contains("100000-byte cap"), "{r:?}");
}

fn probe_bin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wattledger")).arg("probe").args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_binary_json_for_several_makes_and_clear_errors() {
    let clock = Arc::new(ManualClock::new(T0));
    let makes = [SimMake::AntminerStock, SimMake::WhatsminerV1, SimMake::AxeOs, SimMake::Avalon];
    let fleet = SimFleet::start(spec(block(6), &makes), clock).await.unwrap();
    let keys = [
        "host",
        "port",
        "make",
        "model",
        "firmware",
        "hashrate_ths",
        "power_w",
        "power_source",
        "diff_accepted",
        "shares_accepted",
        "shares_rejected",
        "temp_c_max",
        "fan_rpm_avg",
        "uptime_s",
        "pool_url",
        "pool_user",
        "pool_alive",
        "online",
        "error",
    ];
    let expect = [("Antminer", 110.56689), ("Whatsminer", 70.66811452), ("Bitaxe", 1.0), ("Avalon", 81.07268)];
    for (i, (make, ths)) in expect.iter().enumerate() {
        let target = format!("{}:4028", ip(6, i as u8 + 1));
        let out = tokio::task::spawn_blocking(move || probe_bin(&[&target, "--json", "--timeout", "3"])).await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let obj = v.as_object().unwrap();
        let got: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        let mut want = keys.to_vec();
        want.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want);
        assert_eq!(obj["make"], *make);
        assert!((obj["hashrate_ths"].as_f64().unwrap() - ths).abs() < 1e-6, "{text}");
        assert_eq!(obj["online"], true);
        assert_eq!(obj["error"], serde_json::Value::Null);
    }
    // A scan of the range with the table output.
    let range = format!("{}/29", ip(6, 0));
    let out = tokio::task::spawn_blocking(move || probe_bin(&[&range, "--timeout", "2"])).await.unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 1 + 4, "{table}");

    // Nothing listening: non-zero exit and a message saying what to check.
    let nobody = format!("{}:4028", ip(6, 200));
    let n2 = nobody.clone();
    let out = tokio::task::spawn_blocking(move || probe_bin(&[&n2, "--timeout", "1"])).await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&nobody) && err.contains("cannot connect"), "{err}");
    // One dead target or two: the same JSON (an offline reading each) and exit 1.
    for dead in [vec![nobody.clone()], vec![nobody.clone(), format!("{}:4028", ip(6, 201))]] {
        let n = dead.len();
        let out = tokio::task::spawn_blocking(move || {
            let mut args: Vec<&str> = dead.iter().map(String::as_str).collect();
            args.extend(["--json", "--timeout", "1"]);
            probe_bin(&args)
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{n} dead targets");
        let text = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), n, "{text}");
        assert!(rows.iter().all(|r| r["online"] == false && r["error"].is_string()), "{text}");
    }

    // Something that answers but is not a miner.
    let l = tokio::net::TcpListener::bind(format!("{}:0", ip(6, 201))).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let target = format!("{}:{port}", ip(6, 201));
    let out = tokio::task::spawn_blocking(move || probe_bin(&[&target, "--timeout", "1"])).await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a miner"), "{err}");
    fleet.stop().await;
}
