//! Simulated hardware for tests, benchmarks and the demo: real programs speaking the
//! real protocols on loopback (a fake NVML library, simulated miners and inference
//! servers), clearly test doubles, never used by production code paths.

pub mod gpus;
pub mod inference;
pub mod miners;
