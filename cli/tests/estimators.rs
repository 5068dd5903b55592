//! End-to-end tests of `--estimator` and of `dlm train --task shortest-path` (issue 11).

mod common;
use common::{ok_json, refused};

/// Every estimator trains the shortest-path benchmark and reports the normalized regret; each
/// must end well below the untrained model's (about 75 % at deg 4 with the default
/// initialisation) — a wrong sign or a missing factor would not get there in 10 epochs.
#[test]
fn every_estimator_trains_the_shortest_path_benchmark() {
    for e in ["dlm", "fy", "blackbox:lambda=20", "imle", "spo+"] {
        let v = ok_json(&[
            "train",
            "--task",
            "shortest-path",
            "--deg",
            "4",
            "--train-size",
            "300",
            "--test-size",
            "300",
            "--epochs",
            "10",
            "--estimator",
            e,
            "--seed",
            "3",
            "--json",
            "--quiet",
        ]);
        assert_eq!(v["estimator"], e);
        assert_eq!(v["epochs_run"], 10);
        let before = v["untrained"]["normalized_regret"].as_f64().unwrap();
        let after = v["test"]["normalized_regret"].as_f64().unwrap();
        assert!(before > 0.3, "{e}: untrained regret {before}");
        assert!(
            after < 0.2 && after < before / 3.0,
            "{e}: {before} -> {after}"
        );
        assert!(v["seconds_per_epoch"].as_f64().unwrap() > 0.0);
    }
}

/// The defaults follow the estimator: no noise for SPO+ and blackbox, Sum-of-Gamma noise with
/// a fixed sigma for I-MLE; DLM keeps its learned sigma.
#[test]
fn noise_and_sigma_defaults_follow_the_estimator() {
    let run = |e: &str| {
        ok_json(&[
            "train",
            "--task",
            "shortest-path",
            "--train-size",
            "50",
            "--test-size",
            "50",
            "--epochs",
            "1",
            "--estimator",
            e,
            "--json",
            "--quiet",
        ])
    };
    assert_eq!(run("spo+")["sigma_mode"], "none");
    assert_eq!(run("blackbox")["sigma_mode"], "none");
    let imle = run("imle");
    assert_eq!(imle["sigma_mode"], "fixed:1");
    assert_eq!(
        imle["noise"], "sum-of-gamma:k=8",
        "a 5x5 grid's paths have 8 arcs"
    );
    assert_eq!(run("dlm")["sigma_mode"], "learned");
}

#[test]
fn estimator_misuse_is_refused_with_the_reason() {
    // SPO+ needs the true cost of every part, which sort targets do not carry.
    refused(
        &[
            "train",
            "--task",
            "sort",
            "--n",
            "4",
            "--epochs",
            "1",
            "--estimator",
            "spo+",
        ],
        &["cost"],
    );
    // A learned sigma gets no gradient from SPO+.
    refused(
        &[
            "train",
            "--task",
            "shortest-path",
            "--epochs",
            "1",
            "--estimator",
            "spo+",
            "--sigma",
            "learned",
        ],
        &["no gradient for a learned noise scale"],
    );
    // --draws means nothing to an estimator without noise.
    refused(
        &[
            "train",
            "--task",
            "shortest-path",
            "--epochs",
            "1",
            "--estimator",
            "blackbox",
            "--draws",
            "3",
        ],
        &["--draws", "blackbox"],
    );
    refused(
        &["train", "--task", "shortest-path", "--estimator", "nosuch"],
        &["no estimator named 'nosuch'", "spo+"],
    );
    refused(
        &[
            "train",
            "--task",
            "shortest-path",
            "--estimator",
            "blackbox:lambda=-1",
        ],
        &["lambda"],
    );
    // Options of other tasks are refused, not ignored.
    refused(
        &[
            "train",
            "--task",
            "shortest-path",
            "--structure",
            "matching",
        ],
        &["grid-edges"],
    );
    refused(&["train", "--task", "sort", "--deg", "2"], &["--deg"]);
}

/// A saved shortest-path model evaluates to the same test metrics (the generated data are
/// rebuilt from the settings stored in the model).
#[test]
fn shortest_path_save_and_eval_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("sp.dlm");
    let m = model.to_str().unwrap();
    let t = ok_json(&[
        "train",
        "--task",
        "shortest-path",
        "--deg",
        "2",
        "--train-size",
        "200",
        "--test-size",
        "100",
        "--epochs",
        "3",
        "--estimator",
        "spo+",
        "--save",
        m,
        "--json",
        "--quiet",
    ]);
    let e = ok_json(&["eval", "--load", m, "--json"]);
    assert_eq!(e["task"], "shortest-path");
    assert_eq!(e["test"], t["test"]);
}
