fn main() -> std::process::ExitCode {
    auren::cli::main()
}
