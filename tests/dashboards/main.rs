//! Grafana dashboards, alert rules and the deploy stack, checked against the schema and
//! executed against a real InfluxDB.
//!
//! Every InfluxQL query in `dashboards/grafana/` is parsed: each measurement, field and
//! tag it names must be a constant in `src/model/schema.rs`, so that a renamed field
//! breaks this test instead of a dashboard. Then a small data set (GPUs, miners, agents,
//! `workload_efficiency` windows) is written to the test InfluxDB and every panel,
//! template-variable and alert query runs with `$timeFilter`, `$__interval` and the
//! template variables substituted the way Grafana does it. Panels must return data;
//! alert rules are evaluated (reduce, threshold, math) and must fire for exactly the
//! devices and workloads the data set makes faulty.

//!
//! Modules: `names` (the InfluxQL name check against `wattledger::model::schema`),
//! `files` (reading the dashboards and provisioning), `static_checks`, `deploy` (the
//! compose stack's config and the Ansible role), `influx` (the data set and Grafana's
//! evaluation rules) and `queries` (every query against the real InfluxDB).

#[path = "../common/mod.rs"]
mod common;

mod deploy;
mod files;
mod influx;
mod names;
mod queries;
mod static_checks;

use std::path::{Path, PathBuf};

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
