//! Simulated GPU rigs: puts the fake NVML library (`fake-nvml/`, built as
//! `libnvidia_ml.so`) to work for the demo, `wattledger sim` and tests, so that the
//! whole NVML code path (`nvml-wrapper` → C ABI) runs without a GPU.
//!
//! Each [`FakeNvml`] is a private copy of the library in its own temporary folder with
//! its own scenario file beside it: one process that loads the same path twice shares
//! one instance, while copies are independent, so every rig (or test) gets a copy.
//!
//! Where the library comes from: cargo does not build a workspace member's cdylib for
//! another crate, so it must be built first (`cargo build -p fake-nvml`, which
//! `cargo build --workspace` does). [`locate_fake_nvml`] looks, in order, at
//! `WATTLEDGER_FAKE_NVML` (a path to the .so), the running executable's folder and the
//! one above it (`target/<profile>/` for both the binary and test executables in
//! `target/<profile>/deps/`), `$CARGO_TARGET_DIR/<profile>/`, and this checkout's
//! `target/<profile>/`. An installed binary finds it when `libnvidia_ml.so` is placed
//! next to the executable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File name cargo gives the fake library.
pub const FAKE_LIB_FILE: &str = "libnvidia_ml.so";
/// The scenario file the fake reads from its own folder when `FAKE_NVML_SCENARIO` is unset.
pub const SCENARIO_FILE: &str = "fake-nvml-scenario.json";
/// Explicit location of the fake library, overriding the search.
pub const FAKE_LIB_ENV: &str = "WATTLEDGER_FAKE_NVML";

#[derive(Debug, thiserror::Error)]
pub enum FakeNvmlError {
    #[error("the fake NVML library ({FAKE_LIB_FILE}) is not built; run `cargo build --workspace` (with `--release` for a release build of wattledger) (looked in: {searched})")]
    NotBuilt { searched: String },
    #[error("the fake NVML library {path} is older than its source in fake-nvml/; rebuild it with `cargo build --workspace` (with `--release` for a release build)")]
    Stale { path: String },
    #[error("{FAKE_LIB_ENV}={path} does not exist; run `cargo build -p fake-nvml` or fix the path")]
    EnvPathMissing { path: String },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    #[error("fake NVML control symbol in {path}: {detail}")]
    Control { path: String, detail: String },
}

/// Finds the built fake library (see the module docs for the search order).
pub fn locate_fake_nvml() -> Result<PathBuf, FakeNvmlError> {
    if let Some(p) = std::env::var_os(FAKE_LIB_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(FakeNvmlError::EnvPathMissing { path: p.display().to_string() }) };
    }
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(up) = d.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(t).join(profile));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(profile));
    for d in &dirs {
        let candidate = d.join(FAKE_LIB_FILE);
        if candidate.is_file() {
            return if is_stale(&candidate) {
                Err(FakeNvmlError::Stale { path: candidate.display().to_string() })
            } else {
                Ok(candidate)
            };
        }
    }
    let searched = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(FakeNvmlError::NotBuilt { searched })
}

/// `cargo test` does not rebuild a cdylib, so in a checkout a library older than the
/// fake's sources would silently test old code. (No sources, as for an installed binary: not stale.)
fn is_stale(lib: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(lib) else { return false };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fake-nvml");
    let Ok(entries) = std::fs::read_dir(src.join("src")) else { return false };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .chain([src.join("Cargo.toml")])
        .any(|p| modified(&p).is_some_and(|m| m > built))
}

/// A private copy of the fake library with its own scenario, removed on drop.
/// Pass [`FakeNvml::lib_path`] as `--nvml-lib` / `nvml_lib`.
pub struct FakeNvml {
    dir: PathBuf,
    lib_path: PathBuf,
    control: Option<libloading::Library>,
}

impl FakeNvml {
    /// Copies the located fake library to a fresh temporary folder and writes `scenario_json` beside it.
    pub fn install(scenario_json: &str) -> Result<Self, FakeNvmlError> {
        Self::install_from(&locate_fake_nvml()?, scenario_json)
    }

    /// As [`FakeNvml::install`], from a given build of the library.
    pub fn install_from(lib: &Path, scenario_json: &str) -> Result<Self, FakeNvmlError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wattledger-fake-nvml-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |action, path: &Path| {
            let path = path.display().to_string();
            move |source| FakeNvmlError::Io { action, path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let fake = FakeNvml { lib_path: dir.join(FAKE_LIB_FILE), dir, control: None };
        std::fs::copy(lib, &fake.lib_path).map_err(io("cannot copy the fake NVML library to", &fake.lib_path))?;
        fake.write_scenario(scenario_json)?;
        Ok(fake)
    }

    pub fn lib_path(&self) -> &Path {
        &self.lib_path
    }

    pub fn scenario_path(&self) -> PathBuf {
        self.dir.join(SCENARIO_FILE)
    }

    /// Replaces the scenario; the fake reads it at its next first `nvmlInit`.
    pub fn write_scenario(&self, scenario_json: &str) -> Result<(), FakeNvmlError> {
        let path = self.scenario_path();
        std::fs::write(&path, scenario_json).map_err(|source| FakeNvmlError::Io {
            action: "cannot write",
            path: path.display().to_string(),
            source,
        })
    }

    /// Pins the fake's simulated clock to `unix_ns` in this process (the same loaded
    /// instance an `NvmlSource` on [`FakeNvml::lib_path`] uses).
    pub fn set_sim_time_ns(&mut self, unix_ns: i64) -> Result<(), FakeNvmlError> {
        let f: libloading::Symbol<unsafe extern "C" fn(i64)> = self.symbol(b"fakeNvmlSetSimTimeNs\0")?;
        // SAFETY: the symbol is the fake's `extern "C" fn(i64)`, checked by name.
        unsafe { f(unix_ns) };
        Ok(())
    }

    fn symbol<T>(&mut self, name: &[u8]) -> Result<libloading::Symbol<'_, T>, FakeNvmlError> {
        let err = |detail: String| FakeNvmlError::Control { path: self.lib_path.display().to_string(), detail };
        if self.control.is_none() {
            // SAFETY: loading our own fake library; its initialisers only set up statics.
            let lib = unsafe { libloading::Library::new(&self.lib_path) }.map_err(|e| err(e.to_string()))?;
            self.control = Some(lib);
        }
        let lib = self.control.as_ref().expect("loaded above");
        // SAFETY: the caller names the symbol's true signature.
        unsafe { lib.get::<T>(name) }
            .map_err(|e| FakeNvmlError::Control { path: self.lib_path.display().to_string(), detail: e.to_string() })
    }
}

impl Drop for FakeNvml {
    fn drop(&mut self) {
        self.control = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A ready-made rig: `gpus` H100-class GPUs with varying load (a sine, a repeating
/// train/idle step pattern, a steady load), for the demo and the simulator.
/// `start_unix_ns` = simulated second 0 (None: the first init); `speed` = simulated
/// seconds per real second.
pub fn rig_scenario(gpus: usize, start_unix_ns: Option<i64>, speed: f64) -> String {
    let list: Vec<serde_json::Value> = (0..gpus)
        .map(|i| {
            let (power, util) = match i % 3 {
                0 => (
                    serde_json::json!({"sine": {"mean": 450.0, "amplitude": 200.0, "period_s": 600.0, "phase_s": 37.0 * i as f64}}),
                    serde_json::json!({"sine": {"mean": 65.0, "amplitude": 30.0, "period_s": 600.0, "phase_s": 37.0 * i as f64}}),
                ),
                1 => (
                    serde_json::json!({"steps": [[0.0, 690.0], [900.0, 95.0]], "repeat_s": 1200.0}),
                    serde_json::json!({"steps": [[0.0, 98.0], [900.0, 0.0]], "repeat_s": 1200.0}),
                ),
                _ => (serde_json::json!(520.0), serde_json::json!(80.0)),
            };
            serde_json::json!({
                "name": "NVIDIA H100 80GB HBM3",
                "uuid": format!("GPU-5a1d0c{i:02x}-7e3b-4c2a-9f10-0000000000{i:02x}"),
                "power_limit_w": 700.0,
                "mem_total_bytes": 85_520_809_984u64,
                "power_w": power,
                "util_gpu_pct": util,
                "util_mem_pct": 40.0,
                "mem_used_bytes": 61_000_000_000u64,
                "temp_c": {"sine": {"mean": 62.0, "amplitude": 8.0, "period_s": 600.0}},
                "sm_clock_mhz": 1980.0,
                "energy_start_j": 1.0e6 * (i as f64 + 1.0),
            })
        })
        .collect();
    let mut s = serde_json::json!({ "speed": speed, "gpus": list });
    if let Some(t) = start_unix_ns {
        s["start_unix_ns"] = serde_json::json!(t);
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_how_to_build_the_fake() {
        let e = FakeNvmlError::NotBuilt { searched: "target/debug".into() };
        assert!(e.to_string().contains("cargo build --workspace"), "{e}");
        let e = FakeNvml::install_from(Path::new("/nonexistent/libnvidia_ml.so"), "{}").err().unwrap();
        assert!(e.to_string().contains("cannot copy the fake NVML library"), "{e}");
    }

    #[test]
    fn rig_scenario_is_json_with_the_asked_gpus() {
        let v: serde_json::Value = serde_json::from_str(&rig_scenario(5, Some(7), 60.0)).unwrap();
        assert_eq!(v["gpus"].as_array().unwrap().len(), 5);
        assert_eq!(v["start_unix_ns"], 7);
        assert_eq!(v["speed"], 60.0);
    }
}
