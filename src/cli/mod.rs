//! L4: the command line. Thin: each subcommand is one file that turns validated arguments into
//! library calls and renders the outcome. Exit codes: 0 success, 1 a check found a mismatch,
//! 2 an error (bad input, I/O). A broken pipe on stdout counts as success.

use clap::{Parser, Subcommand};

mod convert;
mod inspect;
pub mod progress;
mod synth;
use std::process::ExitCode;

/// What a subcommand returns when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checked out.
    Ok,
    /// A verification or comparison found a mismatch (exit 1).
    Mismatch,
}

/// grokit: read, verify, convert, quantize and run the Grok-1 release, without Python.
#[derive(Parser, Debug)]
#[command(name = "grokit", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert a release checkpoint to GGUF or safetensors.
    Convert(convert::ConvertArgs),
    /// Show what a checkpoint holds (tensors, config, problems).
    Inspect(inspect::InspectArgs),
    /// Write a synthetic checkpoint in the release's exact format.
    Synth(synth::SynthArgs),
}

/// Parse, run, and map to an exit code.
pub fn main() -> ExitCode {
    crate::io::ignore_file_size_signal();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Mismatch) => ExitCode::from(1),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", render_error(&e));
            ExitCode::from(2)
        }
    }
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
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Synth(a) => synth::run(a),
    }
}
