//! `wattledger demo` as a user runs it: it starts, prints a URL with a working
//! token and the comparison, serves the API with numbers for every workload within
//! 30 seconds, stops cleanly on SIGINT, and leaves a store that opens again with
//! the data in it. A taken port is refused with advice.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wattledger::model::FieldValue;
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{SeriesQuery, Store};

const BIN: &str = env!("CARGO_BIN_EXE_wattledger");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The child's stdout and stderr, collected as they come.
fn capture(child: &mut Child) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                out.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    out
}

fn wait_for<T>(what: &str, timeout: Duration, out: &Mutex<String>, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; demo output:\n{}", out.lock().unwrap());
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().get(url).timeout(Duration::from_secs(20));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    })
}

#[test]
fn demo_starts_serves_and_stops_on_sigint_with_its_data_intact() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let started = Instant::now();
    let mut child = spawn_demo(port, data.path());
    let out = capture(&mut child);

    let url = wait_for("the URL", Duration::from_secs(30), &out, || {
        let text = out.lock().unwrap().clone();
        let at = text.find(&format!("http://127.0.0.1:{port}/?token="))?;
        let url: String = text[at..].chars().take_while(|c| !c.is_whitespace()).collect();
        Some(url)
    });
    let token = url.split("token=").nth(1).unwrap().to_string();
    let base = format!("http://127.0.0.1:{port}");

    let (status, body) = get(&format!("{base}/api/health"), None).expect("health answers");
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(&format!("{base}/api/workloads"), None).expect("workloads answers");
    assert_eq!(status, 401, "the API needs the token");
    let (status, page) = get(&format!("{base}/"), None).expect("the page answers");
    assert_eq!(status, 200);
    assert!(page.contains("wattledger"));

    // Numbers for every workload within 30 s of start.
    let cmp: serde_json::Value =
        wait_for("numbers for every workload", Duration::from_secs(30).saturating_sub(started.elapsed()), &out, || {
            let (status, body) = get(&format!("{base}/api/workloads"), Some(&token))?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let ws = v["workloads"].as_array()?;
            (status == 200 && ws.len() == 3 && ws.iter().all(|w| w["revenue_usd_per_kwh"].is_f64())).then_some(v)
        });
    let by_name = |n: &str| cmp["workloads"].as_array().unwrap().iter().find(|w| w["workload"] == n).cloned().unwrap();
    let mining = by_name("btc-fleet");
    let contract = by_name("gpu-contract");
    let inference = by_name("llm-inference");
    // Orders of magnitude from the design: miners earn cents per kWh, rented H100s dollars.
    let rpk = |w: &serde_json::Value| w["revenue_usd_per_kwh"].as_f64().unwrap();
    assert!((0.02..0.5).contains(&rpk(&mining)), "mining {mining}");
    assert!((1.0..8.0).contains(&rpk(&contract)), "contract {contract}");
    assert!((0.5..8.0).contains(&rpk(&inference)), "inference {inference}");
    assert!(mining["j_per_th"].as_f64().is_some_and(|j| (10.0..60.0).contains(&j)), "J/TH {mining}");
    assert!(inference["tokens_per_j"].as_f64().is_some_and(|t| t > 0.0), "tokens/J {inference}");
    assert!(contract["j_per_th"].is_null() && contract["tokens_per_j"].is_null());
    // The stock Antminers are measured at their PDU outlets, the contract node at its BMC.
    for w in [&mining, &contract] {
        assert!(w["energy_basis"].as_str().is_some_and(|b| b.contains("% meter")), "basis {w}");
        assert!(w["energy_by_basis"]["meter_j"].as_f64().is_some_and(|j| j > 0.0), "basis {w}");
    }

    // The terminal shows the comparison too.
    wait_for("the terminal table", Duration::from_secs(30), &out, || {
        let text = out.lock().unwrap().clone();
        (text.contains("revenue $/kWh")
            && text.contains("from ledger")
            && text.contains("measured by")
            && text.contains("energy ledger")
            && text.lines().any(|l| l.starts_with("btc-fleet") && l.contains("J/TH")))
        .then_some(())
    });

    // Once the day is replayed, the numbers come from the agents' energy ledger,
    // and the API says so.
    let (_, body) = get(&format!("{base}/api/workloads"), Some(&token)).unwrap();
    let cmp: serde_json::Value = serde_json::from_str(&body).unwrap();
    for w in cmp["workloads"].as_array().unwrap() {
        assert!(w["ledger_share"].as_f64().is_some_and(|s| s > 0.5), "ledger share {w}");
    }

    stop(&mut child, &out);

    // The store opens again, with measurements, prices and computed windows in it.
    let store = EmbeddedStore::open(&data.path().join("wattledger.db")).expect("the store reopens");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let read = |measurement: &str, field: &str| SeriesQuery {
            measurement: measurement.into(),
            fields: vec![field.into()],
            tag_filters: vec![],
            start_ns: 0,
            end_ns: i64::MAX,
        };
        let workloads = store.tag_values("workload_efficiency", "workload").await.unwrap();
        assert_eq!(workloads, ["btc-fleet", "gpu-contract", "llm-inference"]);
        for (m, f) in [
            ("asic", "diff_accepted"),
            ("gpu", "energy_j"),
            ("meter", "energy_j"),
            ("inference", "generation_tokens"),
            ("market", "btc_usd"),
            ("energy_price", "usd_per_kwh"),
        ] {
            let series = store.read(&read(m, f)).await.unwrap();
            let rows: usize = series.iter().map(|s| s.times_ns.len()).sum();
            assert!(rows >= 100, "{m}: only {rows} rows kept");
        }
        let market = store.read(&read("market", "btc_usd")).await.unwrap();
        assert!(market.iter().all(|s| s.tags.get("source").map(String::as_str) == Some("demo-sim")));
        let prices: Vec<f64> = market
            .iter()
            .flat_map(|s| s.values.iter().filter_map(|v| v[0].as_ref().and_then(FieldValue::as_f64)))
            .collect();
        assert!(prices.iter().all(|p| (10_000.0..1_000_000.0).contains(p)));
    });
    // `report --energy-from raw` and `ledger` agree on the demo's day: `auto` equals
    // `raw` in every hour, and the ledger alone equals `raw` in every hour it
    // covers completely.
    let store: Arc<dyn Store> = Arc::new(store);
    rt.block_on(async {
        let ledger = store
            .read(&SeriesQuery {
                measurement: "energy_ledger".into(),
                fields: vec!["energy_j".into()],
                tag_filters: vec![],
                start_ns: 0,
                end_ns: i64::MAX,
            })
            .await
            .unwrap();
        let times: Vec<i64> = ledger.iter().flat_map(|s| s.times_ns.iter().copied()).collect();
        const H: i64 = 3_600_000_000_000;
        let from = times.iter().min().unwrap().div_euclid(H) * H;
        let to = times.iter().max().unwrap().div_euclid(H) * H;
        let cfg = wattledger::demo::aggregator_config(&data.path().join("wattledger.db"), "token").unwrap();
        let windows = |mode| {
            let agg = wattledger::aggregate::Aggregator::new(
                cfg.clone(),
                store.clone(),
                Arc::new(wattledger::model::SystemClock),
            )
            .unwrap()
            .with_energy_from(mode);
            async move {
                let mut out = Vec::new();
                agg.compute(from, to, H, None, wattledger::aggregate::Windows::Recompute, |w| out.push(w))
                    .await
                    .unwrap();
                out
            }
        };
        use wattledger::ledger::EnergyFrom;
        let (raw, auto, only) =
            (windows(EnergyFrom::Raw).await, windows(EnergyFrom::Auto).await, windows(EnergyFrom::Ledger).await);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12);
        let same = |a: &wattledger::aggregate::compare::WindowResult,
                    b: &wattledger::aggregate::compare::WindowResult| {
            close(a.energy_j, b.energy_j)
                && close(a.revenue_usd, b.revenue_usd)
                && close(a.energy_cost_usd, b.energy_cost_usd)
                && a.covered_ns == b.covered_ns
        };
        let mut full = std::collections::BTreeMap::new();
        for (a, r) in auto.iter().zip(&raw) {
            assert!(same(a, r), "auto vs raw: {a:?} {r:?}");
            *full.entry(a.window.start_ns).or_insert(true) &= a.ledger_share() == Some(1.0);
        }
        let mut metered_full = 0;
        for (l, r) in only.iter().zip(&raw) {
            if full[&r.window.start_ns] {
                assert!(same(l, r), "ledger vs raw: {l:?} {r:?}");
                metered_full += usize::from(r.basis.meter_j > 0.0);
            }
        }
        // The demo's meters cover miners: those windows are among the ones compared.
        let metered = raw.iter().filter(|r| r.basis.meter_j > 0.0).count();
        assert!(metered > 0 && metered_full > 0, "metered windows {metered}, of them with full ledger {metered_full}");
        let hours = full.values().filter(|f| **f).count();
        assert!(hours >= 12, "only {hours} of {} hours come wholly from the ledger", full.len());
    });
    drop(store);
    // The token is kept for the next start.
    assert_eq!(std::fs::read_to_string(data.path().join("api-token")).unwrap().trim(), token);

    // The next start continues the data: same token, no replay over the old run,
    // and no counter from the old run mistaken for revenue in the new one.
    let port = free_port();
    let mut child = spawn_demo(port, data.path());
    let out = capture(&mut child);
    wait_for("the second start's URL", Duration::from_secs(30), &out, || {
        out.lock().unwrap().contains(&format!("http://127.0.0.1:{port}/?token={token}")).then_some(())
    });
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the resumed run to go live", Duration::from_secs(60), &out, || {
        out.lock().unwrap().contains("Simulated time now runs at").then_some(())
    });
    let text = out.lock().unwrap().clone();
    assert!(text.contains("since the previous run's data ends") || text.contains("Resuming where"), "{text}");
    let (status, body) = get(&format!("{base}/api/workloads/btc-fleet/windows"), Some(&token)).unwrap();
    assert_eq!(status, 200, "{body}");
    let windows: serde_json::Value = serde_json::from_str(&body).unwrap();
    for w in windows["windows"].as_array().unwrap() {
        if let Some(r) = w["revenue_usd_per_kwh"].as_f64() {
            assert!(r < 0.5, "a window across the restart earned {r} $/kWh: {w}");
        }
    }
    stop(&mut child, &out);
}

fn spawn_demo(port: u16, data: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(["--speed", "120"])
        .env("WATTLEDGER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGINT, then a clean exit within 30 s.
fn stop(child: &mut Child, out: &Mutex<String>) {
    let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop within 30 s of SIGINT:\n{}", out.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200));
    let text = out.lock().unwrap().clone();
    assert!(status.success(), "exit status {status}:\n{text}");
    assert!(text.contains("Stopped."), "{text}");
}

#[test]
fn a_taken_port_is_refused_with_advice() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data.path())
        .env("WATTLEDGER_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port} is already in use")) && stderr.contains("--listen"), "{stderr}");
    drop(taken);
}
