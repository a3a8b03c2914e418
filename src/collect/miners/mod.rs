//! ASIC miners read through their own APIs, read-only (see `README.md` in this folder).
//!
//! - [`makes`]: one file per make — its requests, `identify`, field map and simulator
//!   replies — and [`makes::MAKES`], the one list of them.
//! - [`wire`]: one bounded request/reply over TCP or HTTP (deadline + reply cap).
//! - [`json`]: lenient JSON (NUL, `}{`, trailing garbage, numbers as strings) and paths.
//! - [`profiles`]: the field-map types and the one generic extractor.
//! - [`models`]: nominal J/TH and rated hashrate per model (estimates and sanity checks).
//! - [`identify`]: make/model/firmware from the replies; [`probe`]: the read sequence;
//!   [`reading`]: the normalized [`MinerReading`] and its sanity checks.
//! - [`fleet`]: polling many miners with bounded concurrency; the `miners` [`crate::collect::Source`].

pub mod fleet;
pub mod identify;
pub mod json;
pub mod makes;
pub mod models;
pub mod probe;
pub mod profiles;
pub mod reading;
pub mod wire;

pub use identify::{
    identify_axeos, identify_cgminer, identify_epic, identify_whatsminer, identify_whatsminer_v3, reply_error,
    split_multi, Identity,
};
pub use probe::{probe, read, ProbeError};
pub use reading::{check_hashrate, finish, MinerReading, PowerSource, ReadOptions, MAX_PLAUSIBLE_THS, MAX_PLAUSIBLE_W};

/// The cgminer API port.
pub const CGMINER_PORT: u16 = 4028;
/// Whatsminer API v3's port; the v3 framing is only spoken there.
pub const WHATSMINER_V3_PORT: u16 = makes::Api::FRAMED_PORT;
/// Default cap on one reply: far above any real miner's reply (a few to tens of KiB).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 512 * 1024;
/// The read-only multi-command sent first to a cgminer-family miner.
pub const MULTI_COMMAND: &str = "version+summary+stats+pools";
/// The commands of [`MULTI_COMMAND`], the keys of its reply.
pub const MULTI_PARTS: [&str; 4] = ["version", "summary", "stats", "pools"];
