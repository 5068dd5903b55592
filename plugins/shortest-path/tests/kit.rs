//! The public test kit on `grid-edges` with `regret`, and the checks `grid-vertex` needs
//! instead of the kit's conformance rows (which feed positive potentials it must refuse):
//! optimality against brute force over every simple path, determinism and the documented tie
//! rule, and agreement with `pathfinding`'s Dijkstra on full-size grids.

use dlm_core::rng::{open01, rng_for, DlmRng, Stream};
use dlm_core::{Loss, Registry, Spec, StructuredArgmax, Target};
use dlm_plugin_shortest_path::{
    normalized_regret, regret_target, GridEdges, GridVertex, Neighbours, Regret,
};
use dlm_testkit::{run_kit, KitOptions};
use ndarray::{ArrayD, IxDyn};
use std::time::Instant;

/// Kit options for `structure` with regret targets: random positive costs and their optimal
/// solution (the kit's own truth is ignored: a regret target's truth must be optimal).
fn regret_options<S: StructuredArgmax + Clone + 'static>(
    structure: &S,
    shape: Vec<usize>,
) -> KitOptions {
    let s = structure.clone();
    KitOptions::default().with_shapes(vec![shape]).with_target(
        move |shape: &[usize], _truth: &[usize], rng: &mut DlmRng| {
            let m: usize = shape.iter().product();
            let costs: Vec<f64> = (0..m).map(|_| 0.25 + open01(rng)).collect();
            regret_target(&s, shape, &costs).expect("valid costs")
        },
    )
}

#[test]
fn kit_passes_on_grid_edges_with_regret() {
    for (rows, cols) in [(3, 3), (5, 5), (2, 4)] {
        let g = GridEdges::new(rows, cols).unwrap();
        let t = Instant::now();
        let r = run_kit(
            &g,
            Some(&Regret),
            None,
            &regret_options(&g, vec![g.num_edges()]),
        )
        .unwrap();
        eprintln!(
            "grid-edges {rows}x{cols} + regret: {:.2} s\n{r}",
            t.elapsed().as_secs_f64()
        );
        r.assert_pass();
        // The linear form was checked on every enumerated path, and the gradient ran.
        assert!(
            r.checks
                .iter()
                .any(|c| c.name.contains("c + <L, phi(y)>") && c.pass()),
            "{r}"
        );
        assert!(
            r.checks
                .iter()
                .any(|c| c.name.contains("Monte Carlo") && c.pass()),
            "{r}"
        );
    }
}

#[test]
fn kit_finds_the_2x2_grid_by_itself() {
    // E = 4 is among the kit's probed shapes: it plans without being told.
    let g = GridEdges::new(2, 2).unwrap();
    let s = g.clone();
    let opts =
        KitOptions::default().with_target(move |shape: &[usize], _: &[usize], rng: &mut DlmRng| {
            let costs: Vec<f64> = (0..shape[0]).map(|_| open01(rng)).collect();
            regret_target(&s, shape, &costs).unwrap()
        });
    run_kit(&g, Some(&Regret), None, &opts)
        .unwrap()
        .assert_pass();
}

#[test]
fn regret_loss_rows_of_the_kit_on_grid_vertex() {
    // The kit's loss rows use the enumerated paths only (no argmax on positive potentials).
    for (k, nb) in [(3, Neighbours::Eight), (4, Neighbours::Four)] {
        let g = GridVertex::new(k, nb).unwrap();
        let opts = regret_options(&g, vec![k, k]);
        let r = dlm_testkit::loss::check_loss(&g, &Regret, &opts).unwrap();
        eprintln!("grid-vertex k={k} {nb:?} + regret (loss rows):\n{r}");
        r.assert_pass();
        let linear = r.checks.iter().find(|c| c.name.contains("c + <L, phi(y)>"));
        assert!(
            linear.is_some_and(|c| c.pass() && c.detail.contains("pairs")),
            "{r}"
        );
    }
}

/// Non-positive potentials of several kinds for a `k x k` grid.
fn vertex_thetas(k: usize, rng: &mut DlmRng, paths: &[Vec<usize>]) -> Vec<(String, Vec<f64>)> {
    let n = k * k;
    let mut out = Vec::new();
    for i in 0..24 {
        out.push((
            format!("continuous {i}"),
            (0..n).map(|_| -open01(rng)).collect(),
        ));
    }
    for i in 0..12 {
        out.push((
            format!("ties {i}"),
            (0..n).map(|_| -(open01(rng) * 3.0).floor()).collect(),
        ));
    }
    for i in 0..4 {
        out.push((
            format!("large {i}"),
            (0..n).map(|_| -open01(rng) * 1e9).collect(),
        ));
    }
    out.push(("all zero".into(), vec![0.0; n]));
    out.push(("all equal".into(), vec![-1.5; n]));
    out.push(("negative zero".into(), vec![-0.0; n]));
    // Free cells along one path, cost 1 elsewhere: that path is optimal.
    let step = (paths.len() / 40).max(1);
    for (j, p) in paths.iter().enumerate().step_by(step) {
        let mut t = vec![-1.0; n];
        for &c in p {
            t[c] = 0.0;
        }
        out.push((format!("free path {j}"), t));
    }
    out
}

fn score(t: &[f64], y: &[usize]) -> f64 {
    y.iter().map(|&i| t[i]).sum()
}

#[test]
fn grid_vertex_is_optimal_against_brute_force() {
    let mut checked = 0;
    for (k, nb) in [
        (1, Neighbours::Eight),
        (2, Neighbours::Eight),
        (2, Neighbours::Four),
        (3, Neighbours::Eight),
        (3, Neighbours::Four),
        (4, Neighbours::Four),
        (5, Neighbours::Four),
    ] {
        let g = GridVertex::new(k, nb).unwrap();
        let paths = g
            .enumerate(&[k, k])
            .unwrap()
            .expect("small enough to enumerate");
        let mut rng = rng_for(11, Stream::Other, &[k as u64, nb as u64]);
        let cases = vertex_thetas(k, &mut rng, &paths);
        let mut results = Vec::new();
        for (what, t) in &cases {
            let theta = ArrayD::from_shape_vec(IxDyn(&[k, k]), t.clone()).unwrap();
            let mut y = Vec::new();
            g.argmax(theta.view(), &mut y).unwrap();
            // A listed path, in path order (the canonical order), not only as a set.
            assert!(
                paths.contains(&y),
                "{k}x{k} {nb:?} {what}: {y:?} is not a simple path"
            );
            let best = paths
                .iter()
                .map(|p| score(t, p))
                .fold(f64::NEG_INFINITY, f64::max);
            let tol = 1e-9 * t.iter().map(|v| v.abs()).sum::<f64>().max(1.0);
            assert!(
                score(t, &y) >= best - tol,
                "{k}x{k} {nb:?} {what}: {y:?} scores {} < {best}",
                score(t, &y)
            );
            // The slice form agrees and returns the score.
            let mut y2 = Vec::new();
            let s2 = g.best_path(t, &mut y2).unwrap();
            assert_eq!((y2, s2), (y.clone(), score(t, &y)));
            // argmax_pair (the default: two solves) agrees.
            let (mut a, mut b) = (Vec::new(), Vec::new());
            g.argmax_pair(theta.view(), theta.view(), &mut a, &mut b)
                .unwrap();
            assert_eq!((&a, &b), (&y, &y));
            results.push(y);
            checked += 1;
        }
        // Deterministic after other solves: everything again, in reverse order.
        for ((what, t), y) in cases.iter().zip(&results).rev() {
            let mut again = Vec::new();
            g.best_path(t, &mut again).unwrap();
            assert_eq!(&again, y, "{k}x{k} {nb:?} {what}");
        }
    }
    assert!(checked > 300);
}

#[test]
fn grid_vertex_ties_follow_the_documented_rule() {
    // All costs 0: cells settle in index order, each taking its lowest-index neighbour as
    // predecessor. With 8 neighbours that is the diagonal; with 4, right along the first
    // row, then down the last column.
    let k = 5;
    let mut y = Vec::new();
    GridVertex::new(k, Neighbours::Eight)
        .unwrap()
        .best_path(&vec![0.0; k * k], &mut y)
        .unwrap();
    assert_eq!(y, vec![0, 6, 12, 18, 24]);
    GridVertex::new(k, Neighbours::Four)
        .unwrap()
        .best_path(&vec![0.0; k * k], &mut y)
        .unwrap();
    assert_eq!(y, vec![0, 1, 2, 3, 4, 9, 14, 19, 24]);
    // Two equally short routes around a wall: the lower-index side wins.
    //   0  0  0
    //   0 -9  0
    //   0  0  0      (4 neighbours: over the top or down the left side, both cost 0)
    let mut t = vec![0.0; 9];
    t[4] = -9.0;
    GridVertex::new(3, Neighbours::Four)
        .unwrap()
        .best_path(&t, &mut y)
        .unwrap();
    assert_eq!(y, vec![0, 1, 2, 5, 8]);
}

#[test]
fn grid_vertex_agrees_with_pathfinding_on_warcraft_sized_grids() {
    use pathfinding::directed::dijkstra::dijkstra;
    for nb in [Neighbours::Eight, Neighbours::Four] {
        let k = 12;
        let g = GridVertex::new(k, nb).unwrap();
        let mut rng = rng_for(5, Stream::Other, &[nb as u64]);
        for case in 0..50 {
            // Integer costs: sums are exact, so the two optima must be equal.
            let cost: Vec<i64> = (0..k * k)
                .map(|_| (open01(&mut rng) * if case % 2 == 0 { 10.0 } else { 3.0 }) as i64)
                .collect();
            let theta: Vec<f64> = cost.iter().map(|&c| -(c as f64)).collect();
            let mut y = Vec::new();
            let score = g.best_path(&theta, &mut y).unwrap();
            let succ = |&v: &usize| {
                let (r, c) = ((v / k) as isize, (v % k) as isize);
                nb.moves()
                    .iter()
                    .map(move |&(dr, dc)| (r + dr, c + dc))
                    .filter(|&(r, c)| (0..k as isize).contains(&r) && (0..k as isize).contains(&c))
                    .map(|(r, c)| {
                        let u = r as usize * k + c as usize;
                        (u, cost[u])
                    })
                    .collect::<Vec<_>>()
            };
            let (_, best) = dijkstra(&0usize, succ, |&v| v == k * k - 1).unwrap();
            assert_eq!(-score, (best + cost[0]) as f64, "{nb:?} case {case}");
            // A path of adjacent, distinct cells from the first to the last.
            assert_eq!((y[0], *y.last().unwrap()), (0, k * k - 1));
            let mut seen = y.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), y.len());
            for w in y.windows(2) {
                let (dr, dc) = (
                    (w[1] / k) as isize - (w[0] / k) as isize,
                    (w[1] % k) as isize - (w[0] % k) as isize,
                );
                assert!(nb.moves().contains(&(dr, dc)), "{w:?}");
            }
        }
    }
}

#[test]
fn registered_components() {
    let mut reg = Registry::new();
    reg.register_builtin(
        "dlm-plugin-shortest-path",
        dlm_plugin_shortest_path::register,
    )
    .unwrap();
    let s = reg
        .structure(&"grid-edges".parse::<Spec>().unwrap())
        .unwrap();
    s.check_shape(&[40]).unwrap();
    let s = reg
        .structure(&"grid-edges:rows=3,cols=4".parse::<Spec>().unwrap())
        .unwrap();
    s.check_shape(&[3 * 3 + 2 * 4]).unwrap();
    let s = reg
        .structure(&"grid-vertex".parse::<Spec>().unwrap())
        .unwrap();
    s.check_shape(&[12, 12]).unwrap();
    let s = reg
        .structure(&"grid-vertex:k=4,neighbours=4".parse::<Spec>().unwrap())
        .unwrap();
    s.check_shape(&[4, 4]).unwrap();
    let l = reg.loss(&"regret".parse::<Spec>().unwrap()).unwrap();
    assert_eq!(l.name(), "regret");
    assert!(reg
        .structure(&"grid-edges:size=5".parse::<Spec>().unwrap())
        .is_err());
}

#[test]
fn normalized_regret_of_the_true_costs_is_zero_and_of_others_positive() {
    let g = GridEdges::new(5, 5).unwrap();
    let mut rng = rng_for(3, Stream::Other, &[]);
    let mut targets = Vec::new();
    let mut flat = Vec::new();
    for _ in 0..50 {
        let c: Vec<f64> = (0..40).map(|_| 0.5 + open01(&mut rng)).collect();
        targets.push(regret_target(&g, &[40], &c).unwrap());
        flat.push(g.enumerate(&[40]).unwrap().unwrap()[0].clone());
    }
    let truths: Vec<Vec<usize>> = targets.iter().map(|t: &Target| t.truth.clone()).collect();
    assert_eq!(normalized_regret(&targets, &truths).unwrap(), 0.0);
    let r = normalized_regret(&targets, &flat).unwrap();
    assert!(r > 0.0);
    // The same as summing the loss.
    let sum: f64 = targets
        .iter()
        .zip(&flat)
        .map(|(t, y)| Regret.value(t, &[40], y).unwrap())
        .sum();
    let opt: f64 = targets
        .iter()
        .map(|t| t.truth.iter().map(|&i| t.weights[i]).sum::<f64>())
        .sum();
    assert!((r - sum / (opt + 1e-8)).abs() < 1e-12);
}
