// jemalloc instead of glibc's malloc: with glibc, memory freed by one tokio worker and
// reused by another fragments into per-thread arenas; jemalloc keeps the agent's peak RSS
// lower and a fleet read's CPU smaller (docs/benchmarks.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at start-up: freed pages go back to the kernel after 1 s instead
/// of jemalloc's 10 s, so a report's peak RSS is what it holds, not what it held in the last
/// ten seconds (the 100 MW site: 257 MiB instead of 301–330 MiB, at the same CPU).
/// `_RJEM_MALLOC_CONF` in the environment overrides them.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads once, before any thread starts.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);
// SAFETY: it points to a string literal, never written.
unsafe impl Sync for MallocConf {}

fn main() -> std::process::ExitCode {
    wattledger::cli::main()
}
