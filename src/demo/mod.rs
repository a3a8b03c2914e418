//! `wattledger demo`: a whole site in one process, on loopback.
//!
//! A Bitcoin fleet of simulated miners, a GPU cluster on a reserved contract and an
//! inference cluster paid by the token (fake NVML library, simulated `/metrics`),
//! agents shipping to the aggregator's InfluxDB-compatible ingest, the embedded
//! store, the aggregator, and the web UI. The market and the energy price are
//! simulated too ([`market`]), and everything runs on one [`clock::DemoClock`] that
//! first replays the recent past quickly, so the comparison has numbers within
//! seconds of start.

pub mod clock;
pub mod market;
pub mod table;
