//! Simulated devices and servers that speak the real protocols on loopback, for
//! tests, benchmarks and the demo. Never used by production code paths.

pub mod inference;
