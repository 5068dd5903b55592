//! Helpers shared by the CLI's end-to-end tests: running the real `dlm` binary, checking what
//! it printed, and building plugin libraries once per test binary.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `dlm args` as a command to adjust and run, without the caller's `DLM_PLUGIN_PATH`.
pub fn dlm_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlm"));
    c.args(args).env_remove("DLM_PLUGIN_PATH");
    c
}

/// Runs `dlm args` (without the caller's `DLM_PLUGIN_PATH`).
pub fn dlm(args: &[&str]) -> Output {
    dlm_command(args).output().expect("run dlm")
}

/// `out`, the output of `dlm args`, which must have succeeded.
pub fn succeeded(args: &[&str], out: Output) -> Output {
    assert!(
        out.status.success(),
        "dlm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one JSON document `dlm args` printed in `out`.
pub fn json_of(args: &[&str], out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dlm {args:?} did not print JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The stderr of `out`, the output of `dlm args`, which must have failed with nothing on
/// stdout.
pub fn failed(args: &[&str], out: Output) -> String {
    assert!(!out.status.success(), "dlm {args:?} should fail");
    assert!(out.stdout.is_empty(), "no partial output on stdout");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `message`, what `dlm args` said, has every one of `needles`.
pub fn says_all(args: &[&str], message: &str, needles: &[&str]) {
    for n in needles {
        assert!(message.contains(n), "dlm {args:?}: '{n}' not in: {message}");
    }
}

/// Runs `dlm args`, which must succeed.
pub fn ok(args: &[&str]) -> Output {
    succeeded(args, dlm(args))
}

/// Runs `dlm args`, which must succeed and print one JSON document.
pub fn ok_json(args: &[&str]) -> serde_json::Value {
    json_of(args, &ok(args))
}

/// Runs `dlm args`, which must fail with nothing on stdout; returns stderr.
pub fn err_text(args: &[&str]) -> String {
    failed(args, dlm(args))
}

/// Asserts that `dlm args` fails with every one of `needles` in its message.
pub fn refused(args: &[&str], needles: &[&str]) {
    says_all(args, &err_text(args), needles);
}

/// `p` as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names of the files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
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

/// The library of the grid-path example plugin (`examples/grid-path-plugin`), built once per
/// test binary with its profile ([`build_libraries`]).
pub fn grid_path_plugin() -> &'static str {
    static LIB: OnceLock<String> = OnceLock::new();
    LIB.get_or_init(|| {
        build_libraries(&["dlm-example-grid-path"])
            .join("libdlm_example_grid_path.so")
            .to_string_lossy()
            .into_owned()
    })
}

/// The committed example data of the grid-path plugin (a relative path through the CLI
/// crate's directory).
pub fn paths_npz() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grid-path-plugin/data/paths.npz")
}
