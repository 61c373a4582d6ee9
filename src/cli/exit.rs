//! Exit codes, decided here and nowhere else (ripgrep's convention): 0 success, 1 a check found
//! a mismatch (`verify`, `inspect` with problems, `compare` over its thresholds), 2 an error
//! (bad arguments, bad input, I/O).
//!
//! A broken pipe on stdout is success: `grokit inspect … | head` got what it asked for, and
//! nothing the user had is lost. Rust ignores SIGPIPE, so the closed pipe arrives as an
//! `io::Error` of kind `BrokenPipe` somewhere in the error's chain.

use std::process::ExitCode;

/// What a subcommand returns when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checked out (exit 0).
    Ok,
    /// A verification or comparison found a mismatch (exit 1).
    Mismatch,
}

/// Exit code of a run that found a mismatch.
const MISMATCH: u8 = 1;
/// Exit code of an error.
const ERROR: u8 = 2;

/// The exit code of a finished run. An error is printed on stderr first, as one line with its
/// causes (see [`render_error`]).
pub fn code(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Mismatch) => ExitCode::from(MISMATCH),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages quote names read from files: no control character reaches the terminal.
            eprintln!("error: {}", crate::io::term::sanitize(&render_error(&e)));
            ExitCode::from(ERROR)
        }
    }
}

/// The exit code of a command line clap did not accept, after printing clap's message:
/// `--help` and `--version` go to stdout and exit 0, usage errors to stderr and exit 2.
pub fn usage(e: clap::Error) -> ExitCode {
    let code = if e.use_stderr() { ERROR } else { 0 };
    // A closed stdout while printing help is the reader's choice, not an error.
    let _ = e.print();
    ExitCode::from(code)
}

/// The error and its causes on one line, skipping a cause whose text the previous message
/// already contains (library errors print their source inline).
pub fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let m = c.to_string();
        if out.contains(&m) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&m);
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn causes_on_one_line_without_repeats() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(io).context("writing out.gguf");
        assert_eq!(render_error(&e), "writing out.gguf: disk full");
        // A cause already quoted by its context is not printed twice.
        let e: anyhow::Result<()> = Err(anyhow::anyhow!("disk full")).context("write: disk full");
        assert_eq!(render_error(&e.unwrap_err()), "write: disk full");
    }

    #[test]
    fn broken_pipe_anywhere_in_the_chain_is_success() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::new(io).context("printing the plan");
        assert!(is_broken_pipe(&e));
        assert_eq!(code(Err(e)), ExitCode::SUCCESS);
        assert_eq!(code(Ok(Outcome::Mismatch)), ExitCode::from(1));
        let other = anyhow::Error::new(std::io::Error::other("disk full"));
        assert!(!is_broken_pipe(&other));
    }
}
