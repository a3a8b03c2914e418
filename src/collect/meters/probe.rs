//! `wattledger probe METER-URL`: read one meter once and print its channels (a table,
//! or one JSON object per channel with `--json`: `power_w`, `energy_j` where the
//! meter has a counter, and the OID / resource / register each came from).

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::{build_driver, snmp, ChannelReading, MeterConfig, MeterError, MeterUrl};

#[derive(Debug, Serialize)]
struct Row<'a> {
    meter: &'a str,
    kind: &'a str,
    #[serde(flatten)]
    reading: &'a ChannelReading,
    online: bool,
}

/// True when a probe target is a meter address rather than a miner.
pub fn is_meter_target(t: &str) -> bool {
    MeterUrl::parse(t).is_ok() || t.contains("://")
}

/// Reads `url` once within `timeout`. An SNMP address without `?profile=` tries the
/// built-in profiles in turn and keeps the first the agent answers.
pub async fn read_once(url: &str, timeout: Duration) -> Result<(&'static str, Vec<ChannelReading>), MeterError> {
    let u = MeterUrl::parse(url)?;
    let mut cfg = MeterConfig { name: "probe".into(), url: url.to_owned(), ..Default::default() };
    let candidates: Vec<Option<String>> = if u.scheme == "snmp" && u.param("profile").is_none() {
        snmp::PROFILES.iter().filter(|p| **p != "generic").map(|p| Some((*p).to_owned())).collect()
    } else {
        vec![None]
    };
    let mut errors = Vec::new();
    for profile in candidates {
        cfg.profile = profile;
        let driver = build_driver(&cfg, timeout)?;
        match tokio::time::timeout(timeout, driver.read()).await {
            Ok(Ok(r)) => return Ok((driver.kind(), r)),
            Ok(Err(e)) => errors.push(e.0),
            Err(_) => errors.push(format!("no answer within {:.1} s", timeout.as_secs_f64())),
        }
    }
    Err(MeterError::new(errors.join("; ")))
}

pub async fn run(url: &str, json: bool, timeout: Duration) -> anyhow::Result<std::process::ExitCode> {
    let (kind, readings) = read_once(url, timeout).await.map_err(|e| anyhow::anyhow!("no reading from {url}: {e}"))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        for r in &readings {
            serde_json::to_writer(&mut out, &Row { meter: url, kind, reading: r, online: true })?;
            out.write_all(b"\n")?;
        }
    } else {
        writeln!(out, "{:<12} {:>10} {:>16}  {:<60} PROBLEMS", "CHANNEL", "POWER_W", "ENERGY_KWH", "FROM")?;
        for r in &readings {
            let f = |v: Option<f64>, d: usize| v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "-".into());
            let from = [r.power_from.as_deref(), r.energy_from.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                out,
                "{:<12} {:>10} {:>16}  {:<60} {}",
                r.channel,
                f(r.power_w, 1),
                f(r.energy_j.map(|j| j / 3.6e6), 3),
                from,
                r.problems.join("; ")
            )?;
        }
    }
    out.flush()?;
    Ok(std::process::ExitCode::SUCCESS)
}
