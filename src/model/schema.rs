//! Measurement, tag and field names of the wattledger schema (see `docs/metrics.md`).
//!
//! Every module names the schema through these constants so that a rename is one
//! edit and a typo is a compile error. Counters are raw counters: consumers take
//! deltas and treat a decrease as a reset.

/// Tags every device point carries, added by the agent.
pub const TAG_SITE: &str = "site";
pub const TAG_HOST: &str = "host";
pub const TAG_WORKLOAD: &str = "workload";
/// The rack, container or feeder a device is in (the agent's `group` setting);
/// absent when the agent sets none. A `group` meter channel is reconciled against
/// the devices carrying its name (see `docs/metrics.md`, basis).
pub const TAG_GROUP: &str = "group";

/// GPU telemetry read through NVML, one point per GPU per poll.
pub mod gpu {
    pub const MEASUREMENT: &str = "gpu";
    pub const TAG_GPU: &str = "gpu";
    pub const TAG_UUID: &str = "uuid";
    pub const TAG_MODEL: &str = "model";
    /// Averaged power (NVML_FI_DEV_POWER_AVERAGE, else nvmlDeviceGetPowerUsage).
    pub const POWER_W: &str = "power_w";
    /// Instantaneous power (NVML_FI_DEV_POWER_INSTANT), where the driver reports it.
    pub const POWER_INSTANT_W: &str = "power_instant_w";
    /// Counter: NVML total energy since driver load, in joules.
    pub const ENERGY_J: &str = "energy_j";
    pub const UTIL_GPU_PCT: &str = "util_gpu_pct";
    pub const UTIL_MEM_PCT: &str = "util_mem_pct";
    pub const MEM_USED_BYTES: &str = "mem_used_bytes";
    pub const MEM_TOTAL_BYTES: &str = "mem_total_bytes";
    pub const TEMP_C: &str = "temp_c";
    pub const SM_CLOCK_MHZ: &str = "sm_clock_mhz";
    pub const POWER_LIMIT_W: &str = "power_limit_w";
    /// `ok`, `lost`, or an error's text.
    pub const STATUS: &str = "status";
}

/// ASIC miner telemetry, one point per miner per poll.
pub mod asic {
    pub const MEASUREMENT: &str = "asic";
    pub const TAG_MINER: &str = "miner";
    pub const TAG_MAKE: &str = "make";
    pub const TAG_MODEL: &str = "model";
    pub const TAG_FIRMWARE: &str = "firmware";
    /// `reported`, `estimated` or `meter`.
    pub const TAG_POWER_SOURCE: &str = "power_source";
    pub const POWER_W: &str = "power_w";
    pub const HASHRATE_THS: &str = "hashrate_ths";
    /// Counter: sum of the difficulty of accepted shares.
    pub const DIFF_ACCEPTED: &str = "diff_accepted";
    pub const SHARES_ACCEPTED: &str = "shares_accepted";
    pub const SHARES_REJECTED: &str = "shares_rejected";
    pub const TEMP_C_MAX: &str = "temp_c_max";
    pub const FAN_RPM_AVG: &str = "fan_rpm_avg";
    pub const UPTIME_S: &str = "uptime_s";
    /// String fields, not tags: a failover changes them, and as tags each change would
    /// start a new series for the miner (see `docs/metrics.md`).
    pub const POOL_URL: &str = "pool_url";
    pub const POOL_USER: &str = "pool_user";
    pub const POOL_ALIVE: &str = "pool_alive";
    pub const ONLINE: &str = "online";
}

/// Token counters scraped from inference servers' Prometheus `/metrics`.
pub mod inference {
    pub const MEASUREMENT: &str = "inference";
    pub const TAG_SERVER: &str = "server";
    pub const TAG_MODEL: &str = "model";
    pub const PROMPT_TOKENS: &str = "prompt_tokens";
    pub const GENERATION_TOKENS: &str = "generation_tokens";
    pub const REQUESTS: &str = "requests";
}

/// Whole-host power from RAPL, Redfish/IPMI, a PDU or a site meter.
pub mod host_power {
    pub const MEASUREMENT: &str = "host_power";
    pub const TAG_SOURCE: &str = "source";
    pub const POWER_W: &str = "power_w";
    pub const ENERGY_J: &str = "energy_j";
}

/// Power measured at the wall by a meter (PDU outlet, BMC, Modbus meter, smart
/// plug), one point per meter channel per poll (`collect::meters`).
pub mod meter {
    pub const MEASUREMENT: &str = "meter";
    /// The meter's configured name.
    pub const TAG_METER: &str = "meter";
    /// The channel as the meter names it (outlet `3`, chassis `1U`, `total`).
    pub const TAG_CHANNEL: &str = "channel";
    /// The protocol: `snmp`, `redfish`, `modbus`, `shelly`, `tasmota`.
    pub const TAG_KIND: &str = "kind";
    /// What measured this energy: always `meter` here (see `docs/metrics.md`, basis).
    pub const TAG_BASIS: &str = "basis";
    pub const BASIS_METER: &str = "meter";
    /// What the channel covers: `miner`, `gpu_host` or `group`, and its id.
    pub const TAG_COVERS_KIND: &str = "covers_kind";
    pub const TAG_COVERS: &str = "covers";
    pub const POWER_W: &str = "power_w";
    /// Counter: energy in joules (a 32-bit device counter's wraps are continued).
    pub const ENERGY_J: &str = "energy_j";
    /// A power value the meter sent that failed the checks (negative, huge).
    pub const SUSPECT_POWER_W: &str = "suspect_power_w";
    pub const ONLINE: &str = "online";
    /// `ok`, or why a value is missing.
    pub const STATUS: &str = "status";
}

/// Bitcoin market data, stored so that history is reproducible.
pub mod market {
    pub const MEASUREMENT: &str = "market";
    pub const TAG_SOURCE: &str = "source";
    pub const BTC_USD: &str = "btc_usd";
    pub const DIFFICULTY: &str = "difficulty";
    pub const BLOCK_SUBSIDY_BTC: &str = "block_subsidy_btc";
    pub const FEES_BTC_PER_BLOCK: &str = "fees_btc_per_block";
    pub const HASHPRICE_USD_PER_PHS_DAY: &str = "hashprice_usd_per_phs_day";
}

/// Measured energy price per site.
pub mod energy_price {
    pub const MEASUREMENT: &str = "energy_price";
    pub const TAG_SITE: &str = "site";
    pub const USD_PER_KWH: &str = "usd_per_kwh";
}

/// The aggregator's output: one point per workload per window.
pub mod workload_efficiency {
    pub const MEASUREMENT: &str = "workload_efficiency";
    pub const TAG_SITE: &str = "site";
    pub const TAG_WORKLOAD: &str = "workload";
    /// The revenue model: `bitcoin_fpps`, `ai_contract`, `ai_on_demand`, `ai_tokens`.
    pub const TAG_KIND: &str = "kind";
    pub const WINDOW_S: &str = "window_s";
    pub const ENERGY_J: &str = "energy_j";
    pub const FACILITY_ENERGY_J: &str = "facility_energy_j";
    pub const REVENUE_USD: &str = "revenue_usd";
    pub const ENERGY_COST_USD: &str = "energy_cost_usd";
    pub const PROFIT_USD: &str = "profit_usd";
    pub const REVENUE_USD_PER_KWH: &str = "revenue_usd_per_kwh";
    pub const PROFIT_USD_PER_KWH: &str = "profit_usd_per_kwh";
    pub const COVERAGE: &str = "coverage";
    /// Tag: the window length (`1h`, `5m`), so hourly and short windows that start
    /// at the same instant are different series.
    pub const TAG_WINDOW: &str = "window";
    /// Mean IT power over the window.
    pub const AVG_POWER_W: &str = "avg_power_w";
    /// Devices that reported in the window.
    pub const DEVICES: &str = "devices";
    /// Miners: hash work in TH (∫ hashrate dt), for J/TH.
    pub const WORK_TH: &str = "work_th";
    /// Inference: prompt + generation tokens served.
    pub const TOKENS: &str = "tokens";
    /// Device-seconds backed by measurements (coverage × devices × window).
    pub const COVERED_S: &str = "covered_s";
    /// Why a number may be incomplete, one warning per line; absent when none.
    pub const WARNINGS: &str = "warnings";
    /// Hash of the workload's config that produced the window (model and terms,
    /// site, PUE, tariff, max_gap): a window with another hash is recomputed.
    pub const CONFIG_HASH: &str = "config_hash";
    /// Field values of the window's source rows (`[start − max_gap, end + max_gap)`)
    /// when it was computed: a different count now means late data arrived.
    pub const SOURCE_VALUES: &str = "source_values";
    /// The part of `energy_j` taken from `energy_ledger` points (the rest came
    /// from raw samples).
    pub const LEDGER_ENERGY_J: &str = "ledger_energy_j";
    /// Covered device-time from the ledger ÷ all covered device-time.
    pub const LEDGER_SHARE: &str = "ledger_share";
    /// `energy_j` by basis: measured at the wall, reported by miner firmware,
    /// NVML board power, estimated from nominal J/TH.
    pub const ENERGY_METER_J: &str = "energy_meter_j";
    pub const ENERGY_REPORTED_J: &str = "energy_reported_j";
    pub const ENERGY_BOARD_J: &str = "energy_board_j";
    pub const ENERGY_ESTIMATED_J: &str = "energy_estimated_j";
    /// The shares as text: `62 % meter, 38 % estimated`, or `no power reading`.
    pub const ENERGY_BASIS: &str = "energy_basis";
    /// Devices seen without any energy in the window.
    pub const NO_POWER_DEVICES: &str = "no_power_devices";
    /// Work (TH) of miners without a power reading (left out of J/TH).
    pub const UNPOWERED_WORK_TH: &str = "unpowered_work_th";
    /// `meter` when a site meter measured `facility_energy_j`, else `pue`.
    pub const FACILITY_BASIS: &str = "facility_basis";
    /// The workload's IT energy per group, `group=J;…`, and the site's group
    /// meters as read, `group=J;…` and `group=covered_s;…` (for reconciliation).
    pub const GROUP_ENERGY_J: &str = "group_energy_j";
    pub const GROUP_METER_J: &str = "group_meter_j";
    pub const GROUP_METER_S: &str = "group_meter_s";
}

/// A group meter (site, feeder, container) against the devices it feeds, one
/// point per site, group and window (see `aggregate::reconcile`).
pub mod meter_reconciliation {
    pub const MEASUREMENT: &str = "meter_reconciliation";
    pub const TAG_SITE: &str = "site";
    pub const TAG_GROUP: &str = "group";
    pub const TAG_WINDOW: &str = "window";
    pub const METER_ENERGY_J: &str = "meter_energy_j";
    /// Time the group's meter channels had energy ÷ the window.
    pub const METER_COVERAGE: &str = "meter_coverage";
    pub const DEVICES_ENERGY_J: &str = "devices_energy_j";
    /// Meter − devices.
    pub const GAP_KWH: &str = "gap_kwh";
    /// Gap ÷ meter × 100; absent when the meter covered under 95 % of the window.
    pub const GAP_PCT: &str = "gap_pct";
}

/// The energy ledger: one point per device per clock-aligned `ledger_interval`,
/// written by the agent from the samples it collected (see `src/ledger/`). Stamped
/// at the interval's start; tags are the device's own (host, uuid, miner, server,
/// workload, …) plus `source` and `basis`. Durations are in seconds.
pub mod energy_ledger {
    pub const MEASUREMENT: &str = "energy_ledger";
    /// Tag: the raw measurement the device's samples are in (`gpu`, `asic`, `inference`).
    pub const TAG_SOURCE: &str = "source";
    /// Tag: what the power reading is: `board` (NVML), `reported` or `estimated`
    /// (a miner's `power_source`), `meter`.
    pub const TAG_BASIS: &str = "basis";
    /// Energy of the interval, J.
    pub const ENERGY_J: &str = "energy_j";
    /// Time covered by energy, and the interval's length.
    pub const COVERED_S: &str = "covered_s";
    pub const EXPECTED_S: &str = "expected_s";
    /// The part of `covered_s` whose energy came from the NVML energy counter.
    pub const COUNTER_S: &str = "counter_s";
    /// `counter`, `power_integral`, `reported`, `estimated`, `meter`, or `none`.
    pub const METHOD: &str = "method";
    /// Energy ÷ covered time, and the highest power reading in the interval.
    pub const POWER_MEAN_W: &str = "power_mean_w";
    pub const POWER_MAX_W: &str = "power_max_w";
    /// Samples whose timestamps fall in the interval.
    pub const SAMPLES: &str = "samples";
    /// The `max_gap` the agent integrated with: a reader with another max_gap
    /// recomputes the interval from raw samples.
    pub const MAX_GAP_S: &str = "max_gap_s";
    /// Miners: ∫ hashrate dt (TH) and Δ accepted difficulty (absent when the miner
    /// reports none).
    pub const WORK_TH: &str = "work_th";
    pub const DIFF_ACCEPTED: &str = "diff_accepted";
    /// Inference servers: Δ prompt and generation tokens.
    pub const PROMPT_TOKENS: &str = "prompt_tokens";
    pub const GENERATION_TOKENS: &str = "generation_tokens";
    /// Time healthy at both ends of an interval (GPU `status=ok`, miner `online`).
    pub const HEALTHY_S: &str = "healthy_s";
    /// GPUs: time at or above a utilisation threshold, one field per threshold the
    /// agent is configured with: `util_ge_50_s` for 50 %.
    pub fn util_ge_s(threshold_pct: f64) -> String {
        format!("util_ge_{threshold_pct}_s")
    }
}

/// The hourly roll-up of the energy ledger: one point per device per clock hour,
/// written by the agent once every `energy_ledger` interval of that hour has been
/// written and none can change (see `src/ledger/writer.rs`). Its tags and fields
/// are those of [`energy_ledger`] summed over the hour (`power_max_w` the hour's
/// highest, `expected_s` the hour, 3600), plus [`energy_ledger_hourly::INTERVALS`].
/// An hour with a missing interval gets no point; the aggregator then sums the
/// minute points.
pub mod energy_ledger_hourly {
    pub const MEASUREMENT: &str = "energy_ledger_hourly";
    /// The `energy_ledger` points summed (3600 ÷ `[ledger] interval`).
    pub const INTERVALS: &str = "intervals";
    /// The roll-up's length.
    pub const HOUR_NS: i64 = 3_600_000_000_000;
}

/// The agent's own telemetry.
pub mod agent {
    pub const MEASUREMENT: &str = "agent";
    pub const POINTS_COLLECTED: &str = "points_collected";
    pub const POINTS_SHIPPED: &str = "points_shipped";
    pub const POINTS_SPOOLED: &str = "points_spooled";
    pub const POINTS_DROPPED: &str = "points_dropped";
    pub const ERRORS: &str = "errors";
    pub const COLLECT_LATENCY_MS: &str = "collect_latency_ms";
    pub const SPOOL_BYTES: &str = "spool_bytes";
    /// On per-source `agent` points: the source's name (`nvml`, `miners`, `inference:NAME`).
    pub const TAG_SOURCE: &str = "source";
    /// Counter: points the store refused (HTTP 400), kept in the spool's `rejected/` folder.
    pub const POINTS_REJECTED: &str = "points_rejected";
    /// Counter: failed spool appends (full disk, I/O errors).
    pub const SPOOL_ERRORS: &str = "spool_errors";
    /// Counter: failed write requests (the batch stays in the spool and is retried).
    pub const SHIP_ERRORS: &str = "ship_errors";
}

/// The alert engine's changes, one point per alert per change (Grafana draws them
/// as annotations). Besides these tags, `site`, `workload`, `host` and `device`
/// where the alert has them.
pub mod alert {
    pub const MEASUREMENT: &str = "alert";
    pub const TAG_ALERTNAME: &str = "alertname";
    pub const TAG_SEVERITY: &str = "severity";
    /// `pending`, `firing` or `resolved`.
    pub const TAG_STATE: &str = "state";
    pub const TAG_DEVICE: &str = "device";
    /// The measured value the rule compared.
    pub const VALUE: &str = "value";
    pub const THRESHOLD: &str = "threshold";
    /// The alert's summary: value, threshold and window in words.
    pub const SUMMARY: &str = "summary";
}

/// The alert engine's own telemetry: one point per configured sink per evaluation.
pub mod alert_delivery {
    pub const MEASUREMENT: &str = "alert_delivery";
    /// `alertmanager` or `webhook`.
    pub const TAG_SINK: &str = "sink";
    /// Counter: requests the sink accepted since the aggregator started.
    pub const SENT: &str = "sent";
    /// Counter: failed requests (each retry counts) since the aggregator started.
    pub const FAILURES: &str = "failures";
    /// True while delivery to the sink fails.
    pub const DOWN: &str = "down";
}

/// One measurement's names: what code that must know every name (the dashboard and
/// alert-rule tests, the docs) reads instead of this file's text. A new tag or field
/// goes here as well as into its module.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    pub name: &'static str,
    /// Its own tags; [`COMMON_TAGS`] apply to every measurement too.
    pub tags: &'static [&'static str],
    pub fields: &'static [&'static str],
}

/// Tags any point may carry, whatever its measurement.
pub const COMMON_TAGS: &[&str] = &[TAG_SITE, TAG_HOST, TAG_WORKLOAD];

/// Every measurement wattledger writes.
pub const MEASUREMENTS: &[Measurement] = &[
    Measurement {
        name: gpu::MEASUREMENT,
        tags: &[gpu::TAG_GPU, gpu::TAG_UUID, gpu::TAG_MODEL],
        fields: &[
            gpu::POWER_W,
            gpu::POWER_INSTANT_W,
            gpu::ENERGY_J,
            gpu::UTIL_GPU_PCT,
            gpu::UTIL_MEM_PCT,
            gpu::MEM_USED_BYTES,
            gpu::MEM_TOTAL_BYTES,
            gpu::TEMP_C,
            gpu::SM_CLOCK_MHZ,
            gpu::POWER_LIMIT_W,
            gpu::STATUS,
        ],
    },
    Measurement {
        name: asic::MEASUREMENT,
        tags: &[asic::TAG_MINER, asic::TAG_MAKE, asic::TAG_MODEL, asic::TAG_FIRMWARE, asic::TAG_POWER_SOURCE],
        fields: &[
            asic::POWER_W,
            asic::HASHRATE_THS,
            asic::DIFF_ACCEPTED,
            asic::SHARES_ACCEPTED,
            asic::SHARES_REJECTED,
            asic::TEMP_C_MAX,
            asic::FAN_RPM_AVG,
            asic::UPTIME_S,
            asic::POOL_URL,
            asic::POOL_USER,
            asic::POOL_ALIVE,
            asic::ONLINE,
        ],
    },
    Measurement {
        name: inference::MEASUREMENT,
        tags: &[inference::TAG_SERVER, inference::TAG_MODEL],
        fields: &[inference::PROMPT_TOKENS, inference::GENERATION_TOKENS, inference::REQUESTS],
    },
    Measurement {
        name: host_power::MEASUREMENT,
        tags: &[host_power::TAG_SOURCE],
        fields: &[host_power::POWER_W, host_power::ENERGY_J],
    },
    Measurement {
        name: market::MEASUREMENT,
        tags: &[market::TAG_SOURCE],
        fields: &[
            market::BTC_USD,
            market::DIFFICULTY,
            market::BLOCK_SUBSIDY_BTC,
            market::FEES_BTC_PER_BLOCK,
            market::HASHPRICE_USD_PER_PHS_DAY,
        ],
    },
    Measurement {
        name: energy_price::MEASUREMENT,
        tags: &[energy_price::TAG_SITE],
        fields: &[energy_price::USD_PER_KWH],
    },
    Measurement {
        name: workload_efficiency::MEASUREMENT,
        tags: &[
            workload_efficiency::TAG_SITE,
            workload_efficiency::TAG_WORKLOAD,
            workload_efficiency::TAG_KIND,
            workload_efficiency::TAG_WINDOW,
        ],
        fields: &[
            workload_efficiency::WINDOW_S,
            workload_efficiency::ENERGY_J,
            workload_efficiency::FACILITY_ENERGY_J,
            workload_efficiency::REVENUE_USD,
            workload_efficiency::ENERGY_COST_USD,
            workload_efficiency::PROFIT_USD,
            workload_efficiency::REVENUE_USD_PER_KWH,
            workload_efficiency::PROFIT_USD_PER_KWH,
            workload_efficiency::COVERAGE,
            workload_efficiency::AVG_POWER_W,
            workload_efficiency::DEVICES,
            workload_efficiency::WORK_TH,
            workload_efficiency::TOKENS,
        ],
    },
    Measurement {
        name: meter_reconciliation::MEASUREMENT,
        tags: &[meter_reconciliation::TAG_SITE, meter_reconciliation::TAG_GROUP, meter_reconciliation::TAG_WINDOW],
        fields: &[
            meter_reconciliation::METER_ENERGY_J,
            meter_reconciliation::METER_COVERAGE,
            meter_reconciliation::DEVICES_ENERGY_J,
            meter_reconciliation::GAP_KWH,
            meter_reconciliation::GAP_PCT,
        ],
    },
    Measurement {
        name: agent::MEASUREMENT,
        tags: &[agent::TAG_SOURCE],
        fields: &[
            agent::POINTS_COLLECTED,
            agent::POINTS_SHIPPED,
            agent::POINTS_SPOOLED,
            agent::POINTS_DROPPED,
            agent::ERRORS,
            agent::COLLECT_LATENCY_MS,
            agent::SPOOL_BYTES,
            agent::POINTS_REJECTED,
            agent::SPOOL_ERRORS,
            agent::SHIP_ERRORS,
        ],
    },
    Measurement {
        name: alert::MEASUREMENT,
        tags: &[alert::TAG_ALERTNAME, alert::TAG_SEVERITY, alert::TAG_STATE, alert::TAG_DEVICE],
        fields: &[alert::VALUE, alert::THRESHOLD, alert::SUMMARY],
    },
    Measurement {
        name: alert_delivery::MEASUREMENT,
        tags: &[alert_delivery::TAG_SINK],
        fields: &[alert_delivery::SENT, alert_delivery::FAILURES, alert_delivery::DOWN],
    },
];

/// Joules in one kilowatt-hour.
pub const J_PER_KWH: f64 = 3.6e6;
