//! Which shapes the checks use, and the ground-truth solutions of each.

use crate::options::KitOptions;
use crate::util::{guarded, random_theta, solve, Kind, Solutions};
use dlm_core::rng::{rng_for, Stream};
use dlm_core::structure::StructuredArgmax;
use std::collections::BTreeSet;

/// Largest enumeration the automatic shape choice keeps.
const MAX_ENUMERATED: usize = 5_000;
/// Random potentials used to discover solutions when `enumerate` returns None.
const PROBES: usize = 96;

/// One shape the checks run on.
#[derive(Debug, Clone)]
pub(crate) struct ShapeCase {
    pub shape: Vec<usize>,
    pub solutions: Solutions,
}

impl ShapeCase {
    pub(crate) fn size(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The shapes and what was learned while choosing them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Shapes for the checks, each with its solutions.
    pub cases: Vec<ShapeCase>,
    /// Every accepted probe shape whose `enumerate` listed its solutions: `(shape, count)`.
    pub enumerable: Vec<(Vec<usize>, usize)>,
    /// Shapes `check_shape` refused (for the wrong-shape check).
    pub rejected: Vec<Vec<usize>>,
    /// Contract violations seen while planning (a given shape refused, `enumerate` failing or
    /// listing invalid solutions, `check_shape` panicking).
    pub problems: Vec<String>,
    /// `enumerate` problems only (for the enumerate row).
    pub enumerate_problems: Vec<String>,
}

fn candidates() -> Vec<Vec<usize>> {
    let mut c: Vec<Vec<usize>> = (1..=6).map(|a| vec![a]).collect();
    for a in 1..=4 {
        for b in 1..=4 {
            c.push(vec![a, b]);
        }
    }
    for a in 1..=2 {
        for b in 1..=2 {
            for d in 1..=2 {
                c.push(vec![a, b, d]);
            }
        }
    }
    c
}

/// Checks the listed solutions of `shape`: indices in range, none repeated within a solution,
/// no solution listed twice; invalid ones are dropped and reported.
fn validate_listed(
    shape: &[usize],
    list: Vec<Vec<usize>>,
    problems: &mut Vec<String>,
) -> Vec<Vec<usize>> {
    let m: usize = shape.iter().product();
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    let mut bad = Vec::new();
    for s in list {
        let sorted = crate::util::sorted(&s);
        let in_range = s.iter().all(|&i| i < m);
        let distinct = sorted.windows(2).all(|w| w[0] != w[1]);
        if !in_range {
            bad.push(format!("{s:?} has an index >= {m}"));
        } else if !distinct {
            bad.push(format!("{s:?} repeats an index"));
        } else if !seen.insert(sorted) {
            bad.push(format!("{s:?} is listed twice"));
        } else {
            out.push(s);
        }
    }
    if out.is_empty() && bad.is_empty() {
        bad.push("no solutions listed".into());
    }
    if !bad.is_empty() {
        problems.push(format!(
            "enumerate({shape:?}): {} invalid: {}",
            bad.len(),
            bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    out
}

/// Solutions of `shape` found by solving random potentials of every kind, and the first
/// failure of argmax if it never returned a usable solution.
fn discover(
    s: &dyn StructuredArgmax,
    shape: &[usize],
    seed: u64,
) -> (Vec<Vec<usize>>, Option<String>) {
    let m: usize = shape.iter().product();
    let mut rng = rng_for(seed, Stream::Other, &[0xD15C, m as u64]);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut first = None;
    for k in 0..PROBES {
        if k == 8 && out.is_empty() {
            break; // argmax fails on everything: do not repeat it (e.g. a panic) 96 times
        }
        let kind = match k % 8 {
            0 => Kind::Ties,
            1 => Kind::Large,
            _ => Kind::Continuous,
        };
        let theta = random_theta(shape, &mut rng, kind);
        match solve(s, &theta) {
            Ok(y) => {
                let sorted = crate::util::sorted(&y);
                if y.iter().all(|&i| i < m) && sorted.windows(2).all(|w| w[0] != w[1]) {
                    if seen.insert(sorted) {
                        out.push(y);
                    }
                } else if first.is_none() {
                    first = Some(format!("returned the invalid active set {y:?}"));
                }
            }
            Err(f) => {
                if first.is_none() {
                    first = Some(f.to_string());
                }
            }
        }
    }
    let why = out.is_empty().then(|| {
        format!(
            "argmax on shape {shape:?} gave no usable solution on random potentials: {}",
            first.unwrap_or_default()
        )
    });
    (out, why)
}

/// The solutions of one accepted shape: the structure's enumeration (validated) or, without
/// one, those discovered by probing.
fn solutions_of(
    s: &dyn StructuredArgmax,
    shape: &[usize],
    seed: u64,
    plan: &mut Plan,
) -> Solutions {
    match guarded(|| s.enumerate(shape)) {
        Ok(Some(list)) => {
            let mut probs = Vec::new();
            let list = validate_listed(shape, list, &mut probs);
            plan.enumerate_problems.extend(probs);
            Solutions::new(list, true)
        }
        other => {
            if let Err(f) = other {
                plan.enumerate_problems
                    .push(format!("enumerate({shape:?}) on an accepted shape: {f}"));
            }
            let (list, why) = discover(s, shape, seed);
            plan.problems.extend(why);
            Solutions::new(list, false)
        }
    }
}

/// Chooses the shapes for `s` under `opts` (see [`KitOptions::shapes`]).
pub(crate) fn plan(s: &dyn StructuredArgmax, opts: &KitOptions) -> Plan {
    let mut plan = Plan::default();
    let mut accepted = Vec::new();
    for shape in candidates() {
        match guarded(|| s.check_shape(&shape)) {
            Ok(()) => accepted.push(shape),
            Err(f) if f.is_panic() => plan
                .problems
                .push(format!("check_shape({shape:?}) panicked: {f}")),
            Err(_) => plan.rejected.push(shape),
        }
    }
    if plan.rejected.is_empty() {
        for shape in [vec![], vec![2, 2, 2, 2]] {
            if guarded(|| s.check_shape(&shape)).is_err() {
                plan.rejected.push(shape);
            }
        }
    }
    // Enumerations of the accepted probes (cheap: all are tiny).
    let mut enumerable: Vec<Vec<usize>> = Vec::new();
    for shape in &accepted {
        if let Ok(Some(list)) = guarded(|| s.enumerate(shape)) {
            if !list.is_empty() && list.len() <= MAX_ENUMERATED {
                plan.enumerable.push((shape.clone(), list.len()));
                enumerable.push(shape.clone());
            }
        }
    }
    match &opts.shapes {
        Some(shapes) => {
            for shape in shapes {
                match guarded(|| s.check_shape(shape)) {
                    Ok(()) => {
                        let solutions = solutions_of(s, shape, opts.seed, &mut plan);
                        plan.cases.push(ShapeCase {
                            shape: shape.clone(),
                            solutions,
                        });
                    }
                    Err(f) => plan
                        .problems
                        .push(format!("the given shape {shape:?} is refused: {f}")),
                }
            }
        }
        None => {
            let pool: Vec<Vec<usize>> = if enumerable.is_empty() {
                accepted.clone()
            } else {
                enumerable
            };
            // Smallest first, then the largest ones: edge cases and the interesting sizes.
            let mut pool = pool;
            pool.sort_by_key(|s| (s.iter().product::<usize>(), s.clone()));
            let keep = opts.max_shapes.min(pool.len());
            let mut chosen: Vec<Vec<usize>> = Vec::new();
            if keep > 0 {
                chosen.push(pool[0].clone());
                for s in pool.iter().rev().take(keep - 1).rev() {
                    if !chosen.contains(s) {
                        chosen.push(s.clone());
                    }
                }
            }
            for shape in chosen {
                let solutions = solutions_of(s, &shape, opts.seed, &mut plan);
                plan.cases.push(ShapeCase { shape, solutions });
            }
        }
    }
    plan.cases.retain(|c| !c.solutions.list.is_empty());
    plan
}

impl Plan {
    /// The shape of the gradient check: the smallest enumerable accepted shape with at least
    /// three solutions (or the one with the most); without enumerations, the same among the
    /// checked shapes and their discovered solutions.
    pub(crate) fn gradient_case(
        &self,
        s: &dyn StructuredArgmax,
        opts: &KitOptions,
    ) -> Option<ShapeCase> {
        let pick = self
            .enumerable
            .iter()
            .filter(|(_, n)| *n >= 3)
            .min_by_key(|(sh, n)| (sh.iter().product::<usize>(), *n))
            .or_else(|| self.enumerable.iter().max_by_key(|(_, n)| *n))
            .map(|(sh, _)| sh.clone());
        match pick {
            Some(shape) => {
                let mut scratch = Plan::default();
                let solutions = solutions_of(s, &shape, opts.seed, &mut scratch);
                Some(ShapeCase { shape, solutions })
            }
            None => self
                .cases
                .iter()
                .filter(|c| c.solutions.list.len() >= 3)
                .min_by_key(|c| c.size())
                .or_else(|| self.cases.iter().max_by_key(|c| c.solutions.list.len()))
                .cloned(),
        }
    }

    /// `[..] (enumerated)` for each shape.
    pub(crate) fn describe(&self) -> String {
        self.cases
            .iter()
            .map(|c| {
                format!(
                    "{:?} ({} {})",
                    c.shape,
                    c.solutions.list.len(),
                    if c.solutions.enumerated {
                        "enumerated"
                    } else {
                        "discovered"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
