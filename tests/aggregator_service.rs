//! The aggregator as a service, over real HTTP on loopback, with the embedded
//! store on a temporary file: the InfluxDB-compatible ingest's answers, the JSON
//! API against the hand-computed scenario, the scheduled write-back (idempotent,
//! late data recomputed), and market data read from a local HTTP server serving
//! recorded API answers.

mod scenario;

use std::io::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use wattledger::aggregate::config::AggregatorConfig;
use wattledger::aggregate::{Aggregator, Windows};
use wattledger::model::Clock;
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::{SeriesQuery, Store};
use wattledger::web::AppState;

const S: i64 = 1_000_000_000;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Running {
    base: String,
    agg: Arc<Aggregator>,
    store: Arc<dyn Store>,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(extra_config: &str, now_ns: i64) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wl.db");
    let toml = scenario::config(&format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()), extra_config);
    let cfg: AggregatorConfig = wattledger::config::from_str(&toml, std::path::Path::new("test.toml")).unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&db).unwrap());
    let clock = Arc::new(TestClock(AtomicI64::new(now_ns)));
    let agg = Arc::new(Aggregator::new(cfg, store.clone(), clock.clone()).unwrap());
    let state = AppState::new(agg.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wattledger::web::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Running { base, agg, store, clock, _dir: dir, _stop: tx }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

async fn count_rows(store: &dyn Store, measurement: &str, fields: &[&str]) -> usize {
    let q = SeriesQuery {
        measurement: measurement.into(),
        fields: fields.iter().map(|s| s.to_string()).collect(),
        tag_filters: vec![],
        start_ns: 0,
        end_ns: i64::MAX / 2,
    };
    store.read(&q).await.unwrap().iter().map(|s| s.times_ns.len()).sum()
}

const API: &str = "[api]\ntoken = \"s3cret\"\ningest = true\nmax_body_bytes = 65536\n";

#[tokio::test]
async fn ingest_answers_like_influxdb() {
    let run = start(API, scenario::T0_S * S).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v2/write?org=o&bucket=b&precision=s", run.base);
    let good = "probe,host=a v=1 1795132800\nprobe,host=a v=2 1795132860\n";

    // No token: 401, before anything is read.
    let r = http.post(&url).body(good).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.post(&url).header("Authorization", "Token wrong").body(good).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(count_rows(run.store.as_ref(), "probe", &["v"]).await, 0);

    // A batch with one bad line: 400 naming it, and nothing from it written.
    let bad = "partial,host=a v=1 1795132800\npartial,host=a v=oops= 1795132860\npartial,host=a v=3 1795132920\n";
    let r = http.post(&url).header("Authorization", "Token s3cret").body(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("line 2") && msg.contains("v=oops="), "{msg}");
    assert_eq!(body["code"], "invalid");
    assert_eq!(count_rows(run.store.as_ref(), "partial", &["v"]).await, 0, "nothing from a rejected batch");

    // Good gzip batch with Bearer: 204, written.
    let r = http
        .post(&url)
        .header("Authorization", "Bearer s3cret")
        .header("Content-Encoding", "gzip")
        .body(gzip(good.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert_eq!(count_rows(run.store.as_ref(), "probe", &["v"]).await, 2);

    // v1 endpoint with the token as the password parameter.
    let v1 = format!("{}/write?db=x&u=any&p=s3cret&precision=s", run.base);
    let r = http.post(&v1).body("probe,host=b v=5 1795132800\n").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(count_rows(run.store.as_ref(), "probe", &["v"]).await, 3);
    let r = http.post(v1.replace("p=s3cret", "p=nope")).body("probe,host=b v=5 1795132800\n").send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Over the limit: 413, plain and as a gzip body that inflates past it.
    let big = "probe,host=c v=1 1795132800\n".repeat(4000); // 112 kB > 64 KiB
    let r = http.post(&url).header("Authorization", "Token s3cret").body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let packed = gzip(big.as_bytes());
    assert!(packed.len() < 65536);
    let r = http
        .post(&url)
        .header("Authorization", "Token s3cret")
        .header("Content-Encoding", "gzip")
        .body(packed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(count_rows(run.store.as_ref(), "probe", &["v"]).await, 3);

    // Health needs no token.
    let r = http.get(format!("{}/api/health", run.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn api_and_write_back_match_the_hand_computed_scenario() {
    let end_s = scenario::T0_S + scenario::MINUTES * 60;
    let run = start(&API.replace("65536", "1000000"), (end_s + 30) * S).await;
    let http = reqwest::Client::new();
    let auth = ("Authorization", "Token s3cret");
    let r = http
        .post(format!("{}/api/v2/write?precision=s", run.base))
        .header(auth.0, auth.1)
        .header("Content-Encoding", "gzip")
        .body(gzip(scenario::line_protocol().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // The comparison, as the report computes it.
    let url = format!("{}/api/workloads?from={}&to={}", run.base, scenario::FROM, scenario::TO);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let json: serde_json::Value = http.get(&url).header(auth.0, auth.1).send().await.unwrap().json().await.unwrap();
    scenario::assert_report(&json);
    assert_eq!(json["from"], "2026-11-20T00:00:00Z");
    // A real aggregator is no demo and replays nothing (open, for the page's token banner).
    let st: serde_json::Value =
        http.get(format!("{}/api/status", run.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(st, serde_json::json!({"demo": false, "replay": null}));
    // `?token=` works for the browser page.
    let r = http.get(format!("{url}&token=s3cret")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Windows of one workload: h100 hour 1 is 3.78 MJ (GPU-1 silent half the
    // hour) and $3; hour 2 is 5.04 MJ and $4.
    let url = format!("{}/api/workloads/h100/windows?from={}&to={}", run.base, scenario::FROM, scenario::TO);
    let w: serde_json::Value = http.get(&url).header(auth.0, auth.1).send().await.unwrap().json().await.unwrap();
    assert_eq!(w["workload"], "h100");
    assert_eq!(w["model"], "ai_contract");
    // The page reads each revenue model's title, palette and efficiency from the API.
    let url = format!("{}/api/models", run.base);
    let m: serde_json::Value = http.get(&url).header(auth.0, auth.1).send().await.unwrap().json().await.unwrap();
    let models = m["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bitcoin_fpps", "ai_contract", "ai_on_demand", "ai_tokens"]);
    assert_eq!(models[0]["title"], "Bitcoin mining · FPPS");
    assert_eq!(models[0]["family"], "mining");
    assert_eq!((&models[0]["efficiency_field"], &models[0]["efficiency_unit"]), (&"j_per_th".into(), &"J/TH".into()));
    assert_eq!(
        (&models[3]["efficiency_field"], &models[3]["efficiency_unit"]),
        (&"tokens_per_j".into(), &"tok/J".into())
    );
    assert!(models[1]["efficiency_field"].is_null() && models[1]["family"] == "ai", "{m}");
    let rows = w["windows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["start"], "2026-11-20T00:00:00Z");
    assert_eq!(rows[0]["end"], "2026-11-20T01:00:00Z");
    assert!((rows[0]["energy_j"].as_f64().unwrap() - 3.78e6).abs() < 1e-3);
    assert!((rows[0]["revenue_usd"].as_f64().unwrap() - 3.0).abs() < 1e-9);
    assert!((rows[0]["coverage"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    assert!((rows[0]["avg_power_w"].as_f64().unwrap() - 1050.0).abs() < 1e-6);
    assert!((rows[1]["energy_j"].as_f64().unwrap() - 5.04e6).abs() < 1e-3);
    assert!((rows[1]["revenue_usd"].as_f64().unwrap() - 4.0).abs() < 1e-9);
    let r = http.get(format!("{}/api/workloads/nope/windows", run.base)).header(auth.0, auth.1).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(format!("{}/api/workloads?from=yesterday", run.base)).header(auth.0, auth.1).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // Fleet: every device, last seen 30 s before "now" (within max_gap: online).
    let fleet: serde_json::Value =
        http.get(format!("{}/api/fleet", run.base)).header(auth.0, auth.1).send().await.unwrap().json().await.unwrap();
    let devices = fleet["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 6, "{fleet}");
    assert!(devices.iter().all(|d| d["status"] == "online"), "{fleet}");
    let m1 = devices.iter().find(|d| d["device"] == "rig1/m1").unwrap();
    assert_eq!(m1["kind"], "asic");
    assert_eq!(m1["j_per_th"], 15.0);
    // model=S19 without a make tag: only Antminer has an S19 (3250 W / 95 TH/s).
    assert!((m1["nominal_j_per_th"].as_f64().unwrap() - 3250.0 / 95.0).abs() < 1e-9, "{m1}");
    // No power_source tag: whether the power was measured is unknown, so no verdict.
    assert!(m1["below_nominal"].is_null(), "{m1}");
    let m2 = devices.iter().find(|d| d["device"] == "rig1/m2").unwrap();
    assert!(m2["nominal_j_per_th"].is_null(), "S9 is not in the model table: {m2}");
    assert_eq!(m1["last_seen"], "2026-11-20T02:00:00Z");

    // Write-back: the API stored the 2 complete hours it computed (× 3
    // workloads); the scheduled run finds them current and writes the 12
    // five-minute windows of the last hour × 3 workloads. The hour before the
    // first data (in the 3 h lookback) is not written at all.
    let now = run.clock.now_ns();
    let stats = run.agg.run_once(now).await.unwrap();
    assert_eq!(stats.windows_written, 36);
    let q = SeriesQuery {
        measurement: "workload_efficiency".into(),
        fields: vec!["revenue_usd".into(), "energy_j".into(), "coverage".into()],
        tag_filters: vec![("workload".into(), "h100".into()), ("window".into(), "1h".into())],
        start_ns: 0,
        end_ns: i64::MAX / 2,
    };
    let series = run.store.read(&q).await.unwrap();
    assert_eq!(series.len(), 1);
    let s = &series[0];
    assert_eq!(s.tags.get("kind").map(String::as_str), Some("ai_contract"));
    assert_eq!(s.tags.get("site").map(String::as_str), Some("s1"));
    assert_eq!(s.times_ns, vec![scenario::T0_S * S, (scenario::T0_S + 3600) * S]);
    let revenue = |i: usize| s.values[i][0].as_ref().and_then(|v| v.as_f64()).unwrap();
    assert!((revenue(0) - 3.0).abs() < 1e-9 && (revenue(1) - 4.0).abs() < 1e-9);
    assert_eq!(run.agg.run_once(now).await.unwrap().windows_written, 0, "nothing changed: nothing recomputed");

    // Late data: GPU-1's missing samples (minutes 31-59) arrive; the next run
    // recomputes hour 1 in place: the 30-minute gap is now 30 one-minute
    // intervals, so GPU-1 adds 1800 s × 700 W = 1.26 MJ and 0.5 GPU-hour.
    let mut late = String::new();
    for i in 31..=59 {
        late += &format!(
            "gpu,site=s1,host=rig2,gpu=1,uuid=GPU-1,model=H100,workload=h100 power_w=700,status=\"ok\" {}\n",
            scenario::T0_S + i * 60
        );
    }
    let r = http
        .post(format!("{}/api/v2/write?precision=s", run.base))
        .header(auth.0, auth.1)
        .body(late)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let before = count_rows(run.store.as_ref(), "workload_efficiency", &["revenue_usd"]).await;
    // Only the windows whose reads see the late data are recomputed: hour 1,
    // and hour 2 and its first five-minute window, whose read margin of
    // `max_gap` before their start reaches minute 59.
    let stats = run.agg.run_once(now).await.unwrap();
    assert_eq!(stats.windows_written, 3, "{stats:?}");
    assert_eq!(
        count_rows(run.store.as_ref(), "workload_efficiency", &["revenue_usd"]).await,
        before,
        "recomputing overwrites"
    );
    let s = &run.store.read(&q).await.unwrap()[0];
    let revenue = |i: usize| s.values[i][0].as_ref().and_then(|v| v.as_f64()).unwrap();
    assert!((revenue(0) - 4.0).abs() < 1e-9, "hour 1 now has 2 full GPU-hours: {}", revenue(0));
    assert!((s.values[0][1].as_ref().unwrap().as_f64().unwrap() - 5.04e6).abs() < 1e-3);
    // And the API serves the recomputed window.
    let url = format!("{}/api/workloads/h100/windows?from={}&to={}", run.base, scenario::FROM, scenario::TO);
    let w: serde_json::Value = http.get(&url).header(auth.0, auth.1).send().await.unwrap().json().await.unwrap();
    assert!((w["windows"][0]["revenue_usd"].as_f64().unwrap() - 4.0).abs() < 1e-9, "{w}");
}

/// Complete windows are served from the store, not recomputed: a stored value
/// changed by hand is what the API and `report` answer, until the workload's
/// config changes (then the window is computed again, and the scheduled run
/// rewrites it with the new config's hash); `Windows::Recompute` ignores the store.
#[tokio::test]
async fn windows_are_served_from_the_store_until_the_config_changes() {
    let end_s = scenario::T0_S + scenario::MINUTES * 60;
    let now = (end_s + 30) * S;
    let run = start(API, now).await;
    let points =
        wattledger::ship::lineproto::parse(&scenario::line_protocol(), wattledger::ship::lineproto::Precision::S)
            .unwrap();
    run.store.write(&points).await.unwrap();
    run.agg.run_once(now).await.unwrap();
    let (from, to) = (scenario::T0_S * S, (scenario::T0_S + 7200) * S);
    let h100 = |r: &wattledger::aggregate::compare::Report| {
        r.workloads.iter().find(|w| w.workload == "h100").unwrap().revenue_usd
    };
    let stored = run.agg.report(from, to, Windows::Stored { write_back: false }).await.unwrap();
    assert!((h100(&stored) - 7.0).abs() < 1e-9, "{stored:?}");

    // Overwrite hour 1's stored revenue (the same series and time: fields merge).
    let tampered = wattledger::model::Point::new("workload_efficiency", scenario::T0_S * S)
        .tag("site", "s1")
        .tag("workload", "h100")
        .tag("kind", "ai_contract")
        .tag("window", "1h")
        .field("revenue_usd", 103.0);
    run.store.write(&[tampered]).await.unwrap();
    let served = run.agg.report(from, to, Windows::Stored { write_back: false }).await.unwrap();
    assert!((h100(&served) - 107.0).abs() < 1e-9, "served from the store: {served:?}");
    let (_, windows) = run.agg.workload_windows("h100", from, to, Windows::Stored { write_back: true }).await.unwrap();
    assert!((windows[0].revenue_usd - 103.0).abs() < 1e-9);
    let recomputed = run.agg.report(from, to, Windows::Recompute).await.unwrap();
    assert!((h100(&recomputed) - 7.0).abs() < 1e-9, "{recomputed:?}");

    // The same store under a config with another GPU-hour price: the stored
    // windows' hash no longer matches, so they are computed again ($3/GPU-hour
    // instead of $2: 3.5 GPU-hours × 3 = 10.5), and the scheduled run rewrites them.
    let toml = scenario::config("kind = \"embedded\"\npath = \"unused.db\"", API);
    assert!(toml.contains("usd_per_gpu_hour = 2.0"), "the scenario's h100 price");
    let cfg: AggregatorConfig = wattledger::config::from_str(
        &toml.replace("usd_per_gpu_hour = 2.0", "usd_per_gpu_hour = 3.0"),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let changed = Aggregator::new(cfg, run.store.clone(), run.clock.clone()).unwrap();
    let after = changed.report(from, to, Windows::Stored { write_back: false }).await.unwrap();
    assert!((h100(&after) - 10.5).abs() < 1e-9, "{after:?}");
    let stats = changed.run_once(now).await.unwrap();
    assert!(stats.windows_written >= 2, "{stats:?}");
    let (_, windows) = changed.workload_windows("h100", from, to, Windows::Stored { write_back: false }).await.unwrap();
    assert!((windows[0].revenue_usd - 4.5).abs() < 1e-9, "rewritten with the new terms: {windows:?}");
}

/// The partial current window is computed once and served again to requests
/// within `live_window_max_age` (10 s by default); a write through the ingest, or
/// the age passing, has it computed again.
#[tokio::test]
async fn the_live_window_is_served_again_until_it_ages_or_points_are_ingested() {
    let now = (scenario::T0_S + 5400) * S;
    let run = start(API, now).await;
    let points =
        wattledger::ship::lineproto::parse(&scenario::line_protocol(), wattledger::ship::lineproto::Precision::S)
            .unwrap();
    run.store.write(&points).await.unwrap();
    let http = reqwest::Client::new();
    let h100_j = || async {
        let r = http.get(format!("{}/api/workloads?token=s3cret", run.base)).send().await.unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        let w = v["workloads"].as_array().unwrap().iter().find(|w| w["workload"] == "h100").unwrap().clone();
        w["energy_j"].as_f64().unwrap()
    };
    let first = h100_j().await;
    // A GPU at 500 W for 10 minutes of the live hour, written to the store
    // directly (as agents writing to InfluxDB do): the kept window stands.
    let extra = |t0: i64| -> Vec<wattledger::model::Point> {
        (0..=60)
            .map(|i| {
                wattledger::model::Point::new("gpu", (t0 + i * 10) * S)
                    .tag("site", "s1")
                    .tag("host", "rig9")
                    .tag("uuid", format!("GPU-LIVE-{t0}"))
                    .tag("workload", "h100")
                    .field("power_w", 500.0)
                    .field("status", "ok")
            })
            .collect()
    };
    // What computing it now gives, for the API's default range.
    let recomputed = || async {
        let to = run.clock.now_ns();
        let from = (to - 86_400 * S).div_euclid(3600 * S) * 3600 * S;
        let r = run.agg.report(from, to, Windows::Recompute).await.unwrap();
        r.workloads.iter().find(|w| w.workload == "h100").unwrap().energy_j
    };
    run.store.write(&extra(scenario::T0_S + 4200)).await.unwrap();
    run.clock.0.fetch_add(5 * S, Ordering::SeqCst);
    assert_eq!(h100_j().await, first, "served again 5 s later");
    // The GPU's 300 kJ, and 5 s more of the two H100s at 700 W.
    assert!((recomputed().await - first - 300_000.0 - 7000.0).abs() < 1e-6);
    // 11 s after it was computed: computed again.
    run.clock.0.fetch_add(6 * S, Ordering::SeqCst);
    let aged = h100_j().await;
    assert!((aged - recomputed().await).abs() < 1e-6, "{aged}");
    assert!((aged - first - 300_000.0 - 15_400.0).abs() < 1e-6, "{aged} vs {first}");
    // Points through the ingest drop the kept window at once.
    let lines = wattledger::ship::lineproto::encode_batch(&extra(scenario::T0_S + 4800)).unwrap();
    let r = http
        .post(format!("{}/write?db=x&precision=ns", run.base))
        .header("Authorization", "Token s3cret")
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let ingested = h100_j().await;
    assert!((ingested - aged - 300_000.0).abs() < 1e-6, "{ingested} vs {aged}");
    assert!((ingested - recomputed().await).abs() < 1e-6);
}

/// Serves the recorded market API answers on loopback.
async fn market_server() -> (String, tokio::sync::oneshot::Sender<()>) {
    use axum::routing::get;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/market");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let (prices, hashrate, rewards) =
        (read("prices.json"), read("mining-hashrate-3d.json"), read("mining-reward-stats-100.json"));
    let app = axum::Router::new()
        .route("/api/v1/prices", get(move || async move { prices }))
        .route("/api/v1/mining/hashrate/3d", get(move || async move { hashrate }))
        .route("/api/v1/mining/reward-stats/100", get(move || async move { rewards }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (url, tx)
}

#[tokio::test]
async fn market_data_over_http_is_stored_used_and_flagged_when_stale() {
    let (url, _stop_market) = market_server().await;
    const PRICE_TIME_S: i64 = 1_703_252_411; // `time` in prices.json
    let run = start(API, (PRICE_TIME_S + 600) * S).await;
    // Switch the scenario's static market to the http source.
    let toml = scenario::config("kind = \"embedded\"\npath = \"unused.db\"", "")
        .replace(
            "source = \"static\"\nbtc_usd = 100000.0\ndifficulty = 1e14\nblock_subsidy_btc = 3.125\nfees_btc_per_block = 0.125",
            &format!("source = \"http\"\nurl = \"{url}\"\nfee_blocks = 100\nmax_age = \"2h\"\nrefresh = \"10m\""),
        );
    let cfg: AggregatorConfig = wattledger::config::from_str(&toml, std::path::Path::new("t.toml")).unwrap();
    let agg = Aggregator::new(cfg, run.store.clone(), run.clock.clone()).unwrap();
    assert!(agg.refresh_market(run.clock.now_ns()).await.unwrap(), "first refresh fetches");
    assert!(!agg.refresh_market(run.clock.now_ns() + 60 * S).await.unwrap(), "not due again within `refresh`");
    assert_eq!(count_rows(run.store.as_ref(), "market", &["btc_usd"]).await, 1);

    // Miner m1 alone, shifted to just after the price time: 60 minutes at
    // +2.8e6 accepted difficulty per minute = 168e6.
    // Payout per unit: (6.25 + 1,311,748,254 sat / 100 blocks / 1e8) × $43,753
    // / 31,251,101,365,711.12.
    let t0 = PRICE_TIME_S - PRICE_TIME_S % 3600 + 3600;
    let mut lines = String::new();
    for i in 0..=60 {
        lines += &format!(
            "asic,site=s1,host=rig1,miner=m1,workload=btc power_w=3000,hashrate_ths=200,diff_accepted={} {}\n",
            i as f64 * 2.8e6,
            t0 + i * 60
        );
    }
    let points = wattledger::ship::lineproto::parse(&lines, wattledger::ship::lineproto::Precision::S).unwrap();
    run.store.write(&points).await.unwrap();
    let usd_per_diff = (6.25 + 1_311_748_254.0 / 100.0 / 1e8) * 43_753.0 / 31_251_101_365_711.12;
    let fresh = agg.report(t0 * S, (t0 + 3600) * S, Windows::Recompute).await.unwrap();
    let btc = fresh.workloads.iter().find(|w| w.workload == "btc").unwrap();
    assert!((btc.revenue_usd - 168e6 * usd_per_diff).abs() < 1e-12, "{btc:?}");
    assert!(fresh.warnings.is_empty(), "{:?}", fresh.warnings);

    // Three hours later the same snapshot is older than max_age (2 h): still
    // used, and flagged.
    let later = agg.report((t0 + 3 * 3600) * S, (t0 + 4 * 3600) * S, Windows::Recompute).await.unwrap();
    assert!(later.warnings.iter().any(|w| w.contains("stale")), "{:?}", later.warnings);
    // Before any market data: flagged as missing, no revenue invented.
    let before = agg.report((t0 - 30 * 86_400) * S, (t0 - 30 * 86_400 + 3600) * S, Windows::Recompute).await.unwrap();
    assert!(before.warnings.iter().any(|w| w.contains("no market data")), "{:?}", before.warnings);

    // The overlay's prices: the stored snapshot in effect at the range's start,
    // drawn from there; none before the first snapshot.
    let p = agg.prices(t0 * S, (t0 + 3600) * S).await.unwrap();
    assert_eq!(p.market_source, "http");
    assert_eq!(p.market.len(), 1, "{p:?}");
    assert_eq!(p.market[0].time, wattledger::aggregate::rfc3339(t0 * S));
    assert_eq!(p.market[0].btc_usd, 43_753.0);
    let hashprice = 1e15 * 86_400.0 / 4_294_967_296.0 * usd_per_diff;
    assert!((p.market[0].hashprice_usd_per_phs_day - hashprice).abs() < 1e-9, "{p:?}");
    let p = agg.prices((t0 - 30 * 86_400) * S, (t0 - 30 * 86_400 + 3600) * S).await.unwrap();
    assert!(p.market.is_empty() && p.market_source == "http", "{p:?}");
}

/// Ingest answers for what hostile or careless clients send: every gzip member is
/// read, points no store can keep are a 400 naming the line (not a 503 retried
/// forever), per-line limits and the store's series limit refuse the batch whole.
#[tokio::test]
async fn ingest_refuses_what_cannot_be_stored_and_reads_every_gzip_member() {
    let api = "[api]\nwrite_token = \"w\"\nread_token = \"r\"\ningest = true\nmax_tag_value_bytes = 64\n";
    let run = start(api, scenario::T0_S * S).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v2/write?org=o&bucket=b&precision=s", run.base);
    let post = |body: Vec<u8>, gz: bool| {
        let mut r = http.post(&url).header("Authorization", "Token w").body(body);
        if gz {
            r = r.header("Content-Encoding", "gzip");
        }
        r.send()
    };

    // Two gzip members, as `cat a.gz b.gz` makes: both are written.
    let mut two = gzip(b"multi,host=a v=1 1795132800\n");
    two.extend(gzip(b"multi,host=a v=2 1795132860\n"));
    let r = post(two, true).await.unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert_eq!(count_rows(run.store.as_ref(), "multi", &["v"]).await, 2, "the second gzip member was dropped");

    // A tab or a double backslash in a tag value: 400 with the line, nothing written.
    for bad in ["tabbed,host=a\tb v=1 1795132800\n", "slashed,host=a\\\\\\\\b v=1 1795132800\n"] {
        let body = format!("fine,host=a v=1 1795132800\n{bad}");
        let r = post(body.into_bytes(), false).await.unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
        let msg = r.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap().to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }
    // A control character in a measurement name, as InfluxDB 2 refuses it.
    let r = post(b"ctl\x01,host=a v=1 1795132800\n".to_vec(), false).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(count_rows(run.store.as_ref(), "fine", &["v"]).await, 0);

    // A tag value past max_tag_value_bytes.
    let r = post(format!("long,host={} v=1 1795132800\n", "x".repeat(65)).into_bytes(), false).await.unwrap();
    assert_eq!(r.status(), 400);
    let msg = r.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("more than the limit of 64"), "{msg}");

    // The read token does not open the ingest; the write token does not open the API.
    let r = http.post(&url).header("Authorization", "Token r").body("m v=1 1795132800\n").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let api_url = format!("{}/api/fleet", run.base);
    assert_eq!(http.get(&api_url).header("Authorization", "Token w").send().await.unwrap().status(), 401);
    assert_eq!(http.get(&api_url).header("Authorization", "Token r").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn series_past_the_store_limit_are_refused_with_422() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wl.db");
    let toml = scenario::config(
        &format!("kind = \"embedded\"\npath = {:?}\nmax_series = 10", db.display().to_string()),
        "[api]\ningest = true\nwrite_token = \"w\"\n",
    );
    let cfg: AggregatorConfig = wattledger::config::from_str(&toml, std::path::Path::new("test.toml")).unwrap();
    let store = wattledger::store::open_store(&cfg.store).await.unwrap();
    let agg = Arc::new(Aggregator::new(cfg, store.clone(), Arc::new(TestClock(AtomicI64::new(0)))).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/write?precision=s", listener.local_addr().unwrap());
    tokio::spawn(wattledger::web::serve(listener, AppState::new(agg).unwrap(), std::future::pending()));
    let http = reqwest::Client::new();
    let lines =
        |from: usize, to: usize| (from..to).map(|i| format!("card,host=h{i} v=1 1795132800\n")).collect::<String>();
    let post = |body: String| http.post(&url).header("Authorization", "Token w").body(body).send();
    assert_eq!(post(lines(0, 8)).await.unwrap().status(), 204);
    let r = post(lines(8, 12)).await.unwrap();
    assert_eq!(r.status(), 422);
    let msg = r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("max-series-per-database limit exceeded: (10)"), "{msg}");
    // Nothing of the refused batch was written; known series still are.
    assert_eq!(count_rows(store.as_ref(), "card", &["v"]).await, 8);
    assert_eq!(post(lines(0, 10)).await.unwrap().status(), 204);
    assert_eq!(count_rows(store.as_ref(), "card", &["v"]).await, 10);
    assert_eq!(post(lines(10, 11)).await.unwrap().status(), 422);
}

/// A range that used to overflow the window loop (and take the process down) is
/// a 400; so is one longer than 400 days.
#[tokio::test]
async fn unbounded_ranges_are_refused() {
    let run = start("[api]\n", scenario::T0_S * S).await;
    let http = reqwest::Client::new();
    for (from, to, want) in [
        ("2262-04-11T23:00:00Z", "2262-04-11T23:47:16.854775807Z", "1678 to 2262"),
        ("2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "longer than 400 days"),
    ] {
        for path in ["/api/workloads", "/api/workloads/btc/windows", "/api/workloads.csv", "/api/prices"] {
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                http.get(format!("{}{path}?from={from}&to={to}", run.base)).send(),
            )
            .await
            .expect("the API answers at once")
            .unwrap();
            assert_eq!(r.status(), 400, "{path} {from}..{to}");
            let msg = r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_string();
            assert!(msg.contains(want), "{msg}");
        }
    }
    assert_eq!(http.get(format!("{}/api/health", run.base)).send().await.unwrap().status(), 200);
}

/// A write body that trickles in is cut off at `[api] body_timeout` with a 408.
#[tokio::test]
async fn a_body_that_never_finishes_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let run = start("[api]\ntoken = \"t\"\ningest = true\nbody_timeout = \"300ms\"\n", scenario::T0_S * S).await;
    let addr = run.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /write HTTP/1.1\r\nhost: x\r\nauthorization: Token t\r\ncontent-length: 1000\r\n\r\nm v=1")
        .await
        .unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut answer))
        .await
        .expect("answered within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
}

/// The page's drill-down, overlay and export over the hand-computed scenario: a
/// device's history sums to its share of the workload, prices are the configured
/// market and tariff, the CSV holds the JSON's numbers, and the fleet carries the
/// latest readings (absent ones `null`) and the GPU idle flag.
#[tokio::test]
async fn device_history_prices_csv_and_fleet_readings() {
    let end_s = scenario::T0_S + scenario::MINUTES * 60;
    let run = start(&API.replace("65536", "1000000"), (end_s + 30) * S).await;
    let http = reqwest::Client::new();
    let auth = ("Authorization", "Token s3cret");
    // Two more GPUs at the last minute: one idle at 300 W and 3 %, one busy; and a
    // miner that reports temperature, fans and uptime.
    let mut lines = scenario::line_protocol();
    lines += &format!("gpu,site=s1,host=rig9,gpu=0,uuid=GPU-9,model=H100,workload=h100 power_w=300,util_gpu_pct=3,temp_c=61,status=\"ok\" {end_s}\n");
    lines += &format!("gpu,site=s1,host=rig9,gpu=1,uuid=GPU-8,model=H100,workload=h100 power_w=300,util_gpu_pct=80,status=\"ok\" {end_s}\n");
    lines += &format!("asic,site=s1,host=rig8,miner=m8,model=S9,workload=btc power_w=1400,hashrate_ths=14,temp_c_max=71.5,fan_rpm_avg=5400,uptime_s=86400i,pool_url=\"stratum+tcp://pool.example:3333\",pool_user=\"acct.m8\",pool_alive=false,online=true {end_s}\n");
    let r = http
        .post(format!("{}/api/v2/write?precision=s", run.base))
        .header(auth.0, auth.1)
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let get = |path: String| {
        let http = http.clone();
        let base = run.base.clone();
        async move { http.get(format!("{base}{path}")).header(auth.0, auth.1).send().await.unwrap() }
    };
    let json = |path: String| async move {
        let r = get(path.clone()).await;
        assert_eq!(r.status(), 200, "{path}");
        r.json::<serde_json::Value>().await.unwrap()
    };
    let range = format!("from={}&to={}", scenario::FROM, scenario::TO);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let sum = |h: &serde_json::Value, k: &str| {
        h["points"].as_array().unwrap().iter().filter_map(|p| p[k].as_f64()).sum::<f64>()
    };

    // m1: 3000 W at 200 TH/s for 2 h in one-minute buckets; its revenue is its own
    // accepted difficulty (168e6 + 166.6e6, the reboot counted) at 3.25e-9 $ each.
    let h = json(format!("/api/devices/history?device=rig1/m1&{range}")).await;
    assert_eq!(
        (&h["kind"], &h["workload"], &h["model"], &h["revenue"]),
        (&"asic".into(), &"btc".into(), &"bitcoin_fpps".into(), &"per_device".into()),
        "{h}"
    );
    assert_eq!(h["bucket_s"], 60);
    let points = h["points"].as_array().unwrap();
    assert_eq!(points.len(), 120);
    assert_eq!(points[0]["start"], scenario::FROM);
    assert!(close(sum(&h, "energy_j"), 3000.0 * 7200.0), "{}", sum(&h, "energy_j"));
    assert!(close(sum(&h, "revenue_usd"), (168e6 + 166.6e6) * 3.25e-9), "{}", sum(&h, "revenue_usd"));
    for p in points {
        assert!(
            close(p["power_w"].as_f64().unwrap(), 3000.0) && p["j_per_th"] == 15.0 && p["hashrate_ths"] == 200.0,
            "{p}"
        );
        assert!(p["util_gpu_pct"].is_null(), "{p}");
    }
    // GPU-1 is silent from minute 31 to 59: those buckets are gaps, not 0 W; its
    // revenue is its 1.5 healthy hours at $2.
    let h = json(format!("/api/devices/history?device=rig2/GPU-1&{range}")).await;
    let points = h["points"].as_array().unwrap();
    assert!(points[31..59].iter().all(|p| p["power_w"].is_null() && p["revenue_usd"].is_null()), "{}", points[40]);
    assert!(close(points[10]["power_w"].as_f64().unwrap(), 700.0));
    assert!(close(sum(&h, "energy_j"), 3.78e6) && close(sum(&h, "revenue_usd"), 3.0), "{h}");
    // GPU-2 works for an ai_tokens workload: paid on the server's tokens, so no
    // per-GPU revenue, and the answer says why.
    let h = json(format!("/api/devices/history?device=rig3/GPU-2&{range}")).await;
    assert_eq!(h["revenue"], "workload_only");
    assert!(h["points"].as_array().unwrap().iter().all(|p| p["revenue_usd"].is_null()));
    assert!(close(sum(&h, "energy_j"), 2.88e6));
    assert!(h["notes"][0].as_str().unwrap().contains("per workload only"), "{h}");
    // Bad requests are clear 4xx answers.
    for (path, status, want) in [
        (format!("/api/devices/history?{range}"), 400, "`device` is missing"),
        (format!("/api/devices/history?device=rig1/nope&{range}"), 404, "no GPU or miner"),
        (format!("/api/devices/history?device=rig3/vllm-a&{range}"), 404, "inference server"),
        (
            "/api/devices/history?device=rig1/m1&from=2026-10-01T00:00:00Z&to=2026-11-20T00:00:00Z".into(),
            400,
            "31 days",
        ),
        ("/api/prices?from=2026-10-01T00:00:00Z&to=2026-11-20T00:00:00Z".into(), 400, "31 days"),
        ("/api/devices/history?device=rig1/m1&from=later".into(), 400, "RFC 3339"),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status(), status, "{path}");
        let msg = r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{path}: {msg}");
    }
    // A miner whose workload tag names no workload: power and J/TH from its samples,
    // no revenue, and the note says why.
    let r = http
        .post(format!("{}/api/v2/write?precision=s", run.base))
        .header(auth.0, auth.1)
        .body(format!(
            "asic,site=s1,host=rig7,miner=m7,workload=btc-hostd power_w=1500,hashrate_ths=100,online=true {end_s}\n"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h =
        json(format!("/api/devices/history?device=rig7/m7&from={}&to={}", scenario::TO, "2026-11-20T02:05:00Z")).await;
    assert_eq!((&h["revenue"], &h["model"]), (&"no_workload".into(), &serde_json::Value::Null), "{h}");
    assert!(h["notes"][0].as_str().unwrap().contains("\"btc-hostd\" is not configured"), "{h}");
    let first = &h["points"][0];
    assert_eq!(
        (&first["power_w"], &first["j_per_th"], &first["revenue_usd"]),
        (&1500.0.into(), &15.0.into(), &serde_json::Value::Null),
        "{h}"
    );
    assert!(first["energy_j"].is_null(), "energy needs the workload's rules: {h}");
    let r = http.get(format!("{}/api/devices/history?device=rig1/m1", run.base)).send().await.unwrap();
    assert_eq!(r.status(), 401, "behind the read token");

    // Prices: the static market at both ends of the range, and site s1's flat tariff.
    let p = json(format!("/api/prices?{range}")).await;
    assert_eq!(p["market_source"], "static");
    let market = p["market"].as_array().unwrap();
    assert_eq!(market.len(), 2);
    assert_eq!((&market[0]["time"], &market[1]["time"]), (&scenario::FROM.into(), &scenario::TO.into()));
    assert_eq!(market[0]["btc_usd"], 100_000.0);
    let hashprice = 1e15 * 86_400.0 / (1e14 * 4_294_967_296.0) * 3.25 * 100_000.0;
    assert!(close(market[0]["hashprice_usd_per_phs_day"].as_f64().unwrap(), hashprice), "{p}");
    assert_eq!(
        p["tariffs"],
        serde_json::json!([{"site": "s1", "averaged": false, "warning": null,
        "steps": [{"start": scenario::FROM, "end": scenario::TO, "usd_per_kwh": 0.05}]}])
    );

    // CSV: the documented columns, the JSON's rows in rank order and its numbers.
    let r = get(format!("/api/workloads.csv?{range}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("wattledger-workloads-2026-11-20T000000Z"));
    let csv = r.text().await.unwrap();
    let report = json(format!("/api/workloads?{range}")).await;
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], wattledger::aggregate::compare::CSV_COLUMNS);
    let workloads = report["workloads"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + workloads.len(), "{csv}");
    for (row, w) in rows[1..].iter().zip(workloads) {
        assert_eq!(row[1], w["workload"].as_str().unwrap());
        for (col, name) in wattledger::aggregate::compare::CSV_COLUMNS.iter().enumerate().skip(5) {
            match &w[*name] {
                // The JSON is read after the CSV's call stored the windows: the same
                // numbers, summed from stored windows, may differ in the last digit.
                serde_json::Value::Number(v) => {
                    let v = v.as_f64().unwrap();
                    assert!(close(row[col].parse::<f64>().unwrap(), v), "{name}: {} vs {v}", row[col])
                }
                serde_json::Value::String(v) => assert_eq!(row[col], v, "{name}"),
                other => assert_eq!((row[col], other), ("", &serde_json::Value::Null), "{name}"),
            }
        }
    }
    assert_eq!(rows[3][15], "15", "btc's J/TH");

    // Fleet: readings a device did not send are null, never 0; the idle flag follows
    // the gpu_idle_burn alert's defaults (over 150 W at under 10 %).
    let fleet = json("/api/fleet".into()).await;
    assert_eq!(fleet["idle_rule"], serde_json::json!({"power_above_w": 150.0, "util_below_pct": 10.0}));
    let dev = |id: &str| fleet["devices"].as_array().unwrap().iter().find(|d| d["device"] == id).unwrap().clone();
    let (idle, busy, plain) = (dev("rig9/GPU-9"), dev("rig9/GPU-8"), dev("rig2/GPU-0"));
    assert_eq!(
        (&idle["idle"], &idle["util_gpu_pct"], &idle["temp_c"]),
        (&true.into(), &3.0.into(), &61.0.into()),
        "{idle}"
    );
    assert_eq!(busy["idle"], false);
    assert!(busy["temp_c"].is_null() && plain["idle"].is_null() && plain["util_gpu_pct"].is_null(), "{plain}");
    let (m8, m1) = (dev("rig8/m8"), dev("rig1/m1"));
    assert_eq!(
        (&m8["temp_c"], &m8["fan_rpm"], &m8["uptime_s"], &m8["hashrate_ths"]),
        (&71.5.into(), &5400.0.into(), &86400.0.into(), &14.0.into()),
        "{m8}"
    );
    assert!(m8["idle"].is_null() && m8["util_gpu_pct"].is_null());
    assert_eq!(m1["hashrate_ths"], 200.0);
    assert!(m1["temp_c"].is_null() && m1["fan_rpm"].is_null() && m1["uptime_s"].is_null(), "{m1}");
    // The pool (string fields, so read beside the numeric tracks), null where not sent.
    assert_eq!(
        (&m8["pool_url"], &m8["pool_user"], &m8["pool_alive"]),
        (&"stratum+tcp://pool.example:3333".into(), &"acct.m8".into(), &false.into()),
        "{m8}"
    );
    assert!(m1["pool_url"].is_null() && m1["pool_user"].is_null() && m1["pool_alive"].is_null(), "{m1}");
    assert!(idle["pool_url"].is_null(), "{idle}");
}
