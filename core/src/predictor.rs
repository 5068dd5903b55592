//! The perturb-and-MAP predictor `y* = argmax <mu + sigma * gamma, phi(y)>` and sampling.

use crate::error::{ensure_finite, DlmError, Result};
use crate::noise::NoiseModel;
use crate::rng::{rng_for, DlmRng, Stream};
use crate::structure::StructuredArgmax;
use ndarray::{ArrayViewD, IxDyn};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Reusable buffers of [`perturb_and_map`]: after a call, `gamma` holds the noise draw and
/// `pert` the perturbed potentials `theta + sigma * gamma`.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// The noise draw.
    pub gamma: Vec<f64>,
    /// The perturbed potentials.
    pub pert: Vec<f64>,
}

/// One perturb-and-MAP prediction: draws `gamma`, perturbs `theta` by `sigma * gamma` (both
/// kept in `scratch`), and writes the active set of the argmax into `out`.
///
/// # Errors
/// An invalid `sigma`, a failing noise model or solver, or perturbed potentials that overflow
/// `f64` (see [`perturb`]: the error names sigma, the potential and the noise draw).
pub fn perturb_and_map(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    theta: ArrayViewD<'_, f64>,
    sigma: f64,
    rng: &mut DlmRng,
    scratch: &mut Scratch,
    out: &mut Vec<usize>,
) -> Result<()> {
    let Scratch { gamma, pert } = scratch;
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(DlmError::invalid(
            "sigma",
            format!("{sigma}: the noise scale must be finite and >= 0"),
        ));
    }
    let theta = theta.as_standard_layout();
    let t = theta.as_slice().expect("standard layout");
    gamma.resize(t.len(), 0.0);
    pert.resize(t.len(), 0.0);
    noise.sample(rng, gamma)?;
    perturb(t, sigma, gamma, pert)?;
    let view = ArrayViewD::from_shape(IxDyn(theta.shape()), &pert[..]).expect("same shape");
    structure.argmax(view, out)
}

/// Writes the perturbed potentials `out[i] = theta[i] + sigma * gamma[i]` and checks that
/// every one is finite, so that an overflow is blamed on what caused it rather than reported
/// later as non-finite potentials.
///
/// # Errors
/// * a non-finite noise draw `gamma[i]`: [`DlmError::Numerical`] naming the noise model;
/// * `sigma * gamma[i]` or `theta[i] + sigma * gamma[i]` overflowing `f64`:
///   [`DlmError::InvalidParameter`] for `sigma`, naming sigma, the noise draw, the potential
///   and the entry, and saying to reduce sigma or the potentials' magnitude.
///
/// # Panics
/// If the three slices do not have the same length.
pub fn perturb(theta: &[f64], sigma: f64, gamma: &[f64], out: &mut [f64]) -> Result<()> {
    assert!(
        theta.len() == gamma.len() && theta.len() == out.len(),
        "perturb: slices of different lengths"
    );
    // One pass: each entry, and the screen of `ensure_finite` (exponent bits all ones: NaN or
    // infinite) folded into the same loop.
    const EXP: u64 = 0x7ff0_0000_0000_0000;
    let mut bad = 0u64;
    for ((p, &x), &g) in out.iter_mut().zip(theta).zip(gamma) {
        *p = x + sigma * g;
        bad |= ((p.to_bits() & EXP) == EXP) as u64;
    }
    if bad == 0 {
        return Ok(());
    }
    let (i, &x, &g) = theta
        .iter()
        .zip(gamma)
        .enumerate()
        .map(|(i, (x, g))| (i, x, g))
        .find(|&(i, _, _)| !out[i].is_finite())
        .expect("a non-finite entry exists");
    if !g.is_finite() || !x.is_finite() {
        return Err(DlmError::Numerical {
            what: "perturbed potentials".into(),
            message: format!(
                "entry {i}: potential {x:e}, noise draw {g:e}; the noise model or the potentials produced a non-finite value"
            ),
        });
    }
    let product = sigma * g;
    let cause = if product.is_finite() {
        format!(
            "the potential {x:e} plus sigma * gamma = {sigma:e} * {g:e} = {product:e} overflows f64 at entry {i}"
        )
    } else {
        format!("sigma * gamma = {sigma:e} * {g:e} overflows f64 at entry {i} (potential {x:e})")
    };
    Err(DlmError::invalid(
        "sigma",
        format!(
            "{cause}; the noise scale sigma is too large for potentials of magnitude {:e}: reduce sigma (e.g. --sigma) or scale the potentials down",
            theta.iter().fold(0.0f64, |a, v| a.max(v.abs()))
        ),
    ))
}

/// Empirical distribution of perturb-and-MAP solutions.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSummary {
    /// Number of samples drawn.
    pub samples: usize,
    /// Each distinct solution kept (its active set) with its count, most frequent first
    /// (ties by active set). At most [`SampleOptions::max_distinct`] solutions are kept.
    pub counts: Vec<(Vec<usize>, usize)>,
    /// Samples whose solution was not kept because `max_distinct` other solutions had been
    /// found first (0 unless the cap was reached): `samples = sum of counts + other`.
    pub other: usize,
    /// Mean of `max_y <theta + sigma*gamma, phi(y)>` over the samples.
    pub mean_max: f64,
}

/// Samples drawn (in parallel) per chunk of [`sample_with`]: memory holds one chunk's
/// per-sample values (8 bytes each) and at most this many distinct solutions besides the
/// kept ones.
pub const SAMPLE_CHUNK: usize = 1 << 16;

/// Default [`SampleOptions::max_distinct`].
pub const DEFAULT_MAX_DISTINCT: usize = 100_000;

/// How [`sample_with`] works through the samples.
pub struct SampleOptions<'a> {
    /// Samples per chunk (at least 1; default [`SAMPLE_CHUNK`]).
    pub chunk: usize,
    /// At most this many distinct solutions are kept with their counts (at least 1; default
    /// [`DEFAULT_MAX_DISTINCT`]); the samples of any other solution are counted in
    /// [`SampleSummary::other`].
    pub max_distinct: usize,
    /// Called on the calling thread after each chunk with the number of samples done so far.
    pub progress: Option<&'a mut dyn FnMut(usize)>,
}

impl Default for SampleOptions<'_> {
    fn default() -> Self {
        SampleOptions {
            chunk: SAMPLE_CHUNK,
            max_distinct: DEFAULT_MAX_DISTINCT,
            progress: None,
        }
    }
}

impl std::fmt::Debug for SampleOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleOptions")
            .field("chunk", &self.chunk)
            .field("max_distinct", &self.max_distinct)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Draws `samples` perturb-and-MAP solutions (sample `s` uses the generator of
/// `(seed, s)`, so the result does not depend on the number of threads) with the default
/// [`SampleOptions`]; see [`sample_with`].
///
/// # Example
/// With zero-mean Gumbel noise on a multiclass argmax, the frequencies are
/// `softmax(theta / sigma)` (the Gumbel-max trick, theory.md §2).
/// ```
/// # use dlm_core::rng::{open01, DlmRng};
/// # use dlm_core::structure::checked_slice;
/// # use dlm_core::{Loss, NoiseModel, Result, StructuredArgmax, Target, EULER_GAMMA};
/// # use ndarray::{ArrayViewD, ArrayViewMutD};
/// # struct Best;
/// # impl StructuredArgmax for Best {
/// #     fn name(&self) -> &str { "best" }
/// #     fn check_shape(&self, s: &[usize]) -> Result<()> {
/// #         if s.len() == 1 { Ok(()) } else { Err(dlm_core::DlmError::shape("best", "[C]", s)) }
/// #     }
/// #     fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
/// #         let t = checked_slice(self, &theta)?;
/// #         out.clear();
/// #         out.push((1..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b }));
/// #         Ok(())
/// #     }
/// # }
/// # struct ZeroMeanGumbel;
/// # impl NoiseModel for ZeroMeanGumbel {
/// #     fn name(&self) -> &str { "zm-gumbel" }
/// #     fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
/// #         for v in out { *v = -(-open01(rng).ln()).ln() - EULER_GAMMA; }
/// #         Ok(())
/// #     }
/// #     fn mean(&self) -> f64 { 0.0 }
/// #     fn variance(&self) -> f64 { std::f64::consts::PI.powi(2) / 6.0 }
/// # }
/// use ndarray::arr1;
///
/// let theta = arr1(&[1.0, 0.0, -1.0]).into_dyn();
/// let s = dlm_core::sample(&Best, &ZeroMeanGumbel, theta.view(), 1.0, 20_000, 3)?;
/// let z: f64 = [1.0f64, 0.0, -1.0].iter().map(|v| v.exp()).sum();
/// for (y, count) in &s.counts {
///     let p = theta[[y[0]]].exp() / z;
///     let freq = *count as f64 / 20_000.0;
///     assert!((freq - p).abs() < 5.0 * (p * (1.0 - p) / 20_000.0).sqrt());
/// }
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub fn sample(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    theta: ArrayViewD<'_, f64>,
    sigma: f64,
    samples: usize,
    seed: u64,
) -> Result<SampleSummary> {
    sample_with(
        structure,
        noise,
        theta,
        sigma,
        samples,
        seed,
        SampleOptions::default(),
    )
}

/// Draws `samples` perturb-and-MAP solutions and counts them as it goes, so that memory does
/// not grow with `samples`.
///
/// Sample `s` uses the generator `rng_for(seed, Stream::Other, &[s])`. The samples are drawn in
/// chunks of `options.chunk`, each chunk in parallel, its solutions counted per thread and the
/// counts merged; the chunks are merged into the summary in order, and the values behind
/// [`SampleSummary::mean_max`] are summed in sample order, so the result is the same for any
/// number of threads. When a chunk brings a solution not seen before and `max_distinct`
/// solutions are already kept, its samples count as [`SampleSummary::other`] (within a chunk,
/// new solutions are taken in the order of their active sets). Memory: the kept solutions,
/// plus, during a chunk, one `f64` per sample of the chunk and at most `chunk` distinct
/// solutions.
///
/// # Errors
/// `samples = 0`, `chunk = 0` or `max_distinct = 0`; a shape the structure refuses;
/// non-finite potentials; an invalid or overflowing `sigma` ([`perturb`]); errors of the noise
/// model or the solver.
pub fn sample_with(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    theta: ArrayViewD<'_, f64>,
    sigma: f64,
    samples: usize,
    seed: u64,
    options: SampleOptions<'_>,
) -> Result<SampleSummary> {
    sample_counted(structure, noise, theta, sigma, samples, seed, options).map(|(s, _)| s)
}

/// Counts of solutions, merged chunk by chunk, keeping at most `max_distinct` of them.
#[derive(Debug)]
struct SolutionCounter {
    map: BTreeMap<Vec<usize>, usize>,
    max_distinct: usize,
    other: usize,
    /// The most distinct solutions held at once (kept ones plus a chunk's).
    peak_held: usize,
}

impl SolutionCounter {
    fn new(max_distinct: usize) -> Self {
        SolutionCounter {
            map: BTreeMap::new(),
            max_distinct,
            other: 0,
            peak_held: 0,
        }
    }

    fn merge_chunk(&mut self, chunk: BTreeMap<Vec<usize>, usize>) {
        self.peak_held = self.peak_held.max(self.map.len() + chunk.len());
        for (sol, c) in chunk {
            if let Some(v) = self.map.get_mut(&sol) {
                *v += c;
            } else if self.map.len() < self.max_distinct {
                self.map.insert(sol, c);
            } else {
                self.other += c;
            }
        }
    }
}

type ChunkState = (Scratch, BTreeMap<Vec<usize>, usize>);

fn merge_maps(
    mut a: BTreeMap<Vec<usize>, usize>,
    b: BTreeMap<Vec<usize>, usize>,
) -> BTreeMap<Vec<usize>, usize> {
    if a.len() < b.len() {
        return merge_maps(b, a);
    }
    for (k, v) in b {
        *a.entry(k).or_default() += v;
    }
    a
}

/// [`sample_with`], also returning the most distinct solutions held at once.
fn sample_counted(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    theta: ArrayViewD<'_, f64>,
    sigma: f64,
    samples: usize,
    seed: u64,
    mut options: SampleOptions<'_>,
) -> Result<(SampleSummary, usize)> {
    if samples == 0 {
        return Err(DlmError::invalid("samples", "must be at least 1"));
    }
    if options.chunk == 0 || options.max_distinct == 0 {
        return Err(DlmError::invalid(
            "sample options",
            "chunk and max_distinct must be at least 1",
        ));
    }
    structure.check_shape(theta.shape())?;
    let theta = theta.as_standard_layout();
    ensure_finite("potentials", theta.as_slice().expect("standard layout"))?;
    let mut counter = SolutionCounter::new(options.max_distinct);
    let mut values = vec![0.0; options.chunk.min(samples)];
    let mut total = 0.0;
    let mut done = 0usize;
    while done < samples {
        let len = options.chunk.min(samples - done);
        let vals = &mut values[..len];
        let start = done;
        let chunk = vals
            .par_iter_mut()
            .enumerate()
            .with_min_len(64)
            .try_fold(
                || -> ChunkState { (Scratch::default(), BTreeMap::new()) },
                |(mut scratch, mut map), (i, v)| -> Result<ChunkState> {
                    let s = (start + i) as u64;
                    let mut rng = rng_for(seed, Stream::Other, &[s]);
                    let mut out = Vec::new();
                    perturb_and_map(
                        structure,
                        noise,
                        theta.view(),
                        sigma,
                        &mut rng,
                        &mut scratch,
                        &mut out,
                    )?;
                    *v = out.iter().map(|&i| scratch.pert[i]).sum();
                    *map.entry(out).or_default() += 1;
                    Ok((scratch, map))
                },
            )
            .map(|r| r.map(|(_, map)| map))
            .try_reduce(BTreeMap::new, |a, b| Ok(merge_maps(a, b)));
        // Which failing sample a parallel loop meets first depends on the schedule: report the
        // first one in sample order, so that the message does not depend on it.
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let mut scratch = Scratch::default();
                let mut out = Vec::new();
                for i in 0..len {
                    let mut rng = rng_for(seed, Stream::Other, &[(start + i) as u64]);
                    perturb_and_map(
                        structure,
                        noise,
                        theta.view(),
                        sigma,
                        &mut rng,
                        &mut scratch,
                        &mut out,
                    )?;
                }
                return Err(e);
            }
        };
        for v in vals.iter() {
            total += v;
        }
        counter.merge_chunk(chunk);
        done += len;
        if let Some(p) = options.progress.as_mut() {
            p(done);
        }
    }
    let peak = counter.peak_held;
    let mut counts: Vec<(Vec<usize>, usize)> = counter.map.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok((
        SampleSummary {
            samples,
            counts,
            other: counter.other,
            mean_max: total / samples as f64,
        },
        peak,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::open01;
    use crate::structure::checked_slice;
    use ndarray::Array1;

    /// Multiclass argmax (first index wins ties).
    struct Best;
    impl StructuredArgmax for Best {
        fn name(&self) -> &str {
            "best"
        }
        fn check_shape(&self, s: &[usize]) -> Result<()> {
            if s.len() == 1 && s[0] >= 1 {
                Ok(())
            } else {
                Err(DlmError::shape("best", "[C]", s))
            }
        }
        fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
            let t = checked_slice(self, &theta)?;
            out.clear();
            out.push((1..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b }));
            Ok(())
        }
    }

    /// Standard Gumbel noise.
    struct Gumbel;
    impl NoiseModel for Gumbel {
        fn name(&self) -> &str {
            "gumbel"
        }
        fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
            for v in out {
                *v = -(-open01(rng).ln()).ln();
            }
            Ok(())
        }
        fn mean(&self) -> f64 {
            crate::EULER_GAMMA
        }
        fn variance(&self) -> f64 {
            std::f64::consts::PI.powi(2) / 6.0
        }
    }

    fn theta(c: usize) -> Array1<f64> {
        Array1::from_iter((0..c).map(|i| (i as f64 * 0.37).sin()))
    }

    /// The summary as the sampler computed it before it counted in chunks: every sample
    /// drawn from `rng_for(seed, Stream::Other, &[s])` in order, all kept.
    fn reference(t: &Array1<f64>, sigma: f64, samples: usize, seed: u64) -> SampleSummary {
        let mut map: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        let (mut scratch, mut total) = (Scratch::default(), 0.0);
        for s in 0..samples {
            let mut rng = rng_for(seed, Stream::Other, &[s as u64]);
            let mut out = Vec::new();
            let view = t.view().into_dyn();
            perturb_and_map(
                &Best,
                &Gumbel,
                view,
                sigma,
                &mut rng,
                &mut scratch,
                &mut out,
            )
            .unwrap();
            total += out.iter().map(|&i| scratch.pert[i]).sum::<f64>();
            *map.entry(out).or_default() += 1;
        }
        let mut counts: Vec<_> = map.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        SampleSummary {
            samples,
            counts,
            other: 0,
            mean_max: total / samples as f64,
        }
    }

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn chunked_counts_equal_the_per_sample_reference_for_any_threads_and_chunk() {
        let t = theta(6);
        let want = reference(&t, 0.8, 3000, 11);
        for threads in [1, 2] {
            for chunk in [1, 7, 1000, SAMPLE_CHUNK] {
                let got = in_pool(threads, || {
                    let options = SampleOptions {
                        chunk,
                        ..SampleOptions::default()
                    };
                    sample_with(&Best, &Gumbel, t.view().into_dyn(), 0.8, 3000, 11, options)
                        .unwrap()
                });
                assert_eq!(got, want, "threads {threads}, chunk {chunk}");
            }
        }
        assert_eq!(
            sample(&Best, &Gumbel, t.view().into_dyn(), 0.8, 3000, 11).unwrap(),
            want
        );
    }

    #[test]
    fn memory_holds_at_most_a_chunk_beyond_the_kept_solutions() {
        // 200 classes of equal potential: nearly every sample of a chunk is a new solution.
        let t = Array1::zeros(200);
        let (chunk, cap, samples) = (64, 5, 2000);
        let mut calls = Vec::new();
        let mut progress = |done: usize| calls.push(done);
        let options = SampleOptions {
            chunk,
            max_distinct: cap,
            progress: Some(&mut progress),
        };
        let (s, peak) = sample_counted(
            &Best,
            &Gumbel,
            t.view().into_dyn(),
            1.0,
            samples,
            3,
            options,
        )
        .unwrap();
        assert_eq!(s.counts.len(), cap);
        assert!(s.other > 0);
        assert_eq!(
            s.counts.iter().map(|(_, c)| c).sum::<usize>() + s.other,
            samples
        );
        assert!(peak > cap, "the test must fill chunks: peak {peak}");
        assert!(peak <= cap + chunk, "held {peak} solutions at once");
        let want: Vec<usize> = (1..=samples.div_ceil(chunk))
            .map(|k| (k * chunk).min(samples))
            .collect();
        assert_eq!(calls, want, "progress after every chunk");
        // The kept solutions and their counts do not depend on the threads either.
        let again = in_pool(2, || {
            let options = SampleOptions {
                chunk,
                max_distinct: cap,
                progress: None,
            };
            sample_with(
                &Best,
                &Gumbel,
                t.view().into_dyn(),
                1.0,
                samples,
                3,
                options,
            )
            .unwrap()
        });
        assert_eq!(again, s);
    }

    #[test]
    fn bad_options_are_refused() {
        let t = theta(3);
        for (chunk, cap) in [(0, 1), (1, 0)] {
            let options = SampleOptions {
                chunk,
                max_distinct: cap,
                progress: None,
            };
            assert!(sample_with(&Best, &Gumbel, t.view().into_dyn(), 1.0, 10, 0, options).is_err());
        }
        assert!(sample(&Best, &Gumbel, t.view().into_dyn(), 1.0, 0, 0).is_err());
    }

    #[test]
    fn an_overflowing_perturbation_is_blamed_on_sigma() {
        let mut out = [0.0; 2];
        let e = perturb(&[1e308, 1.0], 1e308, &[2.0, 0.5], &mut out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sigma"), "{e}");
        assert!(e.contains("reduce sigma"), "{e}");
        assert!(e.contains("entry 0"), "{e}");
        let e = perturb(&[1.0], 1e300, &[1e10], &mut out[..1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sigma * gamma"), "{e}");
        let e = perturb(&[1.0], 1.0, &[f64::NAN], &mut out[..1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("noise model"), "{e}");
        perturb(&[1.0, -2.0], 0.5, &[2.0, 4.0], &mut out).unwrap();
        assert_eq!(out, [2.0, 0.0]);
        // Through the sampler too.
        let t = Array1::from_vec(vec![1e308, 1e308]);
        let e = sample(&Best, &Gumbel, t.view().into_dyn(), 1e308, 10, 0)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid value for sigma"), "{e}");
    }
}
