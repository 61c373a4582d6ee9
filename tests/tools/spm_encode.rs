//! Encode (or decode) many strings with grokit's SentencePiece tokenizer, for interop tests.
//!
//! Usage:
//!   spm_encode MODEL INPUT.jsonl            each line a JSON string; prints
//!                                           {"ids":[...],"text":"decode(ids)"} per line
//!   spm_encode --decode MODEL INPUT.jsonl   each line a JSON array of ids; prints the
//!                                           decoded text as a JSON string per line
//!   spm_encode --bench MODEL INPUT.jsonl    encodes everything 20 times, prints MB/s
//! Throughput goes to stderr.
use std::io::{BufRead, BufWriter, Write};
use std::time::Instant;

use grokit::tokenizer::Tokenizer;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mode = if args.first().is_some_and(|a| a.starts_with("--")) {
        args.remove(0)
    } else {
        String::new()
    };
    let [model, input] = args.as_slice() else {
        anyhow::bail!("usage: spm_encode [--decode|--bench] MODEL INPUT.jsonl");
    };
    let t0 = Instant::now();
    let tok = Tokenizer::from_file(model)?;
    eprintln!(
        "loaded {} pieces in {:.1} ms",
        tok.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let file = std::io::BufReader::new(std::fs::File::open(input)?);
    let out = std::io::stdout();
    let mut out = BufWriter::new(out.lock());
    let lines: Vec<String> = file.lines().collect::<Result<_, _>>()?;
    match mode.as_str() {
        "--decode" => {
            for line in &lines {
                let ids: Vec<u32> = serde_json::from_str(line)?;
                writeln!(out, "{}", serde_json::to_string(&tok.decode(&ids))?)?;
            }
        }
        "" | "--bench" => {
            let texts: Vec<String> = lines
                .iter()
                .map(|l| serde_json::from_str(l))
                .collect::<Result<_, _>>()?;
            let bytes: usize = texts.iter().map(String::len).sum();
            let reps = if mode == "--bench" { 20 } else { 1 };
            let t = Instant::now();
            let mut all = Vec::new();
            for _ in 0..reps {
                all = texts.iter().map(|s| tok.encode(s)).collect::<Vec<_>>();
            }
            let secs = t.elapsed().as_secs_f64();
            let n_ids: usize = all.iter().map(Vec::len).sum();
            eprintln!(
                "encoded {} strings, {} bytes -> {} ids, x{reps} in {:.3} s: {:.2} MB/s",
                texts.len(),
                bytes,
                n_ids,
                secs,
                (bytes * reps) as f64 / secs / 1e6
            );
            if mode.is_empty() {
                for ids in &all {
                    let text = tok.decode(ids);
                    writeln!(out, "{}", serde_json::json!({"ids": ids, "text": text}))?;
                }
            }
        }
        other => anyhow::bail!("unknown mode {other}"),
    }
    Ok(())
}
