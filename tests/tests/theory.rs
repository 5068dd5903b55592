//! Property tests of the theory (theory.md §2-3) with fixed seeds; tolerances come from the
//! sample size (`Z` standard errors). Each check is also fed a deliberately wrong sampler or
//! estimator (a missing factor of sigma, a flipped eps) to show that it can fail.

use dlm_core::estimator::{Batch, NoiseKey};
use dlm_core::rng::DlmRng;
use dlm_core::{DlmEstimate, Loss, NoiseModel, Result, Spec, StructuredArgmax, Target};
use dlm_plugin_argmax::{Argmax, ZeroOne};
use dlm_plugin_matching::{Algo, Hamming, Matching};
use dlm_plugin_noise::{Gaussian, Gumbel};
use dlm_testkit::theory::{self as verify, Check, GumbelFit};
use dlm_testkit::KitOptions;
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

/// The fit of `gumbel()`: zero mean, scale 1.
const FIT: GumbelFit = GumbelFit::ZERO_MEAN;

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
            let c = verify::check_softmax_frequencies(&sampler, &FIT, &mu, sigma, N, 1, Z).unwrap();
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
            let c = verify::check_expected_max(&sampler, &FIT, &mu, sigma, N, 2, Z).unwrap();
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
            let c = verify::check_max_distribution(&sampler, &FIT, &mu, sigma, N, 3, Z).unwrap();
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
            let c = verify::check_gradient_of_max(&sampler, &FIT, &mu, sigma, N / 4, 4, Z).unwrap();
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
    assert_fail(&verify::check_softmax_frequencies(&wrong, &FIT, &mu, sigma, N, 1, Z).unwrap());
    assert_fail(&verify::check_expected_max(&wrong, &FIT, &mu, sigma, N, 2, Z).unwrap());
    assert_fail(&verify::check_max_distribution(&wrong, &FIT, &mu, sigma, N, 3, Z).unwrap());
    assert_fail(&verify::check_gradient_of_max(&wrong, &FIT, &mu, sigma, N / 4, 4, Z).unwrap());
    // And the same inputs pass with the right sampler.
    let right = verify::structure_sampler(&s, &n);
    assert_pass(&verify::check_softmax_frequencies(&right, &FIT, &mu, sigma, N, 1, Z).unwrap());
}

#[test]
fn dlm_gradient_matches_exact_finite_differences_for_argmax_both_signs() {
    let (s, n, l) = (Argmax, gumbel(), ZeroOne);
    let est = verify::dlm_estimator(&s, &n, &l);
    runner(3)
        .run(&(mu_sigma(), 0usize..2), |((mu, sigma), t)| {
            for eps in [-0.1, 0.1] {
                let c = verify::check_dlm_argmax(&est, &FIT, &mu, sigma, t, eps, 40, 1500, 5, Z)
                    .unwrap();
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
    assert_pass(
        &verify::check_dlm_argmax(&est, &FIT, &mu, sigma, 1, -0.1, 40, 1500, 5, Z).unwrap(),
    );
    let flipped = flipped_eps(&est);
    assert_fail(
        &verify::check_dlm_argmax(&flipped, &FIT, &mu, sigma, 1, -0.1, 40, 1500, 5, Z).unwrap(),
    );
    let scaled = sigma_factor(&est, sigma);
    assert_fail(
        &verify::check_dlm_argmax(&scaled, &FIT, &mu, sigma, 1, -0.1, 40, 1500, 5, Z).unwrap(),
    );
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

/// `check_dlm_monte_carlo` of the DLM estimator with loss `l` on the 3x3 matching case (noise
/// seed `seed`): both signs of eps pass, and the estimator with a flipped eps fails both.
fn dlm_matches_monte_carlo_fd_on_a_3x3_matching(l: &dyn Loss, seed: u64) {
    let (s, n) = (Matching::new(Algo::Lapjv, true), gumbel());
    let est = verify::dlm_estimator(&s, &n, l);
    let (theta, target) = matching_case(3);
    let checks = verify::check_dlm_monte_carlo(
        &est, &s, &n, l, &theta, 0.8, &target, 0.1, 0.02, 40, 2500, seed, Z,
    )
    .unwrap();
    assert_eq!(checks.len(), 2, "one check per sign of eps");
    for c in &checks {
        assert_pass(c);
    }
    let flipped = flipped_eps(&est);
    let bad = verify::check_dlm_monte_carlo(
        &flipped, &s, &n, l, &theta, 0.8, &target, 0.1, 0.02, 40, 2500, seed, Z,
    )
    .unwrap();
    for c in &bad {
        assert_fail(c);
    }
}

#[test]
fn dlm_gradient_matches_monte_carlo_finite_differences_on_a_3x3_matching() {
    dlm_matches_monte_carlo_fd_on_a_3x3_matching(&Hamming, 11);
}

/// The zero-one (exact match) loss has no linear form on a matching: the estimator goes
/// through `argmax_loss_augmented` (closed form for eps < 0, second-best assignment for
/// eps > 0), and the gradient must still match finite differences of the expected loss.
#[test]
fn dlm_gradient_through_the_loss_augmented_argmax_matches_finite_differences() {
    dlm_matches_monte_carlo_fd_on_a_3x3_matching(&ZeroOne, 13);
}

/// `gumbel:variance=3`, the noise of the official sorting code (scale sqrt(18)/pi), built
/// from its spec as `dlm --noise gumbel:variance=3` builds it.
fn gumbel_variance_3() -> Gumbel {
    let spec: Spec = "gumbel:variance=3".parse().unwrap();
    let g = Gumbel::from_config(&spec.config(), true).unwrap();
    assert!((g.variance() - 3.0).abs() < 1e-12 && g.mean() == 0.0);
    g
}

fn kit_opts() -> KitOptions {
    KitOptions {
        samples: N / 2,
        z: Z,
        ..KitOptions::default()
    }
}

#[test]
fn identities_hold_for_any_gumbel_at_its_own_scale() {
    let v3 = gumbel_variance_3();
    let fit = GumbelFit::of(&v3).unwrap();
    assert!((fit.scale - 18f64.sqrt() / std::f64::consts::PI).abs() < 1e-12);
    // Zero-mean at scale sqrt(18)/pi, and a standard Gumbel (location 0, mean 0.6 c).
    for noise in [&v3, &Gumbel::new(0.6, false)] {
        let r = verify::check_noise(noise, &kit_opts()).unwrap();
        assert_eq!(r.num_passed(), 5, "{r}");
        // The exact DLM check at the noise's scale and location.
        let fit = GumbelFit::of(noise).unwrap();
        let est = verify::dlm_estimator(&Argmax, noise, &ZeroOne);
        for eps in [-0.1, 0.1] {
            let c = verify::check_dlm_argmax(
                &est,
                &fit,
                &[0.6, -0.2, 0.3],
                0.5,
                1,
                eps,
                40,
                1500,
                5,
                Z,
            )
            .unwrap();
            assert_pass(&c);
        }
    }
}

/// Claims the moments and CDF of `gumbel:variance=3` but samples the scale-1 zero-mean Gumbel.
struct Mislabelled {
    claims: Gumbel,
    draws: Gumbel,
}

impl NoiseModel for Mislabelled {
    fn name(&self) -> &str {
        "mislabelled"
    }
    fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
        self.draws.sample(rng, out)
    }
    fn mean(&self) -> f64 {
        self.claims.mean()
    }
    fn variance(&self) -> f64 {
        self.claims.variance()
    }
    fn cdf(&self, x: f64) -> Option<f64> {
        self.claims.cdf(x)
    }
}

#[test]
fn a_wrongly_scaled_sampler_fails_the_identities() {
    let wrong = Mislabelled {
        claims: gumbel_variance_3(),
        draws: gumbel(),
    };
    let r = verify::check_noise(&wrong, &kit_opts()).unwrap();
    assert!(r.checks[0].pass(), "the claimed CDF is Gumbel: {r}");
    for c in &r.checks[1..] {
        assert_fail(c);
    }
    // And identities that assumed scale 1 would have failed the honest variance-3 noise.
    let v3 = gumbel_variance_3();
    let sampler = verify::noise_sampler(&v3);
    let mu = verify::identity_potentials(5, 0);
    assert_fail(&verify::check_softmax_frequencies(&sampler, &FIT, &mu, 0.7, N, 1, Z).unwrap());
    let est = verify::dlm_estimator(&Argmax, &v3, &ZeroOne);
    assert_fail(&verify::check_dlm_argmax(&est, &FIT, &mu, 0.7, 0, -0.1, 40, 1500, 5, Z).unwrap());
}

#[test]
fn identities_are_skipped_for_noise_that_is_not_gumbel() {
    let r = verify::check_noise(&Gaussian::new(1.0), &kit_opts()).unwrap();
    assert_eq!(r.num_skipped(), 5, "{r}");
    assert!(r.checks[0].detail.contains("not Gumbel-family"), "{r}");
}
