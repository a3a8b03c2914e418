//! A two-hour scenario with hand-computed answers, shared by the aggregator's
//! integration tests: written as line protocol into a store, then read back by
//! `wattledger report`, the API and the scheduled write-back.
//!
//! Site `s1`: PUE 1.1, $0.05/kWh. Market (static): $100,000/BTC, difficulty 1e14,
//! subsidy 3.125 + fees 0.125 BTC per block, so one unit of accepted share
//! difficulty pays 3.25 × 100,000 / 1e14 = 3.25e-9 USD. Range
//! [2026-11-20T00:00Z, 02:00Z), samples every 60 s at minutes 0..=120.
//!
//! - `btc` (bitcoin_fpps, no pool fee): miner m1 3000 W, 200 TH/s, accepted
//!   difficulty +2.8e6 per minute, reboots between minutes 89 and 90 (its counter
//!   reads 1.4e6 at minute 90); miner m2 1500 W, 100 TH/s, no accepted-difficulty
//!   counter (hashprice fallback).
//! - `h100` (ai_contract, $2/GPU-hour): GPU-0 700 W with the NVML energy counter
//!   (+42,000 J per minute), healthy throughout; GPU-1 700 W, power only, silent
//!   from minute 31 to 59 (a 30-minute gap).
//! - `llm` (ai_tokens, $0.50 / $1.50 per million prompt / generated tokens): GPU-2
//!   400 W power only; server `vllm-a` +10,000 prompt and +5,000 generated tokens
//!   per minute, restarted between minutes 59 and 60 (counters 4,000 and 2,000 at
//!   minute 60).

#![allow(dead_code)]

use std::fmt::Write as _;

pub const T0_S: i64 = 1_795_132_800; // 2026-11-20T00:00:00Z
pub const FROM: &str = "2026-11-20T00:00:00Z";
pub const TO: &str = "2026-11-20T02:00:00Z";
pub const MINUTES: i64 = 120;

/// The scenario as line protocol, second precision.
pub fn line_protocol() -> String {
    let mut out = String::new();
    for i in 0..=MINUTES {
        let t = T0_S + i * 60;
        let diff = if i < 90 { 5.0e9 + i as f64 * 2.8e6 } else { 1.4e6 + (i - 90) as f64 * 2.8e6 };
        writeln!(out, "asic,site=s1,host=rig1,miner=m1,model=S19,workload=btc power_w=3000,hashrate_ths=200,diff_accepted={diff},online=true {t}").unwrap();
        writeln!(
            out,
            "asic,site=s1,host=rig1,miner=m2,model=S9,workload=btc power_w=1500,hashrate_ths=100,online=true {t}"
        )
        .unwrap();
        let energy = 1.0e8 + i as f64 * 42_000.0;
        writeln!(out, "gpu,site=s1,host=rig2,gpu=0,uuid=GPU-0,model=H100,workload=h100 power_w=700,energy_j={energy},status=\"ok\" {t}").unwrap();
        if !(31..=59).contains(&i) {
            writeln!(
                out,
                "gpu,site=s1,host=rig2,gpu=1,uuid=GPU-1,model=H100,workload=h100 power_w=700,status=\"ok\" {t}"
            )
            .unwrap();
        }
        writeln!(out, "gpu,site=s1,host=rig3,gpu=0,uuid=GPU-2,model=L40S,workload=llm power_w=400,status=\"ok\" {t}")
            .unwrap();
        let (prompt, generation) = if i < 60 {
            (1.0e7 + i as f64 * 10_000.0, 5.0e6 + i as f64 * 5_000.0)
        } else {
            (4_000.0 + (i - 60) as f64 * 10_000.0, 2_000.0 + (i - 60) as f64 * 5_000.0)
        };
        writeln!(out, "inference,site=s1,host=rig3,server=vllm-a,model=llama,workload=llm prompt_tokens={prompt},generation_tokens={generation},requests={i}i {t}").unwrap();
    }
    out
}

/// The config, with `store` as the `[store]` section's body.
pub fn config(store: &str, extra: &str) -> String {
    format!(
        r#"[store]
{store}

[sites.s1]
pue = 1.1
energy_usd_per_kwh = 0.05

[market]
source = "static"
btc_usd = 100000.0
difficulty = 1e14
block_subsidy_btc = 3.125
fees_btc_per_block = 0.125

[[workloads]]
name = "btc"
model = "bitcoin_fpps"
pool_fee = 0.0

[[workloads]]
name = "h100"
model = "ai_contract"
usd_per_gpu_hour = 2.0

[[workloads]]
name = "llm"
model = "ai_tokens"
usd_per_mtok_prompt = 0.5
usd_per_mtok_generation = 1.5

[aggregator]
window = "1h"
max_gap = "90s"
{extra}
"#
    )
}

/// One workload's expected report row.
#[derive(Debug)]
pub struct Expected {
    pub workload: &'static str,
    pub model: &'static str,
    pub energy_j: f64,
    pub revenue_usd: f64,
    pub coverage: f64,
    pub volatility_cv: f64,
    pub j_per_th: Option<f64>,
    pub tokens_per_j: Option<f64>,
}

const PUE: f64 = 1.1;
const USD_PER_KWH: f64 = 0.05;
const USD_PER_DIFF: f64 = 3.25 * 100_000.0 / 1e14;

/// USD for `ths` TH/s over `seconds` at the scenario's market: expected blocks
/// = hashes / (difficulty × 2^32), each paying 3.25 BTC × $100,000.
fn hashrate_usd(ths: f64, seconds: f64) -> f64 {
    ths * 1e12 * seconds / (1e14 * 4_294_967_296.0) * 325_000.0
}

/// CV of two hourly values: population sd |a − b| / 2 over mean (a + b) / 2.
fn cv2(a: f64, b: f64) -> f64 {
    (a - b).abs() / (a + b)
}

pub fn expected() -> Vec<Expected> {
    // btc: energy (3000 + 1500) W × 7200 s = 32.4 MJ (9 kWh), 4.5 kWh per hour.
    // m1 accepted: hour 1: 60 × 2.8e6 = 168e6; hour 2: 29 × 2.8e6 + 1.4e6 (reset)
    // + 30 × 2.8e6 = 166.6e6. m2 by hashprice: 100 TH/s for 3600 s per hour.
    let m2_hour = hashrate_usd(100.0, 3600.0);
    let btc_h1 = 168e6 * USD_PER_DIFF + m2_hour;
    let btc_h2 = 166.6e6 * USD_PER_DIFF + m2_hour;
    // J/TH: 32.4e6 J over (200 + 100) TH/s × 7200 s = 2.16e6 TH → 15 J/TH.
    let btc = Expected {
        workload: "btc",
        model: "bitcoin_fpps",
        energy_j: 32.4e6,
        revenue_usd: btc_h1 + btc_h2,
        coverage: 1.0,
        volatility_cv: cv2(btc_h1 / 4.5, btc_h2 / 4.5),
        j_per_th: Some(15.0),
        tokens_per_j: None,
    };
    // h100: GPU-0 counter 120 × 42,000 = 5.04 MJ, healthy 2 h. GPU-1 power only,
    // covered minutes 0-30 and 60-120 = 5400 s: 700 W × 5400 s = 3.78 MJ, 1.5 h.
    // Energy 8.82 MJ; revenue 2 × (2 + 1.5) = $7. Coverage (7200 + 5400) / 14400.
    // Hour 1: 3.78 MJ (1.05 kWh), $3; hour 2: 5.04 MJ (1.4 kWh), $4: both 2.857/kWh.
    let h100 = Expected {
        workload: "h100",
        model: "ai_contract",
        energy_j: 8.82e6,
        revenue_usd: 7.0,
        coverage: 12_600.0 / 14_400.0,
        volatility_cv: cv2(3.0 / 1.05, 4.0 / 1.4),
        j_per_th: None,
        tokens_per_j: None,
    };
    // llm: GPU-2 400 W × 7200 s = 2.88 MJ (0.8 kWh; 0.4 per hour).
    // prompt: hour 1 59 × 10,000 + 4,000 (restart) = 594,000; hour 2 600,000.
    // generated: hour 1 59 × 5,000 + 2,000 = 297,000; hour 2 300,000.
    // revenue = 1.194 × 0.5 + 0.597 × 1.5 = 0.597 + 0.8955 = $1.4925.
    let llm_h1 = 0.594 * 0.5 + 0.297 * 1.5;
    let llm_h2 = 0.6 * 0.5 + 0.3 * 1.5;
    let llm = Expected {
        workload: "llm",
        model: "ai_tokens",
        energy_j: 2.88e6,
        revenue_usd: 1.4925,
        coverage: 1.0,
        volatility_cv: cv2(llm_h1 / 0.4, llm_h2 / 0.4),
        j_per_th: None,
        tokens_per_j: Some((1_194_000.0 + 597_000.0) / 2.88e6),
    };
    // Ranked by revenue per kWh: h100 2.857 > llm 1.866 > btc 0.181.
    vec![h100, llm, btc]
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

/// Checks a report (or `/api/workloads`) JSON against the hand-computed rows.
pub fn assert_report(json: &serde_json::Value) {
    let rows = json["workloads"].as_array().expect("workloads array");
    let names: Vec<&str> = rows.iter().map(|r| r["workload"].as_str().unwrap()).collect();
    assert_eq!(names, ["h100", "llm", "btc"], "ranked by revenue per kWh: {json:#}");
    for (row, exp) in rows.iter().zip(expected()) {
        let num = |k: &str| row[k].as_f64().unwrap_or_else(|| panic!("{}: {k} is {:?}", exp.workload, row[k]));
        let check = |k: &str, want: f64| assert!(close(num(k), want), "{}: {k} = {} want {want}", exp.workload, num(k));
        assert_eq!(row["model"], exp.model);
        let kwh = exp.energy_j / 3.6e6;
        let cost = kwh * PUE * USD_PER_KWH;
        check("energy_j", exp.energy_j);
        check("facility_energy_j", exp.energy_j * PUE);
        check("revenue_usd", exp.revenue_usd);
        check("energy_cost_usd", cost);
        check("profit_usd", exp.revenue_usd - cost);
        check("revenue_usd_per_kwh", exp.revenue_usd / kwh);
        check("profit_usd_per_kwh", (exp.revenue_usd - cost) / kwh);
        check("coverage", exp.coverage);
        check("break_even_usd_per_kwh", exp.revenue_usd / (kwh * PUE));
        assert!(
            (num("volatility_cv") - exp.volatility_cv).abs() < 1e-9,
            "{}: cv {} want {}",
            exp.workload,
            num("volatility_cv"),
            exp.volatility_cv
        );
        match exp.j_per_th {
            Some(v) => check("j_per_th", v),
            None => assert!(row["j_per_th"].is_null(), "{}: j_per_th {:?}", exp.workload, row["j_per_th"]),
        }
        match exp.tokens_per_j {
            Some(v) => check("tokens_per_j", v),
            None => assert!(row["tokens_per_j"].is_null()),
        }
        // Raw samples only (no energy_ledger points): all of it from the raw path.
        assert_eq!(row["ledger_energy_j"].as_f64(), Some(0.0), "{}", exp.workload);
        check("raw_energy_j", exp.energy_j);
        if exp.energy_j > 0.0 {
            assert_eq!(row["ledger_share"].as_f64(), Some(0.0), "{}", exp.workload);
        }
        // Every joule has its basis; no site meter here, so facility energy is IT × PUE.
        let by_basis: f64 = row["energy_by_basis"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        assert!(close(by_basis, exp.energy_j), "{}: energy by basis {by_basis}", exp.workload);
        assert_eq!(row["facility_basis"], "pue", "{}", exp.workload);
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 22, "exactly the report's fields: {keys:?}");
    }
}
