//! The ABI fingerprint against real builds: a plugin compiled against a copy of `dlm-core`
//! whose plugin-facing part changed (one default method added to `StructuredArgmax`, version
//! string unchanged) is refused; one compiled against a copy changed only elsewhere (a function
//! appended to a non-boundary file, and another version string) loads and solves.
//!
//! The copies are small workspaces written under `<target>/abi-fixtures/` (the repository's
//! workspace manifest with other members, its `Cargo.lock`, the copied `core/`, the files
//! `core/` includes from outside itself, and a tiny plugin crate); they share the target
//! directory `<target>/abi-fixtures/target`. Files are only rewritten when their content
//! changes, so repeated runs are incremental.

use dlm_core::plugin::{ABI_FINGERPRINT, CORE_VERSION, RUSTC_VERSION};
use dlm_core::{DlmError, Registry, Spec};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The target directory of this test and whether it is a release build.
fn target_dir() -> (PathBuf, bool) {
    let profile = common::profile_dir();
    let release = common::is_release(&profile);
    (profile.parent().expect("target dir").to_path_buf(), release)
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if fs::read(path).ok().as_deref() == Some(bytes) {
        return;
    }
    fs::create_dir_all(path.parent().expect("parent")).expect("create directory");
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The files under `dir`, relative to it (`target` directories skipped).
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if e.file_name() != "target" {
                    walk(root, &p, out);
                }
            } else {
                out.push(p.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Paths (relative to the repository root) of the files that `core/`'s sources include with
/// `include_bytes!`/`include_str!` from outside `core/`.
fn external_includes(core: &Path, root: &Path) -> Vec<PathBuf> {
    let core = core.canonicalize().expect("core dir");
    let root = root.canonicalize().expect("repository root");
    let mut out = Vec::new();
    for rel in files(&core) {
        if rel.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let file = core.join(&rel);
        let text = fs::read_to_string(&file).unwrap_or_default();
        for mac in ["include_bytes!(\"", "include_str!(\""] {
            for (at, _) in text.match_indices(mac) {
                let rest = &text[at + mac.len()..];
                let Some(end) = rest.find('"') else { continue };
                let target = file.parent().expect("dir").join(&rest[..end]);
                let Ok(target) = target.canonicalize() else {
                    continue; // the build will say what is missing
                };
                if target.starts_with(&core) {
                    continue;
                }
                let rel = target.strip_prefix(&root).unwrap_or_else(|_| {
                    panic!(
                        "{} includes {}, outside the repository; the copied core cannot build",
                        file.display(),
                        target.display()
                    )
                });
                out.push(rel.to_path_buf());
            }
        }
    }
    out
}

/// The repository's workspace manifest with only `core` and `probe` as members, and without
/// workspace dependencies whose path does not exist in the copy.
fn workspace_manifest(copy: &Path) -> String {
    let text = fs::read_to_string(repo().join("Cargo.toml")).expect("read Cargo.toml");
    let mut out = String::new();
    let mut table = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.to_string();
            out.push_str(line);
            out.push('\n');
            if table == "[workspace]" {
                out.push_str("resolver = \"2\"\nmembers = [\"core\", \"probe\"]\n");
            }
            continue;
        }
        if table == "[workspace]" {
            continue;
        }
        if table == "[workspace.dependencies]" {
            if let Some(p) = t
                .split("path = \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                if !copy.join(p).exists() {
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

const PROBE_LIB: &str = r#"//! ABI test plugin: registers one structure, the index of the largest entry.
use dlm_core::plugin::Registrar;
use dlm_core::structure::checked_slice;
use dlm_core::{DlmError, Result, StructuredArgmax};
use ndarray::ArrayViewD;

struct Largest;

impl StructuredArgmax for Largest {
    fn name(&self) -> &str {
        env!("CARGO_PKG_NAME")
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        match shape {
            [n] if *n > 0 => Ok(()),
            _ => Err(DlmError::shape("potentials", "[n], n >= 1", shape)),
        }
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        let best = (0..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b });
        out.clear();
        out.push(best);
        Ok(())
    }
}

fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.structure(env!("CARGO_PKG_NAME"), "ABI test: the largest entry", |_| Ok(Largest))
}

dlm_core::export_plugin!(register);
"#;

/// Writes the workspace `copy` (core copied, `edit` applied to its files) with the plugin
/// crate `name`, and builds the plugin into `target`.
fn build_copy(
    copy: &Path,
    target: &Path,
    release: bool,
    name: &str,
    edit: impl Fn(&Path, &mut String),
) {
    let root = repo();
    let core = root.join("core");
    // core/, edited, with stale files of earlier runs removed.
    let mut keep = BTreeSet::new();
    for rel in files(&core) {
        let bytes = fs::read(core.join(&rel)).expect("read core file");
        let bytes = match String::from_utf8(bytes) {
            Ok(mut text) => {
                edit(&rel, &mut text);
                text.into_bytes()
            }
            Err(e) => e.into_bytes(),
        };
        write_if_changed(&copy.join("core").join(&rel), &bytes);
        keep.insert(rel);
    }
    for rel in files(&copy.join("core")) {
        if !keep.contains(&rel) {
            fs::remove_file(copy.join("core").join(&rel)).ok();
        }
    }
    for rel in external_includes(&core, &root) {
        let bytes = fs::read(root.join(&rel)).expect("read included file");
        write_if_changed(&copy.join(&rel), &bytes);
    }
    write_if_changed(
        &copy.join("Cargo.toml"),
        workspace_manifest(copy).as_bytes(),
    );
    write_if_changed(
        &copy.join("Cargo.lock"),
        &fs::read(root.join("Cargo.lock")).expect("read Cargo.lock"),
    );
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\ndlm-core = {{ path = \"../core\" }}\nndarray.workspace = true\n"
    );
    write_if_changed(&copy.join("probe/Cargo.toml"), manifest.as_bytes());
    write_if_changed(&copy.join("probe/src/lib.rs"), PROBE_LIB.as_bytes());

    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "--manifest-path"])
        .arg(copy.join("Cargo.toml"))
        .args(["-p", name, "--target-dir"])
        .arg(target);
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "building {name} against {} failed:\n{}",
        copy.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds a default method at the top of `StructuredArgmax` (its vtable shifts).
fn add_default_method(rel: &Path, text: &mut String) {
    if rel != Path::new("src/structure.rs") {
        return;
    }
    let at = text
        .find("pub trait StructuredArgmax")
        .and_then(|t| text[t..].find('{').map(|b| t + b + 1))
        .expect("trait StructuredArgmax in structure.rs");
    text.insert_str(
        at,
        "\n    /// Added by the ABI test.\n    fn abi_test_added(&self) -> usize {\n        0\n    }\n",
    );
}

/// Appends a function to a file outside the boundary and changes the version string.
fn change_elsewhere(rel: &Path, text: &mut String, has_predictor: bool) {
    let host = if has_predictor {
        "src/predictor.rs"
    } else {
        "src/lib.rs"
    };
    if rel == Path::new(host) {
        text.push_str(
            "\n/// Added by the ABI test.\npub fn abi_test_added() -> usize {\n    1\n}\n",
        );
    }
    if rel == Path::new("Cargo.toml") {
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.trim_start().starts_with("version") {
                true => "version = \"0.1.1-abitest\"".to_string(),
                false => l.to_string(),
            })
            .collect();
        assert!(lines.iter().any(|l| l.contains("abitest")), "{text}");
        *text = lines.join("\n") + "\n";
    }
}

/// Builds both plugins once; returns the directory that holds them.
fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let (target, release) = target_dir();
        let base = target.join("abi-fixtures");
        let shared = base.join("target");
        build_copy(
            &base.join("boundary-changed"),
            &shared,
            release,
            "dlm-abi-probe-a",
            add_default_method,
        );
        let has_predictor = repo().join("core/src/predictor.rs").is_file();
        build_copy(
            &base.join("elsewhere-changed"),
            &shared,
            release,
            "dlm-abi-probe-b",
            |rel, text| change_elsewhere(rel, text, has_predictor),
        );
        shared.join(if release { "release" } else { "debug" })
    })
}

#[test]
fn plugin_built_against_a_changed_boundary_is_refused() {
    let mut reg = Registry::new();
    let err = reg
        .load_library(&plugins().join("libdlm_abi_probe_a.so"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DlmError::Plugin { .. }), "{msg}");
    assert!(msg.contains("ABI fingerprint mismatch"), "{msg}");
    assert!(
        msg.contains(&format!("ABI fingerprint {ABI_FINGERPRINT}")),
        "{msg}"
    );
    // The plugin's own fingerprint is named too, and differs.
    let theirs = msg
        .split("ABI fingerprint ")
        .skip(1)
        .filter_map(|s| s.get(..32))
        .filter(|f| f.bytes().all(|b| b.is_ascii_hexdigit()))
        .find(|f| *f != ABI_FINGERPRINT);
    assert!(theirs.is_some(), "the plugin's fingerprint is named: {msg}");
    // Same version string on both sides: the version alone would not have caught this.
    assert!(
        msg.matches(&format!("dlm-core {CORE_VERSION}")).count() >= 2,
        "{msg}"
    );
    assert!(msg.contains(RUSTC_VERSION), "{msg}");
    assert!(reg.list().is_empty());
}

#[test]
fn plugin_built_against_a_core_changed_elsewhere_loads_and_solves() {
    let mut reg = Registry::new();
    reg.load_library(&plugins().join("libdlm_abi_probe_b.so"))
        .expect("same fingerprint, other dlm-core version: loads");
    let s = reg.structure(&Spec::named("dlm-abi-probe-b")).unwrap();
    let mut out = Vec::new();
    s.argmax(ndarray::arr1(&[0.1, 0.7, 0.2]).into_dyn().view(), &mut out)
        .unwrap();
    assert_eq!(out, vec![1]);
    assert_eq!(s.name(), "dlm-abi-probe-b");
    let err = s
        .argmax(ndarray::arr2(&[[1.0]]).into_dyn().view(), &mut out)
        .unwrap_err();
    assert!(matches!(err, DlmError::ShapeMismatch { .. }), "{err}");
}
