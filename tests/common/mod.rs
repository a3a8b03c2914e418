//! Helpers shared by the integration tests that talk to the real test servers.
#![allow(dead_code)]

/// The URL of a test server from the environment; fails the test (never skips it)
/// with the command that starts the servers when it is missing.
pub fn server_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs the real test servers. Start them with \
             `eval \"$(bash .ci/servers.sh start)\"`"
        )
    })
}

/// A database name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}_{:08x}", std::process::id(), rand::random::<u32>())
}

/// Runs one InfluxQL statement that changes something (POST /query).
pub async fn influxql_post(url: &str, q: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{url}/query"))
        .form(&[("q", q)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot reach InfluxDB at {url}: {e}"));
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success() && !body.contains("\"error\""), "{q}: HTTP {status} {body}");
    body
}

/// Runs a read-only InfluxQL query (GET /query, epoch=ns) and returns the JSON.
pub async fn influxql_get(url: &str, db: &str, q: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{url}/query"))
        .query(&[("db", db), ("q", q), ("epoch", "ns")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A fresh database on the shared influxd, dropped again when this goes out of scope.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let url = server_url("WATTLEDGER_TEST_INFLUXDB_URL");
        let name = unique_name("wl_test");
        influxql_post(&url, &format!("CREATE DATABASE \"{name}\"")).await;
        TestDb { url, name }
    }

    /// A `[store]` table for this database, v1 API.
    pub fn store_toml(&self) -> String {
        format!("kind = \"influxdb\"\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"{}\"\n", self.url, self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let _ = reqwest::Client::new()
                    .post(format!("{url}/query"))
                    .form(&[("q", format!("DROP DATABASE \"{name}\""))])
                    .send()
                    .await;
            });
        })
        .join();
    }
}

/// Parses a `[store]` table given as TOML text.
pub fn store_config(toml_text: &str) -> wattledger::store::StoreConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("bad test config: {e}\n{toml_text}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An influxd of this test's own (from `WATTLEDGER_TEST_INFLUXD_BIN`), on free
/// loopback ports with its data in a temporary folder, for settings the shared server
/// must not have (authentication, a small body limit) and for tests that stop and
/// restart it. Stopped when dropped.
pub struct PrivateInfluxd {
    pub url: String,
    pub http_port: u16,
    bin: String,
    config: std::path::PathBuf,
    child: Option<std::process::Child>,
    pub dir: tempfile::TempDir,
}

impl PrivateInfluxd {
    pub async fn start(auth_enabled: bool, max_body_size: usize) -> PrivateInfluxd {
        PrivateInfluxd::start_blocking(auth_enabled, max_body_size)
    }

    /// Starts it and waits until it listens (blocking: also usable outside async code).
    pub fn start_blocking(auth_enabled: bool, max_body_size: usize) -> PrivateInfluxd {
        let bin = server_url("WATTLEDGER_TEST_INFLUXD_BIN");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (http, rpc) = (free_port(), free_port());
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n\
               pprof-enabled = false\n  bind-socket = \"{d}/influxdb.sock\"\n\
               auth-enabled = {auth_enabled}\n  max-body-size = {max_body_size}\n\
             [logging]\n  level = \"warn\"\n"
        );
        let config = dir.path().join("influxdb.conf");
        std::fs::write(&config, conf).unwrap();
        let url = format!("http://127.0.0.1:{http}");
        let mut server = PrivateInfluxd { url, http_port: http, bin, config, child: None, dir };
        server.resume();
        server
    }

    /// Starts it (again) on the same port and data, and waits until `/ping` answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "influxd already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("log")).unwrap();
        let child = std::process::Command::new(&self.bin)
            .args(["run", "-config"])
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin));
        let child = self.child.insert(child);
        let ping = format!("127.0.0.1:{}", self.http_port);
        for _ in 0..300 {
            if ping_ok(&ping) {
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("influxd exited during start-up ({status})");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("influxd did not answer /ping within 15 s");
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
            let started = std::time::Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > std::time::Duration::from_secs(10) {
                    let _ = child.kill();
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// `GET /ping` answered 204, by plain blocking HTTP (no runtime needed).
fn ping_ok(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"204"
}

impl PrivateInfluxd {
    /// A private influxd with authentication on, an admin `admin` / `right-pw` and a
    /// database `db` created by that admin.
    pub async fn with_admin(db: &str) -> PrivateInfluxd {
        let server = PrivateInfluxd::start(true, 25_000_000).await;
        // With authentication on and no users yet, InfluxDB lets the first admin be created.
        influxql_post(&server.url, "CREATE USER admin WITH PASSWORD 'right-pw' WITH ALL PRIVILEGES").await;
        let created = reqwest::Client::new()
            .post(format!("{}/query", server.url))
            .basic_auth("admin", Some("right-pw"))
            .form(&[("q", format!("CREATE DATABASE {db}"))])
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "CREATE DATABASE {db}: {}", created.status());
        server
    }
}

impl Drop for PrivateInfluxd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Time from tokio's clock, which the agent pipeline tests pause: virtual time from
/// `t0_ns` that runs as fast as the runtime is idle.
pub struct VirtualClock {
    t0_ns: i64,
    start: tokio::time::Instant,
}

impl VirtualClock {
    pub fn starting_at(t0_ns: i64) -> Self {
        VirtualClock { t0_ns, start: tokio::time::Instant::now() }
    }
}

impl wattledger::model::Clock for VirtualClock {
    fn now_ns(&self) -> i64 {
        self.t0_ns + self.start.elapsed().as_nanos() as i64
    }
}

/// The config of an agent run in virtual time on site `s1`, host `rig1`, whose
/// batches the test collects ([`Batches`]): its store is never contacted (port 9).
/// `agent_keys` go into `[agent]`; `rest` follows `[store]` (sources, workloads).
pub fn virtual_agent_config(
    spool: &std::path::Path,
    agent_keys: &str,
    rest: &str,
) -> wattledger::agent::config::AgentConfig {
    wattledger::agent::config::AgentConfig::from_toml(&format!(
        r#"
[agent]
site = "s1"
host = "rig1"
{agent_keys}
spool_dir = "{}"
fsync = "never"
batch_size = 500
batch_interval = "5s"
self_telemetry_interval = "60s"
shutdown_timeout = "30s"
[store]
kind = "influxdb"
url = "http://127.0.0.1:9"
{rest}"#,
        spool.display()
    ))
    .unwrap()
}

/// Keeps every batch an agent ships, in order.
#[derive(Default)]
pub struct Batches(pub std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl wattledger::ship::Writer for Batches {
    async fn write_lines(&self, body: &str) -> Result<(), wattledger::ship::WriteError> {
        self.0.lock().unwrap().push(body.to_string());
        Ok(())
    }
    fn describe(&self) -> String {
        "test batches".into()
    }
}

/// 2026-11-20T00:00:00Z, where the virtual-time pipeline scenarios start.
pub const T0_NS: i64 = 1_795_132_800_000_000_000;
/// One second in nanoseconds.
pub const S: i64 = 1_000_000_000;

/// Seconds since [`T0_NS`].
pub fn secs(time_ns: i64) -> f64 {
    (time_ns - T0_NS) as f64 / 1e9
}

/// A scripted test double of a source: its points are a function of the time the agent
/// polls it at, so a scenario is exact and repeatable in virtual time.
struct Scripted<F> {
    name: &'static str,
    points: F,
}

#[async_trait::async_trait]
impl<F: FnMut(i64) -> Vec<wattledger::model::Point> + Send> wattledger::collect::Source for Scripted<F> {
    fn name(&self) -> &str {
        self.name
    }
    async fn collect(
        &mut self,
        time_ns: i64,
    ) -> Result<Vec<wattledger::model::Point>, wattledger::collect::SourceError> {
        Ok((self.points)(time_ns))
    }
}

/// The source `name`, polled every `every_s` seconds, whose points at a time are `points(time_ns)`.
pub fn scripted(
    name: &'static str,
    every_s: u64,
    points: impl FnMut(i64) -> Vec<wattledger::model::Point> + Send + 'static,
) -> wattledger::agent::pipeline::ScheduledSource {
    wattledger::agent::pipeline::ScheduledSource {
        source: Box::new(Scripted { name, points }),
        interval: std::time::Duration::from_secs(every_s),
    }
}
