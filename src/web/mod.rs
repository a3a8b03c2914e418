//! The aggregator's HTTP face: the JSON API, the InfluxDB-compatible ingest and
//! the web UI ([`ui`]).

pub mod ui;
