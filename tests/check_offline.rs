//! `wattledger check --offline` and the findings `check` must not call "ok": the real
//! binary on the shipped example configs and on configs that will fail.
//!
//! `--offline` is what packaging, the Ansible role's `validate:` and these tests use;
//! it must contact nothing, which a loopback listener named by every endpoint of the
//! config proves by never seeing a connection.

mod common;
mod scenario;

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(config: &Path, offline: bool, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wattledger"));
    cmd.arg("check");
    if offline {
        cmd.arg("--offline");
    }
    cmd.arg("--config").arg(config).env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o: Output = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Every shipped example passes `check --offline`, with its secret files handed
/// over the way systemd does (`$CREDENTIALS_DIRECTORY/wattledger_<name>`), so the
/// examples' `/etc/wattledger/credentials/...` paths resolve without existing here.
#[test]
fn every_example_passes_offline_with_credentials_from_systemd() {
    let creds = tempfile::tempdir().unwrap();
    for name in ["influx-token", "influx-password", "ingest-token", "api-token", "bmc-password", "webhook-secret"] {
        std::fs::write(creds.path().join(format!("wattledger_{name}")), "s3cret\n").unwrap();
    }
    let creds_dir = creds.path().to_str().unwrap();
    let env = [
        ("CREDENTIALS_DIRECTORY", creds_dir),
        ("WATTLEDGER_INFLUXDB_URL", "http://127.0.0.1:9"),
        ("WATTLEDGER_INFLUXDB_TOKEN", "t"),
        ("WATTLEDGER_API_TOKEN", "t"),
    ];
    let mut files: Vec<PathBuf> = ["agents/examples", "docs/examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.push(root().join("deploy/aggregator-host.toml"));
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        let (ok, stdout, stderr) = check(f, true, &env);
        assert!(ok, "{}:\n{stdout}\n{stderr}", f.display());
        assert!(stdout.contains("nothing contacted"), "{}: {stdout}", f.display());
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
    // Without the credentials the same example fails, naming the file to create.
    let (ok, stdout, _) = check(&root().join("agents/examples/miner-lan.toml"), true, &[]);
    assert!(!ok);
    assert!(
        stdout.contains("FAIL  sink aggregator:")
            && stdout.contains("cannot read secret file /etc/wattledger/credentials/ingest-token"),
        "{stdout}"
    );
}

/// The examples name only loopback and documentation addresses (RFC 5737), never a
/// private range or a resolvable host name.
#[test]
fn examples_name_only_loopback_or_documentation_addresses() {
    let allowed = ["127.", "192.0.2.", "198.51.100."];
    for dir in ["agents/examples", "docs/examples"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for url in text.split('"').filter(|s| s.starts_with("http://") || s.starts_with("https://")) {
                let host = url.split("://").nth(1).unwrap().split([':', '/']).next().unwrap();
                assert!(
                    allowed.iter().any(|a| host.starts_with(a)) || host.starts_with("${"),
                    "{}: {url} is not a loopback or documentation address",
                    path.display()
                );
            }
            if let Ok(cfg) = wattledger::agent::config::AgentConfig::load(&path) {
                for t in cfg.miners.iter().flat_map(|m| m.targets.iter()) {
                    assert!(allowed.iter().any(|a| t.starts_with(a)), "{}: miner target {t}", path.display());
                }
            }
        }
    }
}

/// `--offline` contacts nothing: the sink, a listed miner and an inference server
/// all point at one loopback listener, which must see no connection; the same
/// config checked online does reach it.
#[test]
fn offline_contacts_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "t\n");
    let cfg = write(
        dir.path(),
        "agent.toml",
        &format!(
            r#"[agent]
site = "s"
spool_dir = "{spool}"

[[sinks]]
type = "influxdb_v2"
name = "central"
url = "http://{addr}"
bucket = "wattledger"
token_file = "{token}"
timeout = "1s"

[miners]
targets = ["{addr}"]
timeout = "1s"

[[inference]]
name = "vllm"
url = "http://{addr}/metrics"
"#,
            spool = dir.path().join("spool").display(),
            token = token.display()
        ),
    );
    let (ok, stdout, stderr) = check(&cfg, true, &[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("ok    source miners: 1 target every 30s; not contacted (--offline)"), "{stdout}");
    assert!(stdout.contains("ok    sink central: "), "{stdout}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "check --offline opened a connection"
    );
    let _ = check(&cfg, false, &[]);
    assert!(listener.accept().is_ok(), "the online check should have connected (the test proves nothing otherwise)");
}

/// Each of these used to print "ok" and then fail at run time.
#[test]
fn a_missing_secret_file_fails_offline_and_online() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "agent.toml",
        &format!(
            "[agent]\nsite = \"s\"\nspool_dir = \"{}\"\n\n[[sinks]]\ntype = \"influxdb_v2\"\nname = \"c\"\nurl = \"http://127.0.0.1:9\"\nbucket = \"b\"\ntoken_file = \"{}\"\n\n[gpus]\n",
            dir.path().join("spool").display(),
            dir.path().join("no-such-token").display()
        ),
    );
    for offline in [true, false] {
        let (ok, stdout, stderr) = check(&cfg, offline, &[]);
        assert!(!ok, "{stdout}");
        assert!(stdout.contains("FAIL  sink c: [[sinks]] c: cannot read secret file"), "{stdout}");
        assert!(stderr.contains("checks failed"), "{stderr}");
    }
    // The deprecated single [store] output: the same file, the same failure.
    let store_cfg = write(
        dir.path(),
        "store.toml",
        &format!(
            "[agent]\nsite = \"s\"\nspool_dir = \"{}\"\n\n[store]\nkind = \"influxdb\"\napi = \"v2\"\nurl = \"http://127.0.0.1:9\"\nbucket = \"b\"\ntoken_file = \"{}\"\n\n[gpus]\n",
            dir.path().join("spool").display(),
            dir.path().join("no-such-token").display()
        ),
    );
    let (ok, stdout, _) = check(&store_cfg, false, &[]);
    assert!(!ok && stdout.contains("FAIL  [store]: cannot read secret file"), "{stdout}");
}

/// An agent whose `[store]` names a database the real influxd does not have fails
/// (it used to fall back to `/ping` and say ok).
#[tokio::test]
async fn a_database_that_does_not_exist_fails() {
    let url = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "agent.toml",
        &format!(
            "[agent]\nsite = \"s\"\nspool_dir = \"{}\"\n\n[store]\nkind = \"influxdb\"\napi = \"v1\"\nurl = \"{url}\"\ndatabase = \"wl_check_never_created\"\n\n[gpus]\nnvml_lib = \"/nonexistent/libnvidia-ml.so.1\"\n",
            dir.path().join("spool").display()
        ),
    );
    let (ok, stdout, _) = check(&cfg, false, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("FAIL  [store]: database `wl_check_never_created` does not exist")
            && stdout.contains("CREATE DATABASE"),
        "{stdout}"
    );
}

/// Every listed miner down: a closed loopback port for each.
#[test]
fn every_listed_miner_down_fails() {
    let closed: Vec<String> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "t\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink = listener.local_addr().unwrap();
    drop(listener);
    let cfg = write(
        dir.path(),
        "agent.toml",
        &format!(
            "[agent]\nsite = \"s\"\nspool_dir = \"{}\"\n\n[[sinks]]\ntype = \"influxdb_v2\"\nurl = \"http://{sink}\"\nbucket = \"b\"\ntoken_file = \"{}\"\ntimeout = \"1s\"\n\n[miners]\ntargets = {:?}\ntimeout = \"1s\"\n",
            dir.path().join("spool").display(),
            token.display(),
            closed
        ),
    );
    let (ok, stdout, _) = check(&cfg, false, &[]);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("FAIL  source miners: 2 devices read, none answered: "), "{stdout}");
    assert!(stdout.contains(&format!("{} offline", closed[0])), "{stdout}");
}

/// An aggregator workload that matched no data over the last day is a warning that
/// names the close `workload` tags; the check still passes.
#[tokio::test]
async fn a_workload_without_data_warns_with_near_miss_names() {
    use wattledger::model::Point;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wl.db");
    let store = wattledger::store::embedded::EmbeddedStore::open(&db).unwrap();
    let now = wattledger::model::now_ns();
    let mut points = Vec::new();
    for minute in 0..10 {
        let t = now - minute * 60_000_000_000;
        for miner in ["m1", "m2"] {
            points.push(
                Point::new("asic", t)
                    .tag("site", "s1")
                    .tag("miner", miner)
                    .tag("workload", "btc")
                    .field("power_w", 3000.0),
            );
        }
        // `h10`: the agents' typo for `h100`.
        points.push(
            Point::new("gpu", t).tag("site", "s1").tag("uuid", "GPU-0").tag("workload", "h10").field("power_w", 700.0),
        );
    }
    // Older than a day: does not count.
    points.push(
        Point::new("gpu", now - 2 * 86_400_000_000_000)
            .tag("uuid", "GPU-9")
            .tag("workload", "llm")
            .field("power_w", 1.0),
    );
    store.write_blocking(&points).unwrap();
    drop(store);
    let cfg = write(
        dir.path(),
        "aggregator.toml",
        &scenario::config(&format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()), ""),
    );
    let (ok, stdout, stderr) = check(&cfg, false, &[]);
    assert!(ok, "warnings do not fail the check\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok    workload btc: 2 devices in the last day"), "{stdout}");
    assert!(
        stdout.contains("WARN  workload h100: no device data with workload = \"h100\" in the last day; close `workload` tags with data: h10 (1 device)"),
        "{stdout}"
    );
    assert!(stdout.contains("WARN  workload llm: no device data with workload = \"llm\" in the last day; the store has data for: btc, h10"), "{stdout}");
    assert!(stdout.contains("(2 warnings)"), "{stdout}");
    // Offline, the store is not read: no workload lines.
    let (ok, stdout, _) = check(&cfg, true, &[]);
    assert!(ok && !stdout.contains("workload h100"), "{stdout}");
}
