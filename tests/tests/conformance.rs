//! The conformance suite every structure runs, through the public test kit
//! (`dlm_testkit::conformance`): optimality against brute force over the enumerated solutions,
//! feasibility, `phi` consistent with the score, deterministic tie-breaking, refusal of bad
//! input. The built-ins' `enumerate` (the kit's ground truth) is checked here against an
//! independent enumeration. Plus the matching-specific tests: LAPJV against
//! `pathfinding::kuhn_munkres` on random and degenerate matrices up to n = 200, and warm starts.

use dlm_core::rng::{open01, rng_for, DlmRng, Stream};
use dlm_core::structure::score;
use dlm_core::StructuredArgmax;
use dlm_plugin_argmax::Argmax;
use dlm_plugin_matching::{kuhn_munkres_max, lapjv, Algo, Matching};
use dlm_plugin_topk::TopK;
use dlm_testkit::{conformance, KitOptions};
use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeSet;

fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn rec(n: usize, cur: &mut Vec<usize>, used: &mut [bool], out: &mut Vec<Vec<usize>>) {
        if cur.len() == n {
            out.push(cur.iter().enumerate().map(|(i, &j)| i * n + j).collect());
            return;
        }
        for j in 0..n {
            if !used[j] {
                used[j] = true;
                cur.push(j);
                rec(n, cur, used, out);
                cur.pop();
                used[j] = false;
            }
        }
    }
    let mut out = Vec::new();
    rec(n, &mut Vec::new(), &mut vec![false; n], &mut out);
    out
}

fn subsets(m: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << m)
        .filter(|b| b.count_ones() as usize == k)
        .map(|b| (0..m).filter(|i| b >> i & 1 == 1).collect())
        .collect()
}

/// The kit's conformance checks on the given shapes; panics with the failure table.
fn conformance(s: &dyn StructuredArgmax, shapes: Vec<Vec<usize>>, seed: u64) {
    let opts = KitOptions {
        seed,
        ..KitOptions::default()
    }
    .with_shapes(shapes);
    let r = conformance::check_structure(s, &opts).unwrap();
    r.assert_pass();
    assert_eq!(r.num_skipped(), 0, "every check applies:\n{r}");
}

/// `enumerate` lists exactly `expected` (as sets), in the structure's canonical order.
fn enumerates(s: &dyn StructuredArgmax, shape: &[usize], expected: Vec<Vec<usize>>) {
    let got = s
        .enumerate(shape)
        .unwrap()
        .expect("small shapes are enumerated");
    let as_sets = |v: &[Vec<usize>]| -> BTreeSet<Vec<usize>> {
        v.iter()
            .map(|y| {
                let mut y = y.clone();
                y.sort_unstable();
                y
            })
            .collect()
    };
    assert_eq!(got.len(), expected.len(), "{} {shape:?}", s.name());
    assert_eq!(as_sets(&got), as_sets(&expected), "{} {shape:?}", s.name());
    for y in &got {
        let mut theta = ArrayD::from_elem(IxDyn(shape), -1.0);
        for &i in y {
            theta.as_slice_mut().unwrap()[i] = 1.0;
        }
        let mut out = Vec::new();
        s.argmax(theta.view(), &mut out).unwrap();
        assert_eq!(&out, y, "{}: canonical order of {y:?}", s.name());
    }
}

#[test]
fn builtin_enumerations_are_complete() {
    let m = Matching::new(Algo::Lapjv, true);
    for n in 1..=6 {
        enumerates(&m, &[n, n], permutations(n));
    }
    assert!(m.enumerate(&[9, 9]).unwrap().is_none(), "too large to list");
    for k in 1..=4 {
        let t = TopK::new(k).unwrap();
        for n in k..=9 {
            enumerates(&t, &[n], subsets(n, k));
        }
    }
    for c in 1..=8 {
        enumerates(&Argmax, &[c], subsets(c, 1));
    }
}

#[test]
fn matching_lapjv_conforms() {
    conformance(
        &Matching::new(Algo::Lapjv, true),
        (1..=7).map(|n| vec![n, n]).collect(),
        1,
    );
}

#[test]
fn matching_kuhn_munkres_conforms() {
    conformance(
        &Matching::new(Algo::KuhnMunkres, true),
        (1..=6).map(|n| vec![n, n]).collect(),
        2,
    );
}

#[test]
fn topk_conforms() {
    for k in 1..=4 {
        conformance(
            &TopK::new(k).unwrap(),
            (k..=9).map(|m| vec![m]).collect(),
            3 + k as u64,
        );
    }
}

#[test]
fn argmax_conforms() {
    conformance(&Argmax, (1..=8).map(|m| vec![m]).collect(), 9);
}

#[test]
fn ties_follow_the_documented_rule() {
    let mut out = Vec::new();
    TopK::new(2)
        .unwrap()
        .argmax(ndarray::arr1(&[1.0, 1.0, 1.0]).into_dyn().view(), &mut out)
        .unwrap();
    assert_eq!(out, vec![0, 1], "top-k ties go to the lower index");
    Argmax
        .argmax(ndarray::arr1(&[2.0, 2.0]).into_dyn().view(), &mut out)
        .unwrap();
    assert_eq!(out, vec![0]);
}

fn km_total(theta: &[f64], n: usize) -> f64 {
    kuhn_munkres_max(theta, n)
        .iter()
        .enumerate()
        .map(|(i, &j)| theta[i * n + j])
        .sum()
}

#[test]
fn lapjv_agrees_with_kuhn_munkres_up_to_n_200() {
    let mut rng = rng_for(42, Stream::Other, &[1]);
    let mut ws = lapjv::LapWorkspace::new();
    for &n in &[8usize, 20, 50, 100, 200] {
        for kind in 0..4 {
            let theta: Vec<f64> = (0..n * n)
                .map(|i| match kind {
                    0 => open01(&mut rng),
                    1 => (open01(&mut rng) * 4.0).floor(), // integer ties
                    2 => (i % n) as f64,                   // equal rows
                    _ => 7.0,                              // all equal
                })
                .collect();
            let mut col = vec![0; n];
            let total = lapjv::solve_max(&theta, n, &mut ws, &mut col);
            let mut seen = vec![false; n];
            for &j in &col {
                assert!(!seen[j], "not a permutation");
                seen[j] = true;
            }
            let direct: f64 = col.iter().enumerate().map(|(i, &j)| theta[i * n + j]).sum();
            assert!((direct - total).abs() <= 1e-9 * total.abs().max(1.0));
            let km = km_total(&theta, n);
            // km rounds to integers after scaling by 2^50 / (n max|theta|).
            let km_err = n as f64
                * n as f64
                * theta.iter().fold(0.0f64, |a, v| a.max(v.abs()))
                * 2f64.powi(-49);
            assert!(
                (total - km).abs() <= km_err + 1e-9,
                "n={n} kind={kind}: lapjv {total} vs kuhn_munkres {km}"
            );
        }
    }
}

#[test]
fn warm_started_augmented_solve_equals_a_cold_solve() {
    let mut rng = rng_for(5, Stream::Other, &[2]);
    let s = Matching::new(Algo::Lapjv, true);
    let cold = Matching::new(Algo::Lapjv, false);
    for &n in &[3usize, 10, 40] {
        for &eps in &[-12.0, -0.3, 0.5] {
            let theta = ArrayD::from_shape_fn(IxDyn(&[n, n]), |_| open01(&mut rng));
            let perm: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
            let aug = ArrayD::from_shape_fn(IxDyn(&[n, n]), |ix| {
                let l = if perm[ix[0]] == ix[1] { -1.0 } else { 0.3 };
                theta[[ix[0], ix[1]]] + eps * l
            });
            let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            s.argmax_pair(theta.view(), aug.view(), &mut a, &mut b)
                .unwrap();
            cold.argmax_pair(theta.view(), aug.view(), &mut c, &mut d)
                .unwrap();
            assert!((score(&theta.view(), &a) - score(&theta.view(), &c)).abs() < 1e-9);
            assert!((score(&aug.view(), &b) - score(&aug.view(), &d)).abs() < 1e-9);
        }
    }
}

#[test]
fn warm_started_pairs_do_not_depend_on_earlier_solves() {
    let s = Matching::new(Algo::Lapjv, true);
    let mut rng = rng_for(11, Stream::Other, &[3]);
    let n = 12;
    let make = |rng: &mut DlmRng, ties: bool| {
        let t = ArrayD::from_shape_fn(IxDyn(&[n, n]), |_| {
            let u = open01(rng);
            if ties {
                (u * 3.0).floor()
            } else {
                u
            }
        });
        let mut a = t.clone();
        for i in 0..n {
            a[[i, (i * 5 + 1) % n]] += 0.7;
            for j in 0..n {
                a[[i, j]] += 0.1 * i as f64;
            }
        }
        (t, a)
    };
    let probe: Vec<_> = (0..10).map(|_| make(&mut rng, true)).collect();
    let solve_all = |probe: &[(ArrayD<f64>, ArrayD<f64>)]| -> Vec<(Vec<usize>, Vec<usize>)> {
        probe
            .iter()
            .map(|(t, a)| {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                s.argmax_pair(t.view(), a.view(), &mut x, &mut y).unwrap();
                (x, y)
            })
            .collect()
    };
    let first = solve_all(&probe);
    // Many other warm-started pairs on this thread in between, then the same inputs again,
    // in reverse order.
    for _ in 0..50 {
        let (t, a) = make(&mut rng, false);
        s.argmax_pair(t.view(), a.view(), &mut Vec::new(), &mut Vec::new())
            .unwrap();
    }
    let mut rev: Vec<_> = probe.iter().rev().cloned().collect();
    let mut again = solve_all(&rev);
    again.reverse();
    rev.clear();
    assert_eq!(first, again);
}
