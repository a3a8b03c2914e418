//! The HTTP-only makes (Braiins OS REST and GraphQL, Goldshell, Proto) read end to end over
//! real loopback sockets from the simulator: detection without configuration, values worked
//! out by hand from the captures in `tests/data/miners/`, counters moving with simulated
//! time, the Braiins login token, and the `wattledger probe --json` binary.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use wattledger::collect::miners::{self, wire, PowerSource, ReadOptions};
use wattledger::sim::miners::{FleetSpec, ManualClock, SimFleet, SimMake, SIM_BRAIINS_TOKEN};

const T0: i64 = 1_764_000_000_000_000_000;
const TWO_32: f64 = 4_294_967_296.0;

/// A loopback block of our own (the second octet from the process id; third octets 40+ are
/// not used by `miners_sim.rs`).
fn block(third: u8) -> [u8; 4] {
    [127, 100 + (std::process::id() % 150) as u8, third, 1]
}

fn spec(first: [u8; 4], port: u16, makes: &[SimMake]) -> FleetSpec {
    FleetSpec {
        count: makes.len(),
        bind: Ipv4Addr::from(first),
        port,
        ports_layout: false,
        mix: makes.iter().map(|m| (*m, 1)).collect(),
        faults: Vec::new(),
        variation: false,
    }
}

fn ro() -> ReadOptions {
    ReadOptions { timeout: Duration::from_secs(3), max_reply_bytes: 1 << 20 }
}

fn close(a: Option<f64>, b: f64) {
    let a = a.unwrap_or_else(|| panic!("expected {b}, got None"));
    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "got {a}, expected {b}");
}

const NEW: [SimMake; 4] = [SimMake::BraiinsRest, SimMake::BraiinsGraphql, SimMake::Goldshell, SimMake::Proto];

/// Shares a counter gains in `dt_s` seconds: accepted difficulty (hashrate / 2^32 per second,
/// minus the simulator's 0.2 % rejects) over the share difficulty.
fn shares(ths: f64, dt_s: f64, share_diff: f64) -> u64 {
    (ths * 1e12 * dt_s / TWO_32 * 0.998 / share_diff).floor() as u64
}

async fn every_new_make_on(port: u16, third: u8) {
    let clock = Arc::new(ManualClock::new(T0));
    let fleet = SimFleet::start(spec(block(third), port, &NEW), clock.clone()).await.unwrap();
    let a = fleet.addrs();
    let r = |i: usize| {
        let (h, p) = (a[i].ip().to_string(), a[i].port());
        async move { miners::probe(&h, p, &ro()).await.unwrap_or_else(|e| panic!("{e}")) }
    };

    // Braiins OS 26.04 REST (miner_details, miner_stats, cooling_state).
    let bos = r(0).await;
    assert_eq!((bos.make.as_deref(), bos.model.as_deref()), (Some("Antminer"), Some("S21 Pro")));
    assert_eq!(bos.firmware.as_deref(), Some("Braiins OS 2026-04-14-0-912d084c-26.04-plus"));
    close(bos.hashrate_ths, 248.186_677_200_024_98); // last_5s 248186.677 GH/s
    close(bos.power_w, 3480.0); // approximated_consumption.watt
    assert_eq!(bos.power_source, Some(PowerSource::Reported));
    assert_eq!((bos.shares_accepted, bos.shares_rejected), (Some(848), Some(0)));
    close(bos.temp_c_max, 65.375); // highest_temperature
    close(bos.fan_rpm_avg, (5943.0 * 3.0 + 5973.0) / 4.0);
    assert_eq!(bos.uptime_s, Some(7039)); // bosminer_uptime_s
    assert_eq!(bos.diff_accepted, None);
    assert!(bos.online && bos.error.is_none(), "{bos:?}");

    // Braiins OS 21.09 GraphQL (system + pools queries).
    let gql = r(1).await;
    assert_eq!((gql.make.as_deref(), gql.model.as_deref()), (None, None)); // no model in these replies
    assert_eq!(gql.firmware.as_deref(), Some("Braiins OS 2022-09-13-0-11012d53-22.08-plus"));
    close(gql.hashrate_ths, 7.160_208_944_955_902); // mhs5S 7160208.94 MH/s
    close(gql.power_w, 735.0); // approxConsumptionW
    assert_eq!((gql.shares_accepted, gql.shares_rejected), (Some(31 + 18), Some(0)));
    close(gql.fan_rpm_avg, (4080.0 + 5580.0) / 4.0);
    assert_eq!(gql.uptime_s, Some(1189));
    assert_eq!(gql.temp_c_max, None);

    // Goldshell SC5 Pro (status + cgminer devs/summary over HTTP).
    let gs = r(2).await;
    assert_eq!((gs.make.as_deref(), gs.model.as_deref()), (Some("Goldshell"), Some("SC5Pro")));
    assert_eq!(gs.firmware.as_deref(), Some("Goldshell 2.2.0"));
    close(gs.hashrate_ths, 10.861_769_547); // SUMMARY MHS 20s
    close(gs.temp_c_max, 91.0); // tstemp-0/1 of board 1
    close(gs.fan_rpm_avg, (13.0 * 2100.0 + 3.0 * 2040.0) / 16.0);
    assert_eq!(gs.uptime_s, Some(741660));
    assert_eq!((gs.power_w, gs.power_source), (None, None)); // Goldshell reports no power

    // Proto rig (system, mining, cooling, pools).
    let pr = r(3).await;
    assert_eq!((pr.make.as_deref(), pr.model.as_deref()), (Some("Proto"), Some("Rig")));
    assert_eq!(pr.firmware.as_deref(), Some("ProtoOS 1.8.0"));
    close(pr.hashrate_ths, 141.147_435_031_471_1); // hashrate_ghs
    close(pr.power_w, 3447.008523267969); // power_usage_watts
    close(pr.temp_c_max, 71.90268170247448); // average_asic_temp_c > average_hb_temp_c
    close(pr.fan_rpm_avg, (4346.0 + 4691.0 + 4658.0 + 4443.0) / 4.0);
    assert_eq!((pr.shares_accepted, pr.shares_rejected), (Some(12345), Some(10)));
    assert_eq!(pr.uptime_s, Some(28));

    // Ten minutes later the counters have moved with the clock.
    clock.advance(Duration::from_secs(600));
    let bos2 = r(0).await;
    assert_eq!(bos2.uptime_s, Some(7039 + 600));
    assert_eq!(bos2.shares_accepted, Some(848 + shares(248.186_677_200_024_98, 600.0, 524288.0)));
    let gql2 = r(1).await;
    assert_eq!(gql2.uptime_s, Some(1189 + 600));
    assert_eq!(gql2.shares_accepted, Some(31 + shares(7.160_208_944_955_902, 600.0, 65536.0) + 18));
    let gs2 = r(2).await;
    assert_eq!(gs2.uptime_s, Some(741660 + 600));
    let pr2 = r(3).await;
    assert_eq!(pr2.uptime_s, Some(28 + 600));
    assert_eq!(pr2.shares_accepted, Some(12345 + shares(141.147_435_031_471_1, 600.0, 1_048_576.0)));

    // A reboot restarts them.
    fleet.reboot(3);
    clock.advance(Duration::from_secs(5));
    assert_eq!(r(3).await.uptime_s, Some(5));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_make_on_the_cgminer_port_is_detected_and_read() {
    // Port 4028: the cgminer multi-command gets an HTTP reply, then the HTTP makes are tried.
    every_new_make_on(4028, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_make_on_port_8080_is_detected_and_read() {
    // Port 8080: HTTP is tried first.
    every_new_make_on(8080, 41).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braiins_rest_needs_the_login_token_and_cgminer_path_is_not_slowed() {
    let clock = Arc::new(ManualClock::new(T0));
    let fleet =
        SimFleet::start(spec(block(42), 4028, &[SimMake::BraiinsRest, SimMake::AntminerStock]), clock).await.unwrap();
    let a = fleet.addrs();
    let host = a[0].ip().to_string();
    let deadline = || wire::deadline_in(Duration::from_secs(3));
    // Without the token the API refuses; with it, it answers.
    let r = wire::http_request(&host, 4028, "GET", "/api/v1/miner/stats", None, deadline(), 1 << 20).await.unwrap();
    assert_eq!(r.status, 401);
    let r = wire::http_request_with(
        &host,
        4028,
        "GET",
        "/api/v1/miner/stats",
        &[("Authorization", SIM_BRAIINS_TOKEN)],
        None,
        deadline(),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // A wrong password is refused.
    let bad = br#"{"username":"root","password":"x"}"#;
    let r = wire::http_request(
        &host,
        4028,
        "POST",
        "/api/v1/auth/login",
        Some(("application/json", bad)),
        deadline(),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);

    // The cgminer path costs what it did: one connection for a stock Antminer.
    let before = fleet.counters().connections.load(Ordering::Relaxed);
    let ant = miners::probe(&a[1].ip().to_string(), 4028, &ro()).await.unwrap();
    assert_eq!(ant.make.as_deref(), Some("Antminer"));
    // The accept loop counts asynchronously: give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fleet.counters().connections.load(Ordering::Relaxed) - before, 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_that_is_no_miner_is_named_as_such() {
    // A plain HTTP server that is no miner: NotAMiner, naming what was tried.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::from(block(43)), 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found").await;
            });
        }
    });
    let e = miners::probe(&Ipv4Addr::from(block(43)).to_string(), port, &ro()).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("not a miner API") && msg.contains("Goldshell /mcb/status") && msg.contains("Proto"), "{msg}");
    server.abort();
}

fn probe_bin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wattledger")).arg("probe").args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_binary_json_for_braiins_rest_and_proto() {
    let clock = Arc::new(ManualClock::new(T0));
    let fleet = SimFleet::start(spec(block(44), 4028, &[SimMake::BraiinsRest, SimMake::Proto]), clock).await.unwrap();
    let expect = [
        ("Antminer", "S21 Pro", 248.186_677_200_024_98, 3480.0),
        ("Proto", "Rig", 141.147_435_031_471_1, 3447.008523267969),
    ];
    for (i, (make, model, ths, w)) in expect.iter().enumerate() {
        let target = fleet.addrs()[i].to_string();
        let out = tokio::task::spawn_blocking(move || probe_bin(&[&target, "--json", "--timeout", "3"])).await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["make"], *make, "{text}");
        assert_eq!(v["model"], *model, "{text}");
        assert!((v["hashrate_ths"].as_f64().unwrap() - ths).abs() < 1e-6, "{text}");
        assert!((v["power_w"].as_f64().unwrap() - w).abs() < 1e-6, "{text}");
        assert_eq!(v["power_source"], "reported");
        assert_eq!(v["online"], true);
        assert_eq!(v["error"], serde_json::Value::Null);
    }
    fleet.stop().await;
}
