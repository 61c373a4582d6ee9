//! L4: the command line. Thin: each subcommand is one file that turns validated arguments into
//! library calls and renders the outcome. Exit codes: 0 success, 1 a check found a mismatch,
//! 2 an error (bad input, I/O). A broken pipe on stdout counts as success.

use clap::{Parser, Subcommand};

mod convert;
mod forward;
mod inspect;
mod perplexity;
pub mod progress;
mod quantize;
mod synth;
mod verify;
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
    /// Run Grok-1's forward pass on CPU (release, GGUF or safetensors).
    Forward(forward::ForwardArgs),
    /// Compare two models (or logits files) on the same tokens.
    Compare(forward::CompareArgs),
    /// Show what a checkpoint holds (tensors, config, problems).
    Inspect(inspect::InspectArgs),
    #[allow(missing_docs)] // PerplexityArgs' doc comment is the help (summary and examples)
    Perplexity(perplexity::PerplexityArgs),
    /// Requantize a GGUF file (or split set) into another GGUF, like llama-quantize
    ///
    /// Every tensor is decoded to f32 and encoded with ggml's reference quantizers (bit for bit),
    /// streaming in bounded memory. Metadata is copied; `general.file_type` and split keys are set
    /// anew. Norms, the router and 1-D tensors stay F32; a tensor already in its target type is
    /// copied verbatim. Quantizing an already block-quantized tensor to another block type needs
    /// `--allow-requantize` (quality suffers: quantize from an F32/BF16 file instead).
    ///
    /// `--preset` takes llama-quantize's mixtures (q4_k_m gives attn_k/v Q8_0, attn_output Q5_K,
    /// ffn_down Q6_K on half the layers, token_embd Q6_K); `--quant` takes a preset and/or
    /// class=type items (see docs/quantization.md); classes it does not list keep their type.
    ///
    /// From an F32 GGUF made by `grokit convert --type f32`, `--preset X` writes the same
    /// metadata and tensors as `grokit convert --quant X`, except Q8_0 matrices: convert copies
    /// those losslessly from the release's int8, quantize re-derives them from f32 (ggml's Q8_0).
    ///
    /// Examples:
    ///   grokit quantize grok-1-f32.gguf -o grok-1-q4_k_m.gguf --preset q4_k_m
    ///   grokit quantize grok-1-bf16-00001-of-00012.gguf -o grok-1-q8_0.gguf --preset q8_0 --split-max-size 50G
    ///   grokit quantize grok-1-bf16.gguf -o mixed.gguf --quant experts=q4_k,attn=q8_0 --report
    ///   grokit quantize grok-1-q8_0.gguf -o grok-1-q4_0.gguf --preset q4_0 --allow-requantize
    #[command(verbatim_doc_comment)]
    Quantize(quantize::QuantizeArgs),
    /// Write a synthetic checkpoint in the release's exact format.
    Synth(synth::SynthArgs),
    /// Verify a release: structure, SHA-256 manifest, torrent pieces.
    Verify(verify::VerifyArgs),
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
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Dispatch a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Forward(a) => forward::run_forward(a),
        Command::Compare(a) => forward::run_compare(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Verify(a) => verify::run(a),
    }
}
