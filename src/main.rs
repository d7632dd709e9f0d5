//! The `lightsout` binary: parse arguments, run, exit with a documented code.

fn main() -> std::process::ExitCode {
    lightsout::cli::main().into()
}
