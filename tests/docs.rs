//! The docs are self-contained: comments in `src/` cite `docs/formats/*.md "Heading"`, never
//! files outside the repository, and every cited section exists (so the headings of
//! `docs/formats/` stay stable, or the citations move with them).

use crate::util::repo;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `docs/formats/NAME.md "Heading"` (also `"A" and "B"`, `"A", "B"`) cited in `text`.
fn citations(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Comments wrap: join each comment block's lines before looking.
    let joined: String = text
        .lines()
        .map(|l| {
            l.trim_start()
                .trim_start_matches("//!")
                .trim_start_matches("///")
                .trim_start_matches("//")
                .trim()
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut rest = joined.as_str();
    while let Some(at) = rest.find("docs/formats/") {
        rest = &rest[at + "docs/formats/".len()..];
        let Some(end) = rest.find(".md") else { break };
        let file = rest[..end].to_string();
        rest = &rest[end + 3..];
        // Headings follow as "..." separated by `, ` or ` and `.
        let mut tail = rest.trim_start();
        while let Some(q) = tail.strip_prefix('"') {
            let Some(close) = q.find('"') else { break };
            out.push((file.clone(), q[..close].to_string()));
            tail = q[close + 1..].trim_start();
            tail = tail
                .strip_prefix(',')
                .or_else(|| tail.strip_prefix("and"))
                .unwrap_or(tail)
                .trim_start();
            tail = tail.strip_prefix("and").unwrap_or(tail).trim_start();
        }
    }
    out
}

#[test]
fn comments_cite_sections_that_exist() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut bad = Vec::new();
    let mut n = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (doc, heading) in citations(&text) {
            n += 1;
            let path = repo().join("docs/formats").join(format!("{doc}.md"));
            let ok = std::fs::read_to_string(&path).is_ok_and(|d| {
                d.lines()
                    .any(|l| l.strip_prefix("## ").is_some_and(|h| h.trim() == heading))
            });
            if !ok {
                bad.push(format!(
                    "{}: docs/formats/{doc}.md has no section \"{heading}\"",
                    f.display()
                ));
            }
        }
    }
    assert!(n > 20, "only {n} citations found: is the parser broken?");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_citation_parser_reads_lists() {
    let c = citations(
        "// see docs/formats/gguf-output.md \"Byte layout\" and\n// \"Splits\", and docs/formats/x.md \"A\", \"B\"",
    );
    let got: Vec<String> = c.iter().map(|(f, h)| format!("{f}:{h}")).collect();
    assert_eq!(
        got,
        [
            "gguf-output:Byte layout",
            "gguf-output:Splits",
            "x:A",
            "x:B"
        ]
    );
}

/// No comment in `src/` cites a document that is not in the repository (the specs the code was
/// first written from live outside it; what the code relies on is in `docs/formats/`).
#[test]
fn comments_cite_nothing_outside_the_repository() {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let outside = [
        "output-formats.md",
        "grok1-checkpoint.md",
        "rust-crates.md",
        "house-style.md",
        "shared/spec",
    ];
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if let Some(o) = outside.iter().find(|o| line.contains(*o)) {
                bad.push(format!("{}:{}: cites {o}", f.display(), i + 1));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
