//! asic-rs side of the miner sweep benchmark (run by `bench/miners_sweep.py`).
//!
//! The default full read a user of asic-rs writes: `MinerFactory::get_miner(ip)` (its own
//! identification, every default firmware enabled) and then `Miner::get_data()` (all data
//! fields), for every address in the targets file, at most `concurrency` miners at a time.
//! Prints one JSON summary line: how many miners were identified and read with a hashrate,
//! the makes/models seen and the distinct hashrates in TH/s.
//!
//! Usage: asic-rs-sweep TARGETS_FILE [CONCURRENCY]
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use asic_rs::MinerFactory;
use asic_rs::core::data::hashrate::HashRateUnit;
use futures::StreamExt;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: asic-rs-sweep TARGETS_FILE [CONCURRENCY]");
    let concurrency: usize = args.next().map_or(1000, |c| c.parse().expect("CONCURRENCY is a number"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    // Targets are `ip:4028`; asic-rs picks its ports itself, so only the address is passed.
    let ips: Vec<IpAddr> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().split(':').next().unwrap().parse().expect("target is IPv4:port"))
        .collect();
    let factory = MinerFactory::new();
    let started = Instant::now();
    let results: Vec<Option<(String, Option<f64>)>> = futures::stream::iter(ips.iter().copied())
        .map(|ip| {
            let factory = &factory;
            async move {
                let miner = factory.get_miner(ip).await.ok().flatten()?;
                let data = miner.get_data().await;
                let model = format!("{} {}", data.device_info.make, data.device_info.model);
                let ths = data.hashrate.map(|h| h.as_unit(HashRateUnit::TeraHash).value);
                Some((model, ths))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall_s = started.elapsed().as_secs_f64();
    let identified = results.iter().flatten().count();
    let ok = results.iter().flatten().filter(|(_, h)| h.is_some()).count();
    let models: BTreeSet<&str> = results.iter().flatten().map(|(m, _)| m.as_str()).collect();
    let rates: BTreeSet<String> = results
        .iter()
        .flatten()
        .filter_map(|(_, h)| h.map(|h| format!("{h:.3}")))
        .collect();
    let rates: Vec<f64> = rates.iter().take(5).map(|r| r.parse().unwrap()).collect();
    println!(
        "{}",
        serde_json::json!({
            "n": ips.len(), "identified": identified, "ok": ok, "inner_wall_s": wall_s,
            "models": models, "hashrates_ths": rates,
        })
    );
}
