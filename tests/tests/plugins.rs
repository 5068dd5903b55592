//! Dynamic plugins: build cdylibs, load them, check the ABI gate and the panic guard.

use dlm_core::{DlmError, Registry, Spec, Target};
use ndarray::{arr2, ArrayD, IxDyn};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;

/// Builds the plugin libraries once (same profile and target dir as this test) and returns
/// the path of `lib<name>.so`.
fn lib(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        common::build_libraries(&[
            "dlm-example-grid-path",
            "dlm-fixture-stale-plugin",
            "dlm-fixture-panic-plugin",
            "dlm-plugin-argmax",
        ])
    })
    .join(format!("lib{name}.so"))
}

#[test]
fn example_plugin_loads_and_solves() {
    let mut reg = Registry::new();
    reg.load_library(&lib("dlm_example_grid_path")).unwrap();
    let s = reg.structure(&Spec::named("grid-path")).unwrap();
    // The best path collects the 5s.
    let theta = arr2(&[[1.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 5.0, 1.0]]).into_dyn();
    let mut out = Vec::new();
    s.argmax(theta.view(), &mut out).unwrap();
    assert_eq!(out, vec![0, 1, 4, 7, 8]);
    // Its loss is linear and consistent with its value.
    let loss = reg.loss(&Spec::named("path-miss")).unwrap();
    let target = Target {
        truth: vec![0, 3, 6, 7, 8],
        weights: vec![],
    };
    assert_eq!(loss.value(&target, &[3, 3], &out).unwrap(), 2.0);
    let mut lin = ArrayD::zeros(IxDyn(&[3, 3]));
    let c = loss.linear_form(&target, lin.view_mut()).unwrap().unwrap();
    let lin_val: f64 = out.iter().map(|&i| lin.as_slice().unwrap()[i]).sum();
    assert_eq!(c + lin_val, 2.0);
    let listed = reg.list();
    assert!(listed
        .iter()
        .any(|c| c.name == "grid-path"
            && c.origin.to_string().contains("libdlm_example_grid_path.so")));
}

#[test]
fn builtin_plugin_is_also_loadable_from_its_library() {
    let mut reg = Registry::new();
    reg.load_library(&lib("dlm_plugin_argmax")).unwrap();
    let s = reg.structure(&Spec::named("argmax")).unwrap();
    let mut out = Vec::new();
    s.argmax(ndarray::arr1(&[0.1, 0.7, 0.2]).into_dyn().view(), &mut out)
        .unwrap();
    assert_eq!(out, vec![1]);
    // Registering the same name twice is refused with both origins named.
    let err = reg.load_library(&lib("dlm_plugin_argmax")).unwrap_err();
    assert!(err.to_string().contains("registered twice"), "{err}");
}

#[test]
fn plugin_with_another_abi_fingerprint_is_refused() {
    use dlm_core::plugin::{ABI_FINGERPRINT, CORE_VERSION, RUSTC_VERSION};
    let mut reg = Registry::new();
    let err = reg
        .load_library(&lib("dlm_fixture_stale_plugin"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DlmError::Plugin { .. }), "{msg}");
    for part in [
        "ABI fingerprint mismatch",
        "ABI fingerprint deadbeef",
        &format!("ABI fingerprint {ABI_FINGERPRINT}"),
        &format!("dlm-core {CORE_VERSION}"),
        RUSTC_VERSION,
        "rebuild the plugin against this dlm's dlm-core",
        "same compiler",
    ] {
        assert!(msg.contains(part), "the message names '{part}': {msg}");
    }
    assert!(reg.list().is_empty());
}

#[test]
fn panics_in_plugin_code_become_errors() {
    let mut reg = Registry::new();
    reg.load_library(&lib("dlm_fixture_panic_plugin")).unwrap();
    let err = reg
        .structure(&"panicky:boom=true".parse().unwrap())
        .err()
        .expect("factory panic is an error");
    assert!(matches!(err, DlmError::PluginPanic { .. }), "{err}");
    let s = reg.structure(&Spec::named("panicky")).unwrap();
    let err = s
        .argmax(ndarray::arr1(&[1.0]).into_dyn().view(), &mut Vec::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("deliberate panic inside plugin argmax"),
        "{err}"
    );
}

#[test]
fn non_plugins_and_missing_files_are_refused_clearly() {
    let mut reg = Registry::new();
    let err = reg
        .load_library(Path::new("/nonexistent/libx.so"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no such file: /nonexistent/libx.so"),
        "{err}"
    );
    // A relative path that does not exist is named in full, not looked up by the loader.
    let err = reg
        .load_library(Path::new("no-such-dir/libx.so"))
        .unwrap_err()
        .to_string();
    let cwd = std::env::current_dir().unwrap();
    assert!(
        err.contains(&format!(
            "no such file: {}",
            cwd.join("no-such-dir/libx.so").display()
        )),
        "{err}"
    );
    // A directory is not a library.
    let err = reg
        .load_library(&std::env::temp_dir())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is a directory") && err.contains("DLM_PLUGIN_PATH"),
        "{err}"
    );
    // A real shared library that is not a dlm plugin.
    let not_plugin = Path::new("/lib/x86_64-linux-gnu/libm.so.6");
    if not_plugin.exists() {
        let err = reg.load_library(not_plugin).unwrap_err();
        assert!(err.to_string().contains("not a dlm plugin"), "{err}");
    }
    // A file that is not a library at all.
    let dir = std::env::temp_dir().join(format!("dlm-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("libjunk.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let err = reg.load_library(&junk).unwrap_err();
    assert!(err.to_string().contains("cannot load"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plugin_path_lists_load_files_and_directories() {
    let dir = std::env::temp_dir().join(format!("dlm-plugin-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        lib("dlm_example_grid_path"),
        dir.join("libdlm_example_grid_path.so"),
    )
    .unwrap();
    std::fs::write(dir.join("README.txt"), "not a plugin, ignored").unwrap();
    let mut reg = Registry::new();
    let loaded = reg
        .load_path_list(&format!(
            "{}::{}",
            dir.display(),
            lib("dlm_plugin_argmax").display()
        ))
        .unwrap();
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    assert!(reg.structure(&Spec::named("grid-path")).is_ok());
    assert!(reg.structure(&Spec::named("argmax")).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}
