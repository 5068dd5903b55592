//! Output paths and post-training options are checked before the first epoch: every case
//! below asks for a million epochs, so it only returns quickly, with no progress line
//! (progress is printed every epoch here), if it was refused before training.
#![cfg(unix)]

mod common;
use common::{files, s};
use std::path::Path;
use std::time::{Duration, Instant};

/// Asserts that `dlm train --epochs 1000000 ARGS` is refused before training, with every one
/// of `needles` in the message.
fn refused_early(args: &[&str], needles: &[&str]) {
    let t0 = Instant::now();
    let out = common::dlm_command(&["train", "--epochs", "1000000", "--patience", "0"])
        .args(args)
        .env("DLM_PROGRESS_INTERVAL", "0")
        .output()
        .expect("run dlm");
    let took = t0.elapsed();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "dlm train {args:?}: {e}");
    assert!(out.stdout.is_empty());
    assert!(!e.contains("epoch 1 "), "trained before refusing: {e}");
    // A debug build starts in milliseconds (the k-NN case loads the digits first).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for n in needles {
        assert!(e.contains(n), "dlm train {args:?}: '{n}' not in: {e}");
    }
}

#[test]
fn bad_output_paths_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink(&sub, d.join("to-dir")).unwrap();
    std::os::unix::fs::symlink(&fifo, d.join("to-fifo")).unwrap();
    std::os::unix::fs::symlink(d.join("nothing"), d.join("dangling")).unwrap();
    let slash = format!("{}/", s(&sub));
    let dot = format!("{}/.", s(&sub));
    let dotdot = format!("{}/..", s(&sub));
    for flag in ["--save", "--plot", "--checkpoint"] {
        refused_early(&[flag, s(&sub)], &[flag, "is a directory"]);
        refused_early(&[flag, "."], &[flag, "names a directory"]);
        refused_early(&[flag, &slash], &["names a directory"]);
        refused_early(&[flag, &dot], &["names a directory"]);
        refused_early(&[flag, &dotdot], &["names a directory"]);
        refused_early(&[flag, s(&fifo)], &["FIFO", "only regular files"]);
        refused_early(
            &[flag, s(&d.join("to-dir"))],
            &["symbolic link to a directory"],
        );
        refused_early(&[flag, s(&d.join("to-fifo"))], &["symbolic link to a FIFO"]);
        refused_early(
            &[flag, s(&d.join("dangling"))],
            &["symbolic link to nothing"],
        );
        refused_early(&[flag, "/nonexistent-dlm-dir/x.dlm"], &["does not exist"]);
        refused_early(&[flag, ""], &["a value is required"]);
    }
    refused_early(
        &["--test-size", "0", "--save", s(&d.join("m.dlm"))],
        &["--test-size"],
    );
    // Two outputs, one file (also through ./ and a symbolic link).
    let m = d.join("m.dlm");
    std::fs::write(&m, b"old").unwrap();
    std::os::unix::fs::symlink(&m, d.join("to-m")).unwrap();
    refused_early(
        &["--save", s(&m), "--plot", s(&m)],
        &["same file as --save"],
    );
    let via_dot = format!("{}/./m.dlm", s(d));
    refused_early(&["--save", s(&m), "--checkpoint", &via_dot], &["same file"]);
    refused_early(
        &["--plot", s(&d.join("to-m")), "--save", s(&m)],
        &["same file"],
    );
    // Nothing was written or left behind (no probe file), and the FIFO is untouched.
    assert_eq!(
        files(d),
        ["dangling", "fifo", "m.dlm", "sub", "to-dir", "to-fifo", "to-m"]
    );
    assert_eq!(std::fs::read(&m).unwrap(), b"old");
}

#[test]
fn unwritable_directories_are_refused_before_training() {
    // A directory that even root cannot write in (sysfs), when there is one.
    if Path::new("/sys/kernel").is_dir() && std::fs::write("/sys/dlm-probe", b"").is_err() {
        refused_early(
            &["--save", "/sys/m.dlm"],
            &["cannot write in directory /sys"],
        );
    }
    // A read-only directory (root may write there anyway: then only the case above counts).
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"").is_err() {
        refused_early(
            &["--save", s(&ro.join("m.dlm"))],
            &["cannot write in directory", "ermission denied"],
        );
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn post_training_options_are_checked_before_training() {
    refused_early(
        &["--task", "knn", "--data", "digits", "--eval-k", "1,5000"],
        &["--eval-k", "5000", "1258 training images"],
    );
    refused_early(&["--test-range", "1,0"], &["--test-range"]);
    refused_early(
        &["--checkpoint-every", "5"],
        &["--checkpoint-every", "--checkpoint PATH"],
    );
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.ckpt");
    refused_early(
        &["--checkpoint", s(&c), "--checkpoint-every", "0"],
        &["--checkpoint-every", "at least 1"],
    );
    refused_early(&["--resume", s(&c)], &["reading", "c.ckpt"]);
}
