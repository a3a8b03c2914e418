// mimalloc instead of glibc's malloc: a fleet read parses thousands of small JSON replies on
// two threads at once, and glibc's arenas spent a fifth of `probe`'s CPU in malloc/free
// and its arena lock (docs/benchmarks.md, "Miner sweep").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wattledger::cli::main()
}
