//! `wattledger gpus`: reads the local GPUs once through NVML and prints a table or,
//! with `--json`, one object per GPU (null where the GPU does not report a value).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::collect::nvml::{GpuReading, NvmlSource};

#[derive(Debug, clap::Args)]
pub struct GpusArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The NVML library to load (default: the system's libnvidia-ml.so.1).
    #[arg(long, value_name = "PATH")]
    pub nvml_lib: Option<PathBuf>,
}

/// The `--json` shape: exactly these keys, in this order.
#[derive(Serialize)]
struct GpuJson<'a> {
    index: u32,
    uuid: Option<&'a str>,
    name: Option<&'a str>,
    power_w: Option<f64>,
    energy_j: Option<f64>,
    util_gpu_pct: Option<u32>,
    util_mem_pct: Option<u32>,
    mem_used_bytes: Option<u64>,
    mem_total_bytes: Option<u64>,
    temp_c: Option<u32>,
    sm_clock_mhz: Option<u32>,
    power_limit_w: Option<f64>,
    status: &'a str,
}

impl<'a> From<&'a GpuReading> for GpuJson<'a> {
    fn from(r: &'a GpuReading) -> Self {
        GpuJson {
            index: r.index,
            uuid: r.uuid.as_deref(),
            name: r.name.as_deref(),
            power_w: r.power_w,
            energy_j: r.energy_j,
            util_gpu_pct: r.util_gpu_pct,
            util_mem_pct: r.util_mem_pct,
            mem_used_bytes: r.mem_used_bytes,
            mem_total_bytes: r.mem_total_bytes,
            temp_c: r.temp_c,
            sm_clock_mhz: r.sm_clock_mhz,
            power_limit_w: r.power_limit_w,
            status: r.status.as_str(),
        }
    }
}

pub async fn run(args: GpusArgs) -> anyhow::Result<ExitCode> {
    let mut source = NvmlSource::open(args.nvml_lib.as_deref())?;
    let readings = source.read_all();
    let text = if args.json {
        let rows: Vec<GpuJson> = readings.iter().map(GpuJson::from).collect();
        serde_json::to_string_pretty(&rows).context("encoding the readings as JSON")? + "\n"
    } else if readings.is_empty() {
        format!("NVML ({}) reports no GPUs\n", source.lib())
    } else {
        table(&readings)
    };
    std::io::stdout().lock().write_all(text.as_bytes()).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn table(readings: &[GpuReading]) -> String {
    fn opt<T: ToString>(v: Option<T>) -> String {
        v.map_or_else(|| "-".to_string(), |v| v.to_string())
    }
    let gib = |b: Option<u64>| b.map(|b| format!("{:.1}", b as f64 / (1u64 << 30) as f64));
    let header = [
        "GPU",
        "NAME",
        "UUID",
        "POWER_W",
        "ENERGY_J",
        "UTIL%",
        "MEM_UTIL%",
        "MEM_GIB",
        "TEMP_C",
        "SM_MHZ",
        "LIMIT_W",
        "STATUS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in readings {
        rows.push(vec![
            r.index.to_string(),
            opt(r.name.as_deref()),
            opt(r.uuid.as_deref()),
            opt(r.power_w.map(|v| format!("{v:.1}"))),
            opt(r.energy_j.map(|v| format!("{v:.1}"))),
            opt(r.util_gpu_pct),
            opt(r.util_mem_pct),
            match (gib(r.mem_used_bytes), gib(r.mem_total_bytes)) {
                (Some(u), Some(t)) => format!("{u}/{t}"),
                (u, t) => format!("{}/{}", opt(u), opt(t)),
            },
            opt(r.temp_c),
            opt(r.sm_clock_mhz),
            opt(r.power_limit_w.map(|v| format!("{v:.0}"))),
            r.status.as_str().to_string(),
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
