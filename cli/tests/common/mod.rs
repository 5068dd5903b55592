//! Helpers shared by the CLI's end-to-end tests: running the real `dlm` binary and building
//! plugin libraries once per test binary.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `dlm args` (without the caller's `DLM_PLUGIN_PATH`).
pub fn dlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(args)
        .env_remove("DLM_PLUGIN_PATH")
        .output()
        .expect("run dlm")
}

/// Runs `dlm args`, which must succeed and print one JSON document.
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = dlm(args);
    assert!(
        out.status.success(),
        "dlm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dlm {args:?} did not print JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `dlm args`, which must fail with nothing on stdout; returns stderr.
pub fn err_text(args: &[&str]) -> String {
    let out = dlm(args);
    assert!(!out.status.success(), "dlm {args:?} should fail");
    assert!(out.stdout.is_empty(), "no partial output on stdout");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `dlm args` fails with every one of `needles` in its message.
pub fn refused(args: &[&str], needles: &[&str]) {
    let e = err_text(args);
    for n in needles {
        assert!(e.contains(n), "dlm {args:?}: '{n}' not in: {e}");
    }
}

/// Builds the workspace packages `packages` with the profile and target directory of this
/// test binary and returns the directory of their libraries (`target/<profile>`).
pub fn build_libraries(packages: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("run cargo build").success(),
        "building {packages:?} failed"
    );
    dir
}
