//! Experiment 1: learning to sort by bipartite matching (theory.md §4).
//!
//! Each example is a sequence of `n` numbers; the target is the permutation that sorts it in
//! **descending** order (the official code's order): number `j` belongs at position
//! `rank_j = #{i : x_i > x_j or (x_i = x_j and i < j)}`.
//! `mu` maps every number `x_j` on its own (input `[B, n, 1]`) to `n` scores, row `j` of the
//! `n x n` potentials: `theta[j][p]` is the score of putting number `j` at position `p`.
//! `sigma` maps the whole sequence (input `[B, n]`) to one noise scale.

use crate::model::{IdentityMap, NoiseScale, PerturbedModel, StepInput};
use crate::trainer::{resume_point, EpochCursor, EpochProgress, StepTotals, Task};
use dlm_core::error::{DlmError, Result};
use dlm_core::estimator::{DlmEstimator, NoiseKey};
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::NoiseModel;
use dlm_core::rng::{open01, rng_for, shuffle, Stream};
use dlm_core::structure::StructuredArgmax;
use ndarray::{Array2, ArrayView2, Axis, Ix3};

/// Longest sequence the sorting task accepts, checked before anything is allocated.
pub const MAX_N: usize = 10_000;

/// Why [`MAX_N`] is the limit.
pub const MAX_N_REASON: &str = "every sequence needs n x n potentials, 800 MB at n = 10000, \
                                and an O(n^3) matching per noise draw";

/// Most numbers drawn at once for a training or test set (`size * n`, 2 GiB of `f64`).
pub const MAX_VALUES: usize = 1 << 28;

/// Settings of the sorting task.
#[derive(Debug, Clone, PartialEq)]
pub struct SortSettings {
    /// Sequence length `d`.
    pub n: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// Training sequences per epoch: 0 draws a fresh batch every epoch (one step per epoch);
    /// `N > 0` fixes a training set of `N` sequences and an epoch is one pass over it.
    pub train_size: usize,
    /// The estimator (epsilon, draws, escape).
    pub estimator: DlmEstimator,
    /// Seed of every random draw.
    pub seed: u64,
}

/// Test metrics of noiseless prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SortMetrics {
    /// Sequences evaluated.
    pub n_sequences: usize,
    /// Fraction of positions predicted wrong.
    pub prop_wrong: f64,
    /// Fraction of sequences with at least one wrong position.
    pub prop_any_wrong: f64,
    /// Mean Kendall tau between predicted and true positions.
    pub kendall_tau: f64,
}

/// Uniform sequences: `count x n` numbers in `[lo, hi)` from `(seed, stream, counter)`.
pub fn uniform_sequences(
    count: usize,
    n: usize,
    lo: f64,
    hi: f64,
    seed: u64,
    stream: Stream,
    counter: u64,
) -> Array2<f64> {
    let mut rng = rng_for(seed, stream, &[counter]);
    Array2::from_shape_fn((count, n), |_| lo + (hi - lo) * open01(&mut rng))
}

/// The descending rank of every number (ties to the lower index): the rank of `x[j]` is the
/// number of `i` with `x[i] > x[j]`, or `x[i] == x[j]` and `i < j`.
pub fn descending_ranks(x: &[f64], out: &mut Vec<usize>) {
    out.clear();
    if x.iter().any(|v| v.is_nan()) {
        // NaN compares false with everything: the definition, counted (O(n^2)).
        out.extend((0..x.len()).map(|j| {
            x.iter()
                .enumerate()
                .filter(|&(i, &v)| v > x[j] || (v == x[j] && i < j))
                .count()
        }));
        return;
    }
    // The same ranks by sorting (O(n log n)): descending values, equal ones (also -0 and +0)
    // by index; a number's rank is its place in that order.
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_unstable_by(|&a, &b| x[b].partial_cmp(&x[a]).expect("no NaN").then(a.cmp(&b)));
    out.resize(x.len(), 0);
    for (rank, &j) in order.iter().enumerate() {
        out[j] = rank;
    }
}

/// The target of one sequence: the true matching and the numbers (for the `sort` loss).
pub fn sort_target(x: &[f64]) -> Target {
    let n = x.len();
    let mut ranks = Vec::new();
    descending_ranks(x, &mut ranks);
    Target {
        truth: ranks.iter().enumerate().map(|(j, &r)| j * n + r).collect(),
        weights: x.to_vec(),
    }
}

/// Kendall tau between two permutations of `0..n` (no ties).
pub fn kendall_tau(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len();
    if n < 2 {
        return 1.0;
    }
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let x = (a[i] as i64 - a[j] as i64).signum() * (b[i] as i64 - b[j] as i64).signum();
            s += x;
        }
    }
    s as f64 / (n * (n - 1) / 2) as f64
}

/// The official task loss: `sum_p (sorted_p - z_p)^2` where `z` places number `j` at the
/// predicted position `pos[j]` and `sorted` is `x` in descending order.
pub fn squared_sort_loss(x: &[f64], pos: &[usize]) -> f64 {
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut z = vec![0.0; x.len()];
    for (j, &p) in pos.iter().enumerate() {
        z[p] = x[j];
    }
    sorted.iter().zip(&z).map(|(s, v)| (s - v) * (s - v)).sum()
}

/// Refuses a structure that cannot carry a sort target.
///
/// The sort task's target is a permutation of `n` positions, an `n x n` matching with one
/// active entry per row and column. The structure must accept `[n, n]` potentials
/// ([`check_shape`](StructuredArgmax::check_shape)), and its argmax on three random `n x n`
/// matrices (a fixed seed, independent of the task's) must return such permutations: a
/// structure that accepts the shape but solves something else (a path, a top-k over all
/// entries) is refused here rather than trained against targets it can never produce.
pub fn check_permutation_structure(structure: &dyn StructuredArgmax, n: usize) -> Result<()> {
    let refuse = |why: String| {
        DlmError::invalid(
            "structure",
            format!(
                "'{}' cannot be used by the sort task, which needs a matching of {n} x {n} \
                 potentials (one entry per row and column, e.g. the structure 'matching'): \
                 {why}",
                structure.name()
            ),
        )
    };
    structure
        .check_shape(&[n, n])
        .map_err(|e| refuse(e.to_string()))?;
    let mut active = Vec::with_capacity(n);
    for probe in 0..3u64 {
        let mut rng = rng_for(0, Stream::Other, &[PERMUTATION_PROBE, probe]);
        let theta = Array2::from_shape_fn((n, n), |_| open01(&mut rng) - 0.5).into_dyn();
        structure.argmax(theta.view(), &mut active).map_err(|e| {
            refuse(format!(
                "its argmax on a random {n} x {n} matrix failed ({e})"
            ))
        })?;
        let (mut rows, mut cols) = (vec![false; n], vec![false; n]);
        let permutation = active.len() == n
            && active.iter().all(|&i| {
                i < n * n
                    && !std::mem::replace(&mut rows[i / n], true)
                    && !std::mem::replace(&mut cols[i % n], true)
            });
        if !permutation {
            return Err(refuse(format!(
                "its argmax on a random {n} x {n} matrix returned the active set {active:?} \
                 ({} entries), not a permutation",
                active.len()
            )));
        }
    }
    Ok(())
}

/// Counter of the random matrices of [`check_permutation_structure`].
const PERMUTATION_PROBE: u64 = 0x5045_524d; // "PERM"

/// The sorting experiment: components, settings and state.
pub struct SortTask {
    settings: SortSettings,
    model: PerturbedModel,
    train: Option<Array2<f64>>,
}

impl std::fmt::Debug for SortTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortTask")
            .field("settings", &self.settings)
            .field("model", &self.model)
            .finish()
    }
}

impl SortTask {
    /// Builds the task; checks that the scorers produce the shapes the task needs.
    pub fn new(
        settings: SortSettings,
        structure: Box<dyn StructuredArgmax>,
        noise: Box<dyn NoiseModel>,
        loss: Box<dyn Loss>,
        mu: Box<dyn dlm_core::Scorer>,
        sigma: NoiseScale,
    ) -> Result<Self> {
        settings.estimator.validate()?;
        let n = settings.n;
        if n < 2 {
            return Err(DlmError::invalid(
                "--n",
                "sequences need at least 2 numbers",
            ));
        }
        dlm_core::limits::at_most("--n", n, MAX_N, MAX_N_REASON)?;
        if settings.batch == 0 {
            return Err(DlmError::invalid("--batch", "must be at least 1"));
        }
        check_permutation_structure(structure.as_ref(), n)?;
        let out = mu.output_shape(&[settings.batch, n, 1])?;
        if out != [settings.batch, n, n] {
            return Err(DlmError::invalid(
                "mu scorer",
                format!("maps [B, {n}, 1] to {out:?}, but the sorting task needs [B, {n}, {n}] (e.g. mlp:sizes=1-32-{n})"),
            ));
        }
        let model = PerturbedModel::new(
            structure,
            noise,
            loss,
            mu,
            sigma,
            settings.estimator.clone(),
        )?;
        model.check_sigma_shape(&[settings.batch, n])?;
        let train = (settings.train_size > 0).then(|| {
            uniform_sequences(
                settings.train_size,
                n,
                0.0,
                1.0,
                settings.seed,
                Stream::TrainData,
                0,
            )
        });
        Ok(SortTask {
            settings,
            model,
            train,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &SortSettings {
        &self.settings
    }

    /// The model (scorers, structure, noise, loss, current eps).
    pub fn model(&self) -> &PerturbedModel {
        &self.model
    }

    /// The model, mutably (loading weights).
    pub fn model_mut(&mut self) -> &mut PerturbedModel {
        &mut self.model
    }

    /// Potentials `[B, n, n]` for sequences `x` `[B, n]`.
    fn potentials(&mut self, x: ArrayView2<'_, f64>, train: bool) -> Result<ndarray::Array3<f64>> {
        let (b, n) = x.dim();
        let input = x
            .to_owned()
            .into_shape_with_order((b, n, 1))
            .expect("same size");
        let theta = self.model.mu.forward(input.into_dyn().view(), train)?;
        theta
            .into_dimensionality::<Ix3>()
            .map_err(|_| DlmError::invalid("mu scorer", "did not return a 3-d array"))
    }

    /// Noiseless predictions: for each sequence, the predicted position of every number.
    pub fn predict(&mut self, x: ArrayView2<'_, f64>) -> Result<Vec<Vec<usize>>> {
        dlm_core::error::ensure_finite("input sequences", &x.iter().copied().collect::<Vec<_>>())?;
        let theta = self.potentials(x, false)?;
        let n = self.settings.n;
        let structure = self.model.structure.as_ref();
        use rayon::prelude::*;
        (0..theta.shape()[0])
            .into_par_iter()
            .map(|i| {
                let t = theta.index_axis(Axis(0), i);
                let mut active = Vec::with_capacity(n);
                structure.argmax(t.into_dyn(), &mut active)?;
                Ok(structure.decode(&[n, n], &active))
            })
            .collect()
    }

    /// Evaluates noiseless prediction on `count` fresh sequences uniform in `[lo, hi)`.
    pub fn evaluate(&mut self, count: usize, lo: f64, hi: f64, seed: u64) -> Result<SortMetrics> {
        if count == 0 {
            return Err(DlmError::invalid("--test-size", "must be at least 1"));
        }
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(DlmError::invalid(
                "--test-range",
                format!("{lo},{hi}: need finite LO < HI"),
            ));
        }
        let n = self.settings.n;
        dlm_core::limits::at_most(
            "--test-size",
            count,
            MAX_VALUES / n.max(1),
            &format!("the test sequences are drawn at once: test size x n <= {MAX_VALUES} numbers, 2 GiB"),
        )?;
        let x = uniform_sequences(count, n, lo, hi, seed, Stream::TestData, 0);
        let mut wrong = 0usize;
        let mut any = 0usize;
        let mut tau = 0.0;
        let mut ranks = Vec::new();
        // Chunks bound the memory of the potentials.
        for (c, chunk) in x.axis_chunks_iter(Axis(0), 1000).enumerate() {
            let preds = self.predict(chunk)?;
            for (row, pos) in chunk.axis_iter(Axis(0)).zip(&preds) {
                let xs = row.to_vec();
                descending_ranks(&xs, &mut ranks);
                let w = pos.iter().zip(&ranks).filter(|(a, b)| a != b).count();
                wrong += w;
                any += (w > 0) as usize;
                tau += kendall_tau(pos, &ranks);
            }
            let _ = c;
        }
        Ok(SortMetrics {
            n_sequences: count,
            prop_wrong: wrong as f64 / (count * n) as f64,
            prop_any_wrong: any as f64 / count as f64,
            kendall_tau: tau / count as f64,
        })
    }

    /// One training step on a batch (the shared [`PerturbedModel::train_step`]); the monitored
    /// loss is the official squared loss of the noiseless predictions, and early stopping
    /// watches their fraction of wrong positions (scale-free: the squared loss shrinks with the
    /// size of the numbers still misplaced, and looks like a plateau while they are still
    /// being fixed).
    fn step(&mut self, x: ArrayView2<'_, f64>, ids: &[u64], epoch: u64) -> Result<StepTotals> {
        let (b, n) = x.dim();
        let input = x
            .to_owned()
            .into_shape_with_order((b, n, 1))
            .expect("same size")
            .into_dyn();
        let targets: Vec<Target> = x
            .axis_iter(Axis(0))
            .map(|r| sort_target(r.as_slice().expect("row")))
            .collect();
        let stats = self.model.train_step(
            StepInput {
                x_mu: input.view(),
                x_sigma: x.into_dyn(),
                targets: &targets,
                example_ids: ids,
                key: NoiseKey {
                    seed: self.settings.seed,
                    epoch,
                },
            },
            &mut IdentityMap::new(None),
        )?;
        let mut task_loss = 0.0;
        let mut wrong = 0usize;
        for ((active, row), t) in stats
            .predictions
            .iter()
            .zip(x.axis_iter(Axis(0)))
            .zip(&targets)
        {
            let pos = self.model.structure.decode(&[n, n], active);
            task_loss += squared_sort_loss(row.as_slice().expect("row"), &pos);
            wrong += pos
                .iter()
                .enumerate()
                .filter(|&(j, &p)| t.truth[j] != j * n + p)
                .count();
        }
        Ok(StepTotals::of(&stats, task_loss, b).watching(wrong as f64 / n as f64))
    }
}

impl Task for SortTask {
    fn train_steps(
        &mut self,
        epoch: u64,
        from: Option<EpochCursor>,
        stop: &dyn Fn() -> bool,
    ) -> Result<EpochProgress> {
        let (n, bsz, seed) = (self.settings.n, self.settings.batch, self.settings.seed);
        let (first, mut acc) = resume_point(epoch, from)?;
        match self.train.take() {
            None => {
                // One fresh batch, one step per epoch.
                if first != 0 {
                    return Err(DlmError::invalid(
                        "epoch cursor",
                        format!("step {first} of a one-step epoch"),
                    ));
                }
                let x = uniform_sequences(bsz, n, 0.0, 1.0, seed, Stream::TrainData, epoch + 1);
                let ids: Vec<u64> = (0..bsz as u64).map(|i| epoch * bsz as u64 + i).collect();
                acc = self.step(x.view(), &ids, epoch)?;
            }
            Some(train) => {
                let mut order: Vec<usize> = (0..train.nrows()).collect();
                shuffle(&mut rng_for(seed, Stream::Shuffle, &[epoch]), &mut order);
                let chunks: Vec<&[usize]> = order.chunks(bsz).collect();
                let result = (|| -> Result<Option<usize>> {
                    check_first_step(first, chunks.len())?;
                    for (s, chunk) in chunks.iter().enumerate().skip(first) {
                        let x = train.select(Axis(0), chunk);
                        let ids: Vec<u64> = chunk.iter().map(|&i| i as u64).collect();
                        acc.add(&self.step(x.view(), &ids, epoch)?);
                        if s + 1 < chunks.len() && stop() {
                            return Ok(Some(s + 1));
                        }
                    }
                    Ok(None)
                })();
                self.train = Some(train);
                if let Some(step) = result? {
                    return Ok(EpochProgress::Stopped(EpochCursor {
                        epoch,
                        step: step as u64,
                        totals: acc,
                    }));
                }
            }
        }
        Ok(EpochProgress::Done(acc.record(epoch, self.model.epsilon())))
    }
}

/// Refuses a cursor past the last step of an epoch of `steps` steps.
pub(crate) fn check_first_step(first: usize, steps: usize) -> Result<()> {
    if first >= steps {
        return Err(DlmError::invalid(
            "epoch cursor",
            format!("step {first} of an epoch of {steps} steps"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_sorting_equal_the_counted_definition() {
        let counted = |x: &[f64]| -> Vec<usize> {
            (0..x.len())
                .map(|j| {
                    x.iter()
                        .enumerate()
                        .filter(|&(i, &v)| v > x[j] || (v == x[j] && i < j))
                        .count()
                })
                .collect()
        };
        let mut r = Vec::new();
        let mut rng = rng_for(5, Stream::Other, &[9]);
        for n in [1, 2, 7, 25, 100] {
            let mut x: Vec<f64> = (0..n).map(|_| (open01(&mut rng) * 4.0).floor()).collect();
            x.extend([0.0, -0.0, 3.0, 1e300, -1e300]);
            descending_ranks(&x, &mut r);
            assert_eq!(r, counted(&x));
            x.push(f64::NAN);
            descending_ranks(&x, &mut r);
            assert_eq!(r, counted(&x));
        }
    }

    #[test]
    fn ranks_metrics_and_loss() {
        let x = [0.2, 0.9, 0.5];
        let mut r = Vec::new();
        descending_ranks(&x, &mut r);
        assert_eq!(r, vec![2, 0, 1]);
        assert_eq!(kendall_tau(&r, &r), 1.0);
        assert_eq!(kendall_tau(&[0, 1, 2], &[2, 1, 0]), -1.0);
        assert_eq!(squared_sort_loss(&x, &r), 0.0);
        assert!(squared_sort_loss(&x, &[0, 1, 2]) > 0.0);
        let t = sort_target(&x);
        assert_eq!(t.truth, vec![2, 3, 7]);
    }

    #[test]
    fn only_permutation_structures_carry_a_sort_target() {
        use dlm_core::{Registry, Spec};
        let mut reg = Registry::new();
        reg.register_builtin("matching", dlm_plugin_matching::register)
            .unwrap();
        reg.register_builtin("topk", dlm_plugin_topk::register)
            .unwrap();
        let matching = reg.structure(&Spec::named("matching")).unwrap();
        check_permutation_structure(matching.as_ref(), 6).unwrap();
        // Top-k refuses the shape.
        let topk = reg.structure(&"topk:k=3".parse().unwrap()).unwrap();
        let err = check_permutation_structure(topk.as_ref(), 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'topk' cannot be used by the sort task"),
            "{err}"
        );
        assert!(err.contains("[m]"), "the shape error is kept: {err}");

        // A structure that takes [n, n] potentials but always picks the first row.
        struct FirstRow;
        impl StructuredArgmax for FirstRow {
            fn name(&self) -> &str {
                "first-row"
            }
            fn check_shape(&self, shape: &[usize]) -> Result<()> {
                match shape {
                    [_, _] => Ok(()),
                    _ => Err(DlmError::shape("first-row", "[H, W]", shape)),
                }
            }
            fn argmax(
                &self,
                theta: ndarray::ArrayViewD<'_, f64>,
                out: &mut Vec<usize>,
            ) -> Result<()> {
                out.clear();
                out.extend(0..theta.shape()[1]);
                Ok(())
            }
        }
        let err = check_permutation_structure(&FirstRow, 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a permutation"), "{err}");
        assert!(err.contains("[0, 1, 2, 3]"), "{err}");
    }
}
