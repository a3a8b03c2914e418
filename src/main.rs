// jemalloc instead of glibc's malloc: with glibc, memory freed by one tokio worker and
// reused by another fragments into per-thread arenas; jemalloc keeps the agent's peak RSS
// lower and a fleet read's CPU smaller (docs/benchmarks.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    wattledger::cli::main()
}
