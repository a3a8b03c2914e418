fn main() -> std::process::ExitCode {
    wattledger::cli::main()
}
