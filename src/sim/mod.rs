//! Simulated devices for tests, benchmarks and the demo: real programs speaking the real
//! protocols on loopback, clearly test doubles.

pub mod miners;
