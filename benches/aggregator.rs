//! Aggregator benchmark: the issue-12 targets, each beside its peer, in one run.
//!
//! 1. **Fleet day** (2,000 miners @30 s + 512 GPUs @1 s, 24 h by default). Raw
//!    points are generated and fed, in time order, through the agent's own
//!    [`LedgerWriter`], so the `energy_ledger` points stored beside them are
//!    exactly what an agent that saw those samples would write. Both go into the
//!    embedded store and a private influxd 1.6. `wattledger report` (release
//!    binary, `--recompute` so stored windows are not read) runs with
//!    `--energy-from auto`, `ledger` and `raw` under `/usr/bin/time`: wall,
//!    user+system CPU, peak RSS. From influxd, beside influxd's own
//!    `SELECT integral(power_w) … GROUP BY time(1h), *` over the raw day.
//! 2. **Ledger rows ÷ raw rows** for the GPUs, counted from each store.
//! 3. **Windows served from the store**: one scheduled pass, the next one (the
//!    late-data check), `report` of stored windows beside `report --recompute`,
//!    and `GET /api/workloads` (last 24 h, at a moment half-way through the last
//!    hour, so the partial current hour is computed live) p50/p95 over
//!    `WL_BENCH_API_REQUESTS` (50) requests, beside the same range recomputed.
//! 4. **100 MW site day**: 30,000 miners @30 s + 8,000 GPUs @1 s, the agents'
//!    ledger only (no raw rows), `report` from the embedded store and influxd.
//!    Devices come in 40 GPU and 50 miner sample profiles (a device's samples
//!    depend only on its profile); one device of each profile is fed through
//!    the real [`LedgerWriter`] at its real sample rate, and every device's
//!    points are its profile's, with the device's own identity tags.
//!    `WL_BENCH_SITE_FRACTION` (1.0) scales both fleets.
//! 5. **Agent CPU with the ledger on and off**: read from the output of
//!    `bench/agent_footprint.sh` when `WL_BENCH_FOOTPRINT` names it
//!    (`bench/issue12.sh` runs both and passes it).
//!
//! Ends with one table: case, target, figure, peer, met or missed.
//!
//! Run: `bash bench/issue12.sh`, or `cargo bench --bench aggregator` (needs
//! `WATTLEDGER_TEST_INFLUXD_BIN`, or the influxd `.ci/servers.sh` unpacks into
//! `target/ci-packages`).
//! Knobs: `WL_BENCH_MINERS` (2000), `WL_BENCH_GPUS` (512), `WL_BENCH_HOURS` (24),
//! `WL_BENCH_GPU_INTERVAL_S` (1), `WL_BENCH_MINER_INTERVAL_S` (30),
//! `WL_BENCH_CASES` (`day,api,site`: which parts run), `WL_BENCH_SKIP_INFLUX=1`
//! (embedded store only), `WL_BENCH_INFLUX_RAW=1` (also `--energy-from raw` from
//! influxd: minutes), `WL_BENCH_API_REQUESTS` (50), `WL_BENCH_PEER_RUNS` (3) and
//! `WL_BENCH_API_BUDGET_S` (300: no new request or peer run after that long, per
//! store), `WL_BENCH_WRITERS` (4 concurrent
//! influxd writers), `WL_BENCH_DIR` (keeps the generated stores, and influxd's
//! data, between runs).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wattledger::ledger::writer::{LedgerConfig, LedgerWriter};
use wattledger::model::Point;
use wattledger::store::embedded::EmbeddedStore;
use wattledger::store::SeriesQuery;

const T0_S: i64 = 1_795_132_800; // 2026-11-20T00:00:00Z
const NS: i64 = 1_000_000_000;
/// Sample profiles: a device's samples depend only on `id % PROFILES`.
const GPU_PROFILES: i64 = 40;
const MINER_PROFILES: i64 = 50;
/// Raw samples go on this long past the range, as at an agent that keeps
/// running, so the range's last ledger interval is closed.
const TAIL_S: i64 = 60;

fn env_num(key: &str, default: i64) -> i64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_f64(key: &str, default: f64) -> f64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy)]
struct Scale {
    miners: i64,
    gpus: i64,
    hours: i64,
    gpu_every_s: i64,
    miner_every_s: i64,
}

impl Scale {
    fn label(&self) -> String {
        format!("fleet {} miners + {} GPUs × {} h", self.miners, self.gpus, self.hours)
    }

    /// The targets are for the full fleet and day; a smaller run is not judged.
    fn judged(&self, verdict: String) -> String {
        let full = self.miners >= 2000
            && self.gpus >= 512
            && self.hours >= 24
            && self.gpu_every_s <= 1
            && self.miner_every_s <= 30;
        if full {
            verdict
        } else {
            format!("not judged: smaller than the target's fleet day; {verdict}")
        }
    }
}

fn gpu_tags(g: i64) -> [(&'static str, String); 3] {
    [("host", format!("rig-{:04}", g / 8)), ("gpu", (g % 8).to_string()), ("uuid", format!("GPU-{g:05}"))]
}

fn miner_tags(m: i64) -> [(&'static str, String); 2] {
    [
        ("host", format!("miners-{:02}", m / 1000)),
        ("miner", format!("10.{}.{}.{}", m / 62_500, (m / 250) % 250, m % 250)),
    ]
}

fn gpu_point(g: i64, t: i64) -> Point {
    let (p, k) = (g % GPU_PROFILES, t - T0_S);
    // Steady power per profile and the energy counter rising with it, so the
    // counter-based energy and influxd's integral(power_w) agree.
    let power = 680.0 + p as f64;
    let energy = 1.0e9 + p as f64 * 1e6 + k as f64 * power;
    let mut pt = Point::new("gpu", t * NS)
        .tag("site", "bench")
        .tag("model", "H100")
        .tag("workload", "h100")
        .field("power_w", power)
        .field("energy_j", energy)
        .field("status", "ok");
    for (k, v) in gpu_tags(g) {
        pt.set_tag(k, v);
    }
    pt
}

fn miner_point(m: i64, t: i64) -> Point {
    let (p, k) = (m % MINER_PROFILES, t - T0_S);
    let hashrate = 195.0 + ((k / 30 + p) % 10) as f64;
    let mut pt = Point::new("asic", t * NS)
        .tag("site", "bench")
        .tag("model", "S21")
        .tag("power_source", "reported")
        .tag("workload", "btc")
        .field("power_w", 3500.0 + p as f64)
        .field("hashrate_ths", hashrate)
        .field("diff_accepted", k as f64 * 200e12 / 4_294_967_296.0)
        .field("online", true);
    for (k, v) in miner_tags(m) {
        pt.set_tag(k, v);
    }
    pt
}

/// The raw points of devices `0..gpus` and `0..miners` in `[from_s, to_s)`, in
/// time order (all devices' samples of one second, then the next second).
fn raw_points(scale: &Scale, gpus: i64, miners: i64, from_s: i64, to_s: i64, out: &mut Vec<Point>) {
    for t in from_s..to_s {
        if (t - T0_S) % scale.gpu_every_s == 0 {
            out.extend((0..gpus).map(|g| gpu_point(g, t)));
        }
        if (t - T0_S) % scale.miner_every_s == 0 {
            out.extend((0..miners).map(|m| miner_point(m, t)));
        }
    }
}

/// The agent's ledger writer, started long enough before `from_s` that the
/// first interval it writes is the one starting at `from_s`.
fn ledger_writer(from_s: i64) -> (LedgerWriter, LedgerConfig) {
    let cfg = LedgerConfig::default();
    let w = LedgerWriter::new(&cfg, from_s * NS - cfg.max_gap.as_nanos() as i64);
    (w, cfg)
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

/// One `wattledger report` run: wall, user+system CPU, peak RSS, the JSON.
struct Timed {
    wall_s: f64,
    cpu_s: f64,
    rss_mib: f64,
    json: serde_json::Value,
}

impl Timed {
    fn energy_j(&self) -> f64 {
        self.sum("energy_j")
    }
    fn ledger_share(&self) -> f64 {
        self.sum("ledger_energy_j") / self.energy_j()
    }
    fn sum(&self, key: &str) -> f64 {
        self.json["workloads"].as_array().map_or(0.0, |w| w.iter().filter_map(|w| w[key].as_f64()).sum())
    }
    fn line(&self) -> String {
        format!(
            "{:>7.2} s wall {:>7.2} s CPU  peak RSS {:>6.1} MiB  energy {:.9e} J ({:.1} % from the ledger)",
            self.wall_s,
            self.cpu_s,
            self.rss_mib,
            self.energy_j(),
            100.0 * self.ledger_share()
        )
    }
}

/// Runs the release `wattledger report` under `/usr/bin/time`.
fn timed_report(config: &Path, from: &str, to: &str, extra: &[&str]) -> Result<Timed, String> {
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
    let wall_s = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(stderr.into_owned());
    }
    let last = stderr.lines().last().unwrap_or_default();
    let col = |i: usize| -> f64 { last.split_whitespace().nth(i).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN) };
    let json = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(Timed { wall_s, cpu_s: col(2) + col(3), rss_mib: col(1) / 1024.0, json })
}

/// [`timed_report`] printed under `label`; `None` (and the error printed) when it failed.
fn report_case(label: &str, config: &Path, from: &str, to: &str, extra: &[&str]) -> Option<Timed> {
    match timed_report(config, from, to, extra) {
        Ok(t) => {
            println!("  {label:<44}: {}", t.line());
            Some(t)
        }
        Err(e) => {
            println!("  {label:<44}: failed: {}", e.trim());
            None
        }
    }
}

struct FixedClock(i64);

impl wattledger::model::Clock for FixedClock {
    fn now_ns(&self) -> i64 {
        self.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What [`stored_window_cases`] measured for the table.
struct ApiFigures {
    requests: usize,
    p95_ms: f64,
    peer_median_ms: f64,
}

/// The stored-window cases on one store (see the module doc).
async fn stored_window_cases(label: &str, cfg_path: &Path, from_s: i64, to_s: i64) -> Option<ApiFigures> {
    use wattledger::aggregate::{Aggregator, Windows};
    let from = rfc(from_s);
    let cfg = wattledger::aggregate::config::AggregatorConfig::load(cfg_path).unwrap();
    let store = wattledger::store::open_store(&cfg.store).await.unwrap();
    // Half-way through the last hour: that hour is the partial, live one.
    let now_ns = (to_s - 1800) * NS;
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
    report_case(&format!("{label}: report, stored windows"), cfg_path, &from, &done_to, &[]);
    report_case(&format!("{label}: report --recompute"), cfg_path, &from, &done_to, &["--recompute"]);
    // The API: the default range (last 24 h) from the store.
    let state = wattledger::web::AppState::new(agg.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wattledger::web::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let mut ms = Vec::new();
    // A store too slow for the target would take hours for 50 requests: stop
    // after the budget and say how many were made.
    let budget = Duration::from_secs(env_num("WL_BENCH_API_BUDGET_S", 300).max(1) as u64);
    let started = Instant::now();
    let wanted = env_num("WL_BENCH_API_REQUESTS", 50).max(1) as usize;
    while ms.len() < wanted && (ms.is_empty() || started.elapsed() < budget) {
        let t = Instant::now();
        let r = http.get(format!("{base}/api/workloads?token=bench")).send().await.unwrap();
        if !r.status().is_success() {
            println!("  {label}: GET /api/workloads failed: {} {:?}", r.status(), r.text().await);
            return None;
        }
        let _ = r.bytes().await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let p95_ms = percentile(&ms, 0.95);
    println!(
        "  {label}: GET /api/workloads (last 24 h, stored windows + live partial hour), {} requests: p50 {:.1} ms  p95 {p95_ms:.1} ms  max {:.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        ms[ms.len() - 1]
    );
    let _ = stop.send(());
    // Peer: the same comparison recomputed (what every request did before
    // windows were served from the store).
    let day_from = (now_ns - 86_400 * NS).div_euclid(3600 * NS) * 3600 * NS;
    let mut peer = Vec::new();
    let started = Instant::now();
    let wanted = env_num("WL_BENCH_PEER_RUNS", 3).max(1) as usize;
    while peer.len() < wanted && (peer.is_empty() || started.elapsed() < budget) {
        let t = Instant::now();
        agg.report(day_from, now_ns, Windows::Recompute).await.unwrap();
        peer.push(t.elapsed().as_secs_f64() * 1e3);
    }
    peer.sort_by(f64::total_cmp);
    let peer_median_ms = percentile(&peer, 0.5);
    println!(
        "  {label}: peer, the same range recomputed, {} runs: median {peer_median_ms:.1} ms  max {:.1} ms",
        peer.len(),
        peer[peer.len() - 1]
    );
    Some(ApiFigures { requests: ms.len(), p95_ms, peer_median_ms })
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
    let bin = std::env::var("WATTLEDGER_TEST_INFLUXD_BIN")
        .ok()
        .or_else(|| {
            let ci = concat!(env!("CARGO_MANIFEST_DIR"), "/target/ci-packages/root/usr/bin/influxd");
            Path::new(ci).exists().then(|| ci.to_string())
        })
        .ok_or("no influxd: set WATTLEDGER_TEST_INFLUXD_BIN (see .ci/servers.sh) or WL_BENCH_SKIP_INFLUX=1")?;
    let (http, rpc) = (free_port(), free_port());
    let d = dir.join("influxd");
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    let conf = d.join("influxdb.conf");
    std::fs::write(
        &conf,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{0}/meta\"\n[data]\n  dir = \"{0}/data\"\n  wal-dir = \"{0}/wal\"\n  query-log-enabled = false\n  cache-max-memory-size = \"4g\"\n  max-series-per-database = 0\n  max-values-per-tag = 0\n[coordinator]\n  write-timeout = \"120s\"\n[monitor]\n  store-enabled = false\n[http]\n  enabled = true\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n  max-body-size = 0\n[logging]\n  level = \"warn\"\n",
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
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("influxd did not start within 30 s".into())
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

/// Writes gzip line protocol to influxd from several concurrent connections:
/// the caller encodes, `writers` tasks post.
struct InfluxLoader {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

impl InfluxLoader {
    fn new(url: &str, db: &str, writers: usize) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2 * writers);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let http = reqwest::Client::new();
        let tasks = (0..writers)
            .map(|_| {
                let (rx, http, url) = (rx.clone(), http.clone(), format!("{url}/write?db={db}"));
                tokio::spawn(async move {
                    loop {
                        let Some(body) = rx.lock().await.recv().await else { return Ok(()) };
                        // On a loaded machine influxd can answer 500 "timeout" and
                        // still write the batch; writing the same points again
                        // replaces them, so a retry is safe.
                        for attempt in 1.. {
                            let r = http
                                .post(&url)
                                .header("Content-Encoding", "gzip")
                                .body(body.clone())
                                .send()
                                .await
                                .map_err(|e| e.to_string())?;
                            if r.status() == 204 {
                                break;
                            }
                            let (status, text) = (r.status(), r.text().await.unwrap_or_default());
                            if !status.is_server_error() || attempt == 5 {
                                return Err(format!("influxd write: {status} {text} (attempt {attempt})"));
                            }
                            tokio::time::sleep(Duration::from_secs(2 * attempt)).await;
                        }
                    }
                })
            })
            .collect();
        InfluxLoader { tx, tasks }
    }

    async fn send(&self, points: &[Point]) {
        for chunk in points.chunks(50_000) {
            let body = wattledger::ship::lineproto::encode_batch(chunk).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body.as_bytes()).unwrap();
            self.tx.send(gz.finish().unwrap()).await.expect("influxd writers stopped (see the error below)");
        }
    }

    async fn finish(self) {
        drop(self.tx);
        for t in self.tasks {
            t.await.unwrap().unwrap();
        }
    }
}

/// Where one generated data set goes: the embedded file and an influxd
/// database, each loaded only once per `WL_BENCH_DIR` (a marker file says so).
struct Sink {
    embedded: Option<EmbeddedStore>,
    influx: Option<InfluxLoader>,
    markers: Vec<PathBuf>,
    rows: u64,
    embedded_s: f64,
    started: Instant,
}

impl Sink {
    async fn open(dir: &Path, name: &str, key: &str, influx: Option<&Influxd>) -> Sink {
        let mut markers = Vec::new();
        let emb_marker = dir.join(format!("loaded-embedded-{name}-{key}"));
        let embedded = if emb_marker.exists() {
            println!("  embedded store {name}: reused");
            None
        } else {
            let db = dir.join(format!("{name}.db"));
            let _ = std::fs::remove_file(&db);
            markers.push(emb_marker);
            Some(EmbeddedStore::open(&db).unwrap())
        };
        let influx = match influx {
            Some(_) if dir.join(format!("loaded-influx-{name}-{key}")).exists() => {
                println!("  influxd database {name}: reused");
                None
            }
            Some(s) => {
                let http = reqwest::Client::new();
                influx_query(&http, &s.url, "", &format!("DROP DATABASE {name}")).await.unwrap();
                influx_query(&http, &s.url, "", &format!("CREATE DATABASE {name}")).await.unwrap();
                markers.push(dir.join(format!("loaded-influx-{name}-{key}")));
                let writers = env_num("WL_BENCH_WRITERS", 4).max(1) as usize;
                Some(InfluxLoader::new(&s.url, name, writers))
            }
            None => None,
        };
        Sink { embedded, influx, markers, rows: 0, embedded_s: 0.0, started: Instant::now() }
    }

    fn needed(&self) -> bool {
        self.embedded.is_some() || self.influx.is_some()
    }

    async fn write(&mut self, points: &[Point]) {
        self.rows += points.len() as u64;
        if let Some(e) = &self.embedded {
            let t = Instant::now();
            for chunk in points.chunks(50_000) {
                e.write_blocking(chunk).unwrap();
            }
            self.embedded_s += t.elapsed().as_secs_f64();
        }
        if let Some(i) = &self.influx {
            i.send(points).await;
        }
    }

    async fn finish(self, name: &str) {
        let influx = self.influx.is_some();
        if let Some(i) = self.influx {
            i.finish().await;
        }
        let total = self.started.elapsed().as_secs_f64();
        println!(
            "  loaded {name}: {} rows in {total:.1} s (embedded write_blocking {:.1} s{})",
            self.rows,
            self.embedded_s,
            if influx { "; influxd in parallel, gzip, 50 k-point batches" } else { "" }
        );
        for m in self.markers {
            std::fs::write(m, b"").unwrap();
        }
    }
}

fn rfc(s: i64) -> String {
    wattledger::aggregate::rfc3339(s * NS)
}

/// One line of the final table.
struct Row {
    case: String,
    target: String,
    figure: String,
    peer: String,
    verdict: String,
}

fn verdict(met: Option<bool>, why: &str) -> String {
    match met {
        Some(true) => format!("met ({why})"),
        Some(false) => format!("missed ({why})"),
        None => "not measured".into(),
    }
}

fn store_configs(dir: &Path, name: &str, influx: Option<&Influxd>, hours: i64) -> Vec<(&'static str, PathBuf)> {
    let emb = dir.join(format!("{name}-embedded.toml"));
    let db = dir.join(format!("{name}.db"));
    std::fs::write(&emb, config(&format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()), hours))
        .unwrap();
    let mut out = vec![("embedded", emb)];
    if let Some(s) = influx {
        let cfg = dir.join(format!("{name}-influx.toml"));
        // influxd compacts the tens of millions of rows just loaded for minutes
        // after, and a late-data count can wait longer than the default 10 s for
        // its first byte then (seen: the second scheduled pass failed with it).
        let store = format!(
            "kind = \"influxdb\"\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"{name}\"\ntimeout = \"120s\"",
            s.url
        );
        std::fs::write(&cfg, config(&store, hours)).unwrap();
        out.push(("influxd", cfg));
    }
    out
}

async fn count(cfg: &Path, measurement: &str, field: &str, tags: &[(&str, &str)], from_s: i64, to_s: i64) -> u64 {
    let cfg = wattledger::aggregate::config::AggregatorConfig::load(cfg).unwrap();
    let store = wattledger::store::open_store(&cfg.store).await.unwrap();
    let q = SeriesQuery {
        measurement: measurement.into(),
        fields: vec![field.into()],
        tag_filters: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        start_ns: from_s * NS,
        end_ns: to_s * NS,
    };
    store.count(&q).await.unwrap()
}

/// The fleet day: load, the three energy paths, influxd's integral(), row counts.
async fn fleet_day(
    dir: &Path,
    scale: &Scale,
    influx: Option<&Influxd>,
    rows: &mut Vec<Row>,
) -> Vec<(&'static str, PathBuf)> {
    let (from_s, to_s) = (T0_S, T0_S + scale.hours * 3600);
    let gpu_rows = scale.gpus * scale.hours * 3600 / scale.gpu_every_s;
    let asic_rows = scale.miners * scale.hours * 3600 / scale.miner_every_s;
    println!(
        "\n== fleet day: {} miners @{} s + {} GPUs @{} s, {} h: {asic_rows} asic + {gpu_rows} gpu raw rows, with the agents' ledger",
        scale.miners, scale.miner_every_s, scale.gpus, scale.gpu_every_s, scale.hours
    );
    // `hourly`: stores generated before the agents wrote the hourly roll-up are not reused.
    let key =
        format!("{}-{}-{}-{}-{}-hourly", scale.miners, scale.gpus, scale.hours, scale.gpu_every_s, scale.miner_every_s);
    let mut sink = Sink::open(dir, "fleet", &key, influx).await;
    if sink.needed() {
        // Ten minutes at a time, through the agent's ledger writer as it spools them.
        let (mut writer, _) = ledger_writer(from_s);
        let (mut batch, mut ledger_s) = (Vec::new(), 0.0);
        let mut t = from_s;
        while t < to_s + TAIL_S {
            let end = (t + 600).min(to_s + TAIL_S);
            batch.clear();
            raw_points(scale, scale.gpus, scale.miners, t, end, &mut batch);
            let l = Instant::now();
            let ledger = writer.observe(&batch, end * NS);
            ledger_s += l.elapsed().as_secs_f64();
            batch.extend(ledger);
            sink.write(&batch).await;
            t = end;
        }
        println!("  the agents' ledger writer over every raw point: {ledger_s:.1} s");
        sink.finish("fleet").await;
    }
    let cfgs = store_configs(dir, "fleet", influx, scale.hours);
    let (from, to) = (rfc(from_s), rfc(to_s));
    println!("\n{} × 1 h windows, 2 workloads ({from} .. {to}), `report --recompute`:", scale.hours);
    let mut energies = Vec::new();
    let with_raw_influx = std::env::var("WL_BENCH_INFLUX_RAW").is_ok_and(|v| v == "1");
    for (store, cfg) in &cfgs {
        let mut by_mode = BTreeMap::new();
        for mode in ["auto", "ledger", "raw"] {
            if *store == "influxd" && mode == "raw" && !with_raw_influx {
                println!("  {store}, --energy-from raw: skipped (WL_BENCH_INFLUX_RAW=1 runs it)");
                continue;
            }
            let label = format!("{store}, --energy-from {mode}");
            if let Some(t) = report_case(&label, cfg, &from, &to, &["--recompute", "--energy-from", mode]) {
                energies.push((label, t.energy_j()));
                by_mode.insert(mode, t);
            }
        }
        let raw = by_mode.get("raw");
        let peer = raw
            .map_or("raw path: not run".into(), |r| format!("raw path {:.2} s CPU, {:.2} s wall", r.cpu_s, r.wall_s));
        for mode in ["auto", "ledger"] {
            let Some(t) = by_mode.get(mode) else { continue };
            let (target, met, why) = if *store == "embedded" {
                ("< 1 s CPU", t.cpu_s < 1.0, format!("{:.2} s CPU", t.cpu_s))
            } else {
                ("< 5 s wall", t.wall_s < 5.0, format!("{:.2} s wall", t.wall_s))
            };
            rows.push(Row {
                case: format!("{}, `report --energy-from {mode}`, {store}", scale.label()),
                target: target.into(),
                figure: format!(
                    "{:.2} s CPU, {:.2} s wall, {:.0} MiB peak RSS, {:.1} % from ledger",
                    t.cpu_s,
                    t.wall_s,
                    t.rss_mib,
                    100.0 * t.ledger_share()
                ),
                peer: peer.clone(),
                verdict: scale.judged(verdict(Some(met), &why)),
            });
        }
        if *store == "influxd" {
            let s = influx.expect("influxd config only with influxd");
            let http = reqwest::Client::new();
            let t = Instant::now();
            let mut integral_j = 0.0;
            for m in ["gpu", "asic"] {
                let q = format!(
                    "SELECT integral(power_w) FROM {m} WHERE time >= {from_s}s AND time < {to_s}s GROUP BY time(1h), *"
                );
                integral_j += sum_integrals(&influx_query(&http, &s.url, "fleet", &q).await.unwrap());
            }
            let integral_s = t.elapsed().as_secs_f64();
            println!("  influxd's own integral(power_w) per series and hour (server side only): {integral_s:>7.2} s");
            energies.push(("influxd integral(power_w)".into(), integral_j));
            if let Some(t) = by_mode.get("auto") {
                let speedup = integral_s / t.wall_s;
                rows.push(Row {
                    case: format!("{} from influxd, `report` (auto) vs influxd's integral()", scale.label()),
                    target: "≥ 30× faster than integral()".into(),
                    figure: format!("{speedup:.1}× ({:.2} s against {integral_s:.2} s)", t.wall_s),
                    peer: format!("`SELECT integral(power_w) … GROUP BY time(1h), *`: {integral_s:.2} s"),
                    verdict: scale.judged(verdict(Some(speedup >= 30.0), &format!("{speedup:.1}×"))),
                });
            }
        }
    }
    // integral() per 1 h bucket leaves out the segment between the last sample of
    // one bucket and the first of the next, so it is slightly lower.
    println!("\nenergy over the range (integral() per hour bucket omits the segments across bucket edges):");
    for (who, e) in &energies {
        println!("  {who:<44} {e:.9e} J");
    }
    // Ledger rows against raw rows, for the GPUs, as each store holds them.
    println!("\nrows per day, GPUs, counted from each store:");
    for (store, cfg) in &cfgs {
        let raw = count(cfg, "gpu", "power_w", &[], from_s, to_s).await;
        let minutes = count(cfg, "energy_ledger", "energy_j", &[("source", "gpu")], from_s, to_s).await;
        let hours = count(cfg, "energy_ledger_hourly", "energy_j", &[("source", "gpu")], from_s, to_s).await;
        let ledger = minutes + hours;
        let pct = 100.0 * ledger as f64 / raw as f64;
        println!(
            "  {store}: {raw} raw gpu rows, {minutes} energy_ledger + {hours} energy_ledger_hourly gpu rows: {pct:.3} %"
        );
        rows.push(Row {
            case: format!("ledger rows ÷ raw rows, GPUs @{} s, {store}", scale.gpu_every_s),
            target: "≤ 2 %".into(),
            figure: format!("{pct:.3} % ({ledger} ÷ {raw})"),
            peer: "—".into(),
            verdict: verdict(Some(pct <= 2.0), &format!("{pct:.2} %")),
        });
    }
    cfgs
}

/// The 100 MW site day from the agents' ledger only (see the module doc).
async fn site_day(dir: &Path, hours: i64, influx: Option<&Influxd>, rows: &mut Vec<Row>) {
    let fraction = env_f64("WL_BENCH_SITE_FRACTION", 1.0);
    let miners = (30_000.0 * fraction).round() as i64;
    let gpus = (8_000.0 * fraction).round() as i64;
    let (from_s, to_s) = (T0_S, T0_S + hours * 3600);
    let intervals = hours * 60;
    let ledger_rows = (miners + gpus) * intervals;
    let hourly_rows = (miners + gpus) * hours;
    println!(
        "\n== 100 MW site day at fraction {fraction}: {miners} miners @30 s + {gpus} GPUs @1 s, {hours} h, ledger only: {ledger_rows} energy_ledger + {hourly_rows} energy_ledger_hourly rows"
    );
    let scale = Scale { miners, gpus, hours, gpu_every_s: 1, miner_every_s: 30 };
    let mut sink = Sink::open(dir, "site", &format!("{miners}-{gpus}-{hours}-hourly"), influx).await;
    if sink.needed() {
        // One device of each profile through the agent's ledger writer.
        let t = Instant::now();
        let (mut writer, _) = ledger_writer(from_s);
        // By (measurement, source, device): its interval points and its hourly roll-up.
        let (mut templates, mut batch) = (BTreeMap::<(String, String, String), Vec<Point>>::new(), Vec::new());
        let mut t0 = from_s;
        while t0 < to_s + TAIL_S {
            let end = (t0 + 600).min(to_s + TAIL_S);
            batch.clear();
            raw_points(&scale, gpus.min(GPU_PROFILES), miners.min(MINER_PROFILES), t0, end, &mut batch);
            for p in writer.observe(&batch, end * NS) {
                let id = p.tag_value("uuid").or(p.tag_value("miner")).unwrap_or_default().to_string();
                let source = p.tag_value("source").unwrap_or_default().to_string();
                templates.entry((p.measurement.clone(), source, id)).or_default().push(p);
            }
            t0 = end;
        }
        let tpl = |measurement: &str, source: &str, id: String| &templates[&(measurement.into(), source.into(), id)];
        let gpu_tpl: Vec<[&Vec<Point>; 2]> = (0..gpus.min(GPU_PROFILES))
            .map(|g| ["energy_ledger", "energy_ledger_hourly"].map(|m| tpl(m, "gpu", gpu_tags(g)[2].1.clone())))
            .collect();
        let miner_tpl: Vec<[&Vec<Point>; 2]> = (0..miners.min(MINER_PROFILES))
            .map(|m| ["energy_ledger", "energy_ledger_hourly"].map(|x| tpl(x, "asic", miner_tags(m)[1].1.clone())))
            .collect();
        for [minutes, hourly] in gpu_tpl.iter().chain(&miner_tpl) {
            assert_eq!(minutes.len() as i64, intervals, "one ledger point per device and interval");
            assert_eq!(hourly.len() as i64, hours, "one roll-up per device and hour");
        }
        println!("  ledger writer over one device per profile: {:.1} s", t.elapsed().as_secs_f64());
        // Five minutes of intervals at a time, every device, and each hour's
        // roll-up after its last interval, as the agents write them.
        let per_hour = intervals / hours.max(1);
        for block in (0..intervals).step_by(5) {
            batch.clear();
            for i in block..(block + 5).min(intervals) {
                let hour_done = (i + 1) % per_hour == 0;
                let mut add = |tpl: &[&Vec<Point>; 2], tags: &[(&'static str, String)]| {
                    let mut push = |mut p: Point| {
                        for (k, v) in tags {
                            p.set_tag(*k, v.clone());
                        }
                        batch.push(p);
                    };
                    push(tpl[0][i as usize].clone());
                    if hour_done {
                        push(tpl[1][(i / per_hour) as usize].clone());
                    }
                };
                for g in 0..gpus {
                    add(&gpu_tpl[(g % GPU_PROFILES) as usize], &gpu_tags(g));
                }
                for m in 0..miners {
                    add(&miner_tpl[(m % MINER_PROFILES) as usize], &miner_tags(m));
                }
            }
            sink.write(&batch).await;
        }
        sink.finish("site").await;
    }
    let (from, to) = (rfc(from_s), rfc(to_s));
    println!("\n{hours} × 1 h windows from the ledger only ({from} .. {to}), `report --recompute`:");
    for (store, cfg) in store_configs(dir, "site", influx, hours) {
        let limit_s = if store == "embedded" { 10.0 } else { 30.0 };
        for mode in ["auto", "ledger"] {
            let label = format!("{store}, --energy-from {mode}");
            let Some(t) = report_case(&label, &cfg, &from, &to, &["--recompute", "--energy-from", mode]) else {
                continue;
            };
            let met = t.wall_s < limit_s && t.rss_mib < 300.0;
            rows.push(Row {
                case: format!("100 MW day × {fraction} ({miners} miners + {gpus} GPUs), ledger only, `report --energy-from {mode}`, {store}"),
                target: format!("< {limit_s:.0} s, peak RSS < 300 MB"),
                figure: format!("{:.2} s wall, {:.2} s CPU, {:.0} MiB peak RSS", t.wall_s, t.cpu_s, t.rss_mib),
                peer: "—".into(),
                // A part of the site says nothing about the whole: no verdict.
                verdict: if fraction < 1.0 {
                    format!("not judged: {fraction} of the site")
                } else {
                    verdict(Some(met), &format!("{:.2} s, {:.0} MiB", t.wall_s, t.rss_mib))
                },
            });
        }
    }
}

/// The agent footprint script's output, if `WL_BENCH_FOOTPRINT` names it.
fn footprint_row(rows: &mut Vec<Row>) {
    let Ok(path) = std::env::var("WL_BENCH_FOOTPRINT") else {
        rows.push(Row {
            case: "agent CPU with the ledger on".into(),
            target: "< 5 % more than without".into(),
            figure: "—".into(),
            peer: "the same agent with `[ledger] enabled = false`".into(),
            verdict: "not measured here (bash bench/issue12.sh runs bench/agent_footprint.sh)".into(),
        });
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    // Lines: "wattledger agent, ledger on  ... CPU s ..." (see agent_footprint.sh).
    let cpu_of = |name: &str| -> Option<(f64, String)> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let pct = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some((pct, line[name.len()..].trim().to_string()))
    };
    let (on, off) = (cpu_of("wattledger agent, ledger on"), cpu_of("wattledger agent, ledger off"));
    let more = on.as_ref().zip(off.as_ref()).map(|(a, b)| 100.0 * (a.0 / b.0 - 1.0));
    rows.push(Row {
        case: "agent CPU with the ledger on (bench/agent_footprint.sh)".into(),
        target: "< 5 % more than without".into(),
        figure: on.map_or("—".into(), |o| o.1),
        peer: off.map_or("—".into(), |o| format!("ledger off: {}", o.1)),
        verdict: verdict(more.map(|m| m < 5.0), &more.map_or(String::new(), |m| format!("{m:+.1} %"))),
    });
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
    let cases = std::env::var("WL_BENCH_CASES").unwrap_or_else(|_| "day,api,site".into());
    let run = |c: &str| cases.split(',').any(|x| x.trim() == c);
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "aggregator bench (issue 12), {} CPUs, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let influx = if skip_influx { None } else { Some(start_influxd(&dir).expect("influxd")) };
    let mut rows = Vec::new();
    let (from_s, to_s) = (T0_S, T0_S + scale.hours * 3600);
    if run("day") || run("api") {
        let cfgs = fleet_day(&dir, &scale, influx.as_ref(), &mut rows).await;
        if run("api") {
            println!("\nwindows served from the store:");
            for (store, cfg) in &cfgs {
                if let Some(f) = stored_window_cases(store, cfg, from_s, to_s).await {
                    rows.push(Row {
                        case: format!("`/api/workloads`, last 24 h, {}, {store}", scale.label()),
                        target: "p95 < 100 ms over 50 requests".into(),
                        figure: format!("p95 {:.1} ms over {} requests", f.p95_ms, f.requests),
                        peer: format!("recompute: median {:.1} ms", f.peer_median_ms),
                        verdict: scale.judged(verdict(Some(f.p95_ms < 100.0), &format!("{:.1} ms", f.p95_ms))),
                    });
                }
            }
        }
    }
    if run("site") {
        site_day(&dir, scale.hours, influx.as_ref(), &mut rows).await;
    }
    footprint_row(&mut rows);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nissue 12 targets (load average at the end {}):\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("| case | target | figure | peer in the same run | met? |\n| --- | --- | --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} | {} | {} |", r.case, r.target, r.figure, r.peer, r.verdict);
    }
}
