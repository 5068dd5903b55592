//! Limits on the flags that size allocations, checked before anything is built: an absurd
//! `--n`, `--batch` or `--draws` used to abort the process with "memory allocation of ...
//! bytes failed" (or, for `--n 0`, to be reported as an internal layer size of the default
//! network). Each limit is stated with its reason.

use crate::args::{TaskKind, TrainArgs};
use dlm_core::limits::at_most;
use dlm_core::{DlmError, Result};
use dlm_tasks::sort::{MAX_N, MAX_N_REASON, MAX_VALUES};

/// Most noise draws per example.
pub const MAX_DRAWS: usize = 10_000;

/// Longest early-stopping window (`--smooth`).
pub const MAX_SMOOTH: usize = 1_000_000;

/// Most examples per batch (structured).
pub const MAX_BATCH: usize = 10_000_000;

/// Checks the size flags of `dlm train` against their limits, before any network, data set
/// or task is built.
pub fn check_train(a: &TrainArgs) -> Result<()> {
    at_most(
        "--smooth",
        a.smooth,
        MAX_SMOOTH,
        "the early-stopping window of epoch losses is allocated up front",
    )?;
    if let Some(d) = a.draws {
        if d == 0 {
            return Err(DlmError::invalid("--draws", "must be at least 1"));
        }
        at_most(
            "--draws",
            d,
            MAX_DRAWS,
            "every draw keeps its noise and two solutions per example in memory during a step",
        )?;
    }
    if let Some(b) = a.batch {
        at_most(
            "--batch",
            b,
            MAX_BATCH,
            "a batch's inputs, potentials and gradients are held in memory together",
        )?;
    }
    match a.task {
        TaskKind::Sort => check_sort(a)?,
        TaskKind::Knn => {
            // The task's defaults when a flag is not given (candidates are at most what the
            // data allows, so this bound is conservative).
            let (q, c, d) = (
                a.queries.unwrap_or(100),
                a.candidates.unwrap_or(800),
                a.draws.unwrap_or(1),
            );
            at_most(
                "--queries x --candidates x --draws",
                q.saturating_mul(c).saturating_mul(d),
                MAX_VALUES,
                &format!(
                    "one training step holds queries x candidates perturbed distances per draw, at most {MAX_VALUES} in all, 2 GiB"
                ),
            )?;
        }
        TaskKind::Structured => {}
        TaskKind::ShortestPath => check_shortest_path(a)?,
    }
    Ok(())
}

/// The shortest-path task's generated data: instances x (features + arcs) values.
fn check_shortest_path(a: &TrainArgs) -> Result<()> {
    let features = a.features.unwrap_or(5);
    if features == 0 {
        return Err(DlmError::invalid("--features", "must be at least 1"));
    }
    at_most(
        "--features",
        features,
        MAX_VALUES / 2,
        "the generator's matrix B holds arcs x features values",
    )?;
    let instances = a
        .train_size
        .unwrap_or(1000)
        .saturating_add(a.test_size.unwrap_or(1000));
    // A 5x5 grid has 40 arcs; larger grids are checked by the generator itself.
    at_most(
        "--train-size + --test-size",
        instances,
        MAX_VALUES / (features + 40),
        &format!(
            "the instances are generated at once: (train + test) x (features + arcs) <= {MAX_VALUES} values, 2 GiB"
        ),
    )
}

/// The sort task's sizes, with the defaults it applies when a flag is not given.
fn check_sort(a: &TrainArgs) -> Result<()> {
    let n = a.n.unwrap_or(10);
    if n < 2 {
        return Err(DlmError::invalid(
            "--n",
            format!("{n}: --n must be at least 2 (a sequence to sort needs two numbers)"),
        ));
    }
    at_most("--n", n, MAX_N, MAX_N_REASON)?;
    let (batch, draws) = (a.batch.unwrap_or(10), a.draws.unwrap_or(5));
    at_most(
        "--batch x --draws",
        batch.saturating_mul(draws),
        MAX_VALUES / (n * n),
        &format!(
            "one training step holds batch x draws x n^2 <= {MAX_VALUES} perturbed potentials, 2 GiB, here with n = {n}"
        ),
    )?;
    for (flag, size) in [
        ("--train-size", a.train_size.unwrap_or(0)),
        ("--test-size", a.test_size.unwrap_or(1000)),
    ] {
        at_most(
            flag,
            size,
            MAX_VALUES / n,
            &format!("the sequences are drawn at once: {flag} x n <= {MAX_VALUES} numbers, 2 GiB"),
        )?;
    }
    Ok(())
}
