//! Simulated hardware for tests, benchmarks and the demo: real programs speaking the
//! real protocols on loopback (a fake NVML library, simulated miners and inference
//! servers, PDUs, BMCs and smart plugs), clearly test doubles, never used by production code paths.

pub mod gpus;
pub mod inference;
pub mod meters;
pub mod miners;
