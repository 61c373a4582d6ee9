//! The `grokit` binary: parse arguments, run, map the outcome to an exit code
//! (0 success, 1 verification mismatch, 2 error).
fn main() -> std::process::ExitCode {
    grokit::cli::main()
}
