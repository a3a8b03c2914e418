//! Simulated hardware for tests, benchmarks and the demo: real programs speaking the
//! real protocols (a fake NVML library, simulated miners), never used by production
//! code paths.

pub mod gpus;
