//! Matchings over the whole finite range of `f64`: both algorithms against brute force on
//! random matrices with entries near `±f64::MAX`, spread over every exponent, tiny and
//! subnormal, and mixtures of these.
//!
//! "Correct" is: the solver's permutation scores at least the best permutation's total minus
//! the algorithm's documented resolution (a few ulps of `n * max|theta|` for lapjv, the
//! integer rounding `n^2 * max|theta| * 2^-48` for km). Totals are compared after an exact
//! power-of-two scaling that keeps them finite, so permutations whose true totals overflow
//! `f64` are still ordered correctly.

mod common;

use common::{permutations, Rng};
use dlm_core::StructuredArgmax;
use dlm_plugin_matching::scale::{exponent, ldexp, max_abs};
use dlm_plugin_matching::{lapjv, Algo, Matching};
use ndarray::{ArrayD, IxDyn};

/// One random entry of the given kind.
fn entry(rng: &mut Rng, kind: usize) -> f64 {
    match kind {
        // Anywhere in [-MAX, MAX].
        0 => rng.sign() * f64::MAX * rng.unit(),
        // Within 0.1% of +-MAX.
        1 => rng.sign() * f64::MAX * (1.0 - 1e-3 * rng.unit()),
        // Any exponent, subnormals included.
        2 => {
            let e = rng.below(2098) as i32 - 1074;
            rng.sign() * ldexp(1.0 + rng.unit(), e).min(f64::MAX)
        }
        // Tiny and subnormal.
        3 => rng.sign() * rng.unit() * if rng.next() & 1 == 0 { 1e-315 } else { 1e-300 },
        // A mixture of huge, ordinary, tiny and zero entries.
        _ => match rng.below(5) {
            0 => rng.sign() * f64::MAX * (1.0 - rng.unit() * 1e-6),
            1 => rng.sign() * 1e308 * rng.unit(),
            2 => rng.sign() * rng.unit(),
            3 => rng.sign() * 1e-310 * rng.unit(),
            _ => 0.0,
        },
    }
}

/// The total of `perm` with every entry multiplied by `2^k` (exact for all but subnormal
/// results), which keeps sums of `n` entries finite.
fn total(theta: &[f64], n: usize, perm: &[usize], k: i32) -> f64 {
    perm.iter()
        .enumerate()
        .map(|(i, &j)| ldexp(theta[i * n + j], k))
        .sum()
}

fn solve(m: &Matching, theta: &[f64], n: usize) -> Vec<usize> {
    let a = ArrayD::from_shape_vec(IxDyn(&[n, n]), theta.to_vec()).unwrap();
    let mut out = Vec::new();
    m.argmax(a.view(), &mut out).unwrap();
    out.iter().map(|&a| a % n).collect()
}

#[test]
fn both_algorithms_find_the_optimum_over_the_whole_float_range() {
    let algos = [
        (Matching::new(Algo::Lapjv, true), 8.0 * f64::EPSILON),
        (Matching::new(Algo::KuhnMunkres, false), 2f64.powi(-48)),
    ];
    let mut rng = Rng(7);
    let mut checked = 0;
    for kind in 0..5 {
        for n in 1..=6 {
            let perms = permutations(n);
            for _ in 0..40 {
                let theta: Vec<f64> = (0..n * n).map(|_| entry(&mut rng, kind)).collect();
                let big = max_abs(&theta);
                // Keep sums of n entries finite: n * big * 2^k < MAX.
                let k = if big > 1e300 { -4 } else { 0 };
                let best = perms
                    .iter()
                    .map(|p| total(&theta, n, p, k))
                    .fold(f64::NEG_INFINITY, f64::max);
                for (m, resolution) in &algos {
                    let got = solve(m, &theta, n);
                    let mut seen = vec![false; n];
                    assert!(got.iter().all(|&j| !std::mem::replace(&mut seen[j], true)));
                    let score = total(&theta, n, &got, k);
                    let tol = resolution * (n * n) as f64 * ldexp(big, k);
                    assert!(
                        score >= best - tol,
                        "{:?} kind {kind} n {n}: {got:?} scores {score:e}, the best {best:e} \
                         (tolerance {tol:e}); theta = {theta:?}",
                        m.algo()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 5 * 6 * 40);
}

#[test]
fn the_issue_examples_are_solved_exactly() {
    for m in [
        Matching::new(Algo::Lapjv, true),
        Matching::new(Algo::KuhnMunkres, false),
    ] {
        // [1, 0] scores -1e307 + 1e308 = 9e307 > -1e308 + MAX = 7.98e307.
        let t = [-1e308, -1e307, 1e308, f64::MAX];
        assert_eq!(solve(&m, &t, 2), vec![1, 0], "{:?}", m.algo());
        // [1, 0] totals 2e308 (overflows f64) against 0.
        assert_eq!(solve(&m, &[0.0, 1e308, 1e308, 0.0], 2), vec![1, 0]);
        assert_eq!(solve(&m, &[f64::MAX, 0.0, 0.0, f64::MAX], 2), vec![0, 1]);
        assert_eq!(solve(&m, &[-f64::MAX, 0.0, 0.0, -f64::MAX], 2), vec![1, 0]);
        // Subnormal entries are still told apart.
        assert_eq!(solve(&m, &[0.0, 5e-324, 1e-323, 0.0], 2), vec![1, 0]);
        assert_eq!(solve(&m, &[1e-320, 0.0, 0.0, 1e-320], 2), vec![0, 1]);
    }
}

#[test]
fn warm_starts_agree_with_cold_solves_at_large_magnitudes() {
    let mut rng = Rng(3);
    let mut ws = lapjv::LapWorkspace::new();
    let (mut cold, mut warm) = (vec![0; 5], vec![0; 5]);
    for round in 0..200 {
        let n = 5;
        let kind = round % 5;
        let theta: Vec<f64> = (0..n * n).map(|_| entry(&mut rng, kind)).collect();
        // The augmented matrix may be on another scale than the plain one.
        let aug: Vec<f64> = theta
            .iter()
            .map(|&v| if rng.next() % 3 == 0 { v * 0.5 } else { v })
            .collect();
        lapjv::solve_max(&theta, n, &mut ws, &mut cold);
        lapjv::solve_max_warm(&aug, n, &mut ws, &mut warm);
        let mut fresh = lapjv::LapWorkspace::new();
        let mut want = vec![0; n];
        lapjv::solve_max(&aug, n, &mut fresh, &mut want);
        let k = if max_abs(&aug) > 1e300 { -4 } else { 0 };
        let (a, b) = (total(&aug, n, &warm, k), total(&aug, n, &want, k));
        let tol = 8.0 * f64::EPSILON * (n * n) as f64 * ldexp(max_abs(&aug), k);
        assert!(
            (a - b).abs() <= tol,
            "round {round}: warm {warm:?} {a:e} vs cold {want:?} {b:e}"
        );
    }
}

#[test]
fn large_matrices_are_rescaled_exactly_and_the_duals_say_so() {
    let mut ws = lapjv::LapWorkspace::new();
    let mut col = vec![0; 3];
    let theta = [3.0, 1.0, 2.0, 1.0, 3.0, 2.0, 2.0, 1.0, 3.0];
    lapjv::solve_max(&theta, 3, &mut ws, &mut col);
    assert_eq!(
        ws.dual_scale_exponent(),
        0,
        "ordinary matrices are used as given"
    );
    let big: Vec<f64> = theta.iter().map(|v| v * 5e307).collect();
    let mut col_big = vec![0; 3];
    let total = lapjv::solve_max(&big, 3, &mut ws, &mut col_big);
    assert_eq!(col_big, col);
    assert!(total.is_infinite(), "1.5e308 summed three times overflows");
    let k = ws.dual_scale_exponent();
    assert!(k < 0 && exponent(ldexp(1e308, k)).unwrap() < 1000);
}
