//! wattledger: measures what each joule earns.
//!
//! Layering (dependencies point one way):
//! `model` <- `collect`, `ship`, `store` <- `ledger` <- `revenue`, `agent`, `aggregate` <- `alert`, `web` <- `cli`.
//! `sim` sits beside `collect` and serves tests, benchmarks and the demo only.

pub mod agent;
pub mod aggregate;
pub mod cli;
pub mod collect;
pub mod config;
pub mod demo;
pub mod ledger;
pub mod model;
pub mod revenue;
pub mod ship;
pub mod sim;
pub mod store;
pub mod web;
