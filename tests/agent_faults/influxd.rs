//! A private influxd per test, started from `WATTLEDGER_TEST_INFLUXD_BIN` with the
//! shared config as a template, on free loopback ports and a temporary folder, so
//! that a test may stop and restart it without touching the shared servers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Influxd {
    bin: PathBuf,
    config: PathBuf,
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    child: Option<Child>,
}

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the test servers first with `eval \"$(bash .ci/servers.sh start)\"`")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Rewrites the template's paths and addresses for a private instance.
fn private_config(template: &str, dir: &Path, http_port: u16, rpc_port: u16) -> String {
    let mut section = String::new();
    let mut out = String::new();
    for line in template.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let value = match (section.as_str(), key) {
            ("", "bind-address") => Some(format!("\"127.0.0.1:{rpc_port}\"")),
            ("http", "bind-address") => Some(format!("\"127.0.0.1:{http_port}\"")),
            ("http", "bind-socket") => Some(format!("\"{}/influxdb.sock\"", dir.display())),
            ("meta", "dir") => Some(format!("\"{}/meta\"", dir.display())),
            ("data", "dir") => Some(format!("\"{}/data\"", dir.display())),
            ("data", "wal-dir") => Some(format!("\"{}/wal\"", dir.display())),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&format!("  {key} = {v}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

impl Influxd {
    pub fn start() -> Influxd {
        let bin = PathBuf::from(env("WATTLEDGER_TEST_INFLUXD_BIN"));
        let template = std::fs::read_to_string(env("WATTLEDGER_TEST_INFLUXD_CONFIG")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let config = dir.path().join("influxdb.conf");
        std::fs::write(&config, private_config(&template, dir.path(), http_port, free_port())).unwrap();
        let mut me = Influxd { bin, config, dir, http_port, child: None };
        me.resume();
        me
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Starts (again) on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "influxd already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("log")).unwrap();
        let child = Command::new(&self.bin)
            .args(["run", "-config"])
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "influxd did not listen on {} within 15 s",
                self.http_port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s) and waits until the port is free.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let started = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
    }

    pub async fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/query", self.url()))
            .query(&[("db", db), ("q", q), ("epoch", "ns")])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{q}: {status} {body}");
        body
    }

    pub async fn create_db(&self, db: &str) {
        self.query(db, &format!("CREATE DATABASE \"{db}\"")).await;
    }

    /// Every stored point as `measurement|tag=v,...|time_ns`.
    pub async fn point_keys(&self, db: &str, measurement_regex: &str) -> std::collections::BTreeSet<String> {
        let body = self.query(db, &format!("SELECT * FROM /{measurement_regex}/ GROUP BY *")).await;
        let mut out = std::collections::BTreeSet::new();
        let result = &body["results"][0];
        assert!(result.get("error").is_none(), "{body}");
        assert!(result.get("partial").is_none(), "query result was cut: {body}");
        for series in result["series"].as_array().into_iter().flatten() {
            let name = series["name"].as_str().unwrap();
            let mut tags: Vec<(String, String)> = series["tags"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.as_str().is_some_and(|s| !s.is_empty()))
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            tags.sort();
            let tags = tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            for row in series["values"].as_array().unwrap() {
                out.insert(format!("{name}|{tags}|{}", row[0].as_i64().unwrap()));
            }
        }
        out
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The same key for a point read back from line protocol.
pub fn key_of(p: &wattledger::model::Point) -> String {
    let tags = p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    format!("{}|{tags}|{}", p.measurement, p.time_ns)
}
