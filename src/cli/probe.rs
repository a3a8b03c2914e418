//! `wattledger probe`: read one miner (or scan a range) once and print normalized readings;
//! a meter address (`snmp://…`, `redfish://…`) goes to `collect::meters::probe`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

use crate::collect::miners::fleet::{self, PollOptions, Target};
use crate::collect::miners::{self, models, MinerReading, ReadOptions, CGMINER_PORT, DEFAULT_MAX_REPLY_BYTES};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// HOST, HOST:PORT, or a CIDR range (`10.0.0.0/24`, `10.0.0.0/24:4029`). Several may be given.
    /// A meter address instead (one only): `snmp://COMMUNITY@HOST[:PORT]`, `redfish://HOST[:PORT]`,
    /// `redfish+http://HOST:PORT`, `modbus://HOST[:PORT]?map=NAME`, `shelly://HOST`, `tasmota://HOST`.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// More targets, one per line (`#` comments allowed).
    #[arg(long, value_name = "FILE")]
    pub targets_file: Option<PathBuf>,
    /// One JSON object per miner instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds allowed per miner (all its requests together).
    #[arg(long, default_value = "5", value_name = "S")]
    pub timeout: f64,
    /// Miners read at the same time when several targets are given.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Largest reply accepted from a miner, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_REPLY_BYTES)]
    pub max_reply_bytes: usize,
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    if !(args.timeout > 0.0 && args.timeout <= 3600.0) {
        bail!("--timeout must be between 0 and 3600 seconds, got {}", args.timeout);
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    // Meters (snmp://, redfish://, modbus://, shelly://, tasmota://) have their own reader.
    if let [t] = args.targets.as_slice() {
        if crate::collect::meters::probe::is_meter_target(t) {
            return crate::collect::meters::probe::run(t, args.json, timeout).await;
        }
    }
    let mut raw = args.targets.clone();
    if let Some(f) = &args.targets_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read --targets-file {}", f.display()))?;
        raw.extend(text.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_owned()).filter(|l| !l.is_empty()));
    }
    if raw.is_empty() {
        bail!("no target given: pass HOST, HOST:PORT or a CIDR range (e.g. `wattledger probe 192.168.1.20:4028`)");
    }
    let targets = fleet::parse_targets(&raw)?;
    let ro = ReadOptions { timeout, max_reply_bytes: args.max_reply_bytes };

    if let [Target::Host { host, port }] = targets.as_slice() {
        let reading = probe_one(host, *port, &ro).await?;
        print_readings(&[reading], args.json)?;
        return Ok(ExitCode::SUCCESS);
    }

    let opts = PollOptions {
        timeout,
        concurrency: args.concurrency.max(1),
        max_reply_bytes: args.max_reply_bytes,
        default_port: CGMINER_PORT,
    };
    let endpoints = fleet::expand(&targets, CGMINER_PORT);
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(endpoints.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} addresses [{bar:30}] {msg} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let found = std::sync::atomic::AtomicUsize::new(0);
    let readings = fleet::poll(&endpoints, &opts, |r| {
        if r.online {
            let n = found.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            bar.set_message(format!("{n} miners"));
        }
        bar.inc(1);
    })
    .await;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let online = readings.iter().filter(|r| r.online).count();
    // From ranges, only what answered; listed addresses always.
    let shown: Vec<MinerReading> =
        readings.into_iter().zip(&endpoints).filter(|(r, e)| r.online || !e.from_range).map(|(r, _)| r).collect();
    print_readings(&shown, args.json)?;
    eprintln!("probed {} addresses in {:.3} s: {} miners answered", endpoints.len(), elapsed.as_secs_f64(), online);
    if online == 0 {
        bail!("no miner answered in {}", raw.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// One target: a given port, or 4028 then 80 when none is given.
async fn probe_one(host: &str, port: Option<u16>, ro: &ReadOptions) -> anyhow::Result<MinerReading> {
    let hint = "check the address and port, that the miner is powered and its API enabled (TCP 4028 for cgminer/Whatsminer, HTTP for AxeOS/ePIC)";
    match port {
        Some(p) => {
            miners::probe(host, p, ro).await.with_context(|| format!("no miner reading from {host}:{p}; {hint}"))
        }
        None => match miners::probe(host, CGMINER_PORT, ro).await {
            Ok(r) => Ok(r),
            Err(first) => miners::probe(host, 80, ro)
                .await
                .map_err(|second| anyhow::anyhow!("{first}; {second}"))
                .with_context(|| format!("no miner reading from {host} (tried ports 4028 and 80); {hint}")),
        },
    }
}

fn print_readings(readings: &[MinerReading], json: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        for r in readings {
            serde_json::to_writer(&mut out, r)?;
            out.write_all(b"\n")?;
        }
    } else {
        writeln!(
            out,
            "{:<22} {:<10} {:<10} {:<34} {:>9} {:>16} {:>10} {:>16} {:>9} {:>7} {:>6} {:>7} {:>9} {:<6} ERROR",
            "MINER",
            "MAKE",
            "MODEL",
            "FIRMWARE",
            "TH/S",
            "POWER_W",
            "NOMINAL",
            "DIFF_ACCEPTED",
            "ACCEPTED",
            "REJECT",
            "TEMP_C",
            "FAN_RPM",
            "UPTIME_S",
            "ONLINE"
        )?;
        let f = |v: Option<f64>, d: usize| v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "-".into());
        let u = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for r in readings {
            let power = match (r.power_w, r.power_source) {
                (Some(p), Some(src)) => format!("{p:.0} ({})", src.as_str()),
                _ => "-".into(),
            };
            writeln!(
                out,
                "{:<22} {:<10} {:<10} {:<34} {:>9} {:>16} {:>10} {:>16} {:>9} {:>7} {:>6} {:>7} {:>9} {:<6} {}",
                r.miner_id(),
                s(&r.make),
                s(&r.model),
                s(&r.firmware),
                f(r.hashrate_ths, 3),
                power,
                // Nominal J/TH of the model, or `unrated` where the model table has none.
                if r.online { models::nominal_label(r.make.as_deref(), r.model.as_deref()) } else { "-".into() },
                f(r.diff_accepted, 0),
                u(r.shares_accepted),
                u(r.shares_rejected),
                f(r.temp_c_max, 1),
                f(r.fan_rpm_avg, 0),
                u(r.uptime_s),
                r.online,
                r.error.clone().unwrap_or_default()
            )?;
        }
    }
    out.flush()?;
    Ok(())
}
