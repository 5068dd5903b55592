//! A short sorting run must reach a low loss: a broken estimator (wrong sign, wrong scaling,
//! gradients sent to the wrong entries) cannot pass this.

use dlm_core::{DlmEstimator, Registry, Spec};
use dlm_tasks::sort::{SortSettings, SortTask};
use dlm_tasks::trainer::{fit, EpochRecord, FitOptions};
use dlm_tasks::NoiseScale;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_builtin("matching", dlm_plugin_matching::register)
        .unwrap();
    r.register_builtin("noise", dlm_plugin_noise::register)
        .unwrap();
    r.register_builtin("mlp", dlm_plugin_mlp::register).unwrap();
    r.register_builtin("argmax", dlm_plugin_argmax::register)
        .unwrap();
    r
}

/// Trains for exactly `epochs` epochs (no early stopping).
fn run(t: &mut SortTask, epochs: u64) -> dlm_tasks::trainer::FitReport {
    let options = FitOptions {
        max_epochs: epochs,
        patience: 0,
        patience_growth: 0.0,
        min_delta: 0.0,
        window: 1,
    };
    fit(t, &options, &mut |_: &EpochRecord, _: bool| {}).unwrap()
}

fn task(n: usize, seed: u64, sigma: NoiseScale) -> SortTask {
    task_with_noise(n, seed, sigma, "gumbel:variance=3")
}

fn task_with_noise(n: usize, seed: u64, sigma: NoiseScale, noise: &str) -> SortTask {
    let r = registry();
    SortTask::new(
        SortSettings {
            n,
            batch: 10,
            train_size: 0,
            estimator: DlmEstimator {
                epsilon: -12.0,
                draws: 5,
                escape_factor: 1.1,
                max_abs_epsilon: 1e3,
            },
            seed,
        },
        r.structure(&Spec::named("matching")).unwrap(),
        r.noise(&noise.parse().unwrap()).unwrap(),
        r.loss(&Spec::named("sort")).unwrap(),
        r.scorer(
            &format!("mlp:sizes=1-32-{n},lr=0.1,seed={seed}")
                .parse()
                .unwrap(),
        )
        .unwrap(),
        sigma,
    )
    .unwrap()
}

#[test]
fn short_training_run_learns_to_sort() {
    let r = registry();
    let sigma = NoiseScale::Learned(
        r.scorer(
            &"mlp:sizes=5-1,out=softplus,opt=sgd,lr=1e-6,seed=8"
                .parse()
                .unwrap(),
        )
        .unwrap(),
    );
    let mut t = task(5, 7, sigma);
    let before = t.evaluate(500, 0.0, 1.0, 99).unwrap();
    let report = fit(
        &mut t,
        &FitOptions {
            max_epochs: 300,
            patience: 0,
            patience_growth: 0.0,
            min_delta: 0.0,
            window: 1,
        },
        &mut |_: &EpochRecord, _: bool| {},
    )
    .unwrap();
    let after = t.evaluate(500, 0.0, 1.0, 99).unwrap();
    assert!(
        before.prop_any_wrong > 0.5,
        "an untrained network does not sort: {before:?}"
    );
    assert!(
        after.prop_wrong < 0.01,
        "300 epochs must sort 5 numbers: {after:?}"
    );
    assert!(after.kendall_tau > 0.99, "{after:?}");
    let last = report.history.last().unwrap();
    assert!(last.loss < 1e-3, "training loss {}", last.loss);
}

#[test]
fn sigma_none_removes_the_noise_and_a_fixed_sigma_applies_it() {
    // Without noise the noise model cannot matter: Gumbel and Gaussian runs are identical.
    // With sigma = 0.5 they must differ (the noise reaches the estimator).
    let history = |noise: &str, sigma: NoiseScale| {
        let mut t = task_with_noise(4, 3, sigma, noise);
        run(&mut t, 20).history
    };
    assert_eq!(
        history("gumbel:variance=3", NoiseScale::None),
        history("gaussian", NoiseScale::None)
    );
    let (g, n) = (
        history("gumbel:variance=3", NoiseScale::Fixed(0.5)),
        history("gaussian", NoiseScale::Fixed(0.5)),
    );
    let differing = g
        .iter()
        .zip(&n)
        .filter(|(a, b)| a.perturbed_loss != b.perturbed_loss)
        .count();
    assert!(differing >= 10, "only {differing} of 20 epochs differ");
}

#[test]
fn a_fixed_training_set_is_one_pass_per_epoch_and_learns() {
    let r = registry();
    let mut t = SortTask::new(
        SortSettings {
            n: 4,
            batch: 8,
            train_size: 40,
            estimator: DlmEstimator {
                epsilon: -12.0,
                draws: 3,
                escape_factor: 1.1,
                max_abs_epsilon: 1e3,
            },
            seed: 5,
        },
        r.structure(&Spec::named("matching")).unwrap(),
        r.noise(&Spec::named("gumbel")).unwrap(),
        r.loss(&Spec::named("hamming")).unwrap(),
        r.scorer(&"mlp:sizes=1-32-4,lr=0.1,seed=5".parse().unwrap())
            .unwrap(),
        NoiseScale::Fixed(0.5),
    )
    .unwrap();
    let rep = fit(
        &mut t,
        &FitOptions {
            max_epochs: 60,
            patience: 0,
            patience_growth: 0.0,
            min_delta: 0.0,
            window: 1,
        },
        &mut |_: &EpochRecord, _: bool| {},
    )
    .unwrap();
    assert_eq!(rep.epochs_run, 60);
    let m = t.evaluate(300, 0.0, 1.0, 1).unwrap();
    assert!(m.prop_wrong < 0.05, "{m:?}");
}

/// Sorting with the exact-match loss, which has no linear form on a matching (the estimator
/// calls the matching's loss-augmented argmax): 5 numbers, every one of 1000 test sequences
/// sorted, where the untrained network sorts almost none.
#[test]
fn sorting_learns_with_the_zero_one_loss() {
    let r = registry();
    let mut t = SortTask::new(
        SortSettings {
            n: 5,
            batch: 10,
            train_size: 0,
            estimator: DlmEstimator {
                epsilon: -12.0,
                draws: 5,
                escape_factor: 1.1,
                max_abs_epsilon: 1e3,
            },
            seed: 1,
        },
        r.structure(&Spec::named("matching")).unwrap(),
        r.noise(&"gumbel:variance=3".parse().unwrap()).unwrap(),
        r.loss(&Spec::named("zero-one")).unwrap(),
        r.scorer(&"mlp:sizes=1-32-5,lr=0.1,seed=1".parse().unwrap())
            .unwrap(),
        NoiseScale::Fixed(1.0),
    )
    .unwrap();
    let before = t.evaluate(1000, 0.0, 1.0, 1).unwrap();
    assert!(before.prop_any_wrong > 0.5, "{before:?}");
    run(&mut t, 150);
    let after = t.evaluate(1000, 0.0, 1.0, 1).unwrap();
    assert_eq!(after.prop_any_wrong, 0.0, "{after:?}");
}
