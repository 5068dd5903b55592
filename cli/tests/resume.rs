//! `dlm train --checkpoint` then `--resume`: a run continued from a checkpoint writes the same
//! model file, byte for byte, and the same JSON (less timings) as the uninterrupted run, with
//! 1 and 2 threads; a resume that would change a setting is refused, naming it.

mod common;
use common::{grid_path_plugin, s};
use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `dlm args` without the caller's `DLM_PLUGIN_PATH` and `DLM_THREADS`.
fn dlm(args: &[&str]) -> Output {
    common::dlm_command(args)
        .env_remove("DLM_THREADS")
        .output()
        .expect("run dlm")
}

fn ok(args: &[&str]) -> Output {
    common::succeeded(args, dlm(args))
}

/// The JSON of a successful run, less the fields that measure time.
fn json(args: &[&str]) -> serde_json::Value {
    let mut v = common::json_of(args, &ok(args));
    let o = v.as_object_mut().unwrap();
    for k in ["train_seconds", "seconds_per_epoch"] {
        assert!(o.remove(k).is_some(), "no {k}");
    }
    v
}

fn refused(args: &[&str], needles: &[&str]) {
    common::says_all(args, &common::failed(args, dlm(args)), needles);
}

/// Runs `base + --epochs total --save A --json` in one go, and `base + --epochs half
/// --checkpoint C` then `--resume C --epochs total --save B --json` (threads as given for
/// each part); asserts identical model files and JSON.
fn straight_vs_resumed(base: &[&str], half: &str, total: &str, threads: [&str; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.dlm"),
        dir.path().join("b.dlm"),
        dir.path().join("c.ckpt"),
    );
    let with = |threads: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--threads".into(), threads.into()];
        v.extend(base.iter().map(|x| x.to_string()));
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |v: Vec<String>| {
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        json(&r)
    };
    let ja = run(with(
        threads[0],
        &["--epochs", total, "--save", s(&a), "--json", "--quiet"],
    ));
    let jc = run(with(
        threads[1],
        &["--epochs", half, "--checkpoint", s(&c), "--json", "--quiet"],
    ));
    assert_eq!(jc["epochs_run"].as_u64().unwrap().to_string(), half);
    let jb = json(&[
        "--threads",
        threads[2],
        "train",
        "--resume",
        s(&c),
        "--epochs",
        total,
        "--save",
        s(&b),
        "--json",
        "--quiet",
    ]);
    assert_eq!(jb, ja, "JSON of the resumed run");
    assert_eq!(ja["partial"], false);
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(
        ba == bb,
        "model files differ ({} vs {} bytes)",
        ba.len(),
        bb.len()
    );
    // The resumed run updated its checkpoint in place; it now stands at the total.
    let e = dlm(&["train", "--resume", s(&c), "--epochs", half]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--epochs is the total"));
}

const SORT: &[&str] = &["train", "--patience", "0", "--test-size", "300"];

#[test]
fn sort_resume_is_bit_identical_with_one_thread() {
    straight_vs_resumed(SORT, "30", "60", ["1", "1", "1"]);
}

#[test]
fn sort_resume_is_bit_identical_with_two_threads() {
    straight_vs_resumed(SORT, "30", "60", ["2", "2", "2"]);
    // The thread count is not a setting: mixed counts give the same run.
    straight_vs_resumed(SORT, "7", "12", ["1", "2", "1"]);
}

#[test]
fn sort_resume_is_bit_identical_with_the_adaptive_eps_policy() {
    // The policy's relative eps changes every batch: a checkpoint must carry it.
    let base = [SORT, &["--eps-policy", "adaptive", "--eps-band", "0.2,0.5"]].concat();
    straight_vs_resumed(&base, "20", "40", ["2", "2", "2"]);
}

/// The k-NN task on the embedded digits, with a small embedding to stay fast.
const KNN: &[&str] = &[
    "train",
    "--task",
    "knn",
    "--data",
    "digits",
    "--patience",
    "0",
    "--candidates",
    "100",
    "--eval-k",
    "1,3",
    "--mu",
    "mlp:sizes=64-32,opt=adam,lr=0.001,seed=0",
];

#[test]
fn knn_resume_is_bit_identical_with_one_thread() {
    straight_vs_resumed(KNN, "1", "2", ["1", "1", "1"]);
}

#[test]
fn knn_resume_is_bit_identical_with_two_threads() {
    straight_vs_resumed(KNN, "1", "2", ["2", "2", "2"]);
}

fn paths_npz() -> PathBuf {
    std::fs::canonicalize(common::paths_npz()).unwrap()
}

#[test]
fn structured_resume_is_bit_identical_and_refuses_changed_data() {
    let plugin = grid_path_plugin();
    let dir = tempfile::tempdir().unwrap();
    // A copy of the data, to change it later.
    let data = dir.path().join("paths.npz");
    std::fs::copy(paths_npz(), &data).unwrap();
    let data = std::fs::canonicalize(&data).unwrap();
    let base = [
        "--plugin",
        plugin,
        "train",
        "--task",
        "structured",
        "--structure",
        "grid-path",
        "--loss",
        "path-miss",
        "--data",
        s(&data),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|x| x.to_string()).collect()
    };
    let run = |v: Vec<String>| {
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        json(&r)
    };
    let (a, b, c) = (
        dir.path().join("a.dlm"),
        dir.path().join("b.dlm"),
        dir.path().join("c.ckpt"),
    );
    let ja = run(with(&[
        "--epochs",
        "20",
        "--save",
        s(&a),
        "--json",
        "--quiet",
    ]));
    run(with(&[
        "--epochs",
        "8",
        "--checkpoint",
        s(&c),
        "--json",
        "--quiet",
    ]));
    let jb = json(&[
        "--plugin",
        plugin,
        "train",
        "--resume",
        s(&c),
        "--epochs",
        "20",
        "--save",
        s(&b),
        "--json",
        "--quiet",
    ]);
    assert_eq!(jb, ja);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    // Changed data is refused ...
    let moved = dir.path().join("moved.npz");
    std::fs::copy(&data, &moved).unwrap();
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&data, &bytes).unwrap();
    refused(
        &[
            "--plugin",
            plugin,
            "train",
            "--resume",
            s(&c),
            "--epochs",
            "22",
        ],
        &["data", "checksum"],
    );
    // ... the same bytes elsewhere resume (--data names the moved file).
    ok(&[
        "--plugin",
        plugin,
        "train",
        "--resume",
        s(&c),
        "--epochs",
        "21",
        "--data",
        s(&moved),
        "--quiet",
    ]);
}

#[test]
fn resume_refuses_changed_settings_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.ckpt");
    let m = dir.path().join("m.dlm");
    ok(&[
        "train",
        "--n",
        "5",
        "--epochs",
        "5",
        "--patience",
        "0",
        "--test-size",
        "50",
        "--checkpoint",
        s(&c),
        "--save",
        s(&m),
        "--quiet",
    ]);
    let resume = |extra: &[&str]| -> Vec<String> {
        ["train", "--resume", s(&c), "--quiet"]
            .iter()
            .chain(extra)
            .map(|x| x.to_string())
            .collect()
    };
    let check = |extra: &[&str], needles: &[&str]| {
        let v = resume(extra);
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        refused(&r, needles);
    };
    check(
        &["--n", "6"],
        &["--n '6' (checkpoint: '5')", "n '6' (checkpoint: '5')"],
    );
    check(
        &["--mu-lr", "0.5"],
        &["--mu-lr '0.5' (checkpoint: not given)", "lr=0.5"],
    );
    check(&["--smooth", "3"], &["--smooth", "smooth '3'"]);
    check(&["--test-size", "51"], &["--test-size", "test_size"]);
    check(&["--seed", "1"], &["--seed", "seed '1'"]);
    check(
        &["--task", "knn"],
        &["checkpoint of task sort", "--task knn"],
    );
    // Fewer epochs than trained.
    check(&["--epochs", "4"], &["--epochs", "is the total"]);
    // A model is not a checkpoint; a checkpoint is not overwritten by --save.
    refused(&["train", "--resume", s(&m)], &["not a checkpoint"]);
    check(&["--save", s(&c)], &["--save", "checkpoint being resumed"]);
    // The same value given explicitly, or an equivalent one, is no change.
    let v = resume(&["--n", "5", "--mu-lr", "0.10", "--epochs", "7", "--json"]);
    let r: Vec<&str> = v.iter().map(String::as_str).collect();
    let out = ok(&r);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["epochs_run"], 7);
    // A checkpoint evaluates like a model.
    let e: serde_json::Value = serde_json::from_slice(
        &ok(&["eval", "--load", s(&c), "--test-size", "50", "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(e["test"], j["test"]);
    // A corrupt checkpoint is refused with a clear error.
    let bytes = std::fs::read(&c).unwrap();
    std::fs::write(&c, &bytes[..bytes.len() - 3]).unwrap();
    refused(&["train", "--resume", s(&c)], &["truncated"]);
}

#[test]
fn periodic_checkpoints_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.ckpt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args([
            "train",
            "--n",
            "4",
            "--epochs",
            "100000",
            "--patience",
            "0",
            "--test-size",
            "50",
            "--checkpoint",
            s(&c),
            "--checkpoint-every",
            "7",
            "--quiet",
        ])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !c.exists() {
        assert!(t0.elapsed().as_secs() < 60, "no checkpoint written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The checkpoint is complete (written atomically) at a multiple of 7 epochs, and
    // continues like the uninterrupted run.
    let bytes = std::fs::read(&c).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let done: u64 = text
        .split("\nepochs_done=")
        .nth(1)
        .and_then(|t| t.split('\n').next())
        .and_then(|t| t.parse().ok())
        .expect("epochs_done in the header");
    assert!(done > 0 && done % 7 == 0, "checkpoint at epoch {done}");
    let total = (done + 3).to_string();
    let (a, b) = (dir.path().join("a.dlm"), dir.path().join("b.dlm"));
    ok(&[
        "train",
        "--resume",
        s(&c),
        "--epochs",
        &total,
        "--save",
        s(&b),
        "--quiet",
    ]);
    ok(&[
        "train",
        "--n",
        "4",
        "--epochs",
        &total,
        "--patience",
        "0",
        "--test-size",
        "50",
        "--save",
        s(&a),
        "--quiet",
    ]);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
}
