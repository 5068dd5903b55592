//! Helpers shared by the workspace tests that build and load real plugin libraries.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// The profile directory this test binary was built into: `target/<profile>`, from
/// `target/<profile>/deps/<test>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Whether `profile` (a [`profile_dir`]) is a release build's.
pub fn is_release(profile: &Path) -> bool {
    profile.file_name().is_some_and(|n| n == "release")
}

/// Builds the workspace packages `packages` with the profile and target directory of this
/// test binary and returns the directory of their libraries (`target/<profile>`).
pub fn build_libraries(packages: &[&str]) -> PathBuf {
    let dir = profile_dir();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if is_release(&dir) {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building the plugin libraries failed");
    dir
}
