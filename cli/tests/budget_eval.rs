//! `--eval-every` (test accuracy per epoch, k-NN) and `--time-budget` (stop training at a
//! budget, then evaluate and save as usual).

mod common;
use common::{dlm, ok_json, refused};

#[test]
fn eval_every_records_test_accuracy_on_the_chosen_epochs_without_changing_training() {
    let base = [
        "train", "--task", "knn", "--data", "digits", "--epochs", "4", "--json",
    ];
    let v = ok_json(&[&base[..], &["--eval-every", "2", "--eval-subset", "100"]].concat());
    let t = v["test_accuracy_trace"].as_array().unwrap();
    assert_eq!(t.len(), 4);
    assert!(t[0].is_null() && t[2].is_null(), "{t:?}");
    for x in [&t[1], &t[3]] {
        let a = x.as_f64().unwrap();
        assert!((0.5..=1.0).contains(&a), "{a}");
        // 100 test images: a multiple of 1 %.
        assert!((a * 100.0 - (a * 100.0).round()).abs() < 1e-9, "{a}");
    }
    // Evaluating during training changes nothing in training.
    let plain = ok_json(&base);
    assert_eq!(plain["test"], v["test"]);
    assert_eq!(plain["epsilon_trace"], v["epsilon_trace"]);
    assert!(plain.get("test_accuracy_trace").is_none());
    refused(
        &["train", "--task", "sort", "--eval-every", "2"],
        &["--eval-every"],
    );
    refused(
        &[
            "train",
            "--task",
            "knn",
            "--data",
            "digits",
            "--eval-subset",
            "5",
        ],
        &["--eval-subset", "--eval-every"],
    );
}

#[test]
fn time_budget_stops_training_then_evaluates_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.dlm");
    let ms = m.to_str().unwrap();
    let out = dlm(&[
        "train",
        "--task",
        "sort",
        "--n",
        "10",
        "--epochs",
        "1000000",
        "--patience",
        "0",
        "--time-budget",
        "0.5",
        "--save",
        ms,
        "--json",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stopped_by"], "time_budget");
    assert_eq!(v["partial"], true);
    let epochs = v["epochs_run"].as_u64().unwrap();
    assert!(epochs > 0 && epochs < 1_000_000, "{epochs}");
    assert!(v["test"]["prop_wrong"].as_f64().is_some());
    assert!(m.exists(), "the model is saved");
    // The saved model evaluates.
    let e = ok_json(&["eval", "--load", ms, "--json", "--test-size", "10"]);
    assert!(e["test"]["prop_wrong"].as_f64().is_some(), "{e}");
    // Without a budget: the reason is the epochs or early stopping.
    let v = ok_json(&[
        "train", "--task", "sort", "--n", "5", "--epochs", "3", "--json", "--quiet",
    ]);
    assert_eq!(v["stopped_by"], "max_epochs");
    refused(
        &["train", "--task", "sort", "--time-budget", "inf"],
        &["--time-budget"],
    );
}
