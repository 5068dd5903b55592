//! The public test kit (`dlm-testkit`) on every built-in structure, on the grid-path example
//! plugin loaded from its library, and on a deliberately broken plugin, which must fail.

use dlm_core::{Loss, NoiseModel, Registry, Result, Spec, StructuredArgmax};
use dlm_plugin_argmax::{Argmax, ZeroOne};
use dlm_plugin_matching::{Algo, Hamming, Matching, SortLoss};
use dlm_plugin_noise::{Gaussian, Gumbel};
use dlm_plugin_topk::{LabelMismatch, TopK};
use dlm_testkit::{run_kit, KitOptions, Report};
use ndarray::ArrayViewD;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

mod common;

/// Builds the plugin libraries once (same profile and target dir as this test) and returns
/// the path of `lib<name>.so`.
fn lib(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        common::build_libraries(&[
            "dlm-example-grid-path",
            "dlm-fixture-broken-plugin",
            "dlm-fixture-panic-plugin",
        ])
    })
    .join(format!("lib{name}.so"))
}

/// Runs the kit with the default options and prints the table and the time taken.
fn kit(
    what: &str,
    s: &dyn StructuredArgmax,
    loss: Option<&dyn Loss>,
    noise: Option<&dyn NoiseModel>,
) -> Report {
    let t = Instant::now();
    let r = run_kit(s, loss, noise, &KitOptions::default()).unwrap();
    eprintln!("{what}: {:.2} s\n{r}\n", t.elapsed().as_secs_f64());
    r
}

#[test]
fn kit_passes_on_matching_with_both_algorithms() {
    let lapjv = Matching::new(Algo::Lapjv, true);
    kit("matching lapjv + hamming", &lapjv, Some(&Hamming), None).assert_pass();
    let km = Matching::new(Algo::KuhnMunkres, true);
    let r = kit("matching km + sort", &km, Some(&SortLoss), None);
    r.assert_pass();
    // The Monte Carlo gradient check ran, with brute-force finite differences.
    let grad = r
        .checks
        .iter()
        .find(|c| c.name.contains("Monte Carlo"))
        .expect("a Monte Carlo gradient row");
    assert!(grad.pass() && grad.detail.contains("brute force"), "{r}");
}

#[test]
fn kit_passes_on_topk() {
    for k in 1..=3 {
        let s = TopK::new(k).unwrap();
        kit(&format!("topk k={k}"), &s, Some(&LabelMismatch), None).assert_pass();
    }
}

#[test]
fn kit_passes_on_argmax_with_the_exact_gradient_and_any_gumbel() {
    let r = kit(
        "argmax",
        &Argmax,
        Some(&ZeroOne),
        Some(&Gumbel::new(1.0, true)),
    );
    r.assert_pass();
    assert!(
        r.checks
            .iter()
            .any(|c| c.name.contains("exact") && c.pass()),
        "{r}"
    );
    assert_eq!(r.num_skipped(), 2, "loss-augmented rows only: {r}");
    // Variance 3 (the official sorting code's noise) and the standard (not zero-mean) Gumbel.
    let v3 = Gumbel::new((18.0f64).sqrt() / std::f64::consts::PI, true);
    kit(
        "argmax, gumbel variance 3",
        &Argmax,
        Some(&ZeroOne),
        Some(&v3),
    )
    .assert_pass();
    let standard = Gumbel::new(0.8, false);
    kit(
        "argmax, standard gumbel",
        &Argmax,
        Some(&ZeroOne),
        Some(&standard),
    )
    .assert_pass();
}

#[test]
fn gaussian_noise_skips_the_identities_but_checks_the_gradient() {
    let r = kit(
        "argmax, gaussian",
        &Argmax,
        Some(&ZeroOne),
        Some(&Gaussian::new(1.0)),
    );
    r.assert_pass();
    let skipped: Vec<_> = r.checks.iter().filter(|c| c.is_skipped()).collect();
    assert!(
        skipped
            .iter()
            .any(|c| c.detail.contains("not Gumbel-family")),
        "{r}"
    );
    // Not Gumbel: the gradient falls back to Monte Carlo.
    assert!(
        r.checks
            .iter()
            .any(|c| c.name.contains("Monte Carlo") && c.pass()),
        "{r}"
    );
}

#[test]
fn kit_passes_on_the_grid_path_plugin_loaded_from_its_library() {
    let mut reg = Registry::new();
    reg.load_library(&lib("dlm_example_grid_path")).unwrap();
    let s = reg.structure(&Spec::named("grid-path")).unwrap();
    let l = reg.loss(&Spec::named("path-miss")).unwrap();
    let r = kit("grid-path (library)", s.as_ref(), Some(l.as_ref()), None);
    r.assert_pass();
    assert!(r.num_passed() >= 14, "{r}");
}

#[test]
fn kit_fails_on_the_broken_plugin_and_names_the_check_and_instance() {
    let mut reg = Registry::new();
    reg.load_library(&lib("dlm_fixture_broken_plugin")).unwrap();
    let s = reg.structure(&Spec::named("broken-argmax")).unwrap();
    let r = kit("broken-argmax (library)", s.as_ref(), Some(&ZeroOne), None);
    assert!(!r.passed());
    let opt = r
        .get("optimal vs brute force (continuous theta)")
        .expect("the optimality row");
    assert!(opt.failed(), "{r}");
    assert!(
        opt.detail.contains("shape [")
            && opt.detail.contains("theta [")
            && opt.detail.contains("seed 0"),
        "the detail names the instance: {}",
        opt.detail
    );
    let msg = std::panic::catch_unwind(|| r.assert_pass())
        .unwrap_err()
        .downcast_ref::<String>()
        .cloned()
        .unwrap();
    assert!(msg.contains("optimal vs brute force"), "{msg}");
}

#[test]
fn a_panicking_plugin_is_a_failure_not_a_crash() {
    let mut reg = Registry::new();
    reg.load_library(&lib("dlm_fixture_panic_plugin")).unwrap();
    let s = reg.structure(&Spec::named("panicky")).unwrap();
    let r = kit("panicky (library)", s.as_ref(), Some(&ZeroOne), None);
    let shapes = r.get("shapes").unwrap();
    assert!(shapes.failed(), "{r}");
    assert!(
        shapes.detail.contains("deliberate panic"),
        "{}",
        shapes.detail
    );
}

/// Top-k without `enumerate`: the kit falls back to the solutions it discovers by probing.
struct Unlisted(TopK);

impl StructuredArgmax for Unlisted {
    fn name(&self) -> &str {
        "unlisted topk"
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        self.0.check_shape(shape)
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        self.0.argmax(theta, out)
    }
}

#[test]
fn without_enumerate_the_kit_checks_against_discovered_solutions_and_says_so() {
    let s = Unlisted(TopK::new(2).unwrap());
    let r = kit("topk k=2 without enumerate", &s, Some(&LabelMismatch), None);
    r.assert_pass();
    assert!(r
        .get("enumerate: distinct, in-range solutions")
        .unwrap()
        .is_skipped());
    let opt = r.get("optimal vs brute force (continuous theta)").unwrap();
    assert!(
        opt.detail.contains("discovered by probing"),
        "{}",
        opt.detail
    );
    let grad = r
        .checks
        .iter()
        .find(|c| c.name.contains("Monte Carlo"))
        .expect("a gradient row");
    assert!(
        grad.pass() && grad.detail.contains("structure's own argmax"),
        "{r}"
    );
    assert!(
        grad.deviation > 0.0,
        "a non-trivial instance (>= 3 solutions): {r}"
    );
}
