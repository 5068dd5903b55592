//! The plugin as `dlm` uses it: the built `libdlm_plugin_torch.so`, loaded at run time.

use dlm_core::{Registry, Spec};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugin library: `DLM_TORCH_PLUGIN` if set, else built here (same target directory and
/// profile as this test) with a nested `cargo build`.
fn plugin_library() -> PathBuf {
    if let Some(p) = std::env::var_os("DLM_TORCH_PLUGIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf();
    let target = dir.parent().expect("target dir");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--lib", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building the torch plugin failed");
    dir.join("libdlm_plugin_torch.so")
}

#[test]
fn the_built_library_loads_and_its_scorers_run() {
    let lib = plugin_library();
    let mut reg = Registry::new();
    reg.load_library(&lib)
        .unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    let names = reg.names(dlm_core::plugin::Kind::Scorer);
    for n in [
        "torch-mlp",
        "torch-lenet",
        "torch-resnet18",
        "torch-sigma-mnist",
        "torch-sigma-cifar",
    ] {
        assert!(names.iter().any(|m| m == n), "{n} not in {names:?}");
    }
    let spec: Spec = "torch-mlp:sizes=3-4-2,seed=1".parse().unwrap();
    let mut s = reg.scorer(&spec).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.1, 0.2, 0.3, -0.1, 0.5, 1.0]).unwrap();
    let y = s.forward(x.view(), true).unwrap();
    assert_eq!(y.shape(), &[2, 2]);
    s.backward(ArrayD::ones(IxDyn(&[2, 2])).view()).unwrap();
    s.step().unwrap();
    let mut buf = Vec::new();
    s.save(&mut buf).unwrap();
    assert!(s.load(&mut &buf[..buf.len() / 2]).is_err());
    s.load(&mut buf.as_slice()).unwrap();
    // Unknown options are refused by the host after the factory ran.
    assert!(reg
        .scorer(&"torch-mlp:sizes=3-2,typo=1".parse().unwrap())
        .is_err());
    let cuda = reg.scorer(&"torch-mlp:sizes=3-2,device=cuda".parse().unwrap());
    if tch::Cuda::is_available() {
        let mut s = cuda.unwrap();
        assert_eq!(s.device(), "cuda:0");
        assert_eq!(s.forward(x.view(), false).unwrap().shape(), &[2, 2]);
    } else {
        let e = cuda.err().expect("cuda refused without a GPU").to_string();
        assert!(e.contains("CUDA"), "{e}");
    }
}
