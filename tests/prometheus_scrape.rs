//! Prometheus sites: a real VictoriaMetrics (`WATTLEDGER_TEST_VM_BIN`, from
//! `eval "$(bash .ci/servers.sh start)"`) started here with its own
//! `-promscrape.config` scrapes the agent's `/metrics` (fake NVML GPUs and a
//! simulated miner) and the aggregator's `/metrics` (the hand-computed scenario),
//! and the series are read back through its query API.

mod common;
mod scenario;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wattledger::model::{Clock, SystemClock};
use wattledger::sim::gpus::{rig_scenario, FakeNvml};
use wattledger::sim::miners::{FleetSpec, SimFleet, SimMake};

const S: i64 = 1_000_000_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private VictoriaMetrics scraping `jobs` (YAML list items) every second.
struct ScrapingVm {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl ScrapingVm {
    fn start(jobs: &str) -> ScrapingVm {
        let bin = common::server_url("WATTLEDGER_TEST_VM_BIN");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("scrape.yml");
        std::fs::write(&cfg, format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}")).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("-storageDataPath={}", dir.path().join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-promscrape.config={}", cfg.display()))
            .args(["-loggerLevel=WARN", "-search.latencyOffset=0s", "-search.disableCache"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        ScrapingVm { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The instant vector of `query`, as `(labels, value)`.
    async fn query(&self, query: &str) -> Option<Vec<(serde_json::Value, f64)>> {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        let result = v["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .map(|s| (s["metric"].clone(), s["value"][1].as_str().unwrap().parse::<f64>().unwrap()))
                .collect(),
        )
    }

    /// Waits until `query` returns `n` series.
    async fn eventually(&self, query: &str, n: usize) -> Vec<(serde_json::Value, f64)> {
        let started = Instant::now();
        loop {
            if let Some(r) = self.query(query).await {
                if r.len() == n {
                    return r;
                }
            }
            let log = std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default();
            assert!(started.elapsed() < Duration::from_secs(30), "no {n} series for {query} in 30 s; VM log:\n{log}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ScrapingVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn label<'a>(m: &'a serde_json::Value, k: &str) -> &'a str {
    m[k].as_str().unwrap_or_else(|| panic!("no label {k} in {m}"))
}

#[tokio::test]
async fn victoria_metrics_scrapes_the_agents_device_readings() {
    let db = common::TestDb::create().await;
    let nvml = FakeNvml::install(&rig_scenario(2, None, 1.0)).unwrap();
    let miner_port = free_port();
    let spec = FleetSpec {
        count: 1,
        bind: "127.0.0.1".parse().unwrap(),
        port: miner_port,
        ports_layout: true,
        mix: vec![(SimMake::parse("antminer-stock").unwrap(), 1)],
        faults: vec![],
        variation: false,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fleet = SimFleet::start(spec, clock).await.unwrap();
    let miner = fleet.addrs()[0];

    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
site = "prom"
host = "rig1"
spool_dir = "{spool}"
metrics_listen = "127.0.0.1:{metrics_port}"
metrics_dcgm_names = true

[store]
{store}

[gpus]
nvml_lib = "{lib}"
interval = "500ms"

[miners]
targets = ["{miner}"]
interval = "500ms"

[workloads]
default = "train"
miners = {{ "{miner}" = "btc" }}
"#,
            spool = dir.path().join("spool").display(),
            store = db.store_toml(),
            lib = nvml.lib_path().display(),
        ),
    )
    .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["agent", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();

    let vm = ScrapingVm::start(&format!(
        "  - job_name: agent\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    ));
    let power = vm.eventually("wattledger_gpu_power_watts", 2).await;
    for (m, w) in &power {
        assert_eq!((label(m, "site"), label(m, "host"), label(m, "workload")), ("prom", "rig1", "train"));
        assert_eq!(label(m, "model"), "NVIDIA H100 80GB HBM3");
        assert!(label(m, "uuid").starts_with("GPU-5a1d0c"));
        // The rig scenario's GPUs draw between 95 W and 690 W.
        assert!((90.0..=700.0).contains(w), "{m} {w}");
    }
    let util = vm.eventually("wattledger_gpu_utilization_ratio", 2).await;
    assert!(util.iter().all(|(_, v)| (0.0..=1.0).contains(v)), "{util:?}");
    vm.eventually("wattledger_gpu_temperature_celsius", 2).await;
    // dcgm-exporter's names, units and labels, from the same scrape.
    let dcgm = vm.eventually("DCGM_FI_DEV_POWER_USAGE", 2).await;
    for (m, _) in &dcgm {
        assert_eq!(label(m, "device"), format!("nvidia{}", label(m, "gpu")));
        assert_eq!(label(m, "hostname"), "rig1");
        assert!(label(m, "UUID").starts_with("GPU-") && label(m, "modelName").starts_with("NVIDIA"));
    }
    // The energy counter: J in ours, mJ in dcgm-exporter's, the same reading.
    let ratio = vm
        .eventually(
            "sum by (gpu) (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION) / sum by (gpu) (wattledger_gpu_energy_joules_total)",
            2,
        )
        .await;
    assert!(ratio.iter().all(|(_, r)| (r - 1000.0).abs() < 1e-6), "{ratio:?}");
    // The counter grows between scrapes (the fake integrates power exactly).
    let rate = vm.eventually("rate(wattledger_gpu_energy_joules_total[5s]) > 50", 2).await;
    assert!(rate.iter().all(|(_, w)| *w < 750.0), "{rate:?}");

    let hr = vm.eventually("wattledger_miner_hashrate_hashes_per_second", 1).await;
    assert_eq!(label(&hr[0].0, "miner"), miner.to_string());
    assert_eq!(label(&hr[0].0, "workload"), "btc");
    assert_eq!(label(&hr[0].0, "make"), "Antminer");
    // An S19-class capture: tens to hundreds of TH/s, in H/s.
    assert!(hr[0].1 > 1e13 && hr[0].1 < 1e15, "{hr:?}");
    let p = vm.eventually("wattledger_miner_power_watts", 1).await;
    assert!(p[0].1 > 500.0, "{p:?}");
    vm.eventually("wattledger_miner_accepted_difficulty_total", 1).await;
    assert_eq!(vm.eventually("wattledger_miner_up", 1).await[0].1, 1.0);
    // The agent's own counters are scraped too.
    vm.eventually("wattledger_agent_points_collected_total", 1).await;

    let _ = agent.kill();
    let _ = agent.wait();
    fleet.stop().await;
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn victoria_metrics_scrapes_the_aggregators_windows() {
    use wattledger::aggregate::{config::AggregatorConfig, Aggregator};
    use wattledger::store::{embedded::EmbeddedStore, Store};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wl.db");
    let api = "[api]\ntoken = \"s3cret\"\n";
    let toml = scenario::config(&format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()), api);
    let cfg: AggregatorConfig = wattledger::config::from_str(&toml, Path::new("test.toml")).unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&db).unwrap());
    let lines = scenario::line_protocol();
    let points = wattledger::ship::lineproto::parse(&lines, wattledger::ship::lineproto::Precision::S).unwrap();
    store.write(&points).await.unwrap();
    // Just after the scenario's second hour: that hour is the last complete 1h window.
    let end_s = scenario::T0_S + scenario::MINUTES * 60;
    let clock = Arc::new(TestClock(AtomicI64::new((end_s + 30) * S)));
    let agg = Arc::new(Aggregator::new(cfg, store, clock).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wattledger::web::serve(listener, wattledger::web::AppState::new(agg).unwrap(), async move {
        let _ = rx.await;
    }));
    // Behind the token, like the API.
    let r = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(r.status(), 401);

    let vm = ScrapingVm::start(&format!(
        "  - job_name: aggregator\n    authorization: {{credentials: s3cret}}\n    static_configs: [{{targets: ['{addr}']}}]\n"
    ));
    // h100, hour 2: 5.04 MJ and $4 (tests/scenario, as the API test checks).
    let e = vm.eventually("wattledger_workload_energy_joules{workload=\"h100\",window=\"1h\"}", 1).await;
    assert!((e[0].1 - 5.04e6).abs() < 1e-3, "{e:?}");
    assert_eq!(label(&e[0].0, "kind"), "ai_contract");
    assert_eq!(label(&e[0].0, "site"), "s1");
    let rev = vm.eventually("wattledger_workload_revenue_usd{workload=\"h100\",window=\"1h\"}", 1).await;
    assert!((rev[0].1 - 4.0).abs() < 1e-9, "{rev:?}");
    let per_kwh = vm.eventually("wattledger_workload_revenue_usd_per_kwh{workload=\"h100\",window=\"1h\"}", 1).await;
    assert!((per_kwh[0].1 - 4.0 / (5.04e6 / 3.6e6)).abs() < 1e-9, "{per_kwh:?}");
    // profit = revenue − facility energy × price: 4 − 5.04 MJ × 1.1 PUE × $0.05/kWh.
    let profit = vm.eventually("wattledger_workload_profit_usd{workload=\"h100\",window=\"1h\"}", 1).await;
    assert!((profit[0].1 - (4.0 - 5.04e6 * 1.1 / 3.6e6 * 0.05)).abs() < 1e-9, "{profit:?}");
    // Every workload, for both window lengths (1h and the 5m default short window).
    let all = vm.eventually("count by (window) (wattledger_workload_revenue_usd)", 2).await;
    assert!(all.iter().all(|(_, n)| *n == 3.0), "{all:?}");
    let end =
        vm.eventually("wattledger_workload_window_end_timestamp_seconds{workload=\"h100\",window=\"1h\"}", 1).await;
    assert_eq!(end[0].1, end_s as f64);
    let _ = tx.send(());
}
