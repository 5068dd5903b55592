//! The gradient estimators behind `GradientEstimator` (dlm-plugin-estimators): each against an
//! independent computation from the test kit (its published formula by brute force with the
//! same noise draws, finite differences of its own surrogate loss, exact expectations on a
//! multiclass argmax), each with a negative control that must fail; DLM through the trait
//! against the inherent estimator; the identities blackbox = DLM at sigma 0 and I-MLE = DLM,
//! both at eps = -lambda; registration, options, the panic guard and thread invariance.

use dlm_core::estimator::{Workspace, EPSILON_STATE};
use dlm_core::gradient::{Batch, Estimate, EstimatorState, GradientEstimator, NoiseKey};
use dlm_core::plugin::{Kind, Registrar};
use dlm_core::rng::{open01, rng_for, Stream};
use dlm_core::{DlmError, DlmEstimator, Loss, NoiseModel, Registry, Result, Spec};
use dlm_core::{StructuredArgmax, Target};
use dlm_plugin_argmax::{Argmax, ZeroOne};
use dlm_plugin_estimators::{Blackbox, FenchelYoung, Imle, SpoPlus};
use dlm_plugin_matching::{Algo, Hamming, Matching};
use dlm_plugin_noise::{Gumbel, SumOfGamma};
use dlm_testkit::estimators::{
    check_closed_form, check_fy_classes, check_imle_classes, check_surrogate_fd, Formula, Mutant,
    Mutation, Surrogate,
};
use dlm_testkit::Check;
use ndarray::{arr1, arr2, Array1, ArrayD, ArrayViewMutD, IxDyn};

const Z: f64 = 5.0;

fn assert_pass(c: &Check) {
    assert!(
        c.pass(),
        "{}: deviation {} > tolerance {} ({})",
        c.name,
        c.deviation,
        c.tolerance,
        c.detail
    );
}

fn assert_fail(c: &Check) {
    assert!(
        c.failed(),
        "{} should fail: deviation {} <= tolerance {} ({})",
        c.name,
        c.deviation,
        c.tolerance,
        c.detail
    );
}

fn matching() -> Matching {
    Matching::new(Algo::Lapjv, true)
}

fn gumbel() -> Gumbel {
    Gumbel::new(1.0, true)
}

/// A batch of `b` random `n x n` matchings (potentials uniform in [-1, 1]), true permutations
/// `i -> (i + example) mod n`, and random true costs in [0, 3) in the weights when `costs`
/// (for SPO+; the Hamming loss, which reads weights per row, then cannot be used).
fn random_batch(b: usize, n: usize, seed: u64, costs: bool) -> (ArrayD<f64>, Vec<Target>) {
    let mut rng = rng_for(seed, Stream::Other, &[b as u64, n as u64]);
    let theta = ArrayD::from_shape_fn(IxDyn(&[b, n, n]), |_| 2.0 * open01(&mut rng) - 1.0);
    let targets = (0..b)
        .map(|e| Target {
            truth: (0..n).map(|i| i * n + (i + e) % n).collect(),
            weights: if costs {
                (0..n * n).map(|_| open01(&mut rng) * 3.0).collect()
            } else {
                vec![]
            },
        })
        .collect();
    (theta, targets)
}

fn ids(b: usize) -> Vec<u64> {
    (0..b as u64).map(|i| 100 + 7 * i).collect()
}

/// The cost `<c, phi(w)>` with `c` in the weights: linear (`L = c`), the regret up to a
/// constant; a loss that reads the weights as SPO+ does.
struct Cost;
impl Loss for Cost {
    fn name(&self) -> &str {
        "cost"
    }
    fn value(&self, t: &Target, _s: &[usize], active: &[usize]) -> Result<f64> {
        Ok(active.iter().map(|&i| t.weights[i]).sum())
    }
    fn linear_form(&self, t: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        out.as_slice_mut().unwrap().copy_from_slice(&t.weights);
        Ok(Some(0.0))
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    est: &dyn GradientEstimator,
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    theta: &ArrayD<f64>,
    sigma: f64,
    targets: &[Target],
    key: NoiseKey,
) -> Result<Estimate> {
    let b = targets.len();
    let sigma = Array1::from_elem(b, sigma);
    let ids = ids(b);
    est.estimate(
        &mut est.initial_state(),
        structure,
        noise,
        loss,
        &Batch {
            theta: theta.view(),
            sigma: sigma.view(),
            targets,
            example_ids: &ids,
        },
        key,
    )
}

const KEY: NoiseKey = NoiseKey { seed: 17, epoch: 4 };

// ---------------------------------------------------------------- DLM through the trait

#[test]
fn dlm_through_the_trait_is_bit_identical_to_the_inherent_estimate_and_keeps_eps_in_the_state() {
    // A normal batch: identical results, and the state holds the eps the estimate ended with.
    let (theta, targets) = random_batch(3, 4, 1, false);
    let sigma = Array1::from_elem(3, 0.6);
    let ids = ids(3);
    let batch = Batch {
        theta: theta.view(),
        sigma: sigma.view(),
        targets: &targets,
        example_ids: &ids,
    };
    let est = DlmEstimator {
        epsilon: -0.7,
        draws: 3,
        ..DlmEstimator::default()
    };
    let inherent = est
        .estimate(
            &mut Workspace::new(),
            &matching(),
            &gumbel(),
            &Hamming,
            &batch,
            KEY,
        )
        .unwrap();
    let dynamic: Box<dyn GradientEstimator> = Box::new(est.clone());
    let mut state = dynamic.initial_state();
    assert_eq!(state.get(EPSILON_STATE), Some(-0.7));
    let through = dynamic
        .estimate(&mut state, &matching(), &gumbel(), &Hamming, &batch, KEY)
        .unwrap();
    assert_eq!(inherent.grad_theta, through.grad_theta);
    assert_eq!(inherent.grad_sigma, through.grad_sigma);
    assert_eq!(inherent.loss, through.loss);
    assert_eq!(inherent.diagnostics, through.diagnostics);
    assert!(through.grad_theta.iter().any(|&v| v != 0.0));
    assert_eq!(dynamic.name(), "dlm");
    assert!(dynamic.learns_sigma() && dynamic.uses_noise());

    // A batch that escapes: eps grows, is stored, and the next batch starts from it, exactly
    // as a caller of the inherent method carrying diagnostics.epsilon would.
    let theta = arr2(&[[5.0, 0.0, 0.0]]).into_dyn();
    let sigma = arr1(&[1e-3]);
    let targets = [Target {
        truth: vec![2],
        weights: vec![],
    }];
    let batch = Batch {
        theta: theta.view(),
        sigma: sigma.view(),
        targets: &targets,
        example_ids: &[0],
    };
    let est = DlmEstimator {
        epsilon: -0.01,
        draws: 2,
        escape_factor: 1.1,
        max_abs_epsilon: 100.0,
    };
    let mut state = GradientEstimator::initial_state(&est);
    let first =
        GradientEstimator::estimate(&est, &mut state, &Argmax, &gumbel(), &ZeroOne, &batch, KEY)
            .unwrap();
    assert!(first.diagnostics.escapes > 0);
    let eps = state.get(EPSILON_STATE).unwrap();
    assert_eq!(eps, first.diagnostics.epsilon);
    assert!(eps < -5.0);
    let next_key = NoiseKey { epoch: 5, ..KEY };
    let second = GradientEstimator::estimate(
        &est,
        &mut state,
        &Argmax,
        &gumbel(),
        &ZeroOne,
        &batch,
        next_key,
    )
    .unwrap();
    let carried = DlmEstimator {
        epsilon: eps,
        ..est.clone()
    }
    .estimate(
        &mut Workspace::new(),
        &Argmax,
        &gumbel(),
        &ZeroOne,
        &batch,
        next_key,
    )
    .unwrap();
    assert_eq!(second.grad_theta, carried.grad_theta);
    assert_eq!(second.diagnostics, carried.diagnostics);
    assert_eq!(
        second.diagnostics.escapes, 0,
        "it started from the grown eps"
    );

    // Restoring a checkpoint: a fresh state with the saved value behaves the same.
    let mut restored = EstimatorState::new();
    restored.set(EPSILON_STATE, eps);
    let again = GradientEstimator::estimate(
        &est,
        &mut restored,
        &Argmax,
        &gumbel(),
        &ZeroOne,
        &batch,
        next_key,
    )
    .unwrap();
    assert_eq!(again.grad_theta, second.grad_theta);
    // An invalid restored eps is refused, not used.
    restored.set(EPSILON_STATE, f64::NAN);
    assert!(GradientEstimator::estimate(
        &est,
        &mut restored,
        &Argmax,
        &gumbel(),
        &ZeroOne,
        &batch,
        next_key
    )
    .is_err());
}

#[test]
fn dlm_matches_its_closed_form_by_brute_force_with_the_same_draws() {
    let (theta, targets) = random_batch(3, 4, 2, false);
    let est = DlmEstimator {
        epsilon: -0.8,
        draws: 4,
        escape_factor: 1.0,
        max_abs_epsilon: 0.8,
    };
    let f = Formula::Dlm {
        epsilon: -0.8,
        draws: 4,
    };
    let check = |e: &dyn GradientEstimator| {
        check_closed_form(
            e,
            f,
            &matching(),
            &gumbel(),
            &Hamming,
            &theta,
            &[0.5, 0.9, 1.3],
            &targets,
            &ids(3),
            KEY,
        )
        .unwrap()
    };
    assert_pass(&check(&est));
    assert_fail(&check(&Mutant {
        inner: est.clone(),
        mutation: Mutation::NegateSigma,
    }));
}

// ---------------------------------------------------------------- Fenchel-Young

#[test]
fn fy_matches_the_exact_softmax_gradient_on_argmax_for_zero_mean_and_standard_gumbel() {
    let est = FenchelYoung { draws: 400 };
    let theta = [0.6, -0.2, 0.3, 0.0];
    for noise in [Gumbel::new(1.0, true), Gumbel::new(0.7, false)] {
        let c = check_fy_classes(&est, &noise, &theta, 0.8, 2, 40, 3, Z).unwrap();
        assert_pass(&c);
    }
    // Negative controls: a flipped sign, a sum instead of a mean over draws, a flipped sigma
    // gradient.
    let noise = gumbel();
    for mutation in [
        Mutation::NegateTheta,
        Mutation::ScaleTheta(2.0),
        Mutation::NegateSigma,
    ] {
        let bad = Mutant {
            inner: est.clone(),
            mutation,
        };
        assert_fail(&check_fy_classes(&bad, &noise, &theta, 0.8, 2, 40, 3, Z).unwrap());
    }
}

#[test]
fn fy_matches_finite_differences_of_its_surrogate_in_theta_and_sigma_on_a_matching() {
    let (theta, targets) = random_batch(2, 3, 3, false);
    let draws = 8;
    let est = FenchelYoung { draws };
    let check = |e: &dyn GradientEstimator| {
        check_surrogate_fd(
            e,
            Surrogate::FenchelYoung { draws },
            &matching(),
            &gumbel(),
            &Hamming,
            &theta,
            &[0.7, 1.1],
            &targets,
            &ids(2),
            KEY,
            1e-6,
        )
        .unwrap()
    };
    let good = check(&est);
    assert_eq!(good.len(), 2, "one row for theta, one for sigma");
    good.iter().for_each(assert_pass);
    // A sum over draws instead of their mean fails the theta row; a flipped sigma gradient
    // the sigma row.
    let bad = check(&Mutant {
        inner: est.clone(),
        mutation: Mutation::ScaleTheta(draws as f64),
    });
    assert_fail(&bad[0]);
    let bad = check(&Mutant {
        inner: est.clone(),
        mutation: Mutation::NegateSigma,
    });
    assert_fail(&bad[1]);
}

#[test]
fn fy_matches_its_closed_form_by_brute_force_and_moves_towards_the_truth() {
    let (theta, targets) = random_batch(3, 4, 4, false);
    let est = FenchelYoung { draws: 5 };
    let check = |e: &dyn GradientEstimator| {
        check_closed_form(
            e,
            Formula::FenchelYoung { draws: 5 },
            &matching(),
            &gumbel(),
            &Hamming,
            &theta,
            &[0.4, 0.8, 1.5],
            &targets,
            &ids(3),
            KEY,
        )
        .unwrap()
    };
    assert_pass(&check(&est));
    assert_fail(&check(&Mutant {
        inner: est.clone(),
        mutation: Mutation::NegateTheta,
    }));
    // Sign: every true part has a gradient <= 0 (descent raises it), and the parts sum to 0.
    let e = run(
        &est,
        &matching(),
        &gumbel(),
        &Hamming,
        &theta,
        0.8,
        &targets,
        KEY,
    )
    .unwrap();
    for (b, t) in targets.iter().enumerate() {
        let g = e.grad_theta.index_axis(ndarray::Axis(0), b);
        let g = g.as_slice().unwrap();
        assert!(t.truth.iter().all(|&i| g[i] <= 0.0), "{g:?}");
        assert!(g.iter().sum::<f64>().abs() < 1e-12);
    }
}

// ---------------------------------------------------------------- blackbox

#[test]
fn blackbox_matches_the_published_closed_form_by_brute_force() {
    let (theta, targets) = random_batch(4, 4, 5, false);
    let lambda = 1.5;
    let est = Blackbox { lambda };
    let check = |e: &dyn GradientEstimator| {
        check_closed_form(
            e,
            Formula::Blackbox { lambda },
            &matching(),
            &gumbel(),
            &Hamming,
            &theta,
            &[0.0; 4],
            &targets,
            &ids(4),
            KEY,
        )
        .unwrap()
    };
    assert_pass(&check(&est));
    let e = run(
        &est,
        &matching(),
        &gumbel(),
        &Hamming,
        &theta,
        0.0,
        &targets,
        KEY,
    )
    .unwrap();
    assert!(
        e.diagnostics.zero_directions < 4,
        "some example must have a non-zero direction"
    );
    // Negative controls: a missing 1/lambda, a flipped sign.
    for mutation in [Mutation::ScaleTheta(lambda), Mutation::NegateTheta] {
        assert_fail(&check(&Mutant {
            inner: est.clone(),
            mutation,
        }));
    }
    // On argmax with the 0/1 loss, too (and sigma is ignored: same result at sigma 2).
    let theta = arr2(&[[0.3, 1.0, -0.2], [0.0, 0.1, 0.05]]).into_dyn();
    let targets = [
        Target {
            truth: vec![0],
            weights: vec![],
        },
        Target {
            truth: vec![2],
            weights: vec![],
        },
    ];
    let c = check_closed_form(
        &Blackbox { lambda: 2.0 },
        Formula::Blackbox { lambda: 2.0 },
        &Argmax,
        &gumbel(),
        &ZeroOne,
        &theta,
        &[2.0, 2.0],
        &targets,
        &[0, 1],
        KEY,
    )
    .unwrap();
    assert_pass(&c);
    let e = run(
        &Blackbox { lambda: 2.0 },
        &Argmax,
        &gumbel(),
        &ZeroOne,
        &theta,
        2.0,
        &targets,
        KEY,
    )
    .unwrap();
    // Example 0: y = 1, y_lambda = argmax (0.3 + 2, 1, -0.2) = 0: (e_1 - e_0) / 2.
    assert_eq!(
        e.grad_theta
            .index_axis(ndarray::Axis(0), 0)
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![-0.5, 0.5, 0.0]
    );
}

#[test]
fn blackbox_equals_dlm_without_noise_at_eps_minus_lambda() {
    let (theta, targets) = random_batch(5, 5, 6, false);
    for lambda in [0.3, 1.0, 4.0] {
        let bb = run(
            &Blackbox { lambda },
            &matching(),
            &gumbel(),
            &Hamming,
            &theta,
            0.0,
            &targets,
            KEY,
        )
        .unwrap();
        let dlm = DlmEstimator {
            epsilon: -lambda,
            draws: 1,
            escape_factor: 1.0,
            max_abs_epsilon: lambda,
        };
        let d = run(
            &dlm,
            &matching(),
            &gumbel(),
            &Hamming,
            &theta,
            0.0,
            &targets,
            KEY,
        )
        .unwrap();
        assert_eq!(bb.grad_theta, d.grad_theta, "lambda {lambda}");
        assert_eq!(bb.loss, d.loss);
        assert_eq!(bb.diagnostics, d.diagnostics);
        assert!(bb.grad_sigma.iter().all(|&v| v == 0.0));
    }
}

// ---------------------------------------------------------------- I-MLE

#[test]
fn imle_matches_brute_force_maps_with_the_same_sum_of_gamma_draws() {
    let (theta, targets) = random_batch(3, 4, 7, false);
    // A matching selects n = 4 parts: Sum-of-Gamma with k = 4.
    let noise = SumOfGamma::new(4, 1.0, 10).unwrap();
    let (lambda, draws) = (2.0, 3);
    let est = Imle { lambda, draws };
    let check = |e: &dyn GradientEstimator| {
        check_closed_form(
            e,
            Formula::Imle { lambda, draws },
            &matching(),
            &noise,
            &Hamming,
            &theta,
            &[0.5, 1.0, 2.0],
            &targets,
            &ids(3),
            KEY,
        )
        .unwrap()
    };
    assert_pass(&check(&est));
    // Negative controls: a missing 1/lambda, a sum instead of a mean over draws.
    for mutation in [
        Mutation::ScaleTheta(lambda),
        Mutation::ScaleTheta(draws as f64),
    ] {
        assert_fail(&check(&Mutant {
            inner: est.clone(),
            mutation,
        }));
    }
}

#[test]
fn imle_equals_dlm_at_eps_minus_lambda_on_the_same_draws() {
    let (theta, targets) = random_batch(4, 5, 8, false);
    let noise = SumOfGamma::new(5, 1.0, 10).unwrap();
    for (lambda, draws) in [(0.5, 3), (3.0, 2)] {
        let imle = run(
            &Imle { lambda, draws },
            &matching(),
            &noise,
            &Hamming,
            &theta,
            0.9,
            &targets,
            KEY,
        )
        .unwrap();
        let dlm = DlmEstimator {
            epsilon: -lambda,
            draws,
            escape_factor: 1.0,
            max_abs_epsilon: lambda,
        };
        let d = run(
            &dlm,
            &matching(),
            &noise,
            &Hamming,
            &theta,
            0.9,
            &targets,
            KEY,
        )
        .unwrap();
        assert_eq!(imle.grad_theta, d.grad_theta, "lambda {lambda}");
        assert_eq!(imle.loss, d.loss);
        assert_eq!(imle.diagnostics, d.diagnostics);
        assert!(imle.grad_theta.iter().any(|&v| v != 0.0));
        assert!(
            imle.grad_sigma.iter().all(|&v| v == 0.0),
            "no sigma gradient"
        );
    }
}

#[test]
fn imle_approaches_the_gradient_of_the_smoothed_loss_on_argmax() {
    let theta = [0.4, -0.3, 0.1];
    let (lambda, draws) = (0.5, 500);
    let est = Imle { lambda, draws };
    let c = check_imle_classes(&est, &gumbel(), &theta, 0.9, 1, lambda, 40, 9, Z).unwrap();
    assert_pass(&c);
    let bad = Mutant {
        inner: est,
        mutation: Mutation::NegateTheta,
    };
    assert_fail(&check_imle_classes(&bad, &gumbel(), &theta, 0.9, 1, lambda, 40, 9, Z).unwrap());
}

// ---------------------------------------------------------------- SPO+

/// SPO+ in the paper's own terms (minimisation over the 3 one-hot "solutions"):
/// `l(c_hat, c) = max_w <c - 2 c_hat, w> + 2 <c_hat, w*(c)> - z*(c)`.
fn spo_loss_paper(c_hat: &[f64], c: &[f64]) -> f64 {
    let star = (0..c.len()).fold(0, |b, i| if c[i] < c[b] { i } else { b });
    let max = (0..c.len())
        .map(|i| c[i] - 2.0 * c_hat[i])
        .fold(f64::NEG_INFINITY, f64::max);
    max + 2.0 * c_hat[star] - c[star]
}

#[test]
fn spo_plus_worked_example_on_three_classes() {
    // True costs c = (1, 2, 3): w* = class 0, z* = 1. Predicted costs c_hat = (3, 1, 2), i.e.
    // potentials theta_hat = -c_hat = (-3, -1, -2). c - 2 c_hat = (-5, 0, -1): w~ = class 1.
    // l = 0 + 2 * 3 - 1 = 5; d l / d c_hat = 2 (w* - w~) = (2, -2, 0), so
    // d l / d theta_hat = (-2, 2, 0).
    let c = [1.0, 2.0, 3.0];
    let c_hat = [3.0, 1.0, 2.0];
    assert_eq!(spo_loss_paper(&c_hat, &c), 5.0);
    let theta = arr2(&[[-3.0, -1.0, -2.0]]).into_dyn();
    let targets = [Target {
        truth: vec![0],
        weights: c.to_vec(),
    }];
    let e = run(
        &SpoPlus,
        &Argmax,
        &gumbel(),
        &Cost,
        &theta,
        0.0,
        &targets,
        KEY,
    )
    .unwrap();
    assert_eq!(e.grad_theta.as_slice().unwrap(), &[-2.0, 2.0, 0.0]);
    // The reported loss is the task loss of the prediction argmax theta_hat = class 1: c_1 = 2.
    assert_eq!(e.loss[0], 2.0);
    // The paper's finite differences in c_hat agree: d l / d c_hat = (2, -2, 0).
    let h = 1e-6;
    for (k, want) in [2.0, -2.0, 0.0].into_iter().enumerate() {
        let mut up = c_hat;
        let mut dn = c_hat;
        up[k] += h;
        dn[k] -= h;
        let fd = (spo_loss_paper(&up, &c) - spo_loss_paper(&dn, &c)) / (2.0 * h);
        assert!((fd - want).abs() < 1e-6, "d/dc_hat_{k}: {fd} vs {want}");
    }
    // One descent step lowers the SPO+ loss: theta_hat - 0.1 g = (-2.8, -1.2, -2), l = 4.2.
    let stepped: Vec<f64> = [-3.0, -1.0, -2.0]
        .iter()
        .zip(e.grad_theta.iter())
        .map(|(t, g)| t - 0.1 * g)
        .collect();
    let c_hat2: Vec<f64> = stepped.iter().map(|t| -t).collect();
    assert!((spo_loss_paper(&c_hat2, &c) - 4.2).abs() < 1e-12);
    // At a perfect prediction (c_hat = c) the gradient vanishes: w~ = w*.
    let theta = arr2(&[[-1.0, -2.0, -3.0]]).into_dyn();
    let e = run(
        &SpoPlus,
        &Argmax,
        &gumbel(),
        &Cost,
        &theta,
        0.0,
        &targets,
        KEY,
    )
    .unwrap();
    assert!(e.grad_theta.iter().all(|&v| v == 0.0));
    assert_eq!(e.diagnostics.zero_directions, 1);
}

#[test]
fn spo_plus_matches_its_closed_form_and_finite_differences_of_the_spo_plus_loss() {
    let (theta, targets) = random_batch(4, 4, 10, true);
    let sigma = [0.0; 4];
    let closed = |e: &dyn GradientEstimator| {
        check_closed_form(
            e,
            Formula::SpoPlus,
            &matching(),
            &gumbel(),
            &Cost,
            &theta,
            &sigma,
            &targets,
            &ids(4),
            KEY,
        )
        .unwrap()
    };
    let fd = |e: &dyn GradientEstimator| {
        check_surrogate_fd(
            e,
            Surrogate::SpoPlus,
            &matching(),
            &gumbel(),
            &Cost,
            &theta,
            &sigma,
            &targets,
            &ids(4),
            KEY,
            1e-6,
        )
        .unwrap()
    };
    assert_pass(&closed(&SpoPlus));
    let rows = fd(&SpoPlus);
    assert_eq!(rows.len(), 1, "no sigma row for SPO+");
    assert_pass(&rows[0]);
    let e = run(
        &SpoPlus,
        &matching(),
        &gumbel(),
        &Cost,
        &theta,
        0.0,
        &targets,
        KEY,
    )
    .unwrap();
    assert!(e.diagnostics.zero_directions < 4, "a non-trivial gradient");
    // Negative controls: a missing factor 2, a flipped sign.
    for mutation in [Mutation::ScaleTheta(0.5), Mutation::NegateTheta] {
        let bad = Mutant {
            inner: SpoPlus,
            mutation,
        };
        assert_fail(&closed(&bad));
        assert_fail(&fd(&bad)[0]);
    }
}

#[test]
fn spo_plus_refuses_targets_without_a_cost_per_part() {
    let (theta, targets) = random_batch(1, 3, 11, false);
    let err = run(
        &SpoPlus,
        &matching(),
        &gumbel(),
        &Hamming,
        &theta,
        0.0,
        &targets,
        KEY,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("true cost vector") && err.contains("9"),
        "{err}"
    );
    let mut t = targets.clone();
    t[0].weights = vec![f64::NAN; 9];
    let err = run(
        &SpoPlus,
        &matching(),
        &gumbel(),
        &Cost,
        &theta,
        0.0,
        &t,
        KEY,
    )
    .unwrap_err();
    assert!(matches!(err, DlmError::NonFinite { .. }), "{err}");
}

// ---------------------------------------------------------------- all of them

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_builtin("dlm-plugin-estimators", dlm_plugin_estimators::register)
        .unwrap();
    r
}

fn spec(s: &str) -> Spec {
    s.parse().unwrap()
}

#[test]
fn every_estimator_is_registered_listed_and_validates_its_options() {
    let r = registry();
    assert_eq!(
        r.names(Kind::Estimator),
        vec!["blackbox", "dlm", "fy", "imle", "spo+"]
    );
    let listed: Vec<_> = r
        .list()
        .into_iter()
        .filter(|c| c.kind == Kind::Estimator)
        .collect();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|c| !c.description.is_empty()));
    assert_eq!(Kind::Estimator.as_str(), "estimator");

    let flags = |s: &str| {
        let e = r.estimator(&spec(s)).unwrap();
        (e.name().to_string(), e.learns_sigma(), e.uses_noise())
    };
    assert_eq!(flags("dlm"), ("dlm".into(), true, true));
    assert_eq!(flags("fy:draws=3"), ("fy".into(), true, true));
    assert_eq!(
        flags("blackbox:lambda=5"),
        ("blackbox".into(), false, false)
    );
    assert_eq!(flags("imle:lambda=1,draws=2"), ("imle".into(), false, true));
    assert_eq!(flags("spo+"), ("spo+".into(), false, false));
    let dlm = r
        .estimator(&spec("dlm:epsilon=-12,draws=3,escape=1,max_epsilon=50"))
        .unwrap();
    assert_eq!(dlm.initial_state().get(EPSILON_STATE), Some(-12.0));

    for (bad, why) in [
        ("blackbox:lambda=0", "lambda"),
        ("blackbox:lambda=-1", "lambda"),
        ("blackbox:lambda=NaN", "finite"),
        ("imle:lambda=inf", "finite"),
        ("imle:draws=0", "draws"),
        ("fy:draws=0", "draws"),
        ("fy:lambda=1", "unknown option"),
        ("spo+:lambda=1", "unknown option"),
        ("dlm:epsilon=0", "epsilon"),
        ("dlm:escape=0.5", "escape"),
        ("nope", "no estimator named 'nope'"),
    ] {
        let err = r.estimator(&spec(bad)).err().unwrap().to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    // Settings built directly are validated at estimate time.
    let (theta, targets) = random_batch(1, 3, 12, false);
    for est in [
        Box::new(Blackbox { lambda: f64::NAN }) as Box<dyn GradientEstimator>,
        Box::new(Imle {
            lambda: 1.0,
            draws: 0,
        }),
        Box::new(FenchelYoung { draws: 0 }),
    ] {
        assert!(run(
            est.as_ref(),
            &matching(),
            &gumbel(),
            &Hamming,
            &theta,
            1.0,
            &targets,
            KEY
        )
        .is_err());
    }
}

#[test]
fn estimators_needing_a_linear_form_refuse_other_losses_clearly() {
    // The zero-one loss has no linear form on a matching.
    let (theta, targets) = random_batch(2, 3, 13, false);
    for est in [
        Box::new(Blackbox::default()) as Box<dyn GradientEstimator>,
        Box::new(Imle::default()),
    ] {
        let err = run(
            est.as_ref(),
            &matching(),
            &gumbel(),
            &ZeroOne,
            &theta,
            1.0,
            &targets,
            KEY,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("no linear form") && err.contains("zero-one") && err.contains(est.name()),
            "{err}"
        );
    }
    // FY and DLM do not need one (DLM uses the matching's loss-augmented argmax).
    for est in [
        Box::new(FenchelYoung::default()) as Box<dyn GradientEstimator>,
        Box::new(DlmEstimator::default()),
    ] {
        run(
            est.as_ref(),
            &matching(),
            &gumbel(),
            &ZeroOne,
            &theta,
            1.0,
            &targets,
            KEY,
        )
        .unwrap();
    }
}

#[test]
fn every_estimator_refuses_bad_input_and_gives_the_same_result_on_any_number_of_threads() {
    let r = registry();
    let (theta, mut targets) = random_batch(6, 5, 14, true);
    // Hamming needs no weights; Cost reads them: use Cost for all (linear).
    for t in &mut targets {
        t.truth = (0..5).map(|i| i * 5 + i).collect();
    }
    let noise = gumbel();
    for name in ["dlm", "fy:draws=3", "blackbox", "imle:draws=3", "spo+"] {
        let est = r.estimator(&spec(name)).unwrap();
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    run(
                        est.as_ref(),
                        &matching(),
                        &noise,
                        &Cost,
                        &theta,
                        0.8,
                        &targets,
                        KEY,
                    )
                    .unwrap()
                })
        };
        let (a, b) = (on(1), on(3));
        assert_eq!(a.grad_theta, b.grad_theta, "{name}");
        assert_eq!(a.grad_sigma, b.grad_sigma, "{name}");
        assert_eq!(a.loss, b.loss, "{name}");
        assert_eq!(a.diagnostics, b.diagnostics, "{name}");
        assert!(
            a.grad_theta.iter().any(|&v| v != 0.0),
            "{name}: non-trivial"
        );

        // NaN potentials, a negative sigma, and a batch of mismatched lengths are refused.
        let mut nan = theta.clone();
        nan[[2, 1, 1]] = f64::NAN;
        let err = run(
            est.as_ref(),
            &matching(),
            &noise,
            &Cost,
            &nan,
            0.8,
            &targets,
            KEY,
        )
        .unwrap_err();
        assert!(matches!(err, DlmError::NonFinite { .. }), "{name}: {err}");
        assert!(
            run(
                est.as_ref(),
                &matching(),
                &noise,
                &Cost,
                &theta,
                -1.0,
                &targets,
                KEY
            )
            .is_err(),
            "{name}"
        );
        assert!(
            run(
                est.as_ref(),
                &matching(),
                &noise,
                &Cost,
                &theta,
                0.8,
                &targets[..5],
                KEY
            )
            .is_err(),
            "{name}"
        );
    }
}

/// An estimator that panics, registered through the Registrar like a plugin's.
struct Panicky;
impl GradientEstimator for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn learns_sigma(&self) -> bool {
        false
    }
    fn uses_noise(&self) -> bool {
        false
    }
    fn estimate(
        &self,
        _: &mut EstimatorState,
        _: &dyn StructuredArgmax,
        _: &dyn NoiseModel,
        _: &dyn Loss,
        _: &Batch<'_>,
        _: NoiseKey,
    ) -> Result<Estimate> {
        panic!("estimator bug")
    }
}

fn register_panicky(r: &mut Registrar<'_>) -> Result<()> {
    r.estimator("panicky", "panics", |_| Ok(Panicky))?;
    r.estimator(
        "panicky-factory",
        "panics when created",
        |_| -> Result<Panicky> { panic!("factory bug") },
    )
}

#[test]
fn a_panicking_estimator_becomes_an_error() {
    let mut r = Registry::new();
    r.register_builtin("test", register_panicky).unwrap();
    let est = r.estimator(&spec("panicky")).unwrap();
    let (theta, targets) = random_batch(1, 3, 15, false);
    let err = run(
        est.as_ref(),
        &matching(),
        &gumbel(),
        &Hamming,
        &theta,
        1.0,
        &targets,
        KEY,
    )
    .unwrap_err();
    assert!(
        matches!(&err, DlmError::PluginPanic { message, .. } if message.contains("estimator bug")),
        "{err}"
    );
    let err = r.estimator(&spec("panicky-factory")).err().unwrap();
    assert!(matches!(err, DlmError::PluginPanic { .. }), "{err}");
    // Registering a name twice is refused, naming the kind.
    let err = r.register_builtin("again", register_panicky).unwrap_err();
    assert!(err.to_string().contains("estimator 'panicky'"), "{err}");
}

#[test]
fn descending_each_estimator_moves_the_prediction_to_the_truth_on_a_matching() {
    // theta itself is the parameter: theta <- theta - lr * grad. Every estimator's sign is that
    // of a loss to minimise, so the noiseless prediction must become the truth (for SPO+: the
    // optimum of the true costs, i.e. zero regret).
    let r = registry();
    let n = 5;
    let (theta0, mut targets) = random_batch(3, n, 16, true);
    let m = matching();
    for t in &mut targets {
        // The truth is the optimum of the true costs, so that every estimator aims at it.
        let neg: Vec<f64> = t.weights.iter().map(|c| -c).collect();
        m.argmax(
            ArrayD::from_shape_vec(IxDyn(&[n, n]), neg).unwrap().view(),
            &mut t.truth,
        )
        .unwrap();
    }
    let prediction = |theta: &ArrayD<f64>, b: usize| {
        let mut y = Vec::new();
        m.argmax(theta.index_axis(ndarray::Axis(0), b), &mut y)
            .unwrap();
        y
    };
    assert!(
        (0..3).any(|b| prediction(&theta0, b) != targets[b].truth),
        "the start must be wrong somewhere"
    );
    // SPO+ reads the costs; the others learn the same truth through the Hamming loss (which
    // reads weights per row, so they get targets without the costs).
    let plain: Vec<Target> = targets
        .iter()
        .map(|t| Target {
            truth: t.truth.clone(),
            weights: vec![],
        })
        .collect();
    let descend = |est: &dyn GradientEstimator, loss: &dyn Loss, targets: &[Target]| {
        let mut state = est.initial_state();
        let mut theta = theta0.clone();
        let sigma = Array1::from_elem(3, 0.3);
        let ids = ids(3);
        for epoch in 0..60 {
            let e = est
                .estimate(
                    &mut state,
                    &m,
                    &gumbel(),
                    loss,
                    &Batch {
                        theta: theta.view(),
                        sigma: sigma.view(),
                        targets,
                        example_ids: &ids,
                    },
                    NoiseKey { seed: 3, epoch },
                )
                .unwrap();
            theta = &theta - &(&e.grad_theta * 0.3);
        }
        (0..3)
            .filter(|&b| prediction(&theta, b) == targets[b].truth)
            .count()
    };
    for (name, loss, targets) in [
        ("dlm:epsilon=-1", &Hamming as &dyn Loss, &plain),
        ("fy:draws=3", &Hamming, &plain),
        ("blackbox:lambda=2", &Hamming, &plain),
        ("imle:lambda=2,draws=3", &Hamming, &plain),
        ("spo+", &Cost, &targets),
    ] {
        let est = r.estimator(&spec(name)).unwrap();
        assert_eq!(
            descend(&est, loss, targets),
            3,
            "{name}: all examples right"
        );
        // Negative control: ascending instead (a flipped sign) gets none right.
        let flipped = Mutant {
            inner: est,
            mutation: Mutation::NegateTheta,
        };
        assert_eq!(descend(&flipped, loss, targets), 0, "{name} flipped");
    }
}
