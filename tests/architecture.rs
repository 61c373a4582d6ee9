//! The layer rule of docs/architecture.md, enforced: a module may import only from layers below
//! it. Scans `src/**` for `crate::<module>` paths and checks each edge against the table.

use crate::util::repo;
use std::collections::BTreeSet;

/// (module, layer). Lower layers may not import higher ones; same-layer imports are listed below.
const LAYERS: &[(&str, u32)] = &[
    ("base", 0),
    ("io", 0),
    ("pickle", 1),
    ("numpy", 1),
    ("model", 1),
    ("quant", 1),
    ("kernel", 1),
    ("tokenizer", 1),
    ("npy", 1),
    ("source", 2),
    ("gguf", 2),
    ("safetensors_io", 2),
    ("verify", 2),
    ("imatrix", 2),
    ("convert", 3),
    ("reference", 3),
    ("eval", 3),
    ("synth", 3),
    ("cli", 4),
];

/// Same-layer edges that are allowed (importer, imported).
const LATERAL: &[(&str, &str)] = &[
    ("io", "base"),
    ("numpy", "pickle"),
    ("eval", "reference"),
    ("synth", "source"),
    ("model", "quant"),
    ("kernel", "quant"),
    ("imatrix", "gguf"),
];

fn module_of(path: &std::path::Path) -> Option<String> {
    let rel = path.strip_prefix(repo().join("src")).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    Some(first.trim_end_matches(".rs").to_string())
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_follow_the_layers() {
    let layer = |m: &str| LAYERS.iter().find(|(n, _)| *n == m).map(|r| r.1);
    let mut files = Vec::new();
    walk(&repo().join("src"), &mut files);
    let mut bad = BTreeSet::new();
    for f in files {
        let Some(from) = module_of(&f) else { continue };
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(lf) = layer(&from) else {
            bad.insert(format!(
                "{from}: module missing from the layer table in tests/architecture.rs"
            ));
            continue;
        };
        let text: String = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            let to: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if to == from || to.is_empty() {
                continue;
            }
            let Some(lt) = layer(&to) else { continue };
            let ok = lt < lf || (lt == lf && LATERAL.contains(&(from.as_str(), to.as_str())));
            if !ok {
                bad.insert(format!(
                    "{} imports crate::{to} (layer {lt}) from layer {lf}",
                    f.display()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "layer violations:\n{}",
        bad.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn unsafe_only_where_files_are_mapped() {
    let mut files = Vec::new();
    walk(&repo().join("src"), &mut files);
    let allowed = [
        "src/io/mmap.rs",
        "src/io/signal.rs",
        // std::arch intrinsics only (docs/decisions/0005)
        "src/kernel/x86.rs",
    ];
    for f in files {
        let rel = f
            .strip_prefix(repo())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("unsafe {") || text.contains("unsafe fn") {
            assert!(
                allowed.contains(&rel.as_str()),
                "{rel} contains unsafe code"
            );
        }
    }
}
