//! Workspace code generators.
//!
//! `cargo xtask codegen` regenerates every committed generated file;
//! `cargo xtask codegen --check` fails if any committed file differs from what
//! the generator produces now (the CI drift check).

mod json;
mod ocpi;
mod ocpp;
mod v2g;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    match args.first().map(String::as_str) {
        Some("codegen") => {}
        _ => {
            eprintln!("usage: cargo xtask codegen [--check]");
            return ExitCode::from(2);
        }
    }
    let root = workspace_root();
    let outputs = match ocpp::generate(&root).and_then(|mut o| {
        o.extend(ocpi::generate(&root)?);
        o.extend(v2g::generate(&root)?);
        Ok(o)
    }) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("codegen failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = Vec::new();
    for (path, text) in &outputs {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current != *text {
            if check {
                stale.push(path.clone());
            } else if let Err(e) = std::fs::write(path, text) {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            } else {
                eprintln!("wrote {}", path.display());
            }
        }
    }
    if !stale.is_empty() {
        for p in &stale {
            eprintln!("out of date: {} (run `cargo xtask codegen`)", p.display());
        }
        return ExitCode::FAILURE;
    }
    if check {
        eprintln!("{} generated files up to date", outputs.len());
    }
    ExitCode::SUCCESS
}
