//! The demo's replayed day fires and resolves alerts, read from its own API: the
//! token-paid inference GPUs idle at night (`gpu_idle_burn`), and some alert has
//! resolved by the end of the replay. Needs the fake NVML library (`cargo build --workspace`).

use std::time::Duration;

use wattledger::demo::{Demo, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replayed_day_fires_and_resolves_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(DemoOptions::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf(), 1.0))
        .await
        .expect("demo starts (build the fake NVML library with `cargo build --workspace`)");
    demo.wait_for_replay().await;
    let url = format!("http://{}/api/alerts", demo.addr());
    let client = reqwest::Client::new();
    let mut last = serde_json::Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let idle_fired = |v: &serde_json::Value| {
        ["firing", "history"].iter().any(|k| {
            v[k].as_array().is_some_and(|a| {
                a.iter().any(|x| x["alertname"] == "gpu_idle_burn" && x["labels"]["workload"] == "llm-inference")
            })
        })
    };
    while tokio::time::Instant::now() < deadline {
        last = client.get(&url).bearer_auth(demo.token()).send().await.unwrap().json().await.unwrap();
        if idle_fired(&last) && last["history"].as_array().is_some_and(|h| !h.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(idle_fired(&last), "no gpu_idle_burn for llm-inference in the replayed day: {last:#}");
    let history = last["history"].as_array().unwrap();
    assert!(history.iter().any(|a| a["state"] == "resolved" && a["resolved_at"].is_string()), "{last:#}");
    // The contract GPUs idle at checkpoints too, but a reserved contract never idle-burns.
    for k in ["firing", "pending", "history"] {
        for a in last[k].as_array().unwrap() {
            assert!(!(a["alertname"] == "gpu_idle_burn" && a["labels"]["workload"] == "gpu-contract"), "{a}");
        }
    }
    assert!(dir.path().join(wattledger::demo::ALERTS_FILE).exists());
    demo.stop().await;
}
