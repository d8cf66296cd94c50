//! Repository hygiene, checked by `cargo test` (rust-analyzer's `tidy.rs` habit): the rules in
//! ARCHITECTURE.md that a reviewer would otherwise have to remember.

use std::path::{Path, PathBuf};

use crate::project_root;

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(project_root().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    // The top-level tests/ folder is a member of its own (rtb-tests).
    dirs.push(project_root().join("tests"));
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in crate_dirs() {
        rust_files(&dir, &mut files);
    }
    rust_files(&project_root().join("xtask"), &mut files);
    files
}

#[test]
fn every_crate_is_a_workspace_member_with_workspace_lints() {
    let root = std::fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    for dir in crate_dirs() {
        let rel = dir.strip_prefix(project_root()).unwrap();
        let rel = rel.to_string_lossy().replace('\\', "/");
        assert!(
            root.contains(&format!("\"{rel}\"")),
            "{rel} is not listed in the workspace members"
        );
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("[lints]") && manifest.contains("workspace = true"),
            "{rel}/Cargo.toml does not inherit the workspace lints"
        );
    }
}

#[test]
fn every_library_opens_with_crate_docs() {
    for dir in crate_dirs() {
        let lib = dir.join("src").join("lib.rs");
        if !lib.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&lib).unwrap();
        assert!(
            text.trim_start().starts_with("//!"),
            "{} must open with a //! doc: what the crate owns, its main types, what it must \
             not depend on, and an example",
            lib.display()
        );
    }
}

#[test]
fn no_panicking_placeholders_or_should_panic() {
    // Spelled in pieces so that this file does not match itself.
    let banned = [
        ["#[should", "_panic"].concat(),
        ["todo", "!("].concat(),
        ["unimplemented", "!("].concat(),
    ];
    let mut offenders = Vec::new();
    for file in all_rust_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for pattern in &banned {
            if text.contains(pattern.as_str()) {
                offenders.push(format!("{}: {pattern}", file.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "errors are values: {offenders:#?}");
}

#[test]
fn no_registry_host_is_named() {
    // The project reaches package registries only through their ordinary clients (cargo, pip,
    // apt); code and docs never hard-code their hosts.
    let hosts = [
        ["pypi", ".org"].concat(),
        ["files.python", "hosted.org"].concat(),
        ["static.crates", ".io"].concat(),
        ["index.crates", ".io"].concat(),
        ["deb.debian", ".org"].concat(),
        ["registry.npm", "js.org"].concat(),
    ];
    let mut files = all_rust_files();
    for name in ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md", ".ci/run"] {
        files.push(project_root().join(name));
    }
    let mut offenders = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for host in &hosts {
            if text.contains(host.as_str()) {
                offenders.push(format!("{}: {host}", file.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
