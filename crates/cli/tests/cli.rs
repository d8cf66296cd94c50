//! The `rtb` binary as a user runs it.

use std::process::Command;

fn rtb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rtb"))
        .args(args)
        .output()
        .expect("rtb runs")
}

#[test]
fn help_lists_the_command_tree() {
    let out = rtb(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Usage: rtb"), "{text}");
    assert!(text.contains("env"), "{text}");
}

#[test]
fn version_is_the_crate_version() {
    let out = rtb(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), format!("rtb {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_subcommand_is_an_error_not_a_panic() {
    let out = rtb(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("no-such-command"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn env_reports_cache_directories_from_the_environment() {
    let dir = std::env::temp_dir().join("rtb-env-test-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_rtb"))
        .arg("env")
        .env("RTB_CACHE_DIR", &dir)
        .env_remove("RTB_FROST_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(
        text.contains(&dir.join("assets").join("frost").display().to_string()),
        "{text}"
    );
}
