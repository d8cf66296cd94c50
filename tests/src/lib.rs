//! `rtb-tests`: helpers for rtb's cross-crate end-to-end tests, which live beside this crate
//! in the workspace's top-level `tests/` folder (`reproduce.rs`: the study on the tiny preset
//! through the `rtb` binary and rtb-study's orchestrator; `bootstrap_golden.rs`: rtb-results'
//! paired bootstrap against numpy on a fixture from `golden/make_bootstrap_golden.py`).
//!
//! The `rtb` binary belongs to another package (rtb-cli), so Cargo does not hand its path to
//! these tests; [`rtb_binary`] builds it with the profile and target folder of the running
//! test (a no-op when `cargo test --workspace` already built it) or takes `$RTB_BIN`.
//!
//! This crate depends on rtb's light crates only (rtb-study, rtb-results, rtb-fetch,
//! rtb-corruption); everything heavy runs in the `rtb` process.
//!
//! ```
//! let root = rtb_tests::repo_root();
//! assert!(root.join("presets/tiny.toml").is_file());
//! ```
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the parent of this crate's folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// The `rtb` binary of this workspace: `$RTB_BIN` when set, otherwise built once per test
/// process by `cargo build -p rtb-cli --bin rtb` with this test's profile into its target
/// folder (`target/<profile>/deps/<test>` → `target/<profile>/rtb`). Panics with cargo's
/// status if the build fails (tests only).
pub fn rtb_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("RTB_BIN") {
                return PathBuf::from(path);
            }
            let exe = std::env::current_exe().expect("the test knows its executable");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("tests run from target/<profile>/deps");
            let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
            let profile = profile_dir
                .file_name()
                .expect("the profile folder has a name")
                .to_string_lossy()
                .into_owned();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "--quiet", "-p", "rtb-cli", "--bin", "rtb"])
                .current_dir(repo_root())
                .env("CARGO_TARGET_DIR", target_dir);
            // The folder names the profile: debug is the dev profile's.
            match profile.as_str() {
                "debug" => {}
                other => {
                    build.args(["--profile", other]);
                }
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "building rtb failed: {status}");
            let binary = profile_dir.join(format!("rtb{}", std::env::consts::EXE_SUFFIX));
            assert!(binary.is_file(), "{} was not built", binary.display());
            binary
        })
        .clone()
}

/// Whether the frost textures are present (`cargo xtask assets`); without them the tests that
/// evaluate frost skip with a note on stderr, unless `RTB_REQUIRE_ASSETS=1` (CI), which makes
/// their absence a failure.
#[allow(clippy::print_stderr)]
pub fn frost_available() -> bool {
    let present = rtb_fetch::frost_dir()
        .is_some_and(|dir| rtb_corruption::FrostTextures::new(dir).verify().is_ok());
    if !present {
        assert!(
            std::env::var("RTB_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "RTB_REQUIRE_ASSETS=1 but the frost textures are missing (cargo xtask assets)"
        );
        eprintln!("skipping: the frost textures are missing (run `cargo xtask assets`)");
    }
    present
}
