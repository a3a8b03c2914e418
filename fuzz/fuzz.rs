//! Mutation fuzzer for every parser that reads outside input, on stable Rust (no
//! nightly for cargo-fuzz here): line protocol (the ingest), miner replies (JSON
//! and HTTP framing), Prometheus/OpenMetrics text (inference scrapes), market JSON,
//! meter replies (SNMP BER, Modbus registers and register maps, Redfish, Shelly and
//! Tasmota JSON) and the config files. Not part of `cargo test`; run it with `fuzz/run.sh`.
//!
//! Each target starts from a corpus of real inputs (the captured replies under
//! `tests/data`, the example configs, lines the encoder writes) and applies random
//! byte flips, inserts, deletions, duplications, splices with other seeds and
//! "interesting" values (huge numbers, control characters, quotes, backslashes).
//! Every input runs under `catch_unwind`; a panic is a crash, and its input is
//! written to the crash folder. It prints, per target, inputs tried and crashes.
//!
//! ```text
//! cargo run --release --example fuzz -- SECONDS_PER_TARGET [TARGET...] [--crashes DIR]
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use wattledger::agent::config::AgentConfig;
use wattledger::aggregate::config::AggregatorConfig;
use wattledger::collect::inference::{extract, scan_samples, MetricNames, ServerKind};
use wattledger::collect::meters::modbus::{decode, RegisterMap, BUILTIN_MAPS};
use wattledger::collect::meters::snmp::number_from_value;
use wattledger::collect::meters::{redfish, shelly, tasmota, ChannelReading};
use wattledger::collect::miners::json::parse_lenient;
use wattledger::collect::miners::makes::{Api, MAKES};
use wattledger::collect::miners::profiles::{all, extract as extract_miner};
use wattledger::collect::miners::wire::parse_http;
use wattledger::collect::miners::{finish, identify_cgminer};
use wattledger::ship::lineproto::{parse_limited, Limits, Precision};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    run: fn(&[u8]),
}

fn files_under(dir: &Path, ext: &[&str], out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| ext.contains(&e)) {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
}

fn seeds(dirs: &[&str], ext: &[&str], extra: &[&str]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = extra.iter().map(|s| s.as_bytes().to_vec()).collect();
    for d in dirs {
        files_under(&Path::new(ROOT).join(d), ext, &mut out);
    }
    out
}

fn lineproto(b: &[u8]) {
    let text = String::from_utf8_lossy(b);
    for precision in [Precision::Ns, Precision::S] {
        if let Ok(points) = parse_limited(&text, precision, 0, &Limits::default()) {
            // What the parser accepts, the encoder writes and the parser reads back.
            let body = wattledger::ship::lineproto::encode_batch(&points).expect("parsed points encode");
            let again = parse_limited(&body, Precision::Ns, 0, &Limits::default()).expect("encoded body parses");
            assert_eq!(again.len(), points.len());
        }
    }
}

fn miner(b: &[u8]) {
    let _ = parse_http(b, 1 << 20);
    if let Ok(doc) = parse_lenient(b) {
        let id = identify_cgminer(&doc);
        let _ = finish("192.0.2.1", 4028, &id, &doc);
        for map in all() {
            let _ = extract_miner(map, &doc);
        }
        // Every HTTP make of the registry reading the input as its document.
        for m in MAKES {
            if let Api::Http(h) = &m.api {
                let _ = finish("192.0.2.1", 80, &(h.identify)(&doc), &doc);
            }
        }
    }
}

fn prometheus(b: &[u8]) {
    let text = String::from_utf8_lossy(b);
    let page = scan_samples(&text);
    for kind in [ServerKind::Vllm, ServerKind::Sglang, ServerKind::Tgi] {
        let _ = extract(&page.samples, &MetricNames::for_kind(kind), "unknown");
    }
}

fn market(b: &[u8]) {
    let dir = Path::new(ROOT).join("tests/data/market");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap_or_default();
    let (p, h, r) = (read("prices.json"), read("mining-hashrate-3d.json"), read("mining-reward-stats-100.json"));
    use wattledger::aggregate::market::parse_mempool;
    let _ = parse_mempool(b, &h, &r);
    let _ = parse_mempool(&p, b, &r);
    let _ = parse_mempool(&p, &h, b);
}

/// One input as every meter reply: an SNMP message (BER, decoded by `snmp2`) whose
/// varbind values are read as numbers; Modbus registers (the bytes as big-endian
/// words) decoded by every register of every built-in map; a register map file;
/// and a JSON document read as a Redfish resource, a Shelly `Switch.GetStatus`
/// and a Tasmota `Status 8` answer.
fn meter(b: &[u8]) {
    if let Ok(pdu) = snmp2::Pdu::from_bytes(b) {
        for (_, value) in pdu.varbinds {
            let _ = number_from_value(&value);
        }
    }
    let words: Vec<u16> = b.chunks(2).map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])).collect();
    for (name, text) in BUILTIN_MAPS {
        let map = RegisterMap::from_toml(text, name).expect("a built-in map loads");
        for ch in &map.channels {
            for reg in [ch.power, ch.energy].into_iter().flatten() {
                let _ = decode(&words, &reg);
            }
        }
    }
    let _ = RegisterMap::from_toml(&String::from_utf8_lossy(b), "fuzz.toml");
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
        let _ = redfish::members(&v, "/redfish/v1/Chassis");
        let mut r = ChannelReading::new("1U");
        redfish::environment_metrics(&v, "/redfish/v1/Chassis/1U/EnvironmentMetrics", &mut r);
        redfish::deprecated_power(&v, "/redfish/v1/Chassis/1U/Power", &mut r);
        let _ = shelly::parse_switch_status(&v, 0);
        let _ = tasmota::parse_status8(&v);
    }
}

fn config(b: &[u8]) {
    let text = String::from_utf8_lossy(b);
    let _ = AgentConfig::from_toml(&text);
    if let Ok(cfg) = wattledger::config::from_str::<AggregatorConfig>(&text, Path::new("fuzz.toml")) {
        let _ = cfg.validate();
        let _ = cfg.unauthenticated_exposure();
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\x00",
    b"\x01",
    b"\t",
    b"\x7f",
    b"\\",
    b"\\\\",
    b"\"",
    b"=",
    b",",
    b" ",
    b"\n",
    b"\r\n",
    b"#",
    b"{",
    b"}",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551615",
    b"1e999",
    b"NaN",
    b"-0",
    b"+Inf",
    b"99999999999999999999s",
    b"\xff\xfe",
    b"\xe9",
    b"[",
    b"]",
    b"i",
    b"u",
];

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    let base = &seeds[rng.random_range(0..seeds.len())];
    input.clear();
    input.extend_from_slice(base);
    for _ in 0..rng.random_range(1..8) {
        let len = input.len();
        match rng.random_range(0..6) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                input.splice(i..i, v.iter().copied());
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(64));
                input.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(256));
                let chunk: Vec<u8> = input[i..i + n].to_vec();
                let at = rng.random_range(0..=len);
                input.splice(at..at, chunk);
            }
            4 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let i = rng.random_range(0..other.len());
                    let n = rng.random_range(1..=(other.len() - i).min(512));
                    let at = rng.random_range(0..=len);
                    input.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            _ => {
                let i = rng.random_range(0..=len);
                input.insert(i, rng.random());
            }
        }
        input.truncate(1 << 16);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut crash_dir, mut only) = (60u64, Path::new(ROOT).join("target/fuzz-crashes"), Vec::new());
    let mut first = true;
    while let Some(a) = args.next() {
        if a == "--crashes" {
            crash_dir = PathBuf::from(args.next().expect("--crashes needs a folder"));
        } else if first && a.parse::<u64>().is_ok() {
            seconds = a.parse().expect("checked");
        } else {
            only.push(a);
        }
        first = false;
    }
    let targets = vec![
        Target {
            name: "lineproto",
            seeds: seeds(
                &[],
                &[],
                &[
                    "gpu,host=rig-1,uuid=GPU-1 power_w=251.5,energy_j=123456u,util=97i 1795132800000000000\n",
                    "asic,host=a,miner=192.0.2.10 hashrate_ths=110.2,ok=true,fw=\"2024 \\\"x\\\"\" 1795132800\n",
                    "m\\ n,t\\,k=v\\=1 f\\ k=-1.5e-3,s=\"a\\\\b\"\n# comment\n\nm v=1\r\n",
                ],
            ),
            run: lineproto,
        },
        Target {
            name: "miner",
            seeds: seeds(&["tests/data/miners"], &["json", "txt", "http", "bin"], &[]),
            run: miner,
        },
        Target { name: "prometheus", seeds: seeds(&["tests/data/inference"], &["txt"], &[]), run: prometheus },
        Target { name: "market", seeds: seeds(&["tests/data/market"], &["json"], &[]), run: market },
        Target {
            name: "meter",
            seeds: seeds(
                &["tests/data/meters"],
                &["json", "ber", "toml"],
                &[
                    // The shapes of a Shelly Gen2 `Switch.GetStatus` and a Tasmota
                    // `Status 8` answer, as their RPC and command documentation gives them.
                    r#"{"id":0,"source":"init","output":true,"apower":812.5,"voltage":230.1,"current":3.53,"aenergy":{"total":15234.125,"by_minute":[13.5,13.4,13.6],"minute_ts":1795132800},"temperature":{"tC":41.2,"tF":106.2}}"#,
                    r#"{"StatusSNS":{"Time":"2026-11-20T00:00:00","ENERGY":{"TotalStartTime":"2026-11-01T00:00:00","Total":15.234,"Yesterday":1.2,"Today":0.4,"Power":812,"ApparentPower":830,"ReactivePower":170,"Factor":0.98,"Voltage":230,"Current":3.53}}}"#,
                ],
            ),
            run: meter,
        },
        Target {
            name: "config",
            seeds: seeds(&["docs/examples", "agents/examples", "deploy"], &["toml"], &[]),
            run: config,
        },
    ];
    // Panics are counted, not printed per input.
    std::panic::set_hook(Box::new(|_| {}));
    let mut total_crashes = 0;
    println!("{:<12} {:>8} {:>12} {:>10} {:>8}", "target", "seeds", "inputs", "inputs/s", "crashes");
    for t in targets.iter().filter(|t| only.is_empty() || only.iter().any(|o| o.as_str() == t.name)) {
        let mut rng = StdRng::seed_from_u64(0x7761_7474 ^ t.name.len() as u64);
        let (started, budget) = (Instant::now(), Duration::from_secs(seconds));
        let (mut tried, mut crashes) = (0u64, 0u64);
        let mut input = Vec::new();
        for seed in &t.seeds {
            tried += 1;
            if catch_unwind(AssertUnwindSafe(|| (t.run)(seed))).is_err() {
                crashes += 1;
                save(&crash_dir, t.name, crashes, seed);
            }
        }
        while started.elapsed() < budget {
            mutate(&mut rng, &t.seeds, &mut input);
            tried += 1;
            if catch_unwind(AssertUnwindSafe(|| (t.run)(&input))).is_err() {
                crashes += 1;
                save(&crash_dir, t.name, crashes, &input);
            }
        }
        let rate = tried as f64 / started.elapsed().as_secs_f64();
        println!("{:<12} {:>8} {:>12} {:>10.0} {:>8}", t.name, t.seeds.len(), tried, rate, crashes);
        total_crashes += crashes;
    }
    if total_crashes > 0 {
        println!("crashing inputs: {}", crash_dir.display());
        std::process::exit(1);
    }
}

fn save(dir: &Path, target: &str, n: u64, input: &[u8]) {
    if n <= 20 {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(format!("{target}-{n}.bin")), input);
    }
}
