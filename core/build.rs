//! Derives the plugin ABI fingerprint (see `src/abi_hash.rs` and the docs of `src/plugin.rs`)
//! from what crosses the plugin boundary: the plugin-facing sources, the compiler version and
//! the `ndarray` requirement. Plugins whose fingerprint differs are refused by the host.
use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(dead_code)]
#[path = "src/abi_hash.rs"]
mod abi_hash;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DLM_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/abi_hash.rs");

    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let sources: Vec<(&str, String)> = abi_hash::BOUNDARY_FILES
        .iter()
        .map(|f| {
            let path = dir.join("src").join(f);
            println!("cargo:rerun-if-changed=src/{f}");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "cannot read plugin boundary file {}: {e} (listed in src/abi_hash.rs)",
                    path.display()
                )
            });
            (*f, text)
        })
        .collect();
    let sources: Vec<(&str, &str)> = sources.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let ndarray = ndarray_requirement(&dir);
    let fp = abi_hash::fingerprint(&sources, &[("rustc", &version), ("ndarray", &ndarray)]);
    println!("cargo:rustc-env=DLM_ABI_FINGERPRINT={fp}");
}

/// The `ndarray` dependency line(s) of this crate's `Cargo.toml`, whitespace-collapsed; a
/// line inherited from the workspace (`ndarray.workspace = true`) is replaced by the
/// workspace's `ndarray = ...` line, so that the fingerprint sees the real requirement.
fn ndarray_requirement(dir: &Path) -> String {
    let manifest = dir.join("Cargo.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("reading Cargo.toml");
    let mut lines = Vec::new();
    for line in ndarray_lines(&text, |t| t.ends_with("dependencies]")) {
        if line.contains("workspace") {
            match workspace_line(dir) {
                Some(l) => lines.push(l),
                None => lines.push(line),
            }
        } else {
            lines.push(line);
        }
    }
    lines.join("\n")
}

/// The `ndarray...` lines of the TOML tables `table` accepts, whitespace-collapsed.
fn ndarray_lines(text: &str, table: impl Fn(&str) -> bool) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = table(t);
        } else if inside
            && t.strip_prefix("ndarray")
                .is_some_and(|rest| rest.starts_with([' ', '=', '.']))
        {
            out.push(t.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

/// The `ndarray` line of the nearest enclosing workspace's `[workspace.dependencies]`.
fn workspace_line(dir: &Path) -> Option<String> {
    for ancestor in dir.ancestors().skip(1) {
        let manifest = ancestor.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        if text.lines().any(|l| l.trim() == "[workspace]") {
            println!("cargo:rerun-if-changed={}", manifest.display());
            return ndarray_lines(&text, |t| t == "[workspace.dependencies]")
                .into_iter()
                .next();
        }
    }
    None
}
