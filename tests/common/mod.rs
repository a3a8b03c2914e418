//! Helpers shared by the integration tests that talk to the real test servers.
#![allow(dead_code)]

/// The URL of a test server from the environment; fails the test (never skips it)
/// with the command that starts the servers when it is missing.
pub fn server_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs the real test servers. Start them with \
             `eval \"$(bash .ci/servers.sh start)\"` (or `source /work/test-servers.env` where they already run)"
        )
    })
}

/// A database name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}_{:08x}", std::process::id(), rand::random::<u32>())
}
