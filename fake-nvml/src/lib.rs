//! A fake `libnvidia-ml.so`: exports the NVML C ABI (NVIDIA's exact symbol names,
//! signatures, struct layouts and return codes) and answers from a scripted scenario,
//! so that the real `nvml-wrapper` code path, and NVIDIA's own Python binding, run
//! without a GPU. It is a test double for tests, the simulator and the demo; nothing
//! in production loads it.
//!
//! The scenario is a JSON file named by `FAKE_NVML_SCENARIO`, or else
//! `fake-nvml-scenario.json` in the directory the library was loaded from (so that
//! private copies of the library each carry their own scenario). It is read at the
//! first `nvmlInit*` (init is refcounted like real NVML: the state lives until the
//! last `nvmlShutdown`).
//!
//! Time: simulated seconds since the scenario's start; by default real time since the
//! library's first init times `speed`. `fakeNvmlSetSimTimeNs(unix_ns)` pins the clock
//! to an explicit Unix time, after which it only moves when called again.
#![allow(non_snake_case, non_camel_case_types, clippy::missing_safety_doc)]

mod scenario;

use std::os::raw::{c_char, c_int, c_uint, c_ulonglong};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use scenario::{Gpu, PowerUsageReports, Reading, Scenario};

pub type nvmlReturn_t = c_uint;

pub const NVML_SUCCESS: nvmlReturn_t = 0;
pub const NVML_ERROR_UNINITIALIZED: nvmlReturn_t = 1;
pub const NVML_ERROR_INVALID_ARGUMENT: nvmlReturn_t = 2;
pub const NVML_ERROR_NOT_SUPPORTED: nvmlReturn_t = 3;
pub const NVML_ERROR_INSUFFICIENT_SIZE: nvmlReturn_t = 7;
pub const NVML_ERROR_GPU_IS_LOST: nvmlReturn_t = 15;
pub const NVML_ERROR_ARGUMENT_VERSION_MISMATCH: nvmlReturn_t = 25;
pub const NVML_ERROR_UNKNOWN: nvmlReturn_t = 999;

pub const NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: c_uint = 83;
pub const NVML_FI_DEV_POWER_AVERAGE: c_uint = 185;
pub const NVML_FI_DEV_POWER_INSTANT: c_uint = 186;

const NVML_VALUE_TYPE_UNSIGNED_INT: c_uint = 1;
const NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: c_uint = 3;

/// Opaque device handle; the fake hands out `index + 1` as the pointer value.
#[repr(C)]
pub struct nvmlDevice_st {
    _p: [u8; 0],
}
pub type nvmlDevice_t = *mut nvmlDevice_st;

#[repr(C)]
pub struct nvmlUtilization_t {
    pub gpu: c_uint,
    pub memory: c_uint,
}

#[repr(C)]
pub struct nvmlMemory_t {
    pub total: c_ulonglong,
    pub free: c_ulonglong,
    pub used: c_ulonglong,
}

#[repr(C)]
pub struct nvmlMemory_v2_t {
    pub version: c_uint,
    pub total: c_ulonglong,
    pub reserved: c_ulonglong,
    pub free: c_ulonglong,
    pub used: c_ulonglong,
}

/// `nvmlMemory_v2` = sizeof(nvmlMemory_v2_t) | (2 << 24), as in nvml.h.
const NVML_MEMORY_V2: c_uint = std::mem::size_of::<nvmlMemory_v2_t>() as c_uint | (2 << 24);

#[repr(C)]
#[derive(Clone, Copy)]
pub union nvmlValue_t {
    pub dVal: f64,
    pub siVal: c_int,
    pub uiVal: c_uint,
    pub ulVal: std::os::raw::c_ulong,
    pub ullVal: c_ulonglong,
    pub sllVal: std::os::raw::c_longlong,
    pub usVal: std::os::raw::c_ushort,
}

#[repr(C)]
pub struct nvmlFieldValue_t {
    pub fieldId: c_uint,
    pub scopeId: c_uint,
    pub timestamp: std::os::raw::c_longlong,
    pub latencyUsec: std::os::raw::c_longlong,
    pub valueType: c_uint,
    pub nvmlReturn: nvmlReturn_t,
    pub value: nvmlValue_t,
}

struct State {
    init_count: u32,
    scenario: Option<Scenario>,
    origin: Option<Instant>,
    start_unix_ns: i64,
    /// Set by `fakeNvmlSetSimTimeNs`; survives shutdown and re-init.
    pinned_unix_ns: Option<i64>,
}

static STATE: Mutex<State> =
    Mutex::new(State { init_count: 0, scenario: None, origin: None, start_unix_ns: 0, pinned_unix_ns: None });

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Simulated Unix time in ns.
    fn now_unix_ns(&self, scenario: &Scenario) -> i64 {
        if let Some(p) = self.pinned_unix_ns.or(scenario.pin_unix_ns) {
            return p;
        }
        let elapsed = self.origin.map_or(0.0, |o| o.elapsed().as_secs_f64());
        self.start_unix_ns + (elapsed * scenario.speed * 1e9) as i64
    }

    /// Simulated seconds since the scenario's start (never negative).
    fn sim_t(&self, scenario: &Scenario) -> f64 {
        ((self.now_unix_ns(scenario) - self.start_unix_ns) as f64 / 1e9).max(0.0)
    }
}

fn real_unix_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The directory this library was loaded from, found through /proc/self/maps.
fn own_dir() -> Option<std::path::PathBuf> {
    let addr = own_dir as *const () as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next()?;
        let (lo, hi) = range.split_once('-')?;
        let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
        if addr >= lo && addr < hi {
            let path = parts.nth(4)?;
            return std::path::Path::new(path).parent().map(|p| p.to_path_buf());
        }
    }
    None
}

fn load_scenario() -> Result<Scenario, String> {
    let path = match std::env::var_os("FAKE_NVML_SCENARIO") {
        Some(p) => std::path::PathBuf::from(p),
        None => match own_dir() {
            Some(d) if d.join("fake-nvml-scenario.json").exists() => d.join("fake-nvml-scenario.json"),
            _ => {
                return Err("no scenario: set FAKE_NVML_SCENARIO to a scenario file, or put \
                            fake-nvml-scenario.json next to the library"
                    .into())
            }
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn init() -> nvmlReturn_t {
    let mut st = state();
    if st.init_count > 0 {
        st.init_count += 1;
        return NVML_SUCCESS;
    }
    let scenario = match load_scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-nvml: {e}");
            return NVML_ERROR_UNKNOWN;
        }
    };
    if let Some(code) = scenario.init_error {
        return code;
    }
    if st.origin.is_none() {
        st.origin = Some(Instant::now());
    }
    st.start_unix_ns = scenario.start_unix_ns.unwrap_or_else(real_unix_ns);
    st.scenario = Some(scenario);
    st.init_count = 1;
    NVML_SUCCESS
}

#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    init()
}

#[no_mangle]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    init()
}

#[no_mangle]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    let mut st = state();
    match st.init_count {
        0 => NVML_ERROR_UNINITIALIZED,
        1 => {
            st.init_count = 0;
            st.scenario = None;
            NVML_SUCCESS
        }
        _ => {
            st.init_count -= 1;
            NVML_SUCCESS
        }
    }
}

/// Pins the simulated clock to `unix_ns` (ns since the Unix epoch): from now on time
/// only moves when this is called again. Control symbol of the fake, not part of NVML.
#[no_mangle]
pub extern "C" fn fakeNvmlSetSimTimeNs(unix_ns: i64) {
    state().pinned_unix_ns = Some(unix_ns);
}

/// Unpins the simulated clock (back to real elapsed time × speed). Not part of NVML.
#[no_mangle]
pub extern "C" fn fakeNvmlClearSimTime() {
    state().pinned_unix_ns = None;
}

#[no_mangle]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    let s: &'static [u8] = match result {
        0 => b"Success\0",
        1 => b"Uninitialized\0",
        2 => b"Invalid Argument\0",
        3 => b"Not Supported\0",
        4 => b"Insufficient Permissions\0",
        5 => b"Already Initialized\0",
        6 => b"Not Found\0",
        7 => b"Insufficient Size\0",
        8 => b"Insufficient External Power\0",
        9 => b"Driver Not Loaded\0",
        10 => b"Timeout\0",
        11 => b"Interrupt Request Issue\0",
        12 => b"NVML Shared Library Not Found\0",
        13 => b"Function Not Found\0",
        14 => b"Corrupted infoROM\0",
        15 => b"GPU is lost\0",
        16 => b"GPU requires restart\0",
        17 => b"Operating System Not Supported\0",
        18 => b"RM has detected an NVML/RM version mismatch.\0",
        19 => b"In use by another client\0",
        20 => b"Insufficient Memory\0",
        21 => b"No data\0",
        25 => b"Argument version mismatch\0",
        _ => b"Unknown Error\0",
    };
    s.as_ptr() as *const c_char
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    let st = state();
    let Some(sc) = st.scenario.as_ref() else { return NVML_ERROR_UNINITIALIZED };
    write_str(&sc.driver_version, version, length)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    let st = state();
    let Some(sc) = st.scenario.as_ref() else { return NVML_ERROR_UNINITIALIZED };
    if count.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    *count = sc.gpus.len() as c_uint;
    NVML_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    let st = state();
    let Some(sc) = st.scenario.as_ref() else { return NVML_ERROR_UNINITIALIZED };
    if device.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let Some(gpu) = sc.gpus.get(index as usize) else { return NVML_ERROR_INVALID_ARGUMENT };
    if gpu.is_lost(st.sim_t(sc)) {
        return NVML_ERROR_GPU_IS_LOST;
    }
    *device = (index as usize + 1) as nvmlDevice_t;
    NVML_SUCCESS
}

/// Everything a per-device call needs: the GPU, simulated time and the last reload.
struct Now<'a> {
    gpu: &'a Gpu,
    t: f64,
    unix_ns: i64,
    last_reload: Option<f64>,
}

/// Resolves a handle under the lock and runs `f`, answering NVML's common errors
/// (uninitialized, invalid handle, GPU lost, reading not supported) first.
fn with_device(device: nvmlDevice_t, reading: Reading, f: impl FnOnce(&Now) -> nvmlReturn_t) -> nvmlReturn_t {
    let st = state();
    let Some(sc) = st.scenario.as_ref() else { return NVML_ERROR_UNINITIALIZED };
    let index = (device as usize).wrapping_sub(1);
    let Some(gpu) = sc.gpus.get(index) else { return NVML_ERROR_INVALID_ARGUMENT };
    let t = st.sim_t(sc);
    if gpu.is_lost(t) {
        return NVML_ERROR_GPU_IS_LOST;
    }
    if !gpu.supports(reading) {
        return NVML_ERROR_NOT_SUPPORTED;
    }
    f(&Now { gpu, t, unix_ns: st.now_unix_ns(sc), last_reload: sc.last_reload(t) })
}

unsafe fn write_str(s: &str, buf: *mut c_char, length: c_uint) -> nvmlReturn_t {
    if buf.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let bytes = s.as_bytes();
    if bytes.len() + 1 > length as usize {
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, buf, bytes.len());
    *buf.add(bytes.len()) = 0;
    NVML_SUCCESS
}

fn to_u32(v: f64) -> c_uint {
    v.round().clamp(0.0, c_uint::MAX as f64) as c_uint
}

fn to_u64(v: f64) -> c_ulonglong {
    v.round().clamp(0.0, c_ulonglong::MAX as f64) as c_ulonglong
}

fn pct(v: f64) -> c_uint {
    to_u32(v.clamp(0.0, 100.0))
}

impl Now<'_> {
    fn power_instant_mw(&self) -> c_uint {
        to_u32(self.gpu.power_w.at(self.t) * 1000.0)
    }
    fn power_average_mw(&self) -> c_uint {
        to_u32(self.gpu.power_average_w(self.t) * 1000.0)
    }
    fn energy_mj(&self) -> c_ulonglong {
        to_u64(self.gpu.energy_j(self.t, self.last_reload) * 1000.0)
    }
    fn mem_used(&self) -> c_ulonglong {
        to_u64(self.gpu.mem_used_bytes.at(self.t)).min(self.gpu.mem_total_bytes)
    }
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(device: nvmlDevice_t, name: *mut c_char, length: c_uint) -> nvmlReturn_t {
    with_device(device, Reading::Name, |n| write_str(&n.gpu.name, name, length))
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: nvmlDevice_t, uuid: *mut c_char, length: c_uint) -> nvmlReturn_t {
    with_device(device, Reading::Uuid, |n| write_str(&n.gpu.uuid, uuid, length))
}

/// Milliwatts: a one-second average or the instantaneous value, per the scenario.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: nvmlDevice_t, power: *mut c_uint) -> nvmlReturn_t {
    if power.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::PowerUsage, |n| {
        *power = match n.gpu.power_usage_reports {
            PowerUsageReports::Average => n.power_average_mw(),
            PowerUsageReports::Instant => n.power_instant_mw(),
        };
        NVML_SUCCESS
    })
}

/// Millijoules since the last driver (re)load.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: nvmlDevice_t,
    energy: *mut c_ulonglong,
) -> nvmlReturn_t {
    if energy.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::Energy, |n| {
        *energy = n.energy_mj();
        NVML_SUCCESS
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    if utilization.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::Utilization, |n| {
        *utilization =
            nvmlUtilization_t { gpu: pct(n.gpu.util_gpu_pct.at(n.t)), memory: pct(n.gpu.util_mem_pct.at(n.t)) };
        NVML_SUCCESS
    })
}

/// v1 struct {total, free, used} (pynvml's default).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(device: nvmlDevice_t, memory: *mut nvmlMemory_t) -> nvmlReturn_t {
    if memory.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::Memory, |n| {
        let used = n.mem_used();
        *memory = nvmlMemory_t { total: n.gpu.mem_total_bytes, free: n.gpu.mem_total_bytes - used, used };
        NVML_SUCCESS
    })
}

/// v2 struct; the caller sets `version` to `nvmlMemory_v2`, as real NVML requires.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    if memory.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    if (*memory).version != NVML_MEMORY_V2 {
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    with_device(device, Reading::Memory, |n| {
        let used = n.mem_used();
        *memory = nvmlMemory_v2_t {
            version: NVML_MEMORY_V2,
            total: n.gpu.mem_total_bytes,
            reserved: 0,
            free: n.gpu.mem_total_bytes - used,
            used,
        };
        NVML_SUCCESS
    })
}

/// Sensor 0 (NVML_TEMPERATURE_GPU) only, °C.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: c_uint,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    if temp.is_null() || sensor != 0 {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::Temperature, |n| {
        *temp = to_u32(n.gpu.temp_c.at(n.t));
        NVML_SUCCESS
    })
}

/// MHz; 0 = graphics and 1 = SM (the same clock here), 2 = memory, 3 = video.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    clock_type: c_uint,
    clock: *mut c_uint,
) -> nvmlReturn_t {
    if clock.is_null() || clock_type > 3 {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::Clock, |n| {
        *clock = match clock_type {
            2 => to_u32(n.gpu.mem_clock_mhz.at(n.t)),
            _ => to_u32(n.gpu.sm_clock_mhz.at(n.t)),
        };
        NVML_SUCCESS
    })
}

/// Milliwatts.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(device: nvmlDevice_t, limit: *mut c_uint) -> nvmlReturn_t {
    if limit.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::PowerLimit, |n| {
        *limit = to_u32(n.gpu.power_limit_w * 1000.0);
        NVML_SUCCESS
    })
}

/// Milliwatts; the fake's management limit is the enforced limit.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimit(device: nvmlDevice_t, limit: *mut c_uint) -> nvmlReturn_t {
    nvmlDeviceGetEnforcedPowerLimit(device, limit)
}

/// NVML_DEVICE_MIG_ENABLE = 1, NVML_DEVICE_MIG_DISABLE = 0.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    if current.is_null() || pending.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    with_device(device, Reading::MigMode, |n| {
        *current = n.gpu.mig as c_uint;
        *pending = n.gpu.mig as c_uint;
        NVML_SUCCESS
    })
}

/// Answers POWER_INSTANT (186), POWER_AVERAGE (185) in mW and TOTAL_ENERGY_CONSUMPTION
/// (83) in mJ; any other field, or one the scenario marks unsupported, gets
/// NVML_ERROR_NOT_SUPPORTED in its own `nvmlReturn` while the call succeeds.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: nvmlDevice_t,
    values_count: c_int,
    values: *mut nvmlFieldValue_t,
) -> nvmlReturn_t {
    if values.is_null() || values_count < 0 {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    let values = std::slice::from_raw_parts_mut(values, values_count as usize);
    with_device(device, Reading::FieldValues, |n| {
        for v in values.iter_mut() {
            v.timestamp = n.unix_ns / 1000;
            v.latencyUsec = 0;
            let (reading, value_type, value) = match v.fieldId {
                NVML_FI_DEV_POWER_INSTANT => {
                    (Reading::PowerInstant, NVML_VALUE_TYPE_UNSIGNED_INT, nvmlValue_t { uiVal: n.power_instant_mw() })
                }
                NVML_FI_DEV_POWER_AVERAGE => {
                    (Reading::PowerAverage, NVML_VALUE_TYPE_UNSIGNED_INT, nvmlValue_t { uiVal: n.power_average_mw() })
                }
                NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION => {
                    (Reading::Energy, NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, nvmlValue_t { ullVal: n.energy_mj() })
                }
                _ => {
                    v.nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
                    continue;
                }
            };
            if n.gpu.supports(reading) {
                v.valueType = value_type;
                v.value = value;
                v.nvmlReturn = NVML_SUCCESS;
            } else {
                v.nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
            }
        }
        NVML_SUCCESS
    })
}
