//! The per-host agent: runs the configured sources on their own intervals, appends
//! every point to a disk spool before it counts as collected, and ships the spool
//! to the configured store in order, removing points only once the store confirmed
//! them. See `docs/config.md` (`## Agent`) and `agents/README.md`.

pub mod config;
pub mod spool;
pub mod workloads;
