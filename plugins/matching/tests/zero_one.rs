//! The zero-one (exact match) loss on matchings: loss-augmented argmax and second-best
//! assignments against brute force over all `n!` permutations.

mod common;

use common::{permutations, Rng};
use dlm_core::{DlmError, StructuredArgmax, Target};
use dlm_plugin_argmax::ZeroOne;
use dlm_plugin_matching::zero_one::{best_other_than, permutation_score, SecondBestWorkspace};
use dlm_plugin_matching::{permutation_of, Algo, Hamming, Matching};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

fn active(col: &[usize]) -> Vec<usize> {
    let n = col.len();
    col.iter().enumerate().map(|(i, &j)| i * n + j).collect()
}

fn target(col: &[usize]) -> Target {
    Target {
        truth: active(col),
        weights: vec![],
    }
}

/// The augmented objective, computed as the implementation does (row-order sum, then `+ eps`).
fn objective(theta: &[f64], n: usize, y: &[usize], t: &[usize], eps: f64) -> f64 {
    let s = permutation_score(theta, n, y);
    if y != t {
        s + eps
    } else {
        s
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Uniform in [-1, 1).
    Float,
    /// Integers in 0..=2: many exact ties.
    SmallInt,
    /// Integers in -3..=3.
    Int,
    /// Uniform times 1e300 (the second-best solves are rescaled).
    Huge,
    /// Uniform times 1e-300.
    Tiny,
    /// Uniform times 1e307: beyond what lapjv accepts unscaled (`|theta| <= 1e300`), while
    /// scores of n <= 5 entries stay finite. Second-best tests only (`eps` would overflow).
    Extreme,
}

impl Kind {
    fn scale(self) -> f64 {
        match self {
            Kind::Huge => 1e300,
            Kind::Tiny => 1e-300,
            Kind::Extreme => 1e307,
            _ => 1.0,
        }
    }
    fn integer(self) -> bool {
        matches!(self, Kind::SmallInt | Kind::Int)
    }
    fn draw(self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n * n)
            .map(|_| match self {
                Kind::SmallInt => rng.below(3) as f64,
                Kind::Int => rng.below(7) as f64 - 3.0,
                k => (2.0 * rng.unit() - 1.0) * k.scale(),
            })
            .collect()
    }
}

const KINDS: [Kind; 5] = [
    Kind::Float,
    Kind::SmallInt,
    Kind::Int,
    Kind::Huge,
    Kind::Tiny,
];

fn view(theta: &[f64], n: usize) -> ArrayViewD<'_, f64> {
    ArrayViewD::from_shape(IxDyn(&[n, n]), theta).unwrap()
}

fn best_of<'a>(
    theta: &[f64],
    n: usize,
    perms: &'a [Vec<usize>],
    skip: Option<&[usize]>,
) -> Option<(&'a [usize], f64)> {
    let mut best: Option<(&[usize], f64)> = None;
    for p in perms {
        if Some(p.as_slice()) == skip {
            continue;
        }
        let s = permutation_score(theta, n, p);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((p, s));
        }
    }
    best
}

#[derive(Default, Debug)]
struct Coverage {
    cases: usize,
    /// eps > 0, plain optimum = truth, a wrong solution returned (the second-best path).
    second_best_won: usize,
    /// eps > 0, plain optimum = truth, the truth kept.
    truth_kept_positive: usize,
    /// eps < 0, plain optimum != truth, the truth returned.
    truth_won_negative: usize,
    /// Exact ties between the truth and a wrong solution at the maximum.
    ties: usize,
}

/// Checks one call against brute force; returns the output `col_of_row`.
#[allow(clippy::too_many_arguments)]
fn check_case(
    m: &Matching,
    theta: &[f64],
    n: usize,
    perms: &[Vec<usize>],
    truth: &[usize],
    eps: f64,
    exact: bool,
    cov: &mut Coverage,
) -> Vec<usize> {
    let mut out = vec![usize::MAX; 3];
    m.argmax_loss_augmented(view(theta, n), &ZeroOne, &target(truth), eps, &mut out)
        .unwrap_or_else(|e| panic!("n={n} eps={eps} truth={truth:?} theta={theta:?}: {e}"));
    // Canonical: one entry per row, in row order, a permutation.
    assert_eq!(out.len(), n);
    assert!(out.iter().enumerate().all(|(i, &a)| a / n == i), "{out:?}");
    let y = permutation_of(n, &out, "output").unwrap();

    let objs: Vec<f64> = perms
        .iter()
        .map(|p| objective(theta, n, p, truth, eps))
        .collect();
    let max = objs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let got = objective(theta, n, &y, truth, eps);
    let big = theta.iter().fold(0.0f64, |a, &v| a.max(v.abs())) * n as f64;
    let tol = 1e-9 * max.abs().max(eps.abs()).max(big);
    assert!(
        (got - max).abs() <= tol,
        "n={n} eps={eps} truth={truth:?} got {y:?} objective {got} but the maximum is {max}; theta={theta:?}"
    );

    // The documented choices.
    let mut plain = Vec::new();
    m.argmax(view(theta, n), &mut plain).unwrap();
    let plain = permutation_of(n, &plain, "plain").unwrap();
    if eps > 0.0 && plain != truth {
        assert_eq!(y, plain, "eps > 0 and y* != t must return y*");
    }
    if eps < 0.0 && y != truth {
        assert_eq!(y, plain, "eps < 0 returns y* or t");
    }
    if eps > 0.0 && plain == truth {
        if y == truth {
            cov.truth_kept_positive += 1;
        } else {
            cov.second_best_won += 1;
        }
    }
    if eps < 0.0 && plain != truth && y == truth {
        cov.truth_won_negative += 1;
    }
    // Tie rule, checked where scores are exact (integers): towards the augmentation.
    if exact {
        let truth_at_max = objective(theta, n, truth, truth, eps) == max;
        let wrong_at_max = perms
            .iter()
            .zip(&objs)
            .any(|(p, &o)| p.as_slice() != truth && o == max);
        if truth_at_max && wrong_at_max {
            cov.ties += 1;
        }
        if eps < 0.0 && truth_at_max {
            assert_eq!(y, truth, "eps < 0: a tie must go to the truth (eps={eps})");
        }
        if eps > 0.0 && wrong_at_max {
            assert_ne!(
                y, truth,
                "eps > 0: a tie must go to a wrong solution (eps={eps})"
            );
        }
        assert_eq!(got, max);
    }
    cov.cases += 1;
    y
}

#[test]
fn loss_augmented_matches_brute_force() {
    let mut rng = Rng(0x5eed_0001);
    let mut cov = Coverage::default();
    let lapjv = Matching::new(Algo::Lapjv, true);
    let km = Matching::new(Algo::KuhnMunkres, false);
    for n in 1..=5 {
        let perms = permutations(n);
        let draws = if n <= 3 { 60 } else { 30 };
        for kind in KINDS {
            for _ in 0..draws {
                let theta = kind.draw(&mut rng, n);
                let (best, _) = best_of(&theta, n, &perms, None).unwrap();
                let mut plain = Vec::new();
                lapjv.argmax(view(&theta, n), &mut plain).unwrap();
                let plain = permutation_of(n, &plain, "plain").unwrap();
                let mut truths = vec![plain, best.to_vec(), rng.permutation(n)];
                if let Some((second, _)) = best_of(&theta, n, &perms, Some(best)) {
                    truths.push(second.to_vec());
                }
                for truth in &truths {
                    let s_t = permutation_score(&theta, n, truth);
                    let mut eps_list: Vec<f64> = [1e-6, 0.01, 0.5, 1.0, 2.0, 3.0, 10.0, 1e3]
                        .iter()
                        .flat_map(|&e| [e * kind.scale(), -e * kind.scale()])
                        .collect();
                    // Gaps that make the truth and the best wrong solution tie exactly.
                    if let Some((_, s_o)) = best_of(&theta, n, &perms, Some(truth)) {
                        if s_t > s_o {
                            eps_list.push(s_t - s_o);
                        }
                        if s_o > s_t {
                            eps_list.push(s_t - s_o);
                        }
                    }
                    for &eps in &eps_list {
                        check_case(
                            &lapjv,
                            &theta,
                            n,
                            &perms,
                            truth,
                            eps,
                            kind.integer(),
                            &mut cov,
                        );
                        if kind.integer() {
                            check_case(&km, &theta, n, &perms, truth, eps, true, &mut cov);
                        }
                    }
                }
            }
        }
    }
    eprintln!("{cov:?}");
    // Every branch was exercised, ties included.
    assert!(cov.second_best_won > 5000, "{cov:?}");
    assert!(cov.truth_kept_positive > 5000, "{cov:?}");
    assert!(cov.truth_won_negative > 5000, "{cov:?}");
    assert!(cov.ties > 1000, "{cov:?}");
}

#[test]
fn second_best_matches_brute_force() {
    let mut rng = Rng(0x5eed_0002);
    let mut ws = SecondBestWorkspace::new();
    let mut out = vec![7; 9];
    for n in 1..=5 {
        let perms = permutations(n);
        for kind in KINDS.into_iter().chain([Kind::Extreme]) {
            for _ in 0..20 {
                let theta = kind.draw(&mut rng, n);
                let excludes: Vec<Vec<usize>> = if n <= 4 {
                    perms.clone()
                } else {
                    let mut e = vec![best_of(&theta, n, &perms, None).unwrap().0.to_vec()];
                    e.extend((0..10).map(|_| rng.permutation(n)));
                    e
                };
                for ex in &excludes {
                    let got = best_other_than(&theta, n, ex, &mut ws, &mut out).unwrap();
                    let want = best_of(&theta, n, &perms, Some(ex));
                    match (got, want) {
                        (None, None) => assert!(out.is_empty()),
                        (Some(s), Some((_, w))) => {
                            assert_ne!(&out, ex);
                            permutation_of(n, &active(&out), "second best").unwrap();
                            assert_eq!(s, permutation_score(&theta, n, &out));
                            let big = theta.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
                            let tol = 1e-9 * w.abs().max(big * n as f64);
                            assert!(
                                (s - w).abs() <= tol,
                                "n={n} exclude={ex:?}: got {s} {out:?}, brute force {w}; theta={theta:?}"
                            );
                            if kind.integer() {
                                assert_eq!(s, w);
                            }
                        }
                        (g, w) => panic!("n={n}: got {g:?}, brute force {w:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn second_best_refuses_bad_inputs_and_overflow() {
    let mut ws = SecondBestWorkspace::new();
    let mut out = Vec::new();
    let t = [0.0, 1.0, 2.0, 3.0];
    assert!(best_other_than(&t, 2, &[0, 0], &mut ws, &mut out).is_err());
    assert!(best_other_than(&t, 2, &[0, 2], &mut ws, &mut out).is_err());
    assert!(best_other_than(&t, 2, &[0], &mut ws, &mut out).is_err());
    assert!(best_other_than(&t, 3, &[0, 1, 2], &mut ws, &mut out).is_err());
    assert!(best_other_than(&[], 0, &[], &mut ws, &mut out).is_err());
    assert!(best_other_than(&[0.0, f64::NAN, 0.0, 0.0], 2, &[0, 1], &mut ws, &mut out).is_err());
    // Scores that overflow are an error, not a panic or a wrong answer.
    let huge = vec![f64::MAX / 2.0; 9];
    assert!(best_other_than(&huge, 3, &[0, 1, 2], &mut ws, &mut out).is_err());
    // Near the top of the range but with finite scores: still exact.
    let big = [f64::MAX / 4.0, -f64::MAX / 4.0, 0.0, f64::MAX / 8.0];
    let s = best_other_than(&big, 2, &[0, 1], &mut ws, &mut out).unwrap();
    assert_eq!(out, vec![1, 0]);
    assert_eq!(s, Some(-f64::MAX / 4.0));
}

#[test]
fn breaking_the_second_best_path_is_caught() {
    // y* = t = identity (score 6); the best other permutation is [1, 0, 2] (score 4).
    let n = 3;
    let theta = [2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 2.0];
    let m = Matching::new(Algo::Lapjv, true);
    let t = target(&[0, 1, 2]);
    let mut out = Vec::new();
    // Gap between the truth (6) and the best other permutation: 6 - 4 = 2.
    m.argmax_loss_augmented(view(&theta, n), &ZeroOne, &t, 1.5, &mut out)
        .unwrap();
    assert_eq!(out, t.truth, "gap 2 > eps 1.5: the truth stays");
    m.argmax_loss_augmented(view(&theta, n), &ZeroOne, &t, 2.0, &mut out)
        .unwrap();
    assert_ne!(
        out, t.truth,
        "exact tie at eps = 2 goes to the wrong solution"
    );
    m.argmax_loss_augmented(view(&theta, n), &ZeroOne, &t, 2.5, &mut out)
        .unwrap();
    assert_eq!(out, vec![1, 3, 8], "eps 2.5 > gap: the second best");
    // eps < 0 with y* = t: the truth, whatever |eps|.
    m.argmax_loss_augmented(view(&theta, n), &ZeroOne, &t, -1e6, &mut out)
        .unwrap();
    assert_eq!(out, t.truth);
    // eps < 0 with y* != t: the truth once |eps| exceeds the gap, y* before.
    let t2 = target(&[1, 2, 0]); // score 1, y* scores 6
    m.argmax_loss_augmented(view(&theta, n), &ZeroOne, &t2, -4.9, &mut out)
        .unwrap();
    assert_eq!(out, vec![0, 4, 8]);
    m.argmax_loss_augmented(view(&theta, n), &ZeroOne, &t2, -5.0, &mut out)
        .unwrap();
    assert_eq!(out, t2.truth, "exact tie at eps = -5 goes to the truth");
}

#[test]
fn n_one_returns_the_only_permutation() {
    let m = Matching::new(Algo::Lapjv, true);
    let mut out = Vec::new();
    for eps in [-5.0, -1e-3, 1e-3, 5.0, 1e300] {
        m.argmax_loss_augmented(view(&[3.5], 1), &ZeroOne, &target(&[0]), eps, &mut out)
            .unwrap();
        assert_eq!(out, vec![0]);
    }
}

#[test]
fn refuses_other_losses_bad_targets_and_non_finite_inputs() {
    let m = Matching::new(Algo::Lapjv, true);
    let theta = [1.0, 2.0, 3.0, 4.0];
    let th = view(&theta, 2);
    let mut out = Vec::new();
    let t = target(&[0, 1]);
    assert!(matches!(
        m.argmax_loss_augmented(th.view(), &Hamming, &t, 1.0, &mut out),
        Err(DlmError::NonDecomposableLoss { .. })
    ));
    for bad in [
        vec![],
        vec![0],
        vec![0, 3, 1],
        vec![0, 2],
        vec![1, 3],
        vec![0, 0],
        vec![0, 4],
        vec![usize::MAX, 3],
    ] {
        let t = Target {
            truth: bad.clone(),
            weights: vec![],
        };
        for eps in [-1.0, 1.0] {
            assert!(
                m.argmax_loss_augmented(th.view(), &ZeroOne, &t, eps, &mut out)
                    .is_err(),
                "truth {bad:?} accepted"
            );
        }
    }
    for eps in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(m
            .argmax_loss_augmented(th.view(), &ZeroOne, &t, eps, &mut out)
            .is_err());
    }
    let nan = [1.0, f64::NAN, 3.0, 4.0];
    assert!(m
        .argmax_loss_augmented(view(&nan, 2), &ZeroOne, &t, 1.0, &mut out)
        .is_err());
    let rect = ArrayD::<f64>::zeros(IxDyn(&[2, 3]));
    assert!(m
        .argmax_loss_augmented(rect.view(), &ZeroOne, &t, 1.0, &mut out)
        .is_err());
    // Scores overflowing f64: an error, not a panic.
    let huge = [f64::MAX; 4];
    assert!(m
        .argmax_loss_augmented(view(&huge, 2), &ZeroOne, &t, 1.0, &mut out)
        .is_err());
}

#[test]
fn truth_in_any_order_output_canonical_and_independent_of_earlier_calls() {
    let mut rng = Rng(0x5eed_0003);
    let m = Matching::new(Algo::Lapjv, true);
    let n = 5;
    let a = Kind::SmallInt.draw(&mut rng, n);
    let b = Kind::Float.draw(&mut rng, n);
    // a's optimum as the truth, so that eps > 0 takes the second-best path.
    let mut ya = Vec::new();
    m.argmax(view(&a, n), &mut ya).unwrap();
    let canonical = Target {
        truth: ya.clone(),
        weights: vec![],
    };
    let shuffled = Target {
        truth: ya.iter().rev().copied().collect(),
        weights: vec![],
    };
    let mut first = Vec::new();
    m.argmax_loss_augmented(view(&a, n), &ZeroOne, &canonical, 2.0, &mut first)
        .unwrap();
    assert!(first.iter().enumerate().all(|(i, &x)| x / n == i));
    let mut out = Vec::new();
    m.argmax_loss_augmented(view(&a, n), &ZeroOne, &shuffled, 2.0, &mut out)
        .unwrap();
    assert_eq!(out, first);
    // Other calls in between (other sizes and matrices) change nothing.
    let tb = target(&rng.permutation(n));
    m.argmax_loss_augmented(view(&b, n), &ZeroOne, &tb, 0.3, &mut out)
        .unwrap();
    m.argmax_loss_augmented(
        view(&[1.0; 4], 2),
        &ZeroOne,
        &target(&[1, 0]),
        1.0,
        &mut out,
    )
    .unwrap();
    m.argmax_loss_augmented(view(&a, n), &ZeroOne, &canonical, 2.0, &mut out)
        .unwrap();
    assert_eq!(out, first);
    // Nor does a fresh thread.
    let (a2, c2) = (a.clone(), canonical.clone());
    let other = std::thread::spawn(move || {
        let mut o = Vec::new();
        Matching::new(Algo::Lapjv, true)
            .argmax_loss_augmented(view(&a2, n), &ZeroOne, &c2, 2.0, &mut o)
            .unwrap();
        o
    })
    .join()
    .unwrap();
    assert_eq!(other, first);
}
