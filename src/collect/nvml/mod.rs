//! GPUs through NVML (`nvml-wrapper`): one [`GpuReading`] per GPU per poll, turned
//! into a `gpu` point. See `README.md` beside this file for every metric and unit.
//!
//! Shaped by how NVML fails in the field:
//! - NVML is initialised once and kept for the life of the source; polling only calls
//!   the per-device getters.
//! - Each reading is fetched on its own, so a getter the GPU or the library does not
//!   support (NOT_SUPPORTED, or a symbol an older driver lacks) only leaves that field
//!   out; it is logged once per GPU and field.
//! - A GPU that has fallen off the bus (GPU_IS_LOST) or whose handle cannot be had is
//!   reported with a status and null values, never stale ones, and the other GPUs are
//!   still read. Handles are fetched every poll, so a GPU that comes back is read again.
//! - Units are converted here, once: mW → W, mJ → J.
//! - Only whole GPUs are enumerated (`nvmlDeviceGetCount`), never MIG instances, so the
//!   parent's power and energy counter are counted once per GPU.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError as WrapperError;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::{Device, Nvml};

use crate::collect::{Source, SourceError};
use crate::model::schema::gpu as schema;
use crate::model::Point;

/// The library the NVIDIA driver installs (found through the dynamic loader's search path).
pub const DEFAULT_LIB: &str = "libnvidia-ml.so.1";

const NVML_FI_DEV_POWER_AVERAGE: u32 = 185;
const NVML_FI_DEV_POWER_INSTANT: u32 = 186;

/// Why NVML could not be opened. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum NvmlError {
    #[error("NVML not found: install the NVIDIA driver, or pass --nvml-lib PATH ({detail})")]
    NotFound { detail: String },
    #[error("{path} is not an NVML library ({detail}); pass --nvml-lib the path of libnvidia-ml.so.1")]
    NotNvml { path: String, detail: String },
    #[error("NVML in {path} failed to initialise: {detail}; check that the NVIDIA driver is installed and loaded (nvidia-smi should work)")]
    Init { path: String, detail: String },
    #[error("NVML in {path}: {detail}")]
    Other { path: String, detail: String },
    /// A statically linked build (the musl release binary) cannot load any shared
    /// library, so it cannot read GPUs at all.
    #[error("this wattledger is a static build, which cannot load {path} ({detail}); GPU hosts need the glibc build (the .deb, or .ci/release.sh's binary)")]
    StaticBuild { path: String, detail: String },
}

/// Whether a GPU could be read this poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuStatus {
    Ok,
    /// NVML_ERROR_GPU_IS_LOST: fallen off the bus or otherwise inaccessible.
    Lost,
    /// Any other per-device error, as text.
    Error(String),
}

impl GpuStatus {
    pub fn as_str(&self) -> &str {
        match self {
            GpuStatus::Ok => "ok",
            GpuStatus::Lost => "lost",
            GpuStatus::Error(e) => e,
        }
    }
}

/// One GPU, one poll, in SI-ish units. `None` = not reported (unsupported, or the GPU
/// could not be read). `uuid` and `name` identify the GPU and are kept from its last
/// successful read while it is lost, so that its points stay attributable.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub uuid: Option<String>,
    pub name: Option<String>,
    /// Averaged power (NVML_FI_DEV_POWER_AVERAGE, else nvmlDeviceGetPowerUsage), W.
    pub power_w: Option<f64>,
    /// Instantaneous power (NVML_FI_DEV_POWER_INSTANT), W.
    pub power_instant_w: Option<f64>,
    /// Total energy counter since driver load, J.
    pub energy_j: Option<f64>,
    pub util_gpu_pct: Option<u32>,
    pub util_mem_pct: Option<u32>,
    pub mem_used_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub temp_c: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    /// Enforced power limit, W.
    pub power_limit_w: Option<f64>,
    pub status: GpuStatus,
}

impl GpuReading {
    fn empty(index: u32, status: GpuStatus) -> Self {
        GpuReading {
            index,
            uuid: None,
            name: None,
            power_w: None,
            power_instant_w: None,
            energy_j: None,
            util_gpu_pct: None,
            util_mem_pct: None,
            mem_used_bytes: None,
            mem_total_bytes: None,
            temp_c: None,
            sm_clock_mhz: None,
            power_limit_w: None,
            status,
        }
    }

    /// The `gpu` measurement: tags gpu (index), uuid, model; absent readings are left out.
    pub fn to_point(&self, time_ns: i64) -> Point {
        let mut p = Point::new(schema::MEASUREMENT, time_ns).tag(schema::TAG_GPU, self.index.to_string());
        if let Some(u) = &self.uuid {
            p = p.tag(schema::TAG_UUID, u.as_str());
        }
        if let Some(n) = &self.name {
            p = p.tag(schema::TAG_MODEL, n.as_str());
        }
        p.field_opt(schema::POWER_W, self.power_w)
            .field_opt(schema::POWER_INSTANT_W, self.power_instant_w)
            .field_opt(schema::ENERGY_J, self.energy_j)
            .field_opt(schema::UTIL_GPU_PCT, self.util_gpu_pct.map(i64::from))
            .field_opt(schema::UTIL_MEM_PCT, self.util_mem_pct.map(i64::from))
            .field_opt(schema::MEM_USED_BYTES, self.mem_used_bytes.map(|v| v as i64))
            .field_opt(schema::MEM_TOTAL_BYTES, self.mem_total_bytes.map(|v| v as i64))
            .field_opt(schema::TEMP_C, self.temp_c.map(i64::from))
            .field_opt(schema::SM_CLOCK_MHZ, self.sm_clock_mhz.map(i64::from))
            .field_opt(schema::POWER_LIMIT_W, self.power_limit_w)
            .field(schema::STATUS, self.status.as_str())
    }
}

/// Per-GPU memory between polls: identity for tags while lost, the last energy counter
/// (to log a backwards step), and which unsupported readings were already logged.
#[derive(Default)]
struct GpuMemory {
    uuid: Option<String>,
    name: Option<String>,
    last_energy_mj: Option<u64>,
    mig_checked: bool,
    was_lost: bool,
}

/// The NVML source: `Source` name `nvml`.
pub struct NvmlSource {
    nvml: Nvml,
    lib: String,
    gpus: HashMap<u32, GpuMemory>,
    logged: HashSet<(u32, &'static str)>,
}

impl NvmlSource {
    /// Loads and initialises NVML from `lib_path`, or the system's `libnvidia-ml.so.1`.
    pub fn open(lib_path: Option<&Path>) -> Result<Self, NvmlError> {
        let lib = lib_path.map_or_else(|| DEFAULT_LIB.to_string(), |p| p.display().to_string());
        if let Some(p) = lib_path {
            if !p.exists() {
                return Err(NvmlError::NotFound { detail: format!("{} does not exist", p.display()) });
            }
        }
        let os: PathBuf = lib_path.map_or_else(|| PathBuf::from(DEFAULT_LIB), Path::to_path_buf);
        let nvml = Nvml::builder()
            .lib_path(OsStr::new(os.as_os_str()))
            .init()
            .map_err(|e| open_error(&lib, lib_path.is_some(), e))?;
        Ok(NvmlSource { nvml, lib, gpus: HashMap::new(), logged: HashSet::new() })
    }

    /// The library this source loaded, as given.
    pub fn lib(&self) -> &str {
        &self.lib
    }

    /// The driver version NVML reports, if it does.
    pub fn driver_version(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    /// Reads every GPU once. Never fails as a whole once NVML is open: a GPU that
    /// cannot be read is a reading with a status.
    /// (Only if NVML cannot even count the GPUs is the result empty; that is logged,
    /// and [`Source::collect`] returns it as an error.)
    pub fn read_all(&mut self) -> Vec<GpuReading> {
        self.try_read_all().unwrap_or_else(|e| {
            tracing::warn!(lib = %self.lib, error = %e, "NVML cannot count the GPUs");
            Vec::new()
        })
    }

    fn try_read_all(&mut self) -> Result<Vec<GpuReading>, WrapperError> {
        let count = self.nvml.device_count()?;
        Ok((0..count).map(|i| self.read_one(i)).collect())
    }

    fn read_one(&mut self, index: u32) -> GpuReading {
        let device = match self.nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => return self.unreadable(index, e),
        };
        let mem = self.gpus.entry(index).or_default();
        if mem.was_lost {
            // A GPU that returns is asked for its identity again.
            mem.uuid = None;
            mem.name = None;
            mem.mig_checked = false;
        }
        let mut r = GpuReading::empty(index, GpuStatus::Ok);
        let mut logs: Vec<(&'static str, WrapperError)> = Vec::new();
        let outcome = read_device(&device, &mut r, &mut logs, mem);
        for (field, err) in logs {
            self.log_once(index, field, &err);
        }
        if let Err(e) = outcome {
            return self.unreadable(index, e);
        }
        let mem = self.gpus.entry(index).or_default();
        if mem.was_lost {
            tracing::info!(gpu = index, uuid = ?r.uuid, "GPU is readable again");
            mem.was_lost = false;
        }
        r
    }

    /// A GPU that could not be read: status, no values, identity kept for the tags.
    fn unreadable(&mut self, index: u32, e: WrapperError) -> GpuReading {
        let mem = self.gpus.entry(index).or_default();
        let status = match e {
            WrapperError::GpuLost => GpuStatus::Lost,
            other => GpuStatus::Error(other.to_string()),
        };
        if !mem.was_lost {
            tracing::warn!(gpu = index, uuid = ?mem.uuid, status = status.as_str(), "GPU cannot be read; reporting it without values");
            mem.was_lost = true;
        }
        let mut r = GpuReading::empty(index, status);
        r.uuid = mem.uuid.clone();
        r.name = mem.name.clone();
        r
    }

    fn log_once(&mut self, index: u32, field: &'static str, e: &WrapperError) {
        if self.logged.insert((index, field)) {
            match e {
                WrapperError::NotSupported | WrapperError::FailedToLoadSymbol(_) => {
                    tracing::info!(gpu = index, field, error = %e, "GPU does not report this reading; leaving it out")
                }
                _ => tracing::warn!(gpu = index, field, error = %e, "reading failed; leaving it out"),
            }
        }
    }
}

/// Reads every field of one GPU into `r`. A field error is recorded in `logs` and the
/// field left out; GPU_IS_LOST from any call aborts the whole GPU (no partial values).
fn read_device(
    device: &Device<'_>,
    r: &mut GpuReading,
    logs: &mut Vec<(&'static str, WrapperError)>,
    mem: &mut GpuMemory,
) -> Result<(), WrapperError> {
    fn keep<T>(
        field: &'static str,
        res: Result<T, WrapperError>,
        logs: &mut Vec<(&'static str, WrapperError)>,
    ) -> Result<Option<T>, WrapperError> {
        match res {
            Ok(v) => Ok(Some(v)),
            Err(WrapperError::GpuLost) => Err(WrapperError::GpuLost),
            Err(e) => {
                logs.push((field, e));
                Ok(None)
            }
        }
    }

    if mem.uuid.is_none() {
        mem.uuid = keep("uuid", device.uuid(), logs)?;
    }
    if mem.name.is_none() {
        mem.name = keep("name", device.name(), logs)?;
    }
    r.uuid = mem.uuid.clone();
    r.name = mem.name.clone();
    if !mem.mig_checked {
        mem.mig_checked = true;
        if let Some(m) = keep("mig_mode", device.mig_mode(), logs)? {
            if m.current == 1 {
                tracing::info!(gpu = r.index, uuid = ?r.uuid, "MIG is enabled: power and energy are read once on the parent GPU; instances are not reported separately");
            }
        }
    }

    let fields = keep(
        "field_values",
        device.field_values_for(&[
            nvml_wrapper::structs::device::FieldId(NVML_FI_DEV_POWER_AVERAGE),
            nvml_wrapper::structs::device::FieldId(NVML_FI_DEV_POWER_INSTANT),
        ]),
        logs,
    )?;
    if let Some(samples) = fields {
        let mut it = samples.into_iter();
        r.power_w = keep("power_average", field_mw(it.next()), logs)?.flatten().map(mw_to_w);
        r.power_instant_w = keep("power_instant", field_mw(it.next()), logs)?.flatten().map(mw_to_w);
    }
    if r.power_w.is_none() {
        r.power_w = keep("power_usage", device.power_usage(), logs)?.map(|mw| mw_to_w(u64::from(mw)));
    }
    if let Some(mj) = keep("energy", device.total_energy_consumption(), logs)? {
        if let Some(prev) = mem.last_energy_mj {
            if mj < prev {
                tracing::warn!(gpu = r.index, uuid = ?r.uuid, previous_mj = prev, now_mj = mj, "energy counter went backwards (driver reload or GPU reset); reported as is");
            }
        }
        mem.last_energy_mj = Some(mj);
        r.energy_j = Some(mj as f64 / 1000.0);
    }
    if let Some(u) = keep("utilization", device.utilization_rates(), logs)? {
        r.util_gpu_pct = Some(u.gpu);
        r.util_mem_pct = Some(u.memory);
    }
    if let Some(m) = keep("memory", device.memory_info(), logs)? {
        r.mem_used_bytes = Some(m.used);
        r.mem_total_bytes = Some(m.total);
    }
    r.temp_c = keep("temperature", device.temperature(TemperatureSensor::Gpu), logs)?;
    r.sm_clock_mhz = keep("sm_clock", device.clock_info(Clock::SM), logs)?;
    r.power_limit_w = keep("power_limit", device.enforced_power_limit(), logs)?.map(|mw| mw_to_w(u64::from(mw)));
    Ok(())
}

/// One field-value sample as milliwatts; `Ok(None)` when the sample is missing or not a number.
fn field_mw(sample: Option<Result<FieldValueSample, WrapperError>>) -> Result<Option<u64>, WrapperError> {
    let Some(sample) = sample else { return Ok(None) };
    Ok(match sample?.value? {
        SampleValue::U32(v) => Some(u64::from(v)),
        SampleValue::U64(v) => Some(v),
        SampleValue::I64(v) => u64::try_from(v).ok(),
        SampleValue::F64(v) if v >= 0.0 => Some(v as u64),
        SampleValue::F64(_) => None,
    })
}

fn mw_to_w(mw: u64) -> f64 {
    mw as f64 / 1000.0
}

/// Sorts a load/init failure into what the user should do about it.
fn open_error(lib: &str, explicit: bool, e: WrapperError) -> NvmlError {
    match e {
        WrapperError::LibloadingError(le) => {
            let detail = le.to_string();
            // musl's dlopen in a static binary fails with this, whatever the path.
            if detail.contains("Dynamic loading not supported") {
                return NvmlError::StaticBuild { path: lib.to_string(), detail };
            }
            let missing = detail.contains("No such file") || detail.contains("cannot open shared object");
            if missing && !explicit {
                NvmlError::NotFound { detail }
            } else {
                NvmlError::NotNvml { path: lib.to_string(), detail }
            }
        }
        WrapperError::FailedToLoadSymbol(detail) => NvmlError::NotNvml { path: lib.to_string(), detail },
        WrapperError::DriverNotLoaded
        | WrapperError::NoPermission
        | WrapperError::LibRmVersionMismatch
        | WrapperError::Unknown
        | WrapperError::UnexpectedVariant(_)
        | WrapperError::Uninitialized => NvmlError::Init { path: lib.to_string(), detail: e.to_string() },
        other => NvmlError::Other { path: lib.to_string(), detail: other.to_string() },
    }
}

#[async_trait]
impl Source for NvmlSource {
    fn name(&self) -> &str {
        "nvml"
    }

    async fn collect(&mut self, time_ns: i64) -> Result<Vec<Point>, SourceError> {
        let readings = self
            .try_read_all()
            .map_err(|e| SourceError::new("nvml", format!("{}: cannot count the GPUs: {e}", self.lib)))?;
        Ok(readings.iter().map(|r| r.to_point(time_ns)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    #[test]
    fn lost_reading_has_status_and_no_values() {
        let mut r = GpuReading::empty(3, GpuStatus::Lost);
        r.uuid = Some("GPU-abc".into());
        let p = r.to_point(7);
        assert_eq!(p.tag_value("gpu"), Some("3"));
        assert_eq!(p.tag_value("uuid"), Some("GPU-abc"));
        assert_eq!(p.fields, vec![("status".to_string(), FieldValue::Str("lost".into()))]);
    }

    #[test]
    fn units_are_converted_once() {
        assert_eq!(mw_to_w(152_250), 152.25);
        let mut r = GpuReading::empty(0, GpuStatus::Ok);
        r.power_w = Some(152.25);
        r.mem_used_bytes = Some(1 << 40);
        let p = r.to_point(1);
        assert_eq!(p.field_value("power_w"), Some(&FieldValue::Float(152.25)));
        assert_eq!(p.field_value("mem_used_bytes"), Some(&FieldValue::Int(1 << 40)));
        assert_eq!(p.field_value("status").and_then(|v| v.as_str()), Some("ok"));
    }
}
