//! The DLM estimator: thread-count invariance, the zero-direction escape, diagnostics, and
//! refusal of bad input and of losses the solver cannot handle.

use dlm_core::estimator::{Batch, DlmEstimator, NoiseKey, Workspace};
use dlm_core::{DlmError, Loss, Result, Target};
use dlm_plugin_argmax::{Argmax, ZeroOne};
use dlm_plugin_matching::{Algo, Hamming, Matching};
use dlm_plugin_noise::Gumbel;
use ndarray::{Array1, ArrayD, ArrayViewMutD, IxDyn};

fn matching_batch(b: usize, n: usize) -> (ArrayD<f64>, Vec<Target>, Vec<u64>) {
    let theta = ArrayD::from_shape_fn(IxDyn(&[b, n, n]), |ix| {
        ((ix[0] * 31 + ix[1] * 7 + ix[2] * 3) % 11) as f64 / 11.0
    });
    let targets = (0..b)
        .map(|_| Target {
            truth: (0..n).map(|i| i * n + i).collect(),
            weights: vec![],
        })
        .collect();
    (theta, targets, (0..b as u64).collect())
}

fn run_with_threads(threads: usize) -> dlm_core::DlmEstimate {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (theta, targets, ids) = matching_batch(6, 8);
    let sigma = Array1::from_elem(6, 0.7);
    pool.install(|| {
        DlmEstimator {
            epsilon: -0.5,
            draws: 5,
            ..DlmEstimator::default()
        }
        .estimate(
            &mut Workspace::new(),
            &Matching::new(Algo::Lapjv, true),
            &Gumbel::new(1.0, true),
            &Hamming,
            &Batch {
                theta: theta.view(),
                sigma: sigma.view(),
                targets: &targets,
                example_ids: &ids,
            },
            NoiseKey { seed: 9, epoch: 3 },
        )
        .unwrap()
    })
}

#[test]
fn estimate_is_identical_with_one_or_two_threads() {
    let a = run_with_threads(1);
    let b = run_with_threads(2);
    assert_eq!(a.grad_theta, b.grad_theta);
    assert_eq!(a.grad_sigma, b.grad_sigma);
    assert_eq!(a.loss, b.loss);
    assert_eq!(a.diagnostics, b.diagnostics);
    assert!(
        a.grad_theta.iter().any(|&v| v != 0.0),
        "a non-trivial estimate"
    );
}

#[test]
fn zero_direction_escape_grows_eps_by_ten_percent_steps_up_to_the_cap() {
    // A tiny eps on a confident wrong prediction: no draw changes, so |eps| grows.
    let theta = ndarray::arr2(&[[5.0, 0.0, 0.0]]).into_dyn();
    let sigma = Array1::from_elem(1, 1e-3);
    let targets = [Target {
        truth: vec![2],
        weights: vec![],
    }];
    let est = DlmEstimator {
        epsilon: -0.01,
        draws: 2,
        escape_factor: 1.1,
        max_abs_epsilon: 100.0,
    };
    let e = est
        .estimate(
            &mut Workspace::new(),
            &Argmax,
            &Gumbel::new(1.0, true),
            &ZeroOne,
            &Batch {
                theta: theta.view(),
                sigma: sigma.view(),
                targets: &targets,
                example_ids: &[0],
            },
            NoiseKey { seed: 0, epoch: 0 },
        )
        .unwrap();
    let d = &e.diagnostics;
    // Derived independently of the code's own count: the augmented argmax leaves class 0 once
    // |eps| exceeds the margin 5 (+- the 1e-3 noise), and 0.01 * 1.1^k first exceeds 5 at
    // k = ceil(ln(500) / ln(1.1)) = 66 (0.01 * 1.1^65 = 4.90, 0.01 * 1.1^66 = 5.39).
    let k = (500f64.ln() / 1.1f64.ln()).ceil() as usize;
    assert_eq!(k, 66);
    assert_eq!(d.escapes, k);
    assert!(
        d.epsilon.abs() > 5.0 && d.epsilon.abs() < 5.0 * 1.1,
        "{}",
        d.epsilon
    );
    assert!(d.epsilon < 0.0, "the sign of eps is kept");
    // Once |eps| exceeds the 5-point margin the direction is non-zero and points away from the
    // wrong class: d E[loss] / d theta_0 > 0 and < 0 for the true class.
    assert_eq!(d.zero_directions, 0);
    assert!(e.grad_theta[[0, 0]] > 0.0 && e.grad_theta[[0, 2]] < 0.0);

    // With a cap below the needed eps the escape stops at the cap.
    let capped = DlmEstimator {
        max_abs_epsilon: 1.0,
        ..est
    };
    let e = capped
        .estimate(
            &mut Workspace::new(),
            &Argmax,
            &Gumbel::new(1.0, true),
            &ZeroOne,
            &Batch {
                theta: theta.view(),
                sigma: sigma.view(),
                targets: &targets,
                example_ids: &[0],
            },
            NoiseKey { seed: 0, epoch: 0 },
        )
        .unwrap();
    // The last step below the cap: 0.01 * 1.1^48 = 0.970 (the next, 1.067, would pass it).
    let eps = e.diagnostics.epsilon.abs();
    assert!(eps <= 1.0 && eps > 1.0 / 1.1, "{eps}");
    assert_eq!(e.diagnostics.escapes, 48);
    assert_eq!(e.diagnostics.zero_directions, 2);
}

struct NonLinear;
impl Loss for NonLinear {
    fn name(&self) -> &str {
        "nonlinear"
    }
    fn value(&self, _t: &Target, _s: &[usize], active: &[usize]) -> Result<f64> {
        Ok((active.len() as f64).sqrt())
    }
    fn linear_form(&self, _t: &Target, _o: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        Ok(None)
    }
}

#[test]
fn bad_input_is_refused_with_clear_errors() {
    let (mut theta, targets, ids) = matching_batch(2, 3);
    let sigma = Array1::from_elem(2, 1.0);
    let est = DlmEstimator::default();
    let run = |theta: &ArrayD<f64>, sigma: &Array1<f64>, loss: &dyn Loss, est: &DlmEstimator| {
        est.estimate(
            &mut Workspace::new(),
            &Matching::new(Algo::Lapjv, true),
            &Gumbel::new(1.0, true),
            loss,
            &Batch {
                theta: theta.view(),
                sigma: sigma.view(),
                targets: &targets,
                example_ids: &ids,
            },
            NoiseKey { seed: 0, epoch: 0 },
        )
    };
    let err = run(&theta, &sigma, &NonLinear, &est).unwrap_err();
    assert!(matches!(err, DlmError::NonDecomposableLoss { .. }), "{err}");
    assert!(err.to_string().contains("nonlinear") && err.to_string().contains("matching"));
    let zero = DlmEstimator {
        epsilon: 0.0,
        ..est.clone()
    };
    assert!(run(&theta, &sigma, &Hamming, &zero)
        .unwrap_err()
        .to_string()
        .contains("non-zero"));
    let neg = Array1::from_elem(2, -1.0);
    assert!(run(&theta, &neg, &Hamming, &est).is_err());
    theta[[1, 2, 2]] = f64::NAN;
    let err = run(&theta, &sigma, &Hamming, &est).unwrap_err();
    assert!(matches!(err, DlmError::NonFinite { .. }), "{err}");
    let wrong = ArrayD::zeros(IxDyn(&[2, 3, 4]));
    assert!(matches!(
        run(&wrong, &sigma, &Hamming, &est).unwrap_err(),
        DlmError::ShapeMismatch { .. }
    ));
    // 2 examples x 2^24 draws x 9 potentials: refused before the step allocates 6 GiB.
    theta[[1, 2, 2]] = 0.0;
    let many = DlmEstimator {
        draws: 1 << 24,
        ..est.clone()
    };
    let err = run(&theta, &sigma, &Hamming, &many)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch x draws x potentials per example"),
        "{err}"
    );
    assert!(err.contains("above the limit of 268435456"), "{err}");
}
