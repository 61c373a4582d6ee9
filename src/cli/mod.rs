//! L4: the command line, ripgrep's way. Each subcommand is one file that goes from raw
//! arguments (a clap struct) to validated options (`resolve`: every string parsed and every
//! conflict settled before any input is opened) to the work (library calls; progress on
//! stderr) to rendering (text or `--json` on stdout). `main.rs` only strings [`parse`], [`run`]
//! and [`exit::code`] together; exit codes (0 success, 1 a check found a mismatch, 2 an error;
//! a broken pipe on stdout counts as success) are decided in [`exit`] alone. What `convert` and
//! `quantize` share is written once, in `args`; output pieces several commands print, in
//! `render`.
//!
//! Help: `grokit --help` lists the one-line summaries written on [`Command`]; `grokit CMD
//! --help` prints the doc comment of CMD's argument struct, which ends with examples (a unit
//! test parses every example line).

use clap::{Parser, Subcommand};

mod args;
mod compare;
mod convert;
pub mod exit;
mod forward;
mod imatrix;
mod imatrix_compute;
mod inspect;
mod perplexity;
pub mod progress;
mod quantize;
mod render;
mod synth;
mod verify;

pub use exit::Outcome;

/// grokit: read, verify, convert, quantize and run the Grok-1 release, without Python.
#[derive(Parser, Debug)]
#[command(name = "grokit", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands, with the one-line summaries `grokit --help` lists. The long help of each is the
/// doc comment of its argument struct; these variants carry no doc comment, because clap would
/// let it replace that long help.
#[allow(missing_docs)]
#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(about = "Convert a release checkpoint to GGUF or safetensors")]
    Convert(convert::ConvertArgs),
    #[command(about = "Run Grok-1's forward pass on CPU (release, GGUF or safetensors)")]
    Forward(forward::ForwardArgs),
    #[command(about = "Compare two models (or logits files) on the same tokens")]
    Compare(compare::CompareArgs),
    #[command(
        about = "Show what a checkpoint holds (tensors, config, problems), or an importance matrix"
    )]
    Inspect(inspect::InspectArgs),
    #[command(about = "Perplexity and KL divergence over a text file, like llama-perplexity")]
    Perplexity(perplexity::PerplexityArgs),
    #[command(about = "Compute an importance matrix over a text file, like llama-imatrix")]
    Imatrix(imatrix_compute::ImatrixArgs),
    #[command(
        about = "Rewrite an importance matrix (llama-imatrix's .gguf or .dat) in either format"
    )]
    ImatrixConvert(imatrix::ImatrixConvertArgs),
    #[command(
        about = "Requantize a GGUF file (or split set) into another GGUF, like llama-quantize"
    )]
    Quantize(quantize::QuantizeArgs),
    #[command(about = "Write a synthetic checkpoint in the release's exact format")]
    Synth(synth::SynthArgs),
    #[command(about = "Verify a release: structure, SHA-256 manifest, torrent pieces")]
    Verify(verify::VerifyArgs),
}

/// Parse the process's arguments. On `--help`, `--version` or a usage error, clap's message
/// has been printed and the error holds the exit code.
pub fn parse() -> Result<Cli, std::process::ExitCode> {
    Cli::try_parse().map_err(exit::usage)
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    crate::io::ignore_file_size_signal();
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Imatrix(a) => imatrix_compute::run(a),
        Command::ImatrixConvert(a) => imatrix::run_convert(a),
        Command::Forward(a) => forward::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Verify(a) => verify::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The example lines (`grokit …`) of every subcommand's long help.
    fn examples() -> Vec<(String, String)> {
        let cmd = Cli::command();
        let mut out = Vec::new();
        for sub in cmd.get_subcommands() {
            let help = sub
                .get_long_about()
                .map(|s| s.to_string())
                .unwrap_or_default();
            for line in help.lines().map(str::trim) {
                if line.starts_with("grokit ") {
                    out.push((sub.get_name().to_string(), line.to_string()));
                }
            }
        }
        out
    }

    /// Split a command line like a shell would for these examples: quotes group words, and a
    /// pipe or a ` #` comment ends the grokit command.
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut cur: Option<String> = None;
        let mut quote = None;
        let mut prev = ' ';
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => cur.get_or_insert_with(String::new).push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    cur.get_or_insert_with(String::new);
                }
                (None, '|') => break,
                (None, '#') if prev == ' ' => break,
                (None, c) if c.is_whitespace() => words.extend(cur.take()),
                (None, c) => cur.get_or_insert_with(String::new).push(c),
            }
            prev = c;
        }
        words.extend(cur);
        words
    }

    #[test]
    fn every_subcommand_teaches_with_examples() {
        let ex = examples();
        for sub in Cli::command().get_subcommands() {
            let n = ex.iter().filter(|(s, _)| s == sub.get_name()).count();
            assert!(n > 0, "`grokit {} --help` has no examples", sub.get_name());
        }
    }

    #[test]
    fn every_example_parses() {
        assert_eq!(
            words(r#"grokit forward m --prompt "a b" | jq x"#),
            ["grokit", "forward", "m", "--prompt", "a b"]
        );
        assert_eq!(
            words("grokit synth /d --sparse   # note"),
            ["grokit", "synth", "/d", "--sparse"]
        );
        for (sub, line) in examples() {
            let w = words(&line);
            assert_eq!(w.get(1).map(String::as_str), Some(sub.as_str()), "{line}");
            if let Err(e) = Cli::try_parse_from(&w) {
                panic!("example of `grokit {sub}` does not parse: {line}\n{e}");
            }
        }
    }
}
