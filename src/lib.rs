//! wattledger: measures what each joule earns.
//!
//! Layering (dependencies point one way, each layer using only lower ones;
//! `tests/layering.rs` checks every `crate::` path against it):
//!
//! config, model, signal, http  <-  collect, ship, ledger  <-  store, revenue, sim  <-  aggregate  <-  agent, web, alert  <-  demo  <-  cli
//!
//! `sim` (test doubles) sits above `collect`, whose parsing it reuses, and serves
//! tests, benchmarks and the demo only. `alert` is the place of alert rules. `http` is the server loop (connection
//! limit, load shedding, header timeout) that `web` and the agent's `/metrics` share.

pub mod agent;
pub mod aggregate;
pub mod alert;
pub mod cli;
pub mod collect;
pub mod config;
pub mod demo;
pub mod http;
pub mod ledger;
pub mod model;
pub mod revenue;
pub mod ship;
pub mod signal;
pub mod sim;
pub mod store;
pub mod web;
