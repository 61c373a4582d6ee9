//! The `grokit` binary: parse the command line, run, exit with the outcome's code. Everything
//! lives in `grokit::cli`; exit codes are decided in `cli::exit` alone.
use std::process::ExitCode;

fn main() -> ExitCode {
    match grokit::cli::parse() {
        Ok(cli) => grokit::cli::exit::code(grokit::cli::run(cli)),
        Err(code) => code,
    }
}
