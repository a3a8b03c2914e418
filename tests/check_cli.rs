//! `wattledger check --config F` as a user runs it: the real binary against the real
//! influxd (the shared one, and a private one with authentication), on the example
//! configs in `docs/examples/` and on broken ones.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use wattledger::cli::check::{check_store, load_store_section};
use wattledger::store::StoreKind;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples").join(name)
}

fn check(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wattledger"));
    cmd.args(["check", "--config"]).arg(config).env_remove("WATTLEDGER_INFLUXDB_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// (stdout, everything printed): `check` prints one line per check on stdout and
/// fatal errors on stderr; messages are looked for in both.
fn text(o: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&o.stderr));
    (stdout, all)
}

fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[tokio::test]
async fn the_v1_example_checks_ok_against_real_influxdb() {
    let url = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    // The example names database `wattledger`; creating it again is harmless.
    common::influxql_post(&url, "CREATE DATABASE \"wattledger\"").await;
    let out = check(&example("store-influxdb-v1.toml"), &[("WATTLEDGER_INFLUXDB_URL", &url)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("ok    [store]: InfluxDB at") && stdout.contains("database `wattledger` exists"),
        "{stdout}"
    );
}

#[tokio::test]
async fn every_store_example_loads() {
    std::env::set_var("WATTLEDGER_INFLUXDB_URL", "http://127.0.0.1:8086");
    std::env::set_var("WATTLEDGER_INFLUXDB_TOKEN", "example-token");
    let v1 = load_store_section(&example("store-influxdb-v1.toml")).unwrap();
    assert_eq!((v1.kind, v1.url.as_deref()), (StoreKind::Influxdb, Some("http://127.0.0.1:8086")));
    let v2 = load_store_section(&example("store-influxdb-v2.toml")).unwrap();
    assert_eq!(v2.token.as_ref().map(|t| t.expose()), Some("example-token"));
    // Building the store and writer resolves every key without contacting anything.
    wattledger::store::open_store(&v2).await.unwrap();
    let w = wattledger::store::writer_from_config(&v2).unwrap();
    assert_eq!(w.describe(), "influxdb v2 https://192.0.2.12:8086 org=my-site bucket=wattledger");
    let embedded = load_store_section(&example("store-embedded.toml")).unwrap();
    assert_eq!(embedded.kind, StoreKind::Embedded);
    assert_eq!(embedded.path.as_deref(), Some(Path::new("/var/lib/wattledger/wattledger.db")));
}

#[tokio::test]
async fn unreachable_server_is_named_with_a_hint() {
    let out = check(&example("store-influxdb-v1.toml"), &[("WATTLEDGER_INFLUXDB_URL", "http://127.0.0.1:9")]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach InfluxDB at http://127.0.0.1:9: ") && stderr.contains("is it running?"),
        "{stderr}"
    );
    assert!(stderr.contains("store-influxdb-v1.toml"), "{stderr}");
}

#[tokio::test]
async fn a_missing_database_says_how_to_create_it() {
    let url = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &format!("[store]\nkind = \"influxdb\"\nurl = \"{url}\"\napi = \"v1\"\ndatabase = \"wl_never_created\"\n"),
    );
    let out = check(&cfg, &[]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("database `wl_never_created` does not exist") && stderr.contains("CREATE DATABASE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_named_and_never_printed() {
    let server = common::PrivateInfluxd::with_admin("wl").await;
    let dir = tempfile::tempdir().unwrap();
    let pw_file = write_config(dir.path(), "pw", "right-pw\n");
    let body = |pw: &str| {
        format!(
            "[store]\nkind = \"influxdb\"\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"wl\"\nusername = \"admin\"\n{pw}\n",
            server.url
        )
    };
    let bad = write_config(dir.path(), "bad.toml", &body("password = \"hunter2-wrong\""));
    let out = check(&bad, &[]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("refused the credentials (HTTP 401)"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"), "{stderr}");
    let good = write_config(dir.path(), "good.toml", &body(&format!("password_file = \"{}\"", pw_file.display())));
    let out = check(&good, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn malformed_configs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("[store\nkind = 1", &["bad.toml", "line 1"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"http://127.0.0.1:9\"\ndatabse = \"x\"\n", &["unknown field `databse`"]),
        ("[store]\nkind = \"cassandra\"\n", &["unknown variant `cassandra`"]),
        ("[agent]\nx = 1\n", &["unknown field `x`"]),
        ("[sinks]\nx = 1\n", &["no [store] section"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"${WL_TEST_UNSET_VARIABLE}\"\n", &["WL_TEST_UNSET_VARIABLE is not set"]),
        ("[store]\nkind = \"influxdb\"\napi = \"v1\"\ndatabase = \"x\"\n", &["`url` is required"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"127.0.0.1:8086\"\napi = \"v1\"\ndatabase = \"x\"\n", &["is not a URL"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"http://127.0.0.1:9\"\napi = \"v1\"\n", &["`database` is required"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"http://127.0.0.1:9\"\napi = \"v1\"\ndatabase = \"x\"\nusername = \"u\"\n", &["`password`"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"http://127.0.0.1:9\"\ntoken = \"a\"\ntoken_file = \"/x\"\nbucket = \"b\"\n", &["either `token` or `token_file`"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"http://127.0.0.1:9\"\ntoken_file = \"/nonexistent/token\"\nbucket = \"b\"\n", &["cannot read secret file /nonexistent/token"]),
        ("[store]\nkind = \"influxdb\"\nurl = \"http://127.0.0.1:9\"\ntimeout = \"soon\"\nbucket = \"b\"\n", &["timeout", "soon"]),
        ("[store]\nkind = \"embedded\"\n", &["`path` is required"]),
    ];
    for (body, wants) in cases {
        let cfg = write_config(dir.path(), "bad.toml", body);
        let out = check(&cfg, &[]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{body:?} passed");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for want in *wants {
            assert!(stderr.contains(want), "{body:?}: `{want}` not in: {stderr}");
        }
    }
    let out = check(&dir.path().join("missing.toml"), &[]);
    assert!(text(&out).1.contains("cannot read config file"), "{:?}", text(&out));
}

#[tokio::test]
async fn embedded_store_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/wl.db");
    let cfg = |p: &Path| common::store_config(&format!("kind = \"embedded\"\npath = \"{}\"\n", p.display()));
    let summary = check_store(&cfg(&path)).await.unwrap();
    assert!(summary.contains("will be created"), "{summary}");
    assert!(!path.exists(), "a check creates nothing");
    wattledger::store::embedded::EmbeddedStore::open(&path).unwrap();
    assert!(check_store(&cfg(&path)).await.unwrap().contains("opens"));
    let junk = write_config(dir.path(), "junk.db", &"x".repeat(4096));
    let err = check_store(&cfg(&junk)).await.unwrap_err().to_string();
    assert!(err.contains("junk.db"), "{err}");
}

/// An agent config: `check` reads every source once, as the agent would. Here the
/// GPUs are the fake NVML library, one inference server is a simulated vLLM and one
/// is a closed loopback port, and the store is the real influxd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_config_is_checked_source_by_source() {
    use std::sync::Arc;
    use wattledger::sim::inference::{SimInferenceServer, SimInferenceSpec};

    let url = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    let db = common::unique_name("wl_check_agent");
    common::influxql_post(&url, &format!("CREATE DATABASE \"{db}\"")).await;
    let nvml = wattledger::sim::gpus::FakeNvml::install(&wattledger::sim::gpus::rig_scenario(2, None, 1.0)).unwrap();
    let vllm =
        SimInferenceServer::start(SimInferenceSpec::default(), Arc::new(wattledger::model::SystemClock)).await.unwrap();
    // A port that was free a moment ago: nothing answers there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"[agent]
site = "check-site"
spool_dir = "{spool}"

[store]
kind = "influxdb"
api = "v1"
url = "{url}"
database = "{db}"

[gpus]
nvml_lib = "{lib}"

[[inference]]
name = "vllm-a"
url = "{vllm}"

[[inference]]
name = "down"
url = "http://{closed}/metrics"
"#,
        spool = dir.path().join("spool").display(),
        lib = nvml.lib_path().display(),
        vllm = vllm.metrics_url(),
    );
    let cfg = write_config(dir.path(), "agent.toml", &body);
    let out = check(&cfg, &[]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "one inference server is down, so check must fail\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok    config: agent config is valid"), "{stdout}");
    assert!(stdout.contains(&format!("ok    [store]: InfluxDB at {url}")), "{stdout}");
    assert!(stdout.contains("ok    source nvml: 2 devices read"), "{stdout}");
    assert!(stdout.contains("ok    source inference:vllm-a: 1 device read"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("FAIL  source inference:down: GET http://")), "{stdout}");
    assert!(stderr.contains("1 of 5 checks failed"), "{stderr}");
}

/// `[[sinks]]`: one line per sink, each checked on its own; a sink that does not
/// answer fails alone and is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_is_checked() {
    let influx = common::server_url("WATTLEDGER_TEST_INFLUXDB_URL");
    let vm = common::server_url("WATTLEDGER_TEST_VM_URL");
    let nvml = wattledger::sim::gpus::FakeNvml::install(&wattledger::sim::gpus::rig_scenario(1, None, 1.0)).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"[agent]
site = "check-site"
spool_dir = "{spool}"

[[sinks]]
type = "influxdb_v1"
name = "influx"
url = "{influx}"
database = "wattledger"

[[sinks]]
type = "influxdb_v2"
name = "vm"
url = "{vm}"
bucket = "wattledger"

[[sinks]]
type = "influxdb_v2"
name = "gone"
url = "http://{closed}"
bucket = "wattledger"
timeout = "2s"

[gpus]
nvml_lib = "{lib}"
"#,
        spool = dir.path().join("spool").display(),
        lib = nvml.lib_path().display(),
    );
    let cfg = write_config(dir.path(), "agent.toml", &body);
    let out = check(&cfg, &[]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "one sink is down, so check must fail\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("ok    sink influx: {influx} answers /ping")), "{stdout}");
    assert!(stdout.contains(&format!("ok    sink vm: {vm} answers /ping")), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with(&format!("FAIL  sink gone: http://{closed} does not answer"))),
        "{stdout}"
    );
    assert!(stdout.contains("ok    source nvml: 1 device read"), "{stdout}");
    assert!(stderr.contains("1 of 5 checks failed"), "{stderr}");
}
