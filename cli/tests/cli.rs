//! End-to-end tests of the `dlm` binary.

mod common;
use common::{build_libraries, dlm, err_text, ok_json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Builds the example and fixture plugins once (same profile and target dir as this test) and
/// returns the path of `lib<name>.so`.
fn plugin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| build_libraries(&["dlm-example-grid-path", "dlm-fixture-broken-plugin"]));
    dir.join(format!("lib{name}.so"))
}

#[test]
fn plugins_lists_the_builtins() {
    let v = ok_json(&["plugins", "--json"]);
    let names: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().into(),
                c["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (k, n) in [
        ("structure", "matching"),
        ("structure", "topk"),
        ("structure", "argmax"),
        ("noise", "gumbel"),
        ("noise", "gaussian"),
        ("noise", "logistic"),
        ("noise", "sum-of-gamma"),
        ("noise", "corr-gaussian"),
        ("loss", "hamming"),
        ("loss", "sort"),
        ("loss", "label-mismatch"),
        ("loss", "zero-one"),
        ("scorer", "mlp"),
    ] {
        assert!(
            names.contains(&(k.into(), n.into())),
            "{k} {n} missing from {names:?}"
        );
    }
}

#[test]
fn solve_reads_csv_and_npy_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("m.csv");
    std::fs::write(&csv, "0.1,0.9,0.0\n0.8,0.2,0.0\n0.0,0.0,1.0\n").unwrap();
    let v = ok_json(&[
        "solve",
        "--structure",
        "matching",
        "--input",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(v["solution"], serde_json::json!([1, 0, 2]));
    assert!((v["score"].as_f64().unwrap() - 2.7).abs() < 1e-12);
    let v = ok_json(&[
        "solve",
        "-s",
        "matching:algo=km",
        "-i",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(v["solution"], serde_json::json!([1, 0, 2]));
    let v = ok_json(&["solve", "-s", "topk:k=2", "--potentials", "0.3,-1,2,0.5"]);
    assert_eq!(v["solution"], serde_json::json!([2, 3]));
    // A batch in one .npy file.
    let npy = dir.path().join("b.npy");
    let arr =
        ndarray::Array3::<f64>::from_shape_fn(
            (2, 3, 3),
            |(b, i, j)| if (i + b) % 3 == j { 1.0 } else { 0.0 },
        );
    ndarray_npy::write_npy(&npy, &arr).unwrap();
    let v = ok_json(&["solve", "-i", npy.to_str().unwrap()]);
    assert_eq!(v["problems"][0]["solution"], serde_json::json!([0, 1, 2]));
    assert_eq!(v["problems"][1]["solution"], serde_json::json!([1, 2, 0]));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let nan = dir.path().join("nan.csv");
    std::fs::write(&nan, "1,2\nNaN,0\n").unwrap();
    assert!(err_text(&["solve", "-i", nan.to_str().unwrap()])
        .contains("line 2, column 1: 'NaN' is not a finite number"));
    let ragged = dir.path().join("r.csv");
    std::fs::write(&ragged, "1,2\n3\n").unwrap();
    assert!(err_text(&["solve", "-i", ragged.to_str().unwrap()]).contains("line 2 has 1 values"));
    let rect = dir.path().join("rect.csv");
    std::fs::write(&rect, "1,2,3\n4,5,6\n").unwrap();
    assert!(err_text(&["solve", "-i", rect.to_str().unwrap()]).contains("[n, n]"));
    assert!(err_text(&["solve", "-i", "/nonexistent.csv"]).contains("/nonexistent.csv"));
    assert!(err_text(&["solve", "-s", "nosuch", "--potentials", "1"]).contains("available"));
    assert!(
        err_text(&["solve", "-s", "matching:algoo=km", "--potentials", "1"])
            .contains("unknown option")
    );
    let junk = dir.path().join("j.npy");
    std::fs::write(&junk, b"garbage").unwrap();
    assert!(err_text(&["solve", "-i", junk.to_str().unwrap()]).contains(".npy"));
    assert!(err_text(&["train", "--epsilon", "0", "--epochs", "1"]).contains("epsilon"));
    assert!(err_text(&["train", "--sigma", "fixed:-1", "--epochs", "1"]).contains("fixed:VALUE"));
    assert!(err_text(&["--plugin", "/nonexistent/libp.so", "plugins"]).contains("no such file"));
    assert!(err_text(&["train", "--test-size", "0", "--epochs", "5"]).contains("--test-size"));
    assert!(err_text(&["bench", "matching", "--seconds", "inf"]).contains("--seconds"));
    assert!(err_text(&["bench", "matching", "--thread-counts", "0"]).contains("--thread-counts"));
}

#[test]
fn sample_reports_frequencies() {
    // Zero-mean Gumbel noise on an argmax: the frequencies are softmax(theta / sigma), here
    // softmax(1, 0) = (0.731, 0.269); tolerance 5 standard errors of 20 000 samples.
    let v = ok_json(&[
        "sample",
        "-s",
        "argmax",
        "--potentials",
        "1,0",
        "--sigma",
        "1",
        "--noise",
        "gumbel",
        "--samples",
        "20000",
        "--seed",
        "3",
    ]);
    assert_eq!(v["distinct"], 2);
    let p0 = 1.0f64.exp() / (1.0f64.exp() + 1.0);
    for f in v["frequencies"].as_array().unwrap() {
        let class = f["solution"][0].as_u64().unwrap();
        let p = if class == 0 { p0 } else { 1.0 - p0 };
        let got = f["frequency"].as_f64().unwrap();
        let se = (p * (1.0 - p) / 20000.0).sqrt();
        assert!((got - p).abs() < 5.0 * se, "class {class}: {got} vs {p}");
    }
}

#[test]
fn verify_passes_and_reports_a_table() {
    let v = ok_json(&["verify", "--samples", "20000", "--json"]);
    assert_eq!(v["failed"], 0, "{v:#}");
    assert_eq!(v["skipped"], 0, "{v:#}");
    assert!(v["checks"].as_array().unwrap().len() >= 8);
    let out = dlm(&["verify", "--samples", "20000"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("check") && table.contains("tolerance"),
        "{table}"
    );
}

#[test]
fn verify_holds_for_any_gumbel_and_skips_the_identities_for_other_noise() {
    // The official sorting code's noise: the identities at its own scale, not scale 1.
    let v = ok_json(&[
        "verify",
        "--noise",
        "gumbel:variance=3",
        "--samples",
        "20000",
        "--json",
    ]);
    assert_eq!(v["failed"], 0, "{v:#}");
    let v = ok_json(&[
        "verify",
        "--noise",
        "gaussian",
        "--samples",
        "20000",
        "--json",
    ]);
    assert_eq!(v["failed"], 0, "{v:#}");
    let skipped: Vec<&serde_json::Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "skip")
        .collect();
    assert_eq!(skipped.len(), 7, "identities and exact argmax rows: {v:#}");
    assert!(skipped[0]["detail"]
        .as_str()
        .unwrap()
        .contains("not Gumbel-family"));
}

#[test]
fn verify_refuses_meaningless_options() {
    assert!(err_text(&["verify", "--sigma", "0"]).contains("--sigma"));
    assert!(err_text(&["verify", "--sigma", "-1"]).contains("--sigma"));
    assert!(err_text(&["verify", "--z", "-1"]).contains("--z"));
    assert!(err_text(&["verify", "--samples", "10"]).contains("--samples"));
    assert!(err_text(&["verify", "--epsilon", "0"]).contains("--epsilon"));
    assert!(err_text(&["verify", "--loss", "hamming"]).contains("--structure"));
    assert!(err_text(&["verify", "--structure", "nosuch"]).contains("available"));
}

#[test]
fn verify_runs_the_kit_on_a_plugin_structure() {
    let lib = plugin("dlm_example_grid_path");
    let lib = lib.to_str().unwrap();
    let v = ok_json(&[
        "--plugin",
        lib,
        "verify",
        "--structure",
        "grid-path",
        "--loss",
        "path-miss",
        "--samples",
        "20000",
        "--json",
    ]);
    assert_eq!(v["failed"], 0, "{v:#}");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "optimal vs brute force (continuous theta)",
        "loss: value = c + <L, phi(y)> on every solution",
        "argmax frequencies = softmax(mu/(sigma*beta))",
        "DLM gradient = finite differences (Monte Carlo, grid-path",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} in {names:?}"
        );
    }
    // Without a loss the gradient row is skipped, with the reason.
    let v = ok_json(&[
        "--plugin",
        lib,
        "verify",
        "--structure",
        "grid-path",
        "--samples",
        "20000",
        "--json",
    ]);
    let last = v["checks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "skip", "{last:#}");
    assert!(last["detail"].as_str().unwrap().contains("no loss"));
}

#[test]
fn verify_fails_a_broken_structure_and_names_the_check() {
    let lib = plugin("dlm_fixture_broken_plugin");
    let out = dlm(&[
        "--plugin",
        lib.to_str().unwrap(),
        "verify",
        "--structure",
        "broken-argmax",
        "--loss",
        "zero-one",
        "--samples",
        "20000",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed check exits 1");
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("optimal vs brute force (continuous theta)"))
        .unwrap_or_else(|| panic!("no optimality row in\n{table}"));
    assert!(row.ends_with("FAIL"), "{row}");
    assert!(
        table.contains("returned [") && table.contains("theta [") && table.contains("seed 0"),
        "the failing instance is named:\n{table}"
    );
}

#[test]
fn train_save_eval_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.dlm");
    let plot = dir.path().join("p.svg");
    let m = model.to_str().unwrap();
    let t = ok_json(&[
        "train",
        "--task",
        "sort",
        "--n",
        "5",
        "--epochs",
        "60",
        "--seed",
        "4",
        "--test-size",
        "300",
        "--save",
        m,
        "--plot",
        plot.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    for k in [
        "task",
        "n",
        "epochs_run",
        "train_seconds",
        "seconds_per_epoch",
        "sigma_final",
        "epsilon_final",
    ] {
        assert!(!t[k].is_null(), "missing {k} in {t:#}");
    }
    for k in ["n_sequences", "prop_wrong", "prop_any_wrong", "kendall_tau"] {
        assert!(!t["test"][k].is_null(), "missing test.{k}");
    }
    assert!(Path::new(&plot).exists());
    let e = ok_json(&["eval", "--load", m, "--test-size", "300", "--json"]);
    assert_eq!(
        e["test"], t["test"],
        "eval of the saved model gives the training run's metrics"
    );
    // A corrupted model is refused.
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() - 7]).unwrap();
    assert!(err_text(&["eval", "--load", m]).contains("truncated"));
    // Saving into a missing directory fails before training and writes nothing.
    assert!(
        err_text(&["train", "--epochs", "2", "--save", "/nonexistent/dir/m.dlm"])
            .contains("does not exist")
    );
}

#[test]
fn thread_count_does_not_change_training() {
    let a = ok_json(&[
        "--threads",
        "1",
        "train",
        "--n",
        "6",
        "--epochs",
        "25",
        "--patience",
        "0",
        "--seed",
        "2",
        "--json",
        "--quiet",
    ]);
    let b = ok_json(&[
        "--threads",
        "2",
        "train",
        "--n",
        "6",
        "--epochs",
        "25",
        "--patience",
        "0",
        "--seed",
        "2",
        "--json",
        "--quiet",
    ]);
    assert_eq!(a["test"], b["test"]);
    assert_eq!(a["epsilon_final"], b["epsilon_final"]);
    assert_eq!(a["sigma_final"], b["sigma_final"]);
}

#[test]
fn knn_on_embedded_digits_reports_both_accuracies_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("k.dlm");
    let m = model.to_str().unwrap();
    let t = ok_json(&[
        "train", "--task", "knn", "--data", "digits", "--epochs", "2", "--save", m, "--json",
        "--quiet",
    ]);
    for k in ["task", "data", "epochs_run", "train_seconds"] {
        assert!(!t[k].is_null(), "missing {k}");
    }
    assert_eq!(t["test"]["n_test"], 539);
    // The embedding starts near the identity (pixel k-NN), so accuracy alone would not show
    // training: compare with the same run at learning rate 0 (the initial embedding), which
    // the trained one must differ from, without losing more than 3 points at any k.
    let frozen = ok_json(&[
        "train", "--task", "knn", "--data", "digits", "--epochs", "1", "--mu-lr", "0", "--json",
        "--quiet",
    ]);
    let mut moved = false;
    for k in ["1", "3", "5", "9"] {
        let a = t["test"]["accuracy"][k].as_f64().unwrap();
        let a0 = frozen["test"]["accuracy"][k].as_f64().unwrap();
        let p = t["test"]["pixel_knn_accuracy"][k].as_f64().unwrap();
        assert!(p > 0.9, "pixel k-NN on digits, k={k}: {p}");
        assert!(a > a0 - 0.03, "k={k}: trained {a} vs initial {a0}");
        moved |= a != a0;
    }
    assert!(
        moved,
        "two epochs of training changed no k-NN prediction: {t:#}"
    );
    let e = ok_json(&["eval", "--load", m, "--json"]);
    assert_eq!(e["test"]["accuracy"], t["test"]["accuracy"]);
    assert!(
        err_text(&["train", "--task", "knn", "--data", "nosuch", "--epochs", "1"])
            .contains("digits")
    );
}

#[test]
fn bench_matching_prints_one_object_per_configuration() {
    let v = ok_json(&[
        "bench",
        "matching",
        "--n",
        "5,20",
        "--thread-counts",
        "1,2",
        "--seconds",
        "0.02",
        "--json",
    ]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2, "(n, algo, threads) combinations");
    for r in rows {
        for k in [
            "n",
            "algo",
            "threads",
            "us_per_solve",
            "batch_solves_per_sec",
        ] {
            assert!(!r[k].is_null(), "missing {k} in {r}");
        }
    }
    let v = ok_json(&[
        "bench",
        "topk",
        "--m",
        "50",
        "--k",
        "3",
        "--thread-counts",
        "1",
        "--seconds",
        "0.02",
        "--json",
    ]);
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn large_seeds_survive_the_model_file_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("s.dlm");
    let m = model.to_str().unwrap();
    // 2^60 + 1 is not representable as f64: the header must be parsed as an integer.
    let seed = "1152921504606846977";
    let t = ok_json(&[
        "train",
        "--n",
        "4",
        "--epochs",
        "5",
        "--seed",
        seed,
        "--test-size",
        "50",
        "--save",
        m,
        "--json",
        "--quiet",
    ]);
    assert_eq!(t["seed"].as_u64().unwrap(), 1152921504606846977);
    let e = ok_json(&["eval", "--load", m, "--test-size", "50", "--json"]);
    assert_eq!(e["seed"].as_u64().unwrap(), 1152921504606846977);
    assert_eq!(e["test"], t["test"]);
}

/// Issue 8: sorting with the exact-match loss, which has no linear form on a matching (the
/// estimator goes through the matching's loss-augmented argmax), sorts every one of 1000
/// test sequences of 5 numbers.
#[test]
fn sort_learns_with_the_zero_one_loss() {
    for seed in ["1", "2"] {
        let v = ok_json(&[
            "train", "--task", "sort", "--n", "5", "--loss", "zero-one", "--seed", seed, "--json",
            "--quiet",
        ]);
        assert_eq!(v["loss"], "zero-one");
        assert_eq!(v["test"]["n_sequences"], 1000);
        assert_eq!(v["test"]["prop_any_wrong"], 0.0, "seed {seed}: {v:#}");
    }
}
