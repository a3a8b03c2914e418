//! Records the git commit the binary is built from, for `wattledger --version`
//! (`0.1.0 (git 1a2b3c4d5e6f)`). Without a git
//! checkout (a source tarball, `cargo install` from crates.io) or without `git`, it
//! says `(git unknown)` and the build goes on.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty());
    let version = match commit {
        // No `-dirty` mark: it would mean watching the index and rebuilding the
        // whole crate on every `git add`.
        Some(c) => format!("{} (git {c})", env!("CARGO_PKG_VERSION")),
        None => format!("{} (git unknown)", env!("CARGO_PKG_VERSION")),
    };
    println!("cargo:rustc-env=WATTLEDGER_VERSION={version}");
    // Rebuild when HEAD moves (`--git-path` finds the files in a worktree too).
    // Only files that exist: cargo reruns the script on every build for a missing one.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for p in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &p]).filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
