//! The `kmsflow` command line: a thin user of the library's runtime API.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
