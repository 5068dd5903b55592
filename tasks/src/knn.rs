//! Experiment 2: k-NN classification with a learned embedding (theory.md §5).
//!
//! Each training step draws `queries` query images and `candidates` candidate images from the
//! training set (disjoint, a fresh shuffle per epoch). The potentials of query `q` over the
//! candidates are `theta_qj = -||e(q) - e(c_j)||^2` with `e = mu(x)`; the structure chooses the
//! `k` highest (the k nearest neighbours); the loss counts chosen neighbours whose label differs
//! from the query's (linear, so the loss-augmented argmax is the same top-k). The DLM gradient
//! with respect to `theta` is back-propagated through the distances into the embedding network
//! (queries and candidates share one forward pass), and the `sigma` gradient into the noise
//! scale network evaluated on the query.
//!
//! Evaluation is plain k-NN with the whole training set as candidates, by majority vote of
//! the `k` nearest neighbours in embedding space (ties go to the class with the nearest member),
//! reported beside the same k-NN on raw pixels.

use crate::data::{Dataset, Split};
use crate::model::{NoiseScale, PerturbedModel, PotentialMap, StepInput};
use crate::sort::check_first_step;
use crate::trainer::{resume_point, EpochCursor, EpochProgress, StepTotals, Task};
use dlm_core::error::{DlmError, Result};
use dlm_core::estimator::{DlmEstimator, NoiseKey};
use dlm_core::linalg::par_gemm;
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::NoiseModel;
use dlm_core::rng::{rng_for, shuffle, Stream};
use dlm_core::structure::StructuredArgmax;
use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Settings of the k-NN task.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnSettings {
    /// Neighbours chosen by the structure during training.
    pub k: usize,
    /// Queries per step.
    pub queries: usize,
    /// Candidates per step.
    pub candidates: usize,
    /// The estimator.
    pub estimator: DlmEstimator,
    /// Seed of every random draw.
    pub seed: u64,
}

/// k-NN accuracy for several k.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnMetrics {
    /// Test images.
    pub n_test: usize,
    /// `(k, accuracy)` pairs.
    pub accuracy: Vec<(usize, f64)>,
}

/// Squared Euclidean distances between the rows of `a` `[Na, E]` and `b` `[Nb, E]`.
pub fn squared_distances(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
    let na: Array1<f64> = a.rows().into_iter().map(|r| r.dot(&r)).collect();
    let nb: Array1<f64> = b.rows().into_iter().map(|r| r.dot(&r)).collect();
    // The product on all threads (the same result on any pool, see dlm_core::linalg).
    let mut d = Array2::zeros((a.nrows(), b.nrows()));
    par_gemm(1.0, &a, &b.t(), 0.0, &mut d.view_mut());
    for (mut row, &x) in d.rows_mut().into_iter().zip(&na) {
        for (v, &y) in row.iter_mut().zip(&nb) {
            // Rounding can make a distance slightly negative; NaN must stay NaN (f64::max
            // would turn it into 0 and hide a diverged network).
            let d = -2.0 * *v + x + y;
            *v = if d < 0.0 { 0.0 } else { d };
        }
    }
    d
}

/// Majority vote of the first `k` neighbours (sorted nearest first); ties go to the class whose
/// nearest member comes first.
fn vote(neigh: &[usize], labels: &[u8], k: usize, classes: usize) -> u8 {
    let mut counts = vec![0usize; classes];
    let mut first = vec![usize::MAX; classes];
    for (rank, &j) in neigh.iter().take(k).enumerate() {
        let c = labels[j] as usize;
        counts[c] += 1;
        first[c] = first[c].min(rank);
    }
    (0..classes)
        .max_by(|&a, &b| counts[a].cmp(&counts[b]).then(first[b].cmp(&first[a])))
        .unwrap_or(0) as u8
}

/// k-NN accuracy of `test` rows against `train` rows (any feature space), for each `k` in `ks`.
pub fn knn_accuracy(
    train: ArrayView2<'_, f64>,
    train_labels: &[u8],
    test: ArrayView2<'_, f64>,
    test_labels: &[u8],
    ks: &[usize],
    classes: usize,
) -> Result<KnnMetrics> {
    let kmax = ks.iter().copied().max().unwrap_or(0);
    if kmax == 0 || ks.contains(&0) {
        return Err(DlmError::invalid(
            "k-NN evaluation",
            format!("values of k must be positive, got {ks:?}"),
        ));
    }
    if train.nrows() < kmax || test.nrows() == 0 {
        return Err(DlmError::invalid(
            "k-NN evaluation",
            format!(
                "{} training and {} test rows for k up to {kmax}",
                train.nrows(),
                test.nrows()
            ),
        ));
    }
    let chunk = 256;
    let correct: Vec<Vec<usize>> = (0..test.nrows().div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let lo = c * chunk;
            let hi = (lo + chunk).min(test.nrows());
            let d = squared_distances(test.slice(s![lo..hi, ..]), train);
            let mut counts = vec![0usize; ks.len()];
            let mut idx: Vec<usize> = Vec::new();
            for (r, row) in d.rows().into_iter().enumerate() {
                idx.clear();
                idx.extend(0..row.len());
                let cmp = |&a: &usize, &b: &usize| row[a].total_cmp(&row[b]).then(a.cmp(&b));
                idx.select_nth_unstable_by(kmax - 1, cmp);
                idx[..kmax].sort_by(cmp);
                for (i, &k) in ks.iter().enumerate() {
                    if vote(&idx, train_labels, k, classes) == test_labels[lo + r] {
                        counts[i] += 1;
                    }
                }
            }
            counts
        })
        .collect();
    let n = test.nrows();
    Ok(KnnMetrics {
        n_test: n,
        accuracy: ks
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                (
                    k,
                    correct.iter().map(|c| c[i]).sum::<usize>() as f64 / n as f64,
                )
            })
            .collect(),
    })
}

/// The k-NN experiment.
pub struct KnnTask {
    settings: KnnSettings,
    data: Split,
    model: PerturbedModel,
    epoch_eval: Option<EpochEval>,
}

/// Test accuracy measured during training ([`KnnTask::set_epoch_eval`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochEval {
    /// After every `every`-th epoch (epochs `every - 1`, `2 every - 1`, ...).
    pub every: u64,
    /// On the first `subset` test images (all when larger).
    pub subset: usize,
    /// With this `k`.
    pub k: usize,
}

impl std::fmt::Debug for KnnTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnnTask")
            .field("settings", &self.settings)
            .field("data", &self.data.train.name)
            .field("model", &self.model)
            .finish()
    }
}

impl KnnTask {
    /// Builds the task and checks the sizes and the scorers' shapes.
    pub fn new(
        settings: KnnSettings,
        data: Split,
        structure: Box<dyn StructuredArgmax>,
        noise: Box<dyn NoiseModel>,
        loss: Box<dyn Loss>,
        mu: Box<dyn dlm_core::Scorer>,
        sigma: NoiseScale,
    ) -> Result<Self> {
        settings.estimator.validate()?;
        let n = data.train.len();
        if settings.queries == 0 || settings.candidates < settings.k || settings.k == 0 {
            return Err(DlmError::invalid(
                "k-NN batch",
                format!(
                    "need queries >= 1 and candidates >= k >= 1 (got {} queries, {} candidates, k = {})",
                    settings.queries, settings.candidates, settings.k
                ),
            ));
        }
        if settings.queries + settings.candidates > n {
            return Err(DlmError::invalid(
                "k-NN batch",
                format!(
                    "{} queries + {} candidates exceed the {n} training images; lower --queries/--candidates",
                    settings.queries, settings.candidates
                ),
            ));
        }
        structure.check_shape(&[settings.candidates])?;
        let d = data.train.dim();
        let out = mu.output_shape(&[2, d])?;
        if out.len() != 2 || out[0] != 2 {
            return Err(DlmError::invalid(
                "mu scorer",
                format!("maps [N, {d}] to {out:?}; the k-NN task needs an embedding [N, E]"),
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
        model.check_sigma_shape(&[2, d])?;
        Ok(KnnTask {
            settings,
            data,
            model,
            epoch_eval: None,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &KnnSettings {
        &self.settings
    }

    /// The data.
    pub fn data(&self) -> &Split {
        &self.data
    }

    /// The model (scorers, structure, noise, loss, current eps).
    pub fn model(&self) -> &PerturbedModel {
        &self.model
    }

    /// The model, mutably (loading weights).
    pub fn model_mut(&mut self) -> &mut PerturbedModel {
        &mut self.model
    }

    /// Embeddings of all rows of `x` (inference, in chunks).
    pub fn embed(&mut self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        let mut parts = Vec::new();
        for chunk in x.axis_chunks_iter(Axis(0), 2048) {
            let e = self.model.mu.forward(chunk.into_dyn(), false)?;
            parts.push(
                e.into_dimensionality::<ndarray::Ix2>()
                    .map_err(|_| DlmError::invalid("mu scorer", "must return [N, E]"))?,
            );
        }
        for p in &parts {
            if p.iter().any(|v| !v.is_finite()) {
                return Err(DlmError::Numerical {
                    what: "embeddings".into(),
                    message: "the mu network produced NaN or infinite values".into(),
                });
            }
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views)
            .map_err(|e| DlmError::invalid("embeddings", e.to_string()))
    }

    /// Measures test accuracy (k-NN on the embedding, all training images as candidates) on a
    /// subset of the test images after every `every`-th epoch, into
    /// [`EpochRecord::test_accuracy`](crate::trainer::EpochRecord::test_accuracy) (`None` for
    /// the other epochs). Noiseless and deterministic; it changes nothing in training.
    pub fn set_epoch_eval(&mut self, eval: Option<EpochEval>) -> Result<()> {
        if let Some(e) = eval {
            if e.every == 0 || e.subset == 0 || e.k == 0 {
                return Err(DlmError::invalid(
                    "--eval-every",
                    "the interval, the test subset and k must be at least 1",
                ));
            }
        }
        self.epoch_eval = eval;
        Ok(())
    }

    fn subset_accuracy(&mut self, e: EpochEval) -> Result<f64> {
        let m = e.subset.min(self.data.test.len());
        let train = self.data.train.images.clone();
        let test = self.data.test.images.slice(s![..m, ..]).to_owned();
        let etr = self.embed(train.view())?;
        let ete = self.embed(test.view())?;
        let r = knn_accuracy(
            etr.view(),
            &self.data.train.labels,
            ete.view(),
            &self.data.test.labels[..m],
            &[e.k],
            self.data.train.classes,
        )?;
        Ok(r.accuracy[0].1)
    }

    /// Test accuracy of k-NN in embedding space, all training images as candidates.
    pub fn evaluate(&mut self, ks: &[usize]) -> Result<KnnMetrics> {
        let train = self.data.train.images.clone();
        let test = self.data.test.images.clone();
        let etr = self.embed(train.view())?;
        let ete = self.embed(test.view())?;
        knn_accuracy(
            etr.view(),
            &self.data.train.labels,
            ete.view(),
            &self.data.test.labels,
            ks,
            self.data.train.classes,
        )
    }

    /// Test accuracy of k-NN on raw pixels, for comparison.
    pub fn pixel_baseline(&self, ks: &[usize]) -> Result<KnnMetrics> {
        pixel_knn(&self.data, ks)
    }

    /// One training step (the shared [`PerturbedModel::train_step`]) on queries `q` against
    /// candidates `c`; the monitored loss is the label mismatches among the noiseless k nearest.
    fn step(&mut self, q: &[usize], c: &[usize], epoch: u64) -> Result<StepTotals> {
        let train: &Dataset = &self.data.train;
        let nq = q.len();
        let idx: Vec<usize> = q.iter().chain(c).copied().collect();
        let x = gather_rows(train.images.view(), &idx);
        let targets: Vec<Target> = q
            .iter()
            .map(|&qi| Target {
                truth: vec![],
                weights: c
                    .iter()
                    .map(|&cj| (train.labels[cj] != train.labels[qi]) as u8 as f64)
                    .collect(),
            })
            .collect();
        let ids: Vec<u64> = q.iter().map(|&i| i as u64).collect();
        let stats = self.model.train_step(
            StepInput {
                x_mu: x.view().into_dyn(),
                x_sigma: x.slice(s![..nq, ..]).into_dyn(),
                targets: &targets,
                example_ids: &ids,
                key: NoiseKey {
                    seed: self.settings.seed,
                    epoch,
                },
            },
            &mut DistanceMap::new(nq),
        )?;
        Ok(StepTotals::of(&stats, stats.noiseless_loss * nq as f64, nq))
    }
}

/// The rows `idx` of `x` (as `x.select(Axis(0), idx)`), copied in parallel.
fn gather_rows(x: ArrayView2<'_, f64>, idx: &[usize]) -> Array2<f64> {
    let w = x.ncols();
    let mut out = vec![0.0; idx.len() * w];
    out.par_chunks_mut(w.max(1))
        .zip(idx.par_iter())
        .for_each(|(row, &i)| {
            for (o, &v) in row.iter_mut().zip(x.row(i)) {
                *o = v;
            }
        });
    Array2::from_shape_vec((idx.len(), w), out).expect("idx.len() rows of w")
}

/// Potentials `theta_qj = -||e_q - e_j||^2` between the first `queries` rows of the embedding
/// (the queries) and the rest (the candidates), and the gradient back through them.
#[derive(Debug, Clone)]
pub struct DistanceMap {
    queries: usize,
    emb: Array2<f64>,
}

impl DistanceMap {
    /// The first `queries` rows of the embedding are the queries.
    pub fn new(queries: usize) -> Self {
        DistanceMap {
            queries,
            emb: Array2::zeros((0, 0)),
        }
    }
}

impl PotentialMap for DistanceMap {
    fn forward(&mut self, out: ndarray::ArrayD<f64>) -> Result<ndarray::ArrayD<f64>> {
        self.emb = out
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| DlmError::invalid("mu scorer", "must return an embedding [N, E]"))?;
        dlm_core::error::ensure_finite(
            "embeddings (the mu network diverged; lower its learning rate)",
            self.emb.as_slice().unwrap_or(&[]),
        )?;
        let nq = self.queries;
        let mut theta =
            squared_distances(self.emb.slice(s![..nq, ..]), self.emb.slice(s![nq.., ..]));
        theta.mapv_inplace(|v| -v);
        Ok(theta.into_dyn())
    }
    fn backward(
        &mut self,
        grad_theta: ndarray::ArrayViewD<'_, f64>,
    ) -> Result<ndarray::ArrayD<f64>> {
        let g = grad_theta
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| DlmError::invalid("potential gradient", "must be [Q, M]"))?;
        let nq = self.queries;
        Ok(distance_backward(
            g,
            self.emb.slice(s![..nq, ..]),
            self.emb.slice(s![nq.., ..]),
        )
        .into_dyn())
    }
}

/// Back-propagates `G = d loss / d theta` through `theta_qj = -||e_q - c_j||^2`: returns the
/// gradient with respect to the stacked embeddings `[e_q (queries); c_j (candidates)]`.
///
/// `d/de_q = -2 (sum_j G_qj e_q - sum_j G_qj c_j)`, `d/dc_j = 2 (sum_q G_qj e_q - sum_q G_qj c_j)`.
pub fn distance_backward(
    g: ArrayView2<'_, f64>,
    eq: ArrayView2<'_, f64>,
    ec: ArrayView2<'_, f64>,
) -> Array2<f64> {
    let nq = eq.nrows();
    let rs = g.sum_axis(Axis(1));
    let cs = g.sum_axis(Axis(0));
    let mut out = Array2::<f64>::zeros((nq + ec.nrows(), eq.ncols()));
    let mut gq = Array2::zeros((nq, ec.ncols()));
    par_gemm(1.0, &g, &ec, 0.0, &mut gq.view_mut());
    for (((mut row, e), gr), &r) in out
        .slice_mut(s![..nq, ..])
        .rows_mut()
        .into_iter()
        .zip(eq.rows())
        .zip(gq.rows())
        .zip(&rs)
    {
        for ((o, &e), &gr) in row.iter_mut().zip(&e).zip(&gr) {
            *o = (e * r - gr) * -2.0;
        }
    }
    let mut gc = Array2::zeros((ec.nrows(), eq.ncols()));
    par_gemm(1.0, &g.t(), &eq, 0.0, &mut gc.view_mut());
    for (((mut row, c), gr), &col) in out
        .slice_mut(s![nq.., ..])
        .rows_mut()
        .into_iter()
        .zip(ec.rows())
        .zip(gc.rows())
        .zip(&cs)
    {
        for ((o, &c), &gr) in row.iter_mut().zip(&c).zip(&gr) {
            *o = (gr - c * col) * 2.0;
        }
    }
    out
}

/// k-NN accuracy on raw pixels.
pub fn pixel_knn(data: &Split, ks: &[usize]) -> Result<KnnMetrics> {
    knn_accuracy(
        data.train.images.view(),
        &data.train.labels,
        data.test.images.view(),
        &data.test.labels,
        ks,
        data.train.classes,
    )
}

impl Task for KnnTask {
    fn train_steps(
        &mut self,
        epoch: u64,
        from: Option<EpochCursor>,
        stop: &dyn Fn() -> bool,
    ) -> Result<EpochProgress> {
        let n = self.data.train.len();
        let (nq, nc) = (self.settings.queries, self.settings.candidates);
        let (first, mut acc) = resume_point(epoch, from)?;
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(
            &mut rng_for(self.settings.seed, Stream::Shuffle, &[epoch]),
            &mut order,
        );
        let steps = (n / nq).max(1);
        check_first_step(first, steps)?;
        for s in first..steps {
            let q: Vec<usize> = order[s * nq..(s + 1) * nq].to_vec();
            // Candidates: the next nc images after the queries, cyclically, never a query.
            let c: Vec<usize> = (0..nc).map(|i| order[((s + 1) * nq + i) % n]).collect();
            acc.add(&self.step(&q, &c, epoch * steps as u64 + s as u64)?);
            if s + 1 < steps && stop() {
                return Ok(EpochProgress::Stopped(EpochCursor {
                    epoch,
                    step: s as u64 + 1,
                    totals: acc,
                }));
            }
        }
        let mut rec = acc.record(epoch, self.model.epsilon());
        if let Some(e) = self.epoch_eval {
            if (epoch + 1) % e.every == 0 {
                rec.test_accuracy = Some(self.subset_accuracy(e)?);
            }
        }
        Ok(EpochProgress::Done(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn distance_backward_matches_finite_differences() {
        let eq = array![[0.3, -0.2], [1.0, 0.5]];
        let ec = array![[0.1, 0.4], [-0.7, 0.2], [0.9, -1.1]];
        let g = array![[0.5, -1.0, 0.25], [2.0, 0.3, -0.6]];
        let f = |eq: &Array2<f64>, ec: &Array2<f64>| -> f64 {
            let d = squared_distances(eq.view(), ec.view());
            -(&d * &g).sum()
        };
        let analytic = distance_backward(g.view(), eq.view(), ec.view());
        let h = 1e-6;
        for r in 0..5 {
            for c in 0..2 {
                let (mut a, mut b) = (eq.clone(), ec.clone());
                let (mut a2, mut b2) = (eq.clone(), ec.clone());
                if r < 2 {
                    a[[r, c]] += h;
                    a2[[r, c]] -= h;
                } else {
                    b[[r - 2, c]] += h;
                    b2[[r - 2, c]] -= h;
                }
                let fd = (f(&a, &b) - f(&a2, &b2)) / (2.0 * h);
                assert!(
                    (fd - analytic[[r, c]]).abs() < 1e-6,
                    "({r},{c}): fd {fd} vs {}",
                    analytic[[r, c]]
                );
            }
        }
    }

    #[test]
    fn knn_accuracy_refuses_k_zero_and_keeps_nan_distances() {
        let a = array![[0.0, 0.0], [1.0, 1.0]];
        assert!(knn_accuracy(a.view(), &[0, 1], a.view(), &[0, 1], &[0], 2).is_err());
        let acc = knn_accuracy(a.view(), &[0, 1], a.view(), &[0, 1], &[1], 2).unwrap();
        assert_eq!(acc.accuracy, vec![(1, 1.0)]);
        let nan = array![[f64::NAN, 0.0]];
        assert!(squared_distances(nan.view(), a.view())
            .iter()
            .all(|v| v.is_nan()));
    }

    #[test]
    fn vote_breaks_ties_towards_the_nearest() {
        let labels = [3u8, 1, 1, 3];
        assert_eq!(vote(&[0, 1, 2, 3], &labels, 4, 4), 3);
        assert_eq!(vote(&[1, 0, 2, 3], &labels, 4, 4), 1);
        assert_eq!(vote(&[1, 2, 0], &labels, 3, 4), 1);
    }
}
