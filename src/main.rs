//! The `container` command: a thin binary over `container::cli`.

fn main() -> std::process::ExitCode {
    container::cli::main()
}
