//! `wattledger aggregator` as a process: it starts, serves the API with the token,
//! writes windows back on schedule; and config mistakes end it with a message
//! that names the key.

mod scenario;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn service_serves_the_api_and_writes_windows_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wl.db");
    let port = free_port();
    let cfg = dir.path().join("aggregator.toml");
    std::fs::write(
        &cfg,
        scenario::config(
            &format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()),
            &format!(
                "interval = \"1s\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}\ningest = true\n",
                dir.path().join("token").display().to_string()
            ),
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["aggregator", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/api/health")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the aggregator did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Write the scenario through the ingest (the token comes from token_file).
    let r = http
        .post(format!("{base}/write?precision=s"))
        .header("Authorization", "Token t0ken")
        .body(scenario::line_protocol())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let url = format!("{base}/api/workloads?from={}&to={}", scenario::FROM, scenario::TO);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let json: serde_json::Value =
        http.get(&url).header("Authorization", "Bearer t0ken").send().await.unwrap().json().await.unwrap();
    scenario::assert_report(&json);

    // The schedule (every second) writes windows back: the last 3 hours of the
    // wall clock, so at least 3 workloads × 3 hourly windows appear.
    let q = format!("{base}/api/health");
    let started = Instant::now();
    loop {
        let store = wattledger::store::embedded::EmbeddedStore::open(&db).unwrap();
        let n = store
            .read_blocking(&wattledger::store::SeriesQuery {
                measurement: "workload_efficiency".into(),
                fields: vec!["energy_j".into()],
                tag_filters: vec![("window".into(), "1h".into())],
                start_ns: 0,
                end_ns: i64::MAX / 2,
            })
            .unwrap()
            .iter()
            .map(|s| s.times_ns.len())
            .sum::<usize>();
        if n >= 9 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no windows written back within 30 s ({n})");
        let _ = http.get(&q).send().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn config_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, scenario::config("kind = \"embedded\"\npath = \"x.db\"", "windw = \"1h\"")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["report", "--from", scenario::FROM, "--to", scenario::TO, "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("windw") && err.contains("bad.toml"), "{err}");

    std::fs::write(
        &cfg,
        scenario::config("kind = \"embedded\"\npath = \"x.db\"", "").replace("usd_per_gpu_hour = 2.0\n", ""),
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_wattledger")).args(["aggregator", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usd_per_gpu_hour") && err.contains("h100"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["report", "--from", "yesterday", "--to", scenario::TO, "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

/// `systemctl stop` sends SIGTERM: the aggregator drains and exits 0 instead of
/// dying on the signal.
#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("aggregator.toml");
    let db = dir.path().join("wl.db");
    std::fs::write(
        &cfg,
        scenario::config(
            &format!("kind = \"embedded\"\npath = {:?}", db.display().to_string()),
            &format!("[api]\nlisten = \"127.0.0.1:{port}\"\n"),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wattledger"))
        .args(["aggregator", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("http://127.0.0.1:{port}/api/health")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the aggregator did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = guard.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "SIGTERM did not stop the aggregator within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit {status:?}; stderr: {err}");
    assert!(err.contains("shutting down"), "{err}");
}

/// A non-loopback `listen` without tokens is refused at start and by `check`,
/// unless the operator says `allow_unauthenticated = true`; `report` refuses a
/// range longer than 400 days.
#[test]
fn open_network_listen_and_huge_ranges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("open.toml");
    let db = dir.path().join("wl.db");
    let store = format!("kind = \"embedded\"\npath = {:?}", db.display().to_string());
    let wl = env!("CARGO_BIN_EXE_wattledger");
    std::fs::write(&cfg, scenario::config(&store, "[api]\nlisten = \"0.0.0.0:0\"\n")).unwrap();
    let out = Command::new(wl).args(["aggregator", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("allow_unauthenticated"), "{err}");
    let out = Command::new(wl).args(["check", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  [api]") && text.contains("read_token / write_token"), "{text}");

    // A write token alone leaves the page and the API open: still refused.
    std::fs::write(
        &cfg,
        scenario::config(&store, "[api]\nlisten = \"0.0.0.0:0\"\ningest = true\nwrite_token = \"w\"\n"),
    )
    .unwrap();
    let out = Command::new(wl).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the page and the API would need no token"), "{text}");

    std::fs::write(&cfg, scenario::config(&store, "[api]\nlisten = \"0.0.0.0:0\"\nallow_unauthenticated = true\n"))
        .unwrap();
    let out = Command::new(wl).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok    [api]") && text.contains("open to anyone"), "{text}");

    let out = Command::new(wl)
        .args(["report", "--from", "2020-01-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than 400 days"));
}
