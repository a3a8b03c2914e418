//! The real InfluxDB, the data set written to it, and Grafana's evaluation
//! rules (time filter, interval, reduce, threshold, math) the alert rules run with.

#![allow(unused_imports)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{files::*, names::*, read, root};

// real InfluxDB

pub(crate) struct Influx {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) db: String,
}

impl Influx {
    pub(crate) async fn raw(&self, q: &str, db: bool) -> Result<Value, String> {
        let mut form = vec![("q", q.to_string()), ("epoch", "ms".to_string())];
        if db {
            form.push(("db", self.db.clone()));
        }
        let r = self.http.post(format!("{}/query", self.url)).form(&form).send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if let Some(e) = body.get("error") {
            return Err(format!("HTTP {status}: {e}"));
        }
        let res = &body["results"][0];
        if let Some(e) = res.get("error") {
            return Err(format!("InfluxQL error: {e}"));
        }
        Ok(res.clone())
    }
    pub(crate) async fn query(&self, q: &str) -> Result<Value, String> {
        self.raw(q, true).await
    }
    pub(crate) async fn write(&self, body: &str) {
        let r = self
            .http
            .post(format!("{}/write?db={}&precision=s", self.url, self.db))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status.as_u16(), 204, "write: {}", r.text().await.unwrap());
    }
}

pub(crate) const GPU_A_TAGS: &str = "site=texas,host=gpu-a,workload=h100-reserved,model=NVIDIA\\ H100\\ 80GB\\ HBM3";

/// Six hours of one-minute samples ending at `now_s`, shaped so that each alert rule has
/// exactly the culprits `expected_firing` names.
pub(crate) fn data_set(now_s: i64) -> String {
    let mut lp = String::new();
    let start = now_s - 6 * 3600;
    let mut energy = [0.0f64; 3];
    for (k, t) in (start..=now_s).step_by(60).enumerate() {
        let age = now_s - t;
        let k = k as i64;
        // GPUs: gpu-a/0 busy, gpu-a/1 idle but burning power, gpu-b/0 lost 10 min ago.
        for (i, (power, util)) in [(650.0 + (k % 7) as f64, 95), (300.0, 2)].into_iter().enumerate() {
            energy[i] += power * 60.0;
            lp += &format!(
                "gpu,{GPU_A_TAGS},gpu={i},uuid=GPU-a{i} power_w={power},energy_j={},util_gpu_pct={util}i,util_mem_pct=40i,\
                 mem_used_bytes=40000000000i,mem_total_bytes=85899345920i,temp_c={}i,sm_clock_mhz=1980i,power_limit_w=700,status=\"ok\" {t}\n",
                energy[i],
                60 + util / 4
            );
        }
        let b = "gpu,site=nordics,host=gpu-b,workload=a100-spot,gpu=0,uuid=GPU-b0,model=NVIDIA\\ A100-SXM4-80GB";
        if age > 600 {
            energy[2] += 250.0 * 60.0;
            lp += &format!(
                "{b} power_w=250,energy_j={},util_gpu_pct=60i,util_mem_pct=30i,mem_used_bytes=20000000000i,mem_total_bytes=85899345920i,\
                 temp_c=55i,sm_clock_mhz=1410i,power_limit_w=400,status=\"ok\" {t}\n",
                energy[2]
            );
        } else {
            lp += &format!("{b} status=\"lost\" {t}\n");
        }
        // Miners: .11 a healthy S21, .12 an old S9 (100 J/TH), .13 loses half its hashrate
        // for the last 20 min, .14 offline for the last 20 min, .15 silent for 30 min
        // behind an agent (minerlan-2) that is silent too.
        let miners: [(&str, &str, &str, f64, f64); 5] = [
            ("10.20.0.11", "minerlan-1", "S21", 200.0, 3500.0),
            ("10.20.0.12", "minerlan-1", "S9", 13.5, 1350.0),
            (
                "10.20.0.13",
                "minerlan-1",
                "S19",
                if age < 1200 { 50.0 } else { 95.0 },
                if age < 1200 { 1800.0 } else { 3250.0 },
            ),
            ("10.20.0.14", "minerlan-1", "S21", 200.0, 3500.0),
            ("10.20.0.15", "minerlan-2", "S21", 200.0, 3500.0),
        ];
        for (n, (ip, host, model, ths, w)) in miners.into_iter().enumerate() {
            let tags = format!(
                "asic,site=texas,host={host},workload=btc-s21,miner={ip}:4028,make=antminer,model={model},firmware=stock,power_source=reported"
            );
            if ip == "10.20.0.15" && age < 1800 {
                continue;
            }
            if ip == "10.20.0.14" && age < 1200 {
                lp += &format!("{tags} online=false {t}\n");
                continue;
            }
            lp += &format!(
                "{tags} power_w={w},hashrate_ths={ths},diff_accepted={},shares_accepted={}i,shares_rejected={}i,temp_c_max={}i,\
                 fan_rpm_avg=4200i,uptime_s={}i,online=true {t}\n",
                (k * 60) as f64 * ths * 1e3,
                k * 100,
                k * (n as i64 + 1) / 2,
                65 + n,
                86_400 + (t - start)
            );
        }
        // Agents: gpu-a and minerlan-1 report; minerlan-2 has been silent for 30 min.
        for (site, host, sources) in
            [("texas", "gpu-a", "nvml"), ("texas", "minerlan-1", "miners"), ("texas", "minerlan-2", "miners")]
        {
            if host == "minerlan-2" && age < 1800 {
                continue;
            }
            lp += &format!(
                "agent,site={site},host={host} points_collected={}i,points_shipped={}i,points_spooled={}i,points_dropped=0i,\
                 points_rejected=0i,errors={}i,spool_errors=0i,ship_errors={}i,spool_bytes={}i {t}\n",
                k * 130,
                k * 130 - 5,
                5,
                k / 30,
                k / 90,
                4096 + (k % 5) * 512
            );
            lp += &format!(
                "agent,site={site},host={host},source={sources} points_collected={}i,errors={}i,collect_latency_ms={} {t}\n",
                k * 120,
                k / 30,
                12.5 + (k % 3) as f64
            );
        }
    }
    // workload_efficiency: 5m windows over the last 6 h and 1h windows, stamped at the
    // window start. btc-s21 earns less per kWh than it pays; llm-api is 60 % covered.
    for (len, label) in [(300i64, "5m"), (3600, "1h")] {
        let last_start = (now_s / len) * len - len;
        let mut ws = last_start - 6 * 3600 + len;
        while ws <= last_start {
            for (wl, kind, power_w, rev_per_kwh, coverage, extra) in [
                ("h100-reserved", "ai_contract", 950.0, 3.25, 1.0, String::new()),
                ("btc-s21", "bitcoin_fpps", 12_000.0, 0.040, 0.98, format!(",work_th={}", 600.0 * len as f64)),
                ("llm-api", "ai_tokens", 400.0, 1.10, 0.6, format!(",tokens={}", 2_000 * len)),
            ] {
                let energy_j = power_w * len as f64 * coverage;
                let kwh = energy_j / 3.6e6;
                let revenue = kwh * rev_per_kwh;
                let cost = kwh * 1.08 * 0.045;
                lp += &format!(
                    "workload_efficiency,site=texas,workload={wl},kind={kind},window={label} window_s={len},energy_j={energy_j},\
                     facility_energy_j={},revenue_usd={revenue},energy_cost_usd={cost},profit_usd={},revenue_usd_per_kwh={rev_per_kwh},\
                     profit_usd_per_kwh={},coverage={coverage},avg_power_w={},devices=4i{extra} {ws}\n",
                    energy_j * 1.08,
                    revenue - cost,
                    (revenue - cost) / kwh,
                    power_w * coverage
                );
            }
            ws += len;
        }
    }
    // meter_reconciliation: the hours of the last 6 h. Row a's meter reads 20 % more than
    // its devices and row b's 22 % less (both fire: the gap counts either way); row c is
    // within 5 %; row d's meter covered too little of the hour for a gap_pct. A 5m window
    // with a 40 % gap on row c must be ignored: the rule reads 1h windows.
    let last_hour = (now_s / 3600) * 3600 - 3600;
    for ws in (last_hour - 5 * 3600..=last_hour).step_by(3600) {
        for (group, pct) in [("row-a", Some(20.0)), ("row-b", Some(-22.0)), ("row-c", Some(5.0)), ("row-d", None)] {
            let meter_kwh = 100.0;
            let gap = pct.map(|p: f64| format!(",gap_pct={p}")).unwrap_or_default();
            let gap_kwh = pct.unwrap_or(0.0);
            lp += &format!(
                "meter_reconciliation,site=texas,group={group},window=1h meter_energy_j={},meter_coverage={},\
                 devices_energy_j={},gap_kwh={gap_kwh}{gap} {ws}\n",
                meter_kwh * 3.6e6,
                if pct.is_some() { 1.0 } else { 0.5 },
                (meter_kwh - gap_kwh) * 3.6e6,
            );
        }
    }
    lp += &format!(
        "meter_reconciliation,site=texas,group=row-c,window=5m meter_energy_j=1.8e7,meter_coverage=1,\
         devices_energy_j=1.08e7,gap_kwh=2,gap_pct=40 {}\n",
        (now_s / 300) * 300 - 300
    );
    lp
}

/// The label (tag) that names the culprit of each rule, and who must be firing.
pub(crate) fn expected_firing() -> BTreeMap<&'static str, (&'static str, Vec<&'static str>)> {
    BTreeMap::from([
        ("wattledger-unprofitable", ("workload", vec!["btc-s21"])),
        ("wattledger-jth-high", ("miner", vec!["10.20.0.12:4028"])),
        ("wattledger-gpu-idle-burn", ("uuid_or_gpu", vec!["gpu-a/1"])),
        ("wattledger-hashrate-drop", ("miner", vec!["10.20.0.13:4028"])),
        ("wattledger-miner-offline", ("miner", vec!["10.20.0.14:4028"])),
        ("wattledger-gpu-lost", ("uuid_or_gpu", vec!["gpu-b/0"])),
        ("wattledger-device-silent", ("miner", vec!["10.20.0.15:4028"])),
        ("wattledger-agent-silent", ("host", vec!["minerlan-2"])),
        ("wattledger-coverage-low", ("workload", vec!["llm-api"])),
        ("wattledger-meter-gap", ("group", vec!["row-a", "row-b"])),
    ])
}

/// Grafana's InfluxQL `$timeFilter`.
pub(crate) fn time_filter(from_ms: i64, to_ms: i64) -> String {
    format!("time >= {from_ms}ms and time <= {to_ms}ms")
}

/// Grafana's `$__interval`: the range over about 1000 points, rounded down to a round
/// interval, never below the datasource's `timeInterval`.
pub(crate) fn interval(range_ms: i64, min_s: i64) -> String {
    let raw_s = range_ms / 1000 / 1000;
    let nice = [1, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400];
    let s = nice.iter().rev().find(|n| **n <= raw_s).copied().unwrap_or(1).max(min_s);
    format!("{s}s")
}

/// Grafana's InfluxDB regex escaping of a template value.
pub(crate) fn regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\^$*+?.()|{}[]/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Replaces `$name` (longest names first so that `$host` does not eat `$hostname`).
pub(crate) fn substitute(q: &str, vars: &[(String, String)]) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let mut q = q.to_string();
    for (n, v) in vars {
        q = q.replace(&format!("${n}"), &v);
    }
    let left =
        q.match_indices('$').any(|(i, _)| q[i + 1..].starts_with(|c: char| c.is_alphabetic() || c == '_' || c == '{'));
    assert!(!left, "unsubstituted variable in: {q}");
    q
}

/// Series of a result: (tags, values of the last column).
/// One result series: its tags and its values in time order.
pub(crate) type TaggedValues = (BTreeMap<String, String>, Vec<Option<f64>>);

pub(crate) fn series(res: &Value) -> Vec<TaggedValues> {
    res["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let tags = s["tags"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                .unwrap_or_default();
            let vals = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().last().unwrap().as_f64())
                .collect();
            (tags, vals)
        })
        .collect()
}

pub(crate) type Frames = BTreeMap<BTreeMap<String, String>, f64>;

/// Grafana's server-side expressions, as far as the rules use them.
pub(crate) fn reduce(s: &[TaggedValues], reducer: &str) -> Frames {
    s.iter()
        .filter_map(|(tags, vals)| {
            let v: Vec<f64> = vals.iter().flatten().copied().filter(|x| x.is_finite()).collect();
            let r = match reducer {
                "last" => *v.last()?,
                "mean" => v.iter().sum::<f64>() / v.len().max(1) as f64,
                "max" => v.iter().copied().fold(f64::MIN, f64::max),
                "min" => v.iter().copied().fold(f64::MAX, f64::min),
                other => panic!("reducer {other} not known to this test"),
            };
            if v.is_empty() {
                return None;
            }
            Some((tags.clone(), r))
        })
        .collect()
}

pub(crate) fn threshold(f: &Frames, op: &str, v: f64) -> Frames {
    f.iter()
        .map(|(k, x)| {
            let hit = match op {
                "gt" => *x > v,
                "lt" => *x < v,
                other => panic!("threshold {other} not known to this test"),
            };
            (k.clone(), if hit { 1.0 } else { 0.0 })
        })
        .collect()
}

/// `$A > 150 && $B < 10`, `$C < 0.8 * $D`: numbers, `$refs`, `* / + -`, comparisons, `&& ||`.
pub(crate) fn math(expr: &str, frames: &BTreeMap<String, Frames>) -> Frames {
    let refs: Vec<&String> = frames.keys().filter(|r| expr.contains(&format!("${r}"))).collect();
    let first = &frames[refs[0]];
    let mut out = Frames::new();
    for labels in first.keys() {
        // Series of different queries are joined on identical labels.
        if !refs.iter().all(|r| frames[*r].contains_key(labels)) {
            continue;
        }
        let vars: BTreeMap<&str, f64> = refs.iter().map(|r| (r.as_str(), frames[*r][labels])).collect();
        out.insert(labels.clone(), eval(expr, &vars));
    }
    out
}

pub(crate) fn eval(expr: &str, vars: &BTreeMap<&str, f64>) -> f64 {
    let mut toks: Vec<String> = Vec::new();
    let c: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_whitespace() {
            i += 1;
        } else if c[i] == '$' || c[i].is_ascii_digit() || c[i] == '.' {
            let s = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
            toks.push(c[s..i].iter().collect());
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["&&", "||", ">=", "<=", "==", "!="].contains(&two.as_str()) {
                toks.push(two);
                i += 2;
            } else {
                toks.push(c[i].to_string());
                i += 1;
            }
        }
    }
    // Precedence climbing over binary operators.
    fn prec(op: &str) -> Option<u8> {
        Some(match op {
            "||" => 1,
            "&&" => 2,
            ">" | "<" | ">=" | "<=" | "==" | "!=" => 3,
            "+" | "-" => 4,
            "*" | "/" => 5,
            _ => return None,
        })
    }
    fn atom(t: &[String], p: &mut usize, vars: &BTreeMap<&str, f64>) -> f64 {
        let tok = &t[*p];
        *p += 1;
        if tok == "(" {
            let v = bin(t, p, 0, vars);
            assert_eq!(t[*p], ")");
            *p += 1;
            v
        } else if let Some(r) = tok.strip_prefix('$') {
            vars[r]
        } else {
            tok.parse().unwrap_or_else(|_| panic!("math token {tok}"))
        }
    }
    fn bin(t: &[String], p: &mut usize, min: u8, vars: &BTreeMap<&str, f64>) -> f64 {
        let mut lhs = atom(t, p, vars);
        while *p < t.len() {
            let op = t[*p].clone();
            let Some(pr) = prec(&op) else { break };
            if pr < min {
                break;
            }
            *p += 1;
            let rhs = bin(t, p, pr + 1, vars);
            let b = |x: bool| if x { 1.0 } else { 0.0 };
            lhs = match op.as_str() {
                "||" => b(lhs != 0.0 || rhs != 0.0),
                "&&" => b(lhs != 0.0 && rhs != 0.0),
                ">" => b(lhs > rhs),
                "<" => b(lhs < rhs),
                ">=" => b(lhs >= rhs),
                "<=" => b(lhs <= rhs),
                "==" => b(lhs == rhs),
                "!=" => b(lhs != rhs),
                "+" => lhs + rhs,
                "-" => lhs - rhs,
                "*" => lhs * rhs,
                _ => lhs / rhs,
            };
        }
        lhs
    }
    let mut p = 0;
    let v = bin(&toks, &mut p, 0, vars);
    assert_eq!(p, toks.len(), "math expression not fully parsed: {expr}");
    v
}

pub(crate) fn culprit(labels: &BTreeMap<String, String>, key: &str) -> String {
    if key == "uuid_or_gpu" {
        format!("{}/{}", labels["host"], labels["gpu"])
    } else {
        labels.get(key).cloned().unwrap_or_else(|| panic!("no label {key} in {labels:?}"))
    }
}

/// The value Grafana selects for a single-value query variable: the saved `current`
/// when the query still returns it, else the first value returned.
pub(crate) fn grafana_selection<'a>(var: &'a Value, values: &'a [String]) -> &'a str {
    match var["current"]["value"].as_str() {
        Some(c) if values.iter().any(|v| v == c) => c,
        _ => values[0].as_str(),
    }
}
