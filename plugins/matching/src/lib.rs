//! # dlm-plugin-matching
//!
//! Maximum-weight perfect bipartite matching on an `n x n` potentials matrix: `theta[i][j]` is
//! the score of matching row `i` to column `j`; `phi(y)` is the permutation matrix of `y`. The
//! active set lists `i * n + col_of_row[i]` for `i = 0..n` (row order); [`decode`] gives the
//! permutation `col_of_row`.
//!
//! Algorithms (`matching:algo=...`):
//! * `lapjv` (default): a Jonker–Volgenant shortest-augmenting-path solver written for this
//!   crate ([`lapjv`]); exact on floating-point potentials, allocation-free after warm-up, and
//!   it warm-starts the loss-augmented solve from the plain solve's dual variables
//!   (`warm=true`, the default; measured in [`Matching::new`]).
//! * `km`: `pathfinding::kuhn_munkres`, the reference. It needs integer weights: potentials are
//!   multiplied by a power of two that brings `max|theta|` to just below `2^49 / n` and
//!   rounded, so its optimal total is exact to within `n^2 * max|theta| * 2^-48`; assignments
//!   whose totals differ by less than that may be confused.
//!
//! Both work over the whole finite range of `f64` (potentials up to `f64::MAX` in magnitude,
//! and tiny or subnormal ones): large matrices are rescaled by an exact power of two first
//! ([`scale`]). The optimum is the permutation of largest total in exact arithmetic, even
//! when that total overflows `f64` (`score` is then infinite).
//!
//! Losses registered here:
//! * `hamming`: `l = sum_i w_i [y_i != t_i]` (`w_i = 1` unless the target gives weights);
//!   linear with `L = -w_i` at the true entries, `c = sum w`.
//! * `sort`: the loss of the official sorting experiment (theory.md §4): with the target's
//!   weights `x_j` (the numbers to sort), `L[j][p] = -x_j^2` at the true position of number
//!   `j` and `+x_j^2` elsewhere, so `l = c + <L, phi> = 2 sum_j x_j^2 [y_j != t_j]`.
//!
//! Loss without a linear form supported here: `zero-one` (exact match, registered by the
//! `argmax` plugin), through [`argmax_loss_augmented`] ([`zero_one`]); other losses without a
//! linear form are refused with [`DlmError::NonDecomposableLoss`].
//!
//! [`decode`]: dlm_core::StructuredArgmax::decode
//! [`argmax_loss_augmented`]: dlm_core::StructuredArgmax::argmax_loss_augmented

pub mod lapjv;
pub mod scale;
pub mod zero_one;

use dlm_core::plugin::Registrar;
use dlm_core::structure::checked_slice;
use dlm_core::{Config, DlmError, Loss, Result, StructuredArgmax, Target};
use lapjv::LapWorkspace;
use ndarray::{ArrayViewD, ArrayViewMutD};
use pathfinding::matrix::Matrix;
use std::cell::RefCell;
use zero_one::SecondBestWorkspace;

/// Which assignment algorithm to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// Jonker–Volgenant shortest augmenting paths (default).
    Lapjv,
    /// `pathfinding::kuhn_munkres` on scaled integers (reference).
    KuhnMunkres,
}

/// The matching structure.
#[derive(Debug, Clone)]
pub struct Matching {
    algo: Algo,
    warm: bool,
}

thread_local! {
    static WS: RefCell<(LapWorkspace, Vec<usize>)> = RefCell::new((LapWorkspace::new(), Vec::new()));
    static ZO: RefCell<SecondBestWorkspace> = RefCell::new(SecondBestWorkspace::new());
}

impl Matching {
    /// A matching solver using `algo`; `warm` warm-starts the loss-augmented solve of
    /// [`argmax_pair`](StructuredArgmax::argmax_pair) from the plain solve's duals.
    ///
    /// Measured in sort training (`dlm train --task sort --epochs 300 --patience 0`, eps -12,
    /// same run): 3.4-3.8 ms per epoch warm vs 4.7 cold at d = 50, 16.5-17.5 vs 22.8 at
    /// d = 100, 260-290 us vs 300-400 at d = 10; so it is the default.
    pub fn new(algo: Algo, warm: bool) -> Self {
        Matching { algo, warm }
    }

    /// From `algo=lapjv|km` and `warm=true|false`.
    pub fn from_config(c: &Config) -> Result<Self> {
        let algo = match c.choice("algo", "lapjv", &["lapjv", "km"])? {
            "km" => Algo::KuhnMunkres,
            _ => Algo::Lapjv,
        };
        Ok(Matching::new(algo, c.bool("warm", true)?))
    }

    /// The algorithm in use.
    pub fn algo(&self) -> Algo {
        self.algo
    }

    fn dim(&self, theta: &ArrayViewD<'_, f64>) -> usize {
        theta.shape()[0]
    }
}

/// Solves with Kuhn–Munkres on integer-scaled potentials; returns `col_of_row`.
///
/// The potentials are multiplied by the power of two [`scale::km_exponent`] chooses (the
/// largest becomes an integer below `2^49 / n`, whatever its magnitude, from subnormal to
/// `f64::MAX`, with no overflow or underflow in the scale itself) and rounded.
pub fn kuhn_munkres_max(theta: &[f64], n: usize) -> Vec<usize> {
    let k = scale::km_exponent(scale::max_abs(theta), n);
    let data: Vec<i64> = theta
        .iter()
        .map(|&v| scale::ldexp(v, k).round() as i64)
        .collect();
    let m = Matrix::from_vec(n, n, data).expect("n*n entries");
    pathfinding::kuhn_munkres::kuhn_munkres(&m).1
}

fn write_active(col_of_row: &[usize], out: &mut Vec<usize>) {
    let n = col_of_row.len();
    out.clear();
    out.extend(col_of_row.iter().enumerate().map(|(i, &j)| i * n + j));
}

impl StructuredArgmax for Matching {
    fn name(&self) -> &str {
        "matching"
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        if shape.len() == 2 && shape[0] == shape[1] && shape[0] >= 1 {
            Ok(())
        } else {
            Err(DlmError::shape(
                "matching potentials",
                "[n, n] with n >= 1",
                shape,
            ))
        }
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        let n = self.dim(&theta);
        match self.algo {
            Algo::KuhnMunkres => write_active(&kuhn_munkres_max(t, n), out),
            Algo::Lapjv => WS.with(|w| {
                let (ws, col) = &mut *w.borrow_mut();
                col.resize(n, 0);
                lapjv::solve_max(t, n, ws, col);
                write_active(col, out);
            }),
        }
        Ok(())
    }
    fn argmax_pair(
        &self,
        theta: ArrayViewD<'_, f64>,
        theta_aug: ArrayViewD<'_, f64>,
        out: &mut Vec<usize>,
        out_aug: &mut Vec<usize>,
    ) -> Result<()> {
        if self.algo != Algo::Lapjv || !self.warm {
            self.argmax(theta, out)?;
            dlm_core::profile::pair_mark();
            return self.argmax(theta_aug, out_aug);
        }
        let t = checked_slice(self, &theta)?;
        let ta = checked_slice(self, &theta_aug)?;
        let n = self.dim(&theta);
        if theta_aug.shape() != theta.shape() {
            return Err(DlmError::shape(
                "augmented potentials",
                format!("[{n}, {n}] like the plain potentials"),
                theta_aug.shape(),
            ));
        }
        WS.with(|w| {
            let (ws, col) = &mut *w.borrow_mut();
            col.resize(n, 0);
            lapjv::solve_max(t, n, ws, col);
            write_active(col, out);
            dlm_core::profile::pair_mark();
            lapjv::solve_max_warm(ta, n, ws, col);
            write_active(col, out_aug);
        });
        Ok(())
    }
    /// Supports the `zero-one` loss (recognised by its name): maximises
    /// `<theta, phi(y)> + eps * [y != t]` exactly, see [`zero_one::loss_augmented`]. The plain
    /// optimum `y*` is this structure's own [`argmax`](StructuredArgmax::argmax) (same
    /// algorithm), so the result equals `argmax`'s whenever `y*` wins; the second-best
    /// permutation needed when `eps > 0` and `y* = t` always uses lapjv ([`lapjv::solve_max`],
    /// `n` cold solves). Ties go towards the augmentation: `eps < 0` prefers the truth,
    /// `eps > 0` a wrong solution. `out` is the canonical active set (row order).
    ///
    /// Errors: any other loss ([`DlmError::NonDecomposableLoss`]), a wrong shape, NaN/inf
    /// potentials or `eps`, a truth that is not the active set of a permutation of this `n`
    /// (any order of its entries is accepted), or scores that overflow `f64`.
    fn argmax_loss_augmented(
        &self,
        theta: ArrayViewD<'_, f64>,
        loss: &dyn Loss,
        target: &Target,
        eps: f64,
        out: &mut Vec<usize>,
    ) -> Result<()> {
        if loss.name() != "zero-one" {
            return Err(DlmError::NonDecomposableLoss {
                loss: loss.name().to_string(),
                structure: self.name().to_string(),
            });
        }
        let t = checked_slice(self, &theta)?;
        let n = self.dim(&theta);
        if !eps.is_finite() {
            return Err(DlmError::invalid(
                "epsilon",
                format!("{eps} is not allowed: the loss-augmented argmax needs a finite epsilon"),
            ));
        }
        let truth = permutation_of(n, &target.truth, "zero-one target")?;
        self.argmax(theta.view(), out)?;
        let plain = permutation_of(n, out, "plain matching")?;
        let mut col = Vec::with_capacity(n);
        ZO.with(|w| {
            zero_one::loss_augmented(t, n, &plain, &truth, eps, &mut w.borrow_mut(), &mut col)
        })?;
        write_active(&col, out);
        Ok(())
    }
    fn decode(&self, shape: &[usize], active: &[usize]) -> Vec<usize> {
        let n = shape.first().copied().unwrap_or(1).max(1);
        let mut col = vec![0; active.len()];
        for &a in active {
            if a / n < col.len() {
                col[a / n] = a % n;
            }
        }
        col
    }
    /// All `n!` permutations for `n <= 8` (active sets row by row, lexicographic).
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        self.check_shape(shape)?;
        let n = shape[0];
        if n > 8 {
            return Ok(None);
        }
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
        Ok(Some(out))
    }
}

/// `col_of_row` from an active set on an `n x n` matrix, checking it is a permutation.
pub fn permutation_of(n: usize, active: &[usize], what: &str) -> Result<Vec<usize>> {
    let bad = || {
        DlmError::invalid(
            what,
            format!("expected a permutation of {n} (one entry per row and column), got active set {active:?}"),
        )
    };
    if active.len() != n {
        return Err(bad());
    }
    let mut col = vec![usize::MAX; n];
    let mut seen = vec![false; n];
    for &a in active {
        let (i, j) = (a / n, a % n);
        if i >= n || col[i] != usize::MAX || seen[j] {
            return Err(bad());
        }
        col[i] = j;
        seen[j] = true;
    }
    Ok(col)
}

fn matrix_dim(shape: &[usize]) -> Result<usize> {
    match shape {
        [n, m] if n == m && *n >= 1 => Ok(*n),
        _ => Err(DlmError::shape(
            "matching loss",
            "[n, n] with n >= 1",
            shape,
        )),
    }
}

/// (Weighted) Hamming loss on matchings.
#[derive(Debug, Clone, Default)]
pub struct Hamming;

fn row_weights(target: &Target, n: usize, what: &str) -> Result<Vec<f64>> {
    match target.weights.len() {
        0 => Ok(vec![1.0; n]),
        l if l == n => Ok(target.weights.clone()),
        l => Err(DlmError::invalid(
            what,
            format!("{l} weights for {n} rows; give none or one per row"),
        )),
    }
}

impl Loss for Hamming {
    fn name(&self) -> &str {
        "hamming"
    }
    fn value(&self, target: &Target, shape: &[usize], active: &[usize]) -> Result<f64> {
        let n = matrix_dim(shape)?;
        // Fast path (called once per draw): both sets in the canonical row order the solver
        // writes, unweighted.
        if target.weights.is_empty()
            && active.len() == n
            && target.truth.len() == n
            && active.iter().enumerate().all(|(i, &a)| a / n == i)
            && target.truth.iter().enumerate().all(|(i, &t)| t / n == i)
        {
            return Ok(active
                .iter()
                .zip(&target.truth)
                .filter(|(a, t)| a != t)
                .count() as f64);
        }
        let truth = permutation_of(n, &target.truth, "hamming target")?;
        let pred = permutation_of(n, active, "hamming prediction")?;
        let w = row_weights(target, n, "hamming weights")?;
        Ok((0..n).filter(|&i| truth[i] != pred[i]).map(|i| w[i]).sum())
    }
    fn linear_form(&self, target: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        let n = matrix_dim(out.shape())?;
        let truth = permutation_of(n, &target.truth, "hamming target")?;
        let w = row_weights(target, n, "hamming weights")?;
        out.fill(0.0);
        let s = out.as_slice_mut().expect("contiguous");
        for i in 0..n {
            s[i * n + truth[i]] = -w[i];
        }
        Ok(Some(w.iter().sum()))
    }
}

/// The official sorting experiment's loss (see the crate docs).
#[derive(Debug, Clone, Default)]
pub struct SortLoss;

fn numbers(target: &Target, n: usize) -> Result<&[f64]> {
    if target.weights.len() != n {
        return Err(DlmError::invalid(
            "sort loss target",
            format!(
                "needs the {n} input numbers as weights, got {}",
                target.weights.len()
            ),
        ));
    }
    Ok(&target.weights)
}

impl Loss for SortLoss {
    fn name(&self) -> &str {
        "sort"
    }
    fn value(&self, target: &Target, shape: &[usize], active: &[usize]) -> Result<f64> {
        let n = matrix_dim(shape)?;
        let truth = permutation_of(n, &target.truth, "sort target")?;
        let pred = permutation_of(n, active, "sort prediction")?;
        let x = numbers(target, n)?;
        Ok((0..n)
            .filter(|&j| truth[j] != pred[j])
            .map(|j| 2.0 * x[j] * x[j])
            .sum())
    }
    fn linear_form(&self, target: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        let n = matrix_dim(out.shape())?;
        let truth = permutation_of(n, &target.truth, "sort target")?;
        let x = numbers(target, n)?;
        let s = out.as_slice_mut().expect("contiguous");
        let mut c = 0.0;
        for j in 0..n {
            let w = x[j] * x[j];
            c += w;
            for p in 0..n {
                s[j * n + p] = if p == truth[j] { -w } else { w };
            }
        }
        Ok(Some(c))
    }
}

/// Registers `matching`, `hamming` and `sort`.
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.structure(
        "matching",
        "max-weight perfect bipartite matching on [n, n] potentials; options algo=lapjv|km, warm=true|false",
        Matching::from_config,
    )?;
    r.loss(
        "hamming",
        "(weighted) Hamming loss on matchings; linear (L = -w at the true entries)",
        |_| Ok(Hamming),
    )?;
    r.loss(
        "sort",
        "official sorting loss: +-x_j^2 per entry (= 2 sum x_j^2 [wrong]); linear",
        |_| Ok(SortLoss),
    )?;
    Ok(())
}

dlm_core::export_plugin!(register);
