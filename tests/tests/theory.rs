//! Property tests of the theory (theory.md §2-3) with fixed seeds; tolerances come from the
//! sample size (`Z` standard errors). Each check is also fed a deliberately wrong sampler or
//! estimator (a missing factor of sigma, a flipped eps) to show that it can fail.

use dlm_core::estimator::{Batch, NoiseKey};
use dlm_core::rng::DlmRng;
use dlm_core::{DlmEstimate, NoiseModel, Result, StructuredArgmax, Target};
use dlm_plugin_argmax::{Argmax, ZeroOne};
use dlm_plugin_matching::{Algo, Hamming, Matching};
use dlm_plugin_noise::Gumbel;
use dlm_testkit::theory::{self as verify, Check};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngAlgorithm, TestRng, TestRunner};

const Z: f64 = 5.0;
const N: usize = 60_000;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        PtConfig {
            cases,
            failure_persistence: None,
            ..PtConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    )
}

fn gumbel() -> Gumbel {
    Gumbel::new(1.0, true)
}

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
        !c.pass(),
        "{} should fail: deviation {} <= tolerance {} ({})",
        c.name,
        c.deviation,
        c.tolerance,
        c.detail
    );
}

fn mu_sigma() -> impl Strategy<Value = (Vec<f64>, f64)> {
    (prop::collection::vec(-1.5f64..1.5, 2..6), 0.3f64..2.0)
}

#[test]
fn identity_1_softmax_frequencies() {
    let (s, n) = (Argmax, gumbel());
    let sampler = verify::structure_sampler(&s, &n);
    runner(4)
        .run(&mu_sigma(), |(mu, sigma)| {
            let c = verify::check_softmax_frequencies(&sampler, &mu, sigma, N, 1, Z).unwrap();
            prop_assert!(c.pass(), "{c:?}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn identity_2_expected_max_is_sigma_log_zhat() {
    let (s, n) = (Argmax, gumbel());
    let sampler = verify::structure_sampler(&s, &n);
    runner(4)
        .run(&mu_sigma(), |(mu, sigma)| {
            let c = verify::check_expected_max(&sampler, &mu, sigma, N, 2, Z).unwrap();
            prop_assert!(c.pass(), "{c:?}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn identity_3_max_is_gumbel_around_log_zhat() {
    let (s, n) = (Argmax, gumbel());
    let sampler = verify::structure_sampler(&s, &n);
    runner(4)
        .run(&mu_sigma(), |(mu, sigma)| {
            let c = verify::check_max_distribution(&sampler, &n, &mu, sigma, N, 3, Z).unwrap();
            prop_assert!(c.pass(), "{c:?}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn identity_4_gradient_of_expected_max_is_softmax() {
    let (s, n) = (Argmax, gumbel());
    let sampler = verify::structure_sampler(&s, &n);
    runner(3)
        .run(&mu_sigma(), |(mu, sigma)| {
            let c = verify::check_gradient_of_max(&sampler, &mu, sigma, N / 4, 4, Z).unwrap();
            prop_assert!(c.pass(), "{c:?}");
            Ok(())
        })
        .unwrap();
}

/// A sampler that forgets to scale the noise by sigma.
fn unscaled_sampler<'a>(
    s: &'a dyn StructuredArgmax,
    n: &'a dyn NoiseModel,
) -> impl Fn(&[f64], f64, &mut DlmRng) -> Result<(usize, f64)> + Sync + 'a {
    let inner = verify::structure_sampler(s, n);
    move |mu: &[f64], _sigma: f64, rng: &mut DlmRng| inner(mu, 1.0, rng)
}

#[test]
fn identity_checks_fail_on_a_missing_factor_of_sigma() {
    let (s, n) = (Argmax, gumbel());
    let wrong = unscaled_sampler(&s, &n);
    let mu = [0.8, -0.3, 0.1, 0.5];
    let sigma = 0.4;
    assert_fail(&verify::check_softmax_frequencies(&wrong, &mu, sigma, N, 1, Z).unwrap());
    assert_fail(&verify::check_expected_max(&wrong, &mu, sigma, N, 2, Z).unwrap());
    assert_fail(&verify::check_max_distribution(&wrong, &n, &mu, sigma, N, 3, Z).unwrap());
    assert_fail(&verify::check_gradient_of_max(&wrong, &mu, sigma, N / 4, 4, Z).unwrap());
    // And the same inputs pass with the right sampler.
    let right = verify::structure_sampler(&s, &n);
    assert_pass(&verify::check_softmax_frequencies(&right, &mu, sigma, N, 1, Z).unwrap());
}

#[test]
fn dlm_gradient_matches_exact_finite_differences_for_argmax_both_signs() {
    let (s, n, l) = (Argmax, gumbel(), ZeroOne);
    let est = verify::dlm_estimator(&s, &n, &l);
    runner(3)
        .run(&(mu_sigma(), 0usize..2), |((mu, sigma), t)| {
            for eps in [-0.1, 0.1] {
                let c = verify::check_dlm_argmax(&est, &mu, sigma, t, eps, 40, 1500, 5, Z).unwrap();
                prop_assert!(c.pass(), "{c:?}");
            }
            Ok(())
        })
        .unwrap();
}

type Est<'a> = dyn Fn(&Batch<'_>, NoiseKey, f64, usize) -> Result<DlmEstimate> + Sync + 'a;

fn flipped_eps<'a>(
    inner: &'a Est<'a>,
) -> impl Fn(&Batch<'_>, NoiseKey, f64, usize) -> Result<DlmEstimate> + Sync + 'a {
    // Divides by -eps: the sign error the checks must catch.
    move |b: &Batch<'_>, k: NoiseKey, eps: f64, d: usize| {
        let mut e = inner(b, k, eps, d)?;
        e.grad_theta.mapv_inplace(|v| -v);
        e.grad_sigma.mapv_inplace(|v| -v);
        Ok(e)
    }
}

fn sigma_factor<'a>(
    inner: &'a Est<'a>,
    sigma: f64,
) -> impl Fn(&Batch<'_>, NoiseKey, f64, usize) -> Result<DlmEstimate> + Sync + 'a {
    // Multiplies the sigma gradient by sigma (a wrong chain rule).
    move |b: &Batch<'_>, k: NoiseKey, eps: f64, d: usize| {
        let mut e = inner(b, k, eps, d)?;
        e.grad_sigma.mapv_inplace(|v| v * sigma);
        Ok(e)
    }
}

#[test]
fn dlm_checks_fail_on_a_wrong_sign_or_sigma_factor() {
    let (s, n, l) = (Argmax, gumbel(), ZeroOne);
    let est = verify::dlm_estimator(&s, &n, &l);
    let mu = [0.6, -0.2, 0.3];
    let sigma = 0.5;
    assert_pass(&verify::check_dlm_argmax(&est, &mu, sigma, 1, -0.1, 40, 1500, 5, Z).unwrap());
    let flipped = flipped_eps(&est);
    assert_fail(&verify::check_dlm_argmax(&flipped, &mu, sigma, 1, -0.1, 40, 1500, 5, Z).unwrap());
    let scaled = sigma_factor(&est, sigma);
    assert_fail(&verify::check_dlm_argmax(&scaled, &mu, sigma, 1, -0.1, 40, 1500, 5, Z).unwrap());
}

fn matching_case(m: usize) -> (ArrayD<f64>, Target) {
    let theta = ArrayD::from_shape_fn(IxDyn(&[m, m]), |ix| {
        ((ix[0] * 7 + ix[1] * 3) % 5) as f64 * 0.25 - 0.4
    });
    let target = Target {
        truth: (0..m).map(|i| i * m + (i + 1) % m).collect(),
        weights: vec![],
    };
    (theta, target)
}

#[test]
fn dlm_gradient_matches_monte_carlo_finite_differences_on_a_3x3_matching() {
    let (s, n, l) = (Matching::new(Algo::Lapjv, true), gumbel(), Hamming);
    let est = verify::dlm_estimator(&s, &n, &l);
    let (theta, target) = matching_case(3);
    let checks = verify::check_dlm_monte_carlo(
        &est, &s, &n, &l, &theta, 0.8, &target, 0.1, 0.02, 40, 2500, 11, Z,
    )
    .unwrap();
    assert_eq!(checks.len(), 2, "one check per sign of eps");
    for c in &checks {
        assert_pass(c);
    }
    let flipped = flipped_eps(&est);
    let bad = verify::check_dlm_monte_carlo(
        &flipped, &s, &n, &l, &theta, 0.8, &target, 0.1, 0.02, 40, 2500, 11, Z,
    )
    .unwrap();
    for c in &bad {
        assert_fail(c);
    }
}

/// The zero-one (exact match) loss has no linear form on a matching: the estimator goes
/// through `argmax_loss_augmented` (closed form for eps < 0, second-best assignment for
/// eps > 0), and the gradient must still match finite differences of the expected loss.
#[test]
fn dlm_gradient_through_the_loss_augmented_argmax_matches_finite_differences() {
    let (s, n, l) = (Matching::new(Algo::Lapjv, true), gumbel(), ZeroOne);
    let est = verify::dlm_estimator(&s, &n, &l);
    let (theta, target) = matching_case(3);
    let checks = verify::check_dlm_monte_carlo(
        &est, &s, &n, &l, &theta, 0.8, &target, 0.1, 0.02, 40, 2500, 13, Z,
    )
    .unwrap();
    assert_eq!(checks.len(), 2, "one check per sign of eps");
    for c in &checks {
        assert_pass(c);
    }
    let flipped = flipped_eps(&est);
    let bad = verify::check_dlm_monte_carlo(
        &flipped, &s, &n, &l, &theta, 0.8, &target, 0.1, 0.02, 40, 2500, 13, Z,
    )
    .unwrap();
    for c in &bad {
        assert_fail(c);
    }
}
