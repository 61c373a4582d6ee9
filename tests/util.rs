//! Shared helpers for the integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the checkout, if present; otherwise prints why the caller skips.
pub fn shared(what: &str) -> Option<PathBuf> {
    let p = std::env::var_os("GROKIT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    if p.join("README.md").exists() {
        Some(p)
    } else {
        eprintln!("SKIP {what}: ../shared not found (set GROKIT_SHARED to its path)");
        None
    }
}

/// The grokit binary built for this test run.
pub fn grokit() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_grokit"))
}
