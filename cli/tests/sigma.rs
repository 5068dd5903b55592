//! The noise scale and training traces: `--sigma-init`, `--sigma-opt`, the per-epoch traces in
//! the JSON (sigma mean/min/max and its gradient, eps, zero-direction rate, loss, watched
//! metric) and the sort task's early stopping on the fraction of wrong positions.

mod common;
use common::{ok_json, refused};

fn trace(v: &serde_json::Value, path: &[&str]) -> Vec<f64> {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_array()
        .unwrap_or_else(|| panic!("{path:?} is not an array in {v}"))
        .iter()
        .map(|y| y.as_f64().unwrap())
        .collect()
}

#[test]
fn sigma_init_starts_a_learned_sigma_at_the_value_and_it_can_move() {
    let base = [
        "train", "--task", "knn", "--data", "digits", "--epochs", "2", "--sigma", "learned",
        "--json",
    ];
    let v = ok_json(&[&base[..], &["--sigma-init", "0.3"]].concat());
    let (mean, lo, hi) = (
        trace(&v, &["sigma_trace", "mean"]),
        trace(&v, &["sigma_trace", "min"]),
        trace(&v, &["sigma_trace", "max"]),
    );
    assert_eq!(mean.len(), 2);
    // Zero weights and bias softplus^-1(0.3): every example starts at 0.3, and SGD at 1e-5
    // barely moves it in one epoch.
    assert!((mean[0] - 0.3).abs() < 1e-3, "{mean:?}");
    assert!(lo[0] <= mean[0] && mean[0] <= hi[0]);
    assert!(hi[0] - lo[0] < 1e-3, "{lo:?} {hi:?}");
    let g = trace(&v, &["sigma_trace", "grad_abs_mean"]);
    assert!(g.iter().all(|x| x.is_finite() && *x > 0.0), "{g:?}");
    // Without --sigma-init the default network starts elsewhere (about 0.8 on digits).
    let d = ok_json(&base);
    let m0 = trace(&d, &["sigma_trace", "mean"])[0];
    assert!((m0 - 0.3).abs() > 0.2, "{m0}");
    // Adam at a larger rate moves it, and the inputs spread it.
    let a = ok_json(
        &[
            &base[..],
            &[
                "--sigma-init",
                "0.3",
                "--sigma-opt",
                "adam",
                "--sigma-lr",
                "0.01",
            ],
        ]
        .concat(),
    );
    let (lo, hi) = (
        trace(&a, &["sigma_trace", "min"]),
        trace(&a, &["sigma_trace", "max"]),
    );
    assert!(
        hi[1] - lo[1] > 1e-3,
        "adam should move sigma: {lo:?} {hi:?}"
    );
    // The other traces are there, one value per epoch.
    for k in [
        "epsilon_trace",
        "zero_rate_trace",
        "train_loss_trace",
        "watched_trace",
    ] {
        assert_eq!(trace(&a, &[k]).len(), 2, "{k}");
    }
}

#[test]
fn sigma_init_and_opt_are_refused_where_they_do_nothing() {
    let knn = ["train", "--task", "knn", "--data", "digits"];
    refused(
        &[&knn[..], &["--sigma", "fixed:0.3", "--sigma-init", "0.3"]].concat(),
        &["--sigma-init", "learned"],
    );
    refused(
        &[&knn[..], &["--sigma", "learned", "--sigma-init", "0"]].concat(),
        &["--sigma-init", "> 0"],
    );
    refused(
        &[
            &knn[..],
            &[
                "--sigma",
                "learned",
                "--sigma-net",
                "mlp:sizes=64-1,out=softplus",
                "--sigma-opt",
                "adam",
            ],
        ]
        .concat(),
        &["--sigma-opt", "bias_init"],
    );
}

#[test]
fn sort_early_stopping_watches_the_fraction_of_wrong_positions() {
    let v = ok_json(&[
        "train",
        "--task",
        "sort",
        "--n",
        "5",
        "--epochs",
        "30",
        "--patience",
        "0",
        "--json",
        "--test-size",
        "10",
    ]);
    let w = trace(&v, &["watched_trace"]);
    let l = trace(&v, &["train_loss_trace"]);
    assert_eq!(w.len(), 30);
    // A fraction of positions, in [0, 1], and not the squared loss.
    assert!(w.iter().all(|x| (0.0..=1.0).contains(x)), "{w:?}");
    assert!(w.iter().zip(&l).any(|(a, b)| a != b));
    assert!(
        w[0] > 0.5,
        "an untrained model misplaces most positions: {w:?}"
    );
}
