//! The zero-one (exact match) loss on matchings: loss-augmented argmax and second-best
//! assignments.
//!
//! `l(t, y) = [y != t]` has no linear form on permutation matrices, so the estimator calls
//! [`argmax_loss_augmented`](dlm_core::StructuredArgmax::argmax_loss_augmented), which for
//! [`Matching`](crate::Matching) maximises `<theta, phi(y)> + eps * [y != t]` with
//! [`loss_augmented`]: only two solutions can win, the plain optimum `y*` and the truth `t`,
//! or, when `y* = t` and `eps > 0`, the best permutation other than `t`
//! ([`best_other_than`]).

use crate::lapjv::{self, LapWorkspace};
use crate::scale;
use dlm_core::{DlmError, Result};

/// Reusable buffers of [`best_other_than`] (a copy of the potentials and the LAP solver's
/// scratch), so that repeated calls do not allocate once grown. Results never depend on what
/// the buffers held before.
#[derive(Debug, Clone, Default)]
pub struct SecondBestWorkspace {
    lap: LapWorkspace,
    theta: Vec<f64>,
    col: Vec<usize>,
}

impl SecondBestWorkspace {
    /// Empty buffers; they grow on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

/// `sum_i theta[i*n + col_of_row[i]]`, summed in row order (the order the rest of this
/// module and the tests use, so that equal permutations give bit-identical scores).
pub fn permutation_score(theta: &[f64], n: usize, col_of_row: &[usize]) -> f64 {
    col_of_row
        .iter()
        .enumerate()
        .map(|(i, &j)| theta[i * n + j])
        .sum()
}

/// Largest `n * (2n + 4) * max|theta|` (after scaling) handed to the LAP solver: its
/// entries are then at most `(2n + 4) * max|theta|` in magnitude (the forbidden value
/// included) and sums of `n` differences of them stay far below `f64::MAX` (lapjv asks for
/// `|theta| <= 1e300`).
const SAFE_MAGNITUDE: f64 = 1e295;

fn check_permutation(n: usize, col_of_row: &[usize], what: &str) -> Result<()> {
    let mut seen = vec![false; n];
    let ok = col_of_row.len() == n
        && col_of_row
            .iter()
            .all(|&j| j < n && !std::mem::replace(&mut seen[j], true));
    if ok {
        Ok(())
    } else {
        Err(DlmError::invalid(
            what,
            format!("expected a permutation of 0..{n} (column of each row), got {col_of_row:?}"),
        ))
    }
}

fn finite_score(score: f64) -> Result<f64> {
    if score.is_finite() {
        Ok(score)
    } else {
        Err(DlmError::Numerical {
            what: "zero-one loss-augmented matching".into(),
            message: "the score of a permutation overflows f64; scale the potentials down".into(),
        })
    }
}

/// The best permutation other than `exclude`: writes its `col_of_row` into `out` and returns
/// its score (summed in row order, see [`permutation_score`]), or returns `None` (and clears
/// `out`) when `n = 1`, where `exclude` is the only permutation.
///
/// `theta` is the row-major `n x n` matrix, `exclude` any permutation (`col_of_row`), not
/// necessarily the optimum. Method (Murty's partition, simplified): every `y != exclude`
/// differs from it in some row `i`, so the answer is the best, over `i`, of the optimum with
/// the single edge `(i, exclude[i])` forbidden; `n` solves with [`lapjv::solve_max`]. An edge
/// is forbidden by replacing its potential by `v = min(theta) - ((n + 1) * range + max|theta|)`
/// (or `-1` for an all-zero matrix), so that every permutation using it scores at least
/// `2 * range + max|theta|` below every permutation avoiding it, a margin far above the
/// rounding of the solver. Matrices large enough for these values or the solver's dual sums
/// to approach overflow are first multiplied by a power of two ([`scale::shrink_exponent`];
/// exact, except for entries that become subnormal, which are negligible next to the largest
/// ones).
///
/// Ties: among permutations of equal score, the one found for the lowest row `i`, with
/// lapjv's own deterministic tie rule within a solve. The result depends only on the inputs,
/// never on what `ws` held.
///
/// # Errors
/// Wrong lengths, `n = 0`, non-finite potentials, `exclude` not a permutation, or a score
/// that overflows `f64`; never panics.
pub fn best_other_than(
    theta: &[f64],
    n: usize,
    exclude: &[usize],
    ws: &mut SecondBestWorkspace,
    out: &mut Vec<usize>,
) -> Result<Option<f64>> {
    if n == 0 || theta.len() != n * n {
        return Err(DlmError::invalid(
            "second-best matching",
            format!(
                "potentials of length {} for n = {n}; need n * n with n >= 1",
                theta.len()
            ),
        ));
    }
    dlm_core::error::ensure_finite("potentials", theta)?;
    check_permutation(n, exclude, "permutation to exclude")?;
    out.clear();
    if n == 1 {
        return Ok(None);
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in theta {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let big = lo.abs().max(hi.abs());
    let k = scale::shrink_exponent(big, scale::lap_growth(n), SAFE_MAGNITUDE);
    let (lo, hi, big) = (
        scale::ldexp(lo, k),
        scale::ldexp(hi, k),
        scale::ldexp(big, k),
    );
    let gap = (n as f64 + 1.0) * (hi - lo) + big;
    let forbidden = if gap > 0.0 { lo - gap } else { -1.0 };

    ws.theta.clear();
    ws.theta.extend(theta.iter().map(|&v| scale::ldexp(v, k)));
    ws.col.clear();
    ws.col.resize(n, 0);
    let mut best: Option<f64> = None;
    for (i, &j) in exclude.iter().enumerate() {
        let k = i * n + j;
        let saved = ws.theta[k];
        ws.theta[k] = forbidden;
        lapjv::solve_max(&ws.theta, n, &mut ws.lap, &mut ws.col);
        ws.theta[k] = saved;
        if ws.col[i] == j {
            return Err(DlmError::Numerical {
                what: "second-best matching".into(),
                message: format!("the solver used the forbidden edge ({i}, {j})"),
            });
        }
        let score = finite_score(permutation_score(theta, n, &ws.col))?;
        if best.is_none_or(|b| score > b) {
            best = Some(score);
            out.clear();
            out.extend_from_slice(&ws.col);
        }
    }
    Ok(best)
}

/// Which solution maximises `<theta, phi(y)> + eps * [y != truth]`, given the plain optimum
/// `plain` (`col_of_row` of `y*`, as the structure's `argmax` returned it) and the truth
/// (`col_of_row`). Writes the winner's `col_of_row` into `out`.
///
/// * `eps = 0`: `y*`.
/// * `eps < 0`: `y* = t` gives `t`; otherwise the only candidates are `y*` (the best of all
///   `y != t`) and `t`: `y*` if `score(y*) + eps > score(t)`, else `t`.
/// * `eps > 0`: `y* != t` gives `y*` (best score and loss 1); otherwise `y2`, the best
///   permutation other than `t` ([`best_other_than`]), if `score(y2) + eps >= score(t)`, else
///   `t`; for `n = 1`, `t` (the only permutation).
///
/// Ties go towards the augmentation: with `eps < 0` an exact tie between a wrong solution and
/// the truth returns the truth, with `eps > 0` it returns the wrong solution. Scores are
/// summed in row order ([`permutation_score`]). Deterministic; depends only on the inputs.
///
/// # Errors
/// As [`best_other_than`]; also a non-finite `eps`, or `plain`/`truth` not permutations of
/// `0..n`.
pub fn loss_augmented(
    theta: &[f64],
    n: usize,
    plain: &[usize],
    truth: &[usize],
    eps: f64,
    ws: &mut SecondBestWorkspace,
    out: &mut Vec<usize>,
) -> Result<()> {
    if !eps.is_finite() {
        return Err(DlmError::invalid(
            "epsilon",
            format!("{eps} is not allowed: the loss-augmented argmax needs a finite epsilon"),
        ));
    }
    if n == 0 || theta.len() != n * n {
        return Err(DlmError::invalid(
            "zero-one loss-augmented matching",
            format!(
                "potentials of length {} for n = {n}; need n * n with n >= 1",
                theta.len()
            ),
        ));
    }
    dlm_core::error::ensure_finite("potentials", theta)?;
    check_permutation(n, plain, "plain matching")?;
    check_permutation(n, truth, "zero-one target")?;
    let pick = |out: &mut Vec<usize>, y: &[usize]| {
        out.clear();
        out.extend_from_slice(y);
    };
    if eps == 0.0 {
        pick(out, plain);
        return Ok(());
    }
    let score_t = finite_score(permutation_score(theta, n, truth))?;
    if plain != truth {
        let score_p = finite_score(permutation_score(theta, n, plain))?;
        let wrong_wins = eps > 0.0 || score_p + eps > score_t;
        pick(out, if wrong_wins { plain } else { truth });
        return Ok(());
    }
    if eps < 0.0 {
        pick(out, truth);
        return Ok(());
    }
    let mut other = Vec::with_capacity(n);
    match best_other_than(theta, n, truth, ws, &mut other)? {
        Some(score_o) if score_o + eps >= score_t => pick(out, &other),
        _ => pick(out, truth),
    }
    Ok(())
}
