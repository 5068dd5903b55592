//! Using `dlm` as a library: a structure of our own, trained with the DLM estimator from Rust.
//!
//! The structure picks **one column in every row** of an `[R, C]` potentials array (think of
//! `R` independent multiclass decisions made jointly); the loss counts the wrong rows. The
//! potentials come from a built-in scorer (a linear `mlp` from the `dlm-plugin-mlp` crate),
//! the noise is the built-in zero-mean Gumbel, and one training step is: forward, the DLM
//! estimate (two solver calls per noise draw), backward, optimizer step.
//!
//! `cargo run -p dlm-example-library` prints the exact-match rate before and after training;
//! the test below checks that training takes it from chance to almost perfect.

use dlm_core::rng::{open01, rng_for, Stream};
use dlm_core::structure::checked_slice;
use dlm_core::{
    Batch, DlmEstimator, Loss, NoiseKey, Registry, Result, Spec, StructuredArgmax, Target,
    Workspace,
};
use ndarray::{Array2, ArrayViewD, ArrayViewMutD, Axis, IxDyn};

/// One column per row of `[R, C]` potentials; ties go to the lower column.
pub struct OnePerRow;

impl StructuredArgmax for OnePerRow {
    fn name(&self) -> &str {
        "one-per-row"
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        match shape {
            [r, c] if *r >= 1 && *c >= 1 => Ok(()),
            _ => Err(dlm_core::DlmError::shape("potentials", "[R, C]", shape)),
        }
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        let c = theta.shape()[1];
        out.clear();
        for (r, row) in t.chunks(c).enumerate() {
            let best = (1..c).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            out.push(r * c + best);
        }
        Ok(())
    }
}

/// Wrong rows: `R - <1_truth, phi(y)>`, linear with `L = -1` on the true cells.
pub struct WrongRows;

impl Loss for WrongRows {
    fn name(&self) -> &str {
        "wrong-rows"
    }
    fn value(&self, t: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
        Ok(t.truth.iter().zip(active).filter(|(a, b)| a != b).count() as f64)
    }
    fn linear_form(&self, t: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        out.fill(0.0);
        for &i in &t.truth {
            out.as_slice_mut().expect("contiguous")[i] = -1.0;
        }
        Ok(Some(t.truth.len() as f64))
    }
}

/// Exact-match rates before and after training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Fraction of test examples predicted exactly, before training.
    pub before: f64,
    /// The same after training.
    pub after: f64,
}

/// Trains on `n` examples of `[R, C] = [4, 3]` decisions from 6 features (truth: the argmax of
/// a hidden linear teacher) and evaluates on 500 fresh ones.
pub fn run(n: usize, epochs: usize, seed: u64) -> Result<Outcome> {
    let (rows, cols, feat) = (4, 3, 6);
    let mut reg = Registry::new();
    reg.register_builtin("dlm-plugin-mlp", dlm_plugin_mlp::register)?;
    reg.register_builtin("dlm-plugin-noise", dlm_plugin_noise::register)?;
    let noise = reg.noise(&Spec::named("gumbel"))?;
    let spec = format!(
        "mlp:sizes={feat}-{},opt=adam,lr=0.05,seed={seed}",
        rows * cols
    );
    let mut mu = reg.scorer(&spec.parse()?)?;

    // Own data: features and the teacher's decisions.
    let mut rng = rng_for(seed, Stream::TrainData, &[0]);
    let teacher = Array2::from_shape_fn((feat, rows * cols), |_| 2.0 * open01(&mut rng) - 1.0);
    let make = |count: usize, stream: Stream| -> Result<(Array2<f64>, Vec<Target>)> {
        let mut rng = rng_for(seed, stream, &[1]);
        let x = Array2::from_shape_fn((count, feat), |_| 2.0 * open01(&mut rng) - 1.0);
        let scores = x
            .dot(&teacher)
            .into_shape_with_order((count, rows, cols))
            .expect("size");
        let mut targets = Vec::with_capacity(count);
        for s in scores.axis_iter(Axis(0)) {
            let mut truth = Vec::new();
            OnePerRow.argmax(s.into_dyn(), &mut truth)?;
            targets.push(Target {
                truth,
                weights: vec![],
            });
        }
        Ok((x, targets))
    };
    let (x, targets) = make(n, Stream::TrainData)?;
    let (x_test, test_targets) = make(500, Stream::TestData)?;
    let exact = |mu: &mut Box<dyn dlm_core::Scorer>| -> Result<f64> {
        let theta = mu.forward(x_test.view().into_dyn(), false)?;
        let theta = theta
            .into_shape_with_order(IxDyn(&[500, rows, cols]))
            .expect("size");
        let mut hits = 0;
        let mut y = Vec::new();
        for (t, target) in theta.axis_iter(Axis(0)).zip(&test_targets) {
            OnePerRow.argmax(t, &mut y)?;
            hits += (y == target.truth) as usize;
        }
        Ok(hits as f64 / 500.0)
    };

    let before = exact(&mut mu)?;
    let estimator = DlmEstimator {
        epsilon: -1.0,
        draws: 3,
        ..DlmEstimator::default()
    };
    let mut ws = Workspace::new();
    let sigma = ndarray::Array1::from_elem(20, 0.3);
    for epoch in 0..epochs {
        for (b, (xb, tb)) in x
            .axis_chunks_iter(Axis(0), 20)
            .zip(targets.chunks(20))
            .enumerate()
        {
            let bsz = tb.len();
            let theta = mu.forward(xb.into_dyn(), true)?;
            let theta = theta
                .into_shape_with_order(IxDyn(&[bsz, rows, cols]))
                .expect("size");
            let ids: Vec<u64> = (0..bsz as u64).map(|i| (b * 20) as u64 + i).collect();
            let batch = Batch {
                theta: theta.view(),
                sigma: sigma.slice(ndarray::s![..bsz]),
                targets: tb,
                example_ids: &ids,
            };
            let key = NoiseKey {
                seed,
                epoch: epoch as u64,
            };
            let e =
                estimator.estimate(&mut ws, &OnePerRow, noise.as_ref(), &WrongRows, &batch, key)?;
            let grad = e
                .grad_theta
                .into_shape_with_order(IxDyn(&[bsz, rows * cols]))
                .expect("size");
            mu.backward((grad / bsz as f64).view())?;
            mu.step()?;
        }
    }
    Ok(Outcome {
        before,
        after: exact(&mut mu)?,
    })
}

#[cfg(test)]
mod tests {
    /// From chance (about (1/3)^4 of the examples exactly right) to almost all of them.
    #[test]
    fn the_library_example_learns() {
        let o = super::run(400, 60, 3).unwrap();
        assert!(o.before < 0.2, "{o:?}");
        assert!(o.after > 0.85, "{o:?}");
    }
}
