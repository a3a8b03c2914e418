//! `wattledger agent` as a process: config errors at start, SIGHUP reload (a bad
//! new config keeps the running one), the optional `/metrics` endpoint, and a
//! bounded exit on SIGTERM, and log lines once per change (a miner going down,
//! shipping resuming after an outage). Ships to the shared InfluxDB test server
//! (`eval "$(bash .ci/servers.sh start)"`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wattledger::model::SystemClock;
use wattledger::sim::inference::{SimInferenceServer, SimInferenceSpec};

fn influx_url() -> String {
    std::env::var("WATTLEDGER_TEST_INFLUXDB_URL").unwrap_or_else(|_| {
        panic!("WATTLEDGER_TEST_INFLUXDB_URL is not set: start the test servers with `eval \"$(bash .ci/servers.sh start)\"`")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(dir: &Path, db: &str, metrics_url: &str, server_name: &str, metrics_port: u16) -> String {
    format!(
        r#"
[agent]
site = "cli"
spool_dir = "{spool}"
batch_interval = "200ms"
self_telemetry_interval = "500ms"
metrics_listen = "127.0.0.1:{metrics_port}"
shutdown_timeout = "5s"

[store]
kind = "influxdb"
api = "v1"
url = "{url}"
database = "{db}"

[[inference]]
name = "{server_name}"
url = "{metrics_url}"
interval = "200ms"
"#,
        spool = dir.join("spool").display(),
        url = influx_url(),
    )
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["agent", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

async fn get(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[agent]\nsite = \"x\"\nbatch_sise = 10\n[store]\nkind = \"influxdb\"\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wattledger")).args(["agent", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch_sise") && err.contains("agent.toml"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["agent", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_metrics_serve_and_sigterm_exits_in_time() {
    let server = SimInferenceServer::start(SimInferenceSpec::default(), Arc::new(SystemClock)).await.unwrap();
    let db = format!("wl_test_agent_cli_{}", rand::random::<u32>());
    reqwest::Client::new()
        .post(format!("{}/query", influx_url()))
        .query(&[("q", format!("CREATE DATABASE \"{db}\""))])
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let port = free_port();
    std::fs::write(&path, config(dir.path(), &db, &server.metrics_url(), "first", port)).unwrap();
    let mut child = spawn(&path, &dir.path().join("log"));
    let metrics = format!("http://127.0.0.1:{port}/metrics");

    let page = eventually("the metrics endpoint", async || {
        get(&metrics).await.filter(|p| p.contains("source=\"inference:first\""))
    })
    .await;
    assert!(page.contains("wattledger_agent_points_collected_total"));

    // A broken config on SIGHUP is refused; the agent keeps running.
    std::fs::write(&path, "[agent]\nsite = \n").unwrap();
    signal(&child, "-HUP");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(child.try_wait().unwrap().is_none(), "still running after a bad reload");
    assert!(get(&metrics).await.is_some());

    // A valid one is applied: the server is now named `second`.
    std::fs::write(&path, config(dir.path(), &db, &server.metrics_url(), "second", port)).unwrap();
    signal(&child, "-HUP");
    eventually("the reloaded config", async || {
        get(&metrics).await.filter(|p| p.contains("source=\"inference:second\""))
    })
    .await;

    let stop_sent = Instant::now();
    signal(&child, "-TERM");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(stop_sent.elapsed() < Duration::from_secs(10), "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("keeping the running one"), "{log}");

    // Both names reached InfluxDB: points from before and after the reload.
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/query", influx_url()))
        .query(&[("db", db.as_str()), ("q", "SELECT count(prompt_tokens) FROM inference GROUP BY server")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = body.to_string();
    assert!(text.contains("\"first\"") && text.contains("\"second\""), "{text}");
}

/// Forwards every connection on `listener` to `upstream`, byte for byte.
async fn forward(listener: tokio::net::TcpListener, upstream: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { return };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The agent's log speaks once per change: a miner that stays down is logged
/// offline once (not on every poll), and shipping that starts working after an
/// outage logs "shipping resumed" once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_miner_and_shipping_outage_are_logged_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("wl_cli_log_{}", std::process::id());
    let url = influx_url();
    reqwest::Client::new()
        .post(format!("{url}/query"))
        .form(&[("q", format!("CREATE DATABASE \"{db}\""))])
        .send()
        .await
        .unwrap();
    // Nothing listens on either port yet: the miner stays down for the whole test,
    // the store's port opens a few seconds in.
    let dead_miner = free_port();
    let store_port = free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[agent]
site = "cli"
spool_dir = "{spool}"
batch_interval = "200ms"
self_telemetry_interval = "500ms"
shutdown_timeout = "5s"

[[sinks]]
type = "influxdb_v1"
name = "influxdb"
url = "http://127.0.0.1:{store_port}"
database = "{db}"

[miners]
targets = ["127.0.0.1:{dead_miner}"]
interval = "200ms"
timeout = "100ms"
"#,
            spool = dir.path().join("spool").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["agent", "--config"])
        .arg(&cfg)
        .env("WATTLEDGER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // Ten polls or more of the dead miner, with every write failing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!read_log().contains("shipping resumed"), "no write has succeeded yet:\n{}", read_log());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", store_port)).await.unwrap();
    let upstream = url.trim_start_matches("http://").to_string();
    let proxy = tokio::spawn(forward(listener, upstream));
    eventually("shipping resumed in the log", async || read_log().contains("shipping resumed").then_some(())).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    proxy.abort();
    let text = read_log();
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("miner offline"), 1, "one line when the miner went down:\n{text}");
    assert_eq!(count("shipping resumed"), 1, "one line when the outage ended:\n{text}");
}
