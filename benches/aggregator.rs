//! Aggregator benchmark: one day of 1-hour windows for a fleet of miners (30 s
//! samples) and GPUs (1 s samples), computed by `wattledger report` from the
//! embedded store and from a private influxd, with the time and peak memory of
//! each, beside the time influxd itself takes for the equivalent energy query
//! (`integral(power_w)` per series and hour).
//!
//! Then the windows served from the store, side by side with recomputing them:
//! one scheduled pass writes the range's windows (timed), `report` reads them back
//! (wall and CPU, beside `report --recompute`, today's raw path), and 50
//! `GET /api/workloads` over the last 24 h (default range) at a moment half-way
//! through the last hour, so the partial current window is computed live from 30
//! minutes of raw samples, beside the same comparison recomputed in full.
//!
//! Run: `cargo bench --bench aggregator` (needs `WATTLEDGER_TEST_INFLUXD_BIN`; see
//! `.ci/servers.sh`). Scale with `WL_BENCH_MINERS` (2000), `WL_BENCH_GPUS` (512),
//! `WL_BENCH_HOURS` (24), `WL_BENCH_GPU_INTERVAL_S` (1), `WL_BENCH_MINER_INTERVAL_S`
//! (30); `WL_BENCH_DIR` keeps the generated data between runs; `WL_BENCH_SKIP_INFLUX=1`
//! benchmarks the embedded store only.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wattledger::model::Point;
use wattledger::store::embedded::EmbeddedStore;

const T0_S: i64 = 1_795_132_800; // 2026-11-20T00:00:00Z

fn env_num(key: &str, default: i64) -> i64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Scale {
    miners: i64,
    gpus: i64,
    hours: i64,
    gpu_every_s: i64,
    miner_every_s: i64,
}

/// The points of `[from_s, to_s)`, GPUs then miners, deterministic.
fn points(scale: &Scale, from_s: i64, to_s: i64, out: &mut Vec<Point>) {
    for g in 0..scale.gpus {
        let mut t = from_s - (from_s - T0_S).rem_euclid(scale.gpu_every_s);
        while t < to_s {
            let k = t - T0_S;
            // Steady power per GPU, and the energy counter rising with it, so the
            // counter-based energy and influxd's integral(power_w) agree.
            let power = 680.0 + ((g * 13) % 40) as f64;
            let energy = 1.0e9 + g as f64 * 1e6 + k as f64 * power;
            out.push(
                Point::new("gpu", t * 1_000_000_000)
                    .tag("site", "bench")
                    .tag("host", format!("rig-{:03}", g / 8))
                    .tag("gpu", (g % 8).to_string())
                    .tag("uuid", format!("GPU-{g:05}"))
                    .tag("model", "H100")
                    .tag("workload", "h100")
                    .field("power_w", power)
                    .field("energy_j", energy)
                    .field("status", "ok"),
            );
            t += scale.gpu_every_s;
        }
    }
    for m in 0..scale.miners {
        let mut t = from_s - (from_s - T0_S).rem_euclid(scale.miner_every_s);
        while t < to_s {
            let k = t - T0_S;
            let hashrate = 195.0 + ((k / 30 + m) % 10) as f64;
            out.push(
                Point::new("asic", t * 1_000_000_000)
                    .tag("site", "bench")
                    .tag("host", "agent-1")
                    .tag("miner", format!("10.0.{}.{}", m / 250, m % 250))
                    .tag("model", "S21")
                    .tag("workload", "btc")
                    .field("power_w", 3500.0 + (m % 50) as f64)
                    .field("hashrate_ths", hashrate)
                    .field("diff_accepted", k as f64 * 200e12 / 4_294_967_296.0)
                    .field("online", true),
            );
            t += scale.miner_every_s;
        }
    }
}

fn config(store: &str, hours: i64) -> String {
    format!(
        r#"[store]
{store}

[aggregator]
late_data_lookback = "{hours}h"

[api]
token = "bench"

[sites.bench]
pue = 1.1
energy_usd_per_kwh = 0.05

[market]
source = "static"
btc_usd = 100000.0
difficulty = 1.1e14
block_subsidy_btc = 3.125
fees_btc_per_block = 0.05

[[workloads]]
name = "btc"
model = "bitcoin_fpps"
pool_fee = 0.02

[[workloads]]
name = "h100"
model = "ai_contract"
usd_per_gpu_hour = 2.0
"#
    )
}

/// Runs the release `wattledger report` under `/usr/bin/time`: wall seconds,
/// peak RSS in MiB, and the JSON.
fn timed_report(config: &Path, from: &str, to: &str) -> Result<(f64, f64, serde_json::Value), String> {
    timed_report_args(config, from, to, &["--recompute"]).map(|(wall, _, rss, json)| (wall, rss, json))
}

/// [`timed_report`] with extra arguments: wall seconds, user+system CPU seconds,
/// peak RSS in MiB, and the JSON.
fn timed_report_args(
    config: &Path,
    from: &str,
    to: &str,
    extra: &[&str],
) -> Result<(f64, f64, f64, serde_json::Value), String> {
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M %U %S"])
        .arg(env!("CARGO_BIN_EXE_wattledger"))
        .args(["report", "--format", "json", "--from", from, "--to", to])
        .args(extra)
        .arg("--config")
        .arg(config)
        .output()
        .map_err(|e| format!("cannot run /usr/bin/time: {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(stderr.into_owned());
    }
    let last = stderr.lines().last().unwrap_or_default();
    let col = |i: usize| -> f64 { last.split_whitespace().nth(i).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN) };
    let json = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok((wall, col(2) + col(3), col(1) / 1024.0, json))
}

struct FixedClock(i64);

impl wattledger::model::Clock for FixedClock {
    fn now_ns(&self) -> i64 {
        self.0
    }
}

fn energy_of(json: &serde_json::Value) -> f64 {
    json["workloads"].as_array().map_or(0.0, |w| w.iter().filter_map(|w| w["energy_j"].as_f64()).sum())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The stored-window cases on one store (see the module doc).
async fn stored_window_cases(label: &str, cfg_path: &Path, from_s: i64, to_s: i64) {
    use std::sync::Arc;
    use wattledger::aggregate::{Aggregator, Windows};
    let from = rfc(from_s);
    let cfg = wattledger::aggregate::config::AggregatorConfig::load(cfg_path).unwrap();
    let store = wattledger::store::open_store(&cfg.store).await.unwrap();
    // Half-way through the last hour: that hour is the partial, live one.
    let now_ns = (to_s - 1800) * 1_000_000_000;
    let agg = Arc::new(Aggregator::new(cfg, store, Arc::new(FixedClock(now_ns))).unwrap());
    let t = Instant::now();
    let stats = agg.run_once(now_ns).await.unwrap();
    println!(
        "  {label}: one scheduled pass writes {} windows: {:.2} s (computed once)",
        stats.windows_written,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let again = agg.run_once(now_ns).await.unwrap();
    println!(
        "  {label}: the next pass (late-data check, {} rewritten): {:.2} s",
        again.windows_written,
        t.elapsed().as_secs_f64()
    );
    // `report` over the complete hours: stored windows against --recompute.
    let done_to = rfc(to_s - 3600);
    for (name, extra) in [("stored windows", &[][..]), ("--recompute (raw path)", &["--recompute"][..])] {
        match timed_report_args(cfg_path, &from, &done_to, extra) {
            Ok((wall, cpu, mib, json)) => println!(
                "  {label}: report {from} .. {done_to}, {name:<24}: {wall:>7.2} s wall {cpu:>7.2} s CPU  peak RSS {mib:>6.1} MiB  energy {:.6e} J",
                energy_of(&json)
            ),
            Err(e) => println!("  {label}: report {name}: failed: {e}"),
        }
    }
    // The API: 50 requests of the default range (last 24 h) from the store.
    let state = wattledger::web::AppState::new(agg.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wattledger::web::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let mut ms = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let r = http.get(format!("{base}/api/workloads?token=bench")).send().await.unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
        let _ = r.bytes().await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "  {label}: GET /api/workloads (last 24 h, stored windows + live partial hour), 50 requests: p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms[ms.len() - 1]
    );
    let _ = stop.send(());
    // Peer: the same comparison recomputed from the raw samples (what every
    // request did before windows were served from the store).
    let day_from = (now_ns - 86_400_000_000_000).div_euclid(3_600_000_000_000) * 3_600_000_000_000;
    let mut peer = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        agg.report(day_from, now_ns, Windows::Recompute).await.unwrap();
        peer.push(t.elapsed().as_secs_f64() * 1e3);
    }
    peer.sort_by(f64::total_cmp);
    println!(
        "  {label}: peer, the same range recomputed from raw samples, 3 runs: median {:.1} ms  max {:.1} ms",
        peer[1], peer[2]
    );
}

struct Influxd {
    child: Child,
    url: String,
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_influxd(dir: &Path) -> Result<Influxd, String> {
    let bin = std::env::var("WATTLEDGER_TEST_INFLUXD_BIN").map_err(|_| {
        "WATTLEDGER_TEST_INFLUXD_BIN is not set; start the test servers with: eval \"$(bash .ci/servers.sh start)\""
            .to_string()
    })?;
    let (http, rpc) = (free_port(), free_port());
    let d = dir.join("influxd");
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    let conf = d.join("influxdb.conf");
    std::fs::write(
        &conf,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{0}/meta\"\n[data]\n  dir = \"{0}/data\"\n  wal-dir = \"{0}/wal\"\n  query-log-enabled = false\n  cache-max-memory-size = \"4g\"\n[monitor]\n  store-enabled = false\n[http]\n  enabled = true\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n  max-body-size = 0\n[logging]\n  level = \"warn\"\n",
            d.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .args(["-config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{http}");
    let server = Influxd { child, url };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("influxd did not start within 10 s".into())
}

async fn influx_query(http: &reqwest::Client, url: &str, db: &str, q: &str) -> Result<String, String> {
    let r = http
        .post(format!("{url}/query"))
        .form(&[("db", db), ("q", q), ("epoch", "s")])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() || body.contains("\"error\"") {
        return Err(format!("{q}: {status} {}", &body[..body.len().min(300)]));
    }
    Ok(body)
}

/// Sums every `integral` value in an InfluxQL answer.
fn sum_integrals(body: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut sum = 0.0;
    for r in v["results"].as_array().into_iter().flatten() {
        for s in r["series"].as_array().into_iter().flatten() {
            for row in s["values"].as_array().into_iter().flatten() {
                sum += row[1].as_f64().unwrap_or(0.0);
            }
        }
    }
    sum
}

fn rfc(s: i64) -> String {
    wattledger::aggregate::rfc3339(s * 1_000_000_000)
}

#[tokio::main]
async fn main() {
    let scale = Scale {
        miners: env_num("WL_BENCH_MINERS", 2000),
        gpus: env_num("WL_BENCH_GPUS", 512),
        hours: env_num("WL_BENCH_HOURS", 24),
        gpu_every_s: env_num("WL_BENCH_GPU_INTERVAL_S", 1),
        miner_every_s: env_num("WL_BENCH_MINER_INTERVAL_S", 30),
    };
    let skip_influx = std::env::var("WL_BENCH_SKIP_INFLUX").is_ok_and(|v| v == "1");
    let tmp;
    let dir: PathBuf = match std::env::var("WL_BENCH_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    let (from_s, to_s) = (T0_S, T0_S + scale.hours * 3600);
    let gpu_rows = scale.gpus * scale.hours * 3600 / scale.gpu_every_s;
    let asic_rows = scale.miners * scale.hours * 3600 / scale.miner_every_s;
    println!(
        "aggregator bench: {} miners @{} s, {} GPUs @{} s, {} h: {asic_rows} asic rows + {gpu_rows} gpu rows",
        scale.miners, scale.miner_every_s, scale.gpus, scale.gpu_every_s, scale.hours
    );

    // Load, one hour at a time (the generator never holds more than an hour).
    let db = dir.join("bench.db");
    let marker = dir.join(format!(
        "loaded-{}-{}-{}-{}-{}",
        scale.miners, scale.gpus, scale.hours, scale.gpu_every_s, scale.miner_every_s
    ));
    let influx = if skip_influx { None } else { Some(start_influxd(&dir).expect("influxd")) };
    let http = reqwest::Client::new();
    if let Some(s) = &influx {
        influx_query(&http, &s.url, "", "CREATE DATABASE bench").await.unwrap();
    }
    let need_embedded = !marker.exists();
    let (mut embedded_s, mut influx_s) = (0.0, 0.0);
    {
        let store = EmbeddedStore::open(&db).unwrap();
        let mut batch = Vec::new();
        for h in 0..scale.hours {
            batch.clear();
            points(&scale, from_s + h * 3600, from_s + (h + 1) * 3600, &mut batch);
            if need_embedded {
                let t = Instant::now();
                for chunk in batch.chunks(50_000) {
                    store.write_blocking(chunk).unwrap();
                }
                embedded_s += t.elapsed().as_secs_f64();
            }
            if let Some(s) = &influx {
                let t = Instant::now();
                for chunk in batch.chunks(100_000) {
                    let body = wattledger::ship::lineproto::encode_batch(chunk).unwrap();
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(body.as_bytes()).unwrap();
                    let r = http
                        .post(format!("{}/write?db=bench", s.url))
                        .header("Content-Encoding", "gzip")
                        .body(gz.finish().unwrap())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 204, "{:?}", r.text().await);
                }
                influx_s += t.elapsed().as_secs_f64();
            }
        }
    }
    std::fs::write(&marker, b"").unwrap();
    let rows = (gpu_rows + asic_rows) as f64;
    if need_embedded {
        println!("load embedded store: {embedded_s:.1} s ({:.0} rows/s)", rows / embedded_s);
    } else {
        println!("load embedded store: reused {}", db.display());
    }
    if influx.is_some() {
        println!(
            "load influxd (gzip line protocol, 100k-point batches): {influx_s:.1} s ({:.0} rows/s)",
            rows / influx_s
        );
    }

    let (from, to) = (rfc(from_s), rfc(to_s));
    println!("\n{} × 1 h windows, 2 workloads ({from} .. {to}):", scale.hours);
    let emb_cfg = dir.join("embedded.toml");
    std::fs::write(
        &emb_cfg,
        config(&format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()), scale.hours),
    )
    .unwrap();
    let mut energies = Vec::new();
    match timed_report(&emb_cfg, &from, &to) {
        Ok((s, mib, json)) => {
            let e: f64 = json["workloads"].as_array().unwrap().iter().map(|w| w["energy_j"].as_f64().unwrap()).sum();
            energies.push(("embedded", e));
            println!("  wattledger report, embedded store : {s:>7.2} s   peak RSS {mib:>7.1} MiB");
        }
        Err(e) => println!("  wattledger report, embedded store : failed: {e}"),
    }
    if let Some(s) = &influx {
        let cfg = dir.join("influx.toml");
        std::fs::write(
            &cfg,
            config(
                &format!("kind = \"influxdb\"\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"bench\"", s.url),
                scale.hours,
            ),
        )
        .unwrap();
        match timed_report(&cfg, &from, &to) {
            Ok((secs, mib, json)) => {
                let e: f64 =
                    json["workloads"].as_array().unwrap().iter().map(|w| w["energy_j"].as_f64().unwrap()).sum();
                energies.push(("influxd", e));
                println!("  wattledger report, influxd        : {secs:>7.2} s   peak RSS {mib:>7.1} MiB");
            }
            Err(e) => println!("  wattledger report, influxd        : failed: {e}"),
        }
        let t = Instant::now();
        let mut integral_j = 0.0;
        for m in ["gpu", "asic"] {
            let q = format!(
                "SELECT integral(power_w) FROM {m} WHERE time >= {from_s}s AND time < {to_s}s GROUP BY time(1h), *"
            );
            integral_j += sum_integrals(&influx_query(&http, &s.url, "bench", &q).await.unwrap());
        }
        println!(
            "  influxd integral(power_w) per series and hour (server side only): {:>7.2} s",
            t.elapsed().as_secs_f64()
        );
        energies.push(("influxd integral()", integral_j));
    }
    println!("\nenergy over the day (all workloads):");
    for (who, e) in energies {
        println!("  {who:<20} {:.6e} J", e);
    }

    println!("\nwindows served from the store:");
    stored_window_cases("embedded", &emb_cfg, from_s, to_s).await;
    if influx.is_some() {
        stored_window_cases("influxd", &dir.join("influx.toml"), from_s, to_s).await;
    }
}
