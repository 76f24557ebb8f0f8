fn main() -> std::process::ExitCode {
    loa::cli::main()
}
