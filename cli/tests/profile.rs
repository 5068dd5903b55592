//! `dlm train --profile`: the cost model adds up, its floor is a floor, it changes no result;
//! and the trained model's bytes do not depend on the number of threads.

mod common;

use common::{dlm, ok_json};
use std::path::Path;

/// The runs every test here repeats: each task at a small size.
fn runs() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "sort",
            vec![
                "train",
                "--n",
                "8",
                "--epochs",
                "30",
                "--patience",
                "0",
                "--seed",
                "3",
            ],
        ),
        (
            "shortest-path spo+",
            vec![
                "train",
                "--task",
                "shortest-path",
                "--estimator",
                "spo+",
                "--train-size",
                "200",
                "--test-size",
                "50",
                "--epochs",
                "3",
            ],
        ),
        (
            "shortest-path dlm",
            vec![
                "train",
                "--task",
                "shortest-path",
                "--train-size",
                "200",
                "--test-size",
                "50",
                "--epochs",
                "3",
            ],
        ),
        (
            "knn",
            vec![
                "train",
                "--task",
                "knn",
                "--epochs",
                "1",
                "--queries",
                "50",
                "--candidates",
                "200",
            ],
        ),
    ]
}

#[test]
fn profile_phases_add_up_to_the_epoch_and_the_floor_is_below_it() {
    for (name, args) in runs() {
        let mut a = args.clone();
        a.extend(["--profile", "--json", "--quiet"]);
        let v = ok_json(&a);
        let p = &v["profile"];
        let epoch = p["epoch_seconds"].as_f64().unwrap();
        let floor = p["solver_floor_seconds"].as_f64().unwrap();
        let ratio = p["floor_ratio"].as_f64().unwrap();
        let phases = p["phases"].as_object().unwrap();
        for k in [
            "noise",
            "plain_solves",
            "augmented_solves",
            "noiseless_solves",
            "mu_forward",
            "potential_map",
            "mu_backward",
            "sigma_net",
            "estimator_bookkeeping",
            "parallel_idle",
            "evaluation",
            "remainder",
        ] {
            let x = phases[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no phase {k}"));
            assert!(x >= 0.0, "{name}: phase {k} = {x}");
        }
        let sum: f64 = phases.values().map(|x| x.as_f64().unwrap()).sum();
        // The remainder closes the sum; the timed phases must not exceed the epoch.
        assert!(
            (sum - epoch).abs() <= 0.02 * epoch,
            "{name}: phases sum to {sum} s, the epoch took {epoch} s: {p}"
        );
        assert!(epoch > 0.0 && floor > 0.0, "{name}: {p}");
        assert!(ratio >= 1.0, "{name}: epoch / floor = {ratio}: {p}");
        assert!((ratio - epoch / floor).abs() <= 1e-9 * ratio, "{name}: {p}");
        assert!(p["solves_per_epoch"].as_f64().unwrap() > 0.0, "{name}: {p}");
    }
    // Sort: batch 10 x 5 draws x 2 solves, and 10 noiseless solves, per epoch.
    let v = ok_json(&[
        "train",
        "--n",
        "6",
        "--epochs",
        "5",
        "--patience",
        "0",
        "--profile",
        "--json",
        "--quiet",
    ]);
    assert_eq!(v["profile"]["solves_per_epoch"].as_f64(), Some(110.0));
    assert_eq!(v["profile"]["epochs"].as_u64(), Some(5));
    // Without --json the table goes to stderr.
    let out = dlm(&[
        "train",
        "--n",
        "6",
        "--epochs",
        "5",
        "--patience",
        "0",
        "--profile",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain_solves") && err.contains("epoch / floor"),
        "{err}"
    );
    // A resumed run profiles the epochs it runs (--profile is not stored in the checkpoint).
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.dlm");
    let ck = ck.to_str().unwrap();
    let first = [
        "train",
        "--n",
        "6",
        "--epochs",
        "3",
        "--patience",
        "0",
        "--checkpoint",
        ck,
        "--quiet",
    ];
    assert!(dlm(&first).status.success());
    let v = ok_json(&[
        "train",
        "--resume",
        ck,
        "--epochs",
        "5",
        "--profile",
        "--json",
        "--quiet",
    ]);
    assert_eq!(v["profile"]["epochs"].as_u64(), Some(2), "{v}");
    let v = ok_json(&[
        "train", "--resume", ck, "--epochs", "6", "--json", "--quiet",
    ]);
    assert!(v.get("profile").is_none(), "{v}");
}

fn model_bytes(args: &[&str], extra: &[&str], path: &Path) -> Vec<u8> {
    let mut a: Vec<&str> = extra.to_vec();
    a.extend_from_slice(args);
    let p = path.to_str().unwrap();
    a.extend(["--save", p, "--quiet"]);
    let out = dlm(&a);
    assert!(
        out.status.success(),
        "dlm {a:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(path).unwrap()
}

#[test]
fn profile_changes_nothing_and_threads_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in runs() {
        let path = dir.path().join("m.dlm");
        let base = model_bytes(&args, &["--threads", "2"], &path);
        let mut with_profile = args.clone();
        with_profile.push("--profile");
        assert!(
            model_bytes(&with_profile, &["--threads", "2"], &path) == base,
            "{name}: --profile changed the trained model"
        );
        for t in ["1", "3"] {
            assert!(
                model_bytes(&args, &["--threads", t], &path) == base,
                "{name}: --threads {t} trained another model than --threads 2"
            );
        }
    }
}
