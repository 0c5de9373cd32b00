fn main() -> std::process::ExitCode {
    container::cli::main()
}
