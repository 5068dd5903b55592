//! The adaptive eps policy: |eps| follows the spread of the scores, and grows or shrinks
//! between batches to hold the zero-direction rate (among examples with loss left) in its band.

use dlm_core::adaptive::{AdaptiveDlm, RELATIVE_STATE};
use dlm_core::estimator::EPSILON_STATE;
use dlm_core::{Batch, DlmEstimator, GradientEstimator, NoiseKey, Registry, Spec, Target};
use ndarray::{Array1, Array3};

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_builtin("matching", dlm_plugin_matching::register)
        .unwrap();
    r.register_builtin("noise", dlm_plugin_noise::register)
        .unwrap();
    r
}

/// One step on 16 random 4 x 4 matchings (truth: the identity) with scores scaled by `scale`,
/// from relative eps `r`; returns (eps used, next r, zero-direction rate among examples with
/// loss).
fn step(scale: f64, r: f64, band: (f64, f64)) -> (f64, f64, f64) {
    let reg = registry();
    let structure = reg.structure(&Spec::named("matching")).unwrap();
    let noise = reg.noise(&Spec::named("gumbel")).unwrap();
    let loss = reg.loss(&Spec::named("hamming")).unwrap();
    let (b, n) = (16usize, 4usize);
    let theta = Array3::from_shape_fn((b, n, n), |(i, j, k)| {
        scale * (((i * 31 + j * 7 + k * 13) % 17) as f64 / 17.0 - 0.5)
    })
    .into_dyn();
    let sigma = Array1::from_elem(b, scale);
    let targets: Vec<Target> = (0..b)
        .map(|_| Target {
            truth: (0..n).map(|j| j * n + j).collect(),
            weights: vec![],
        })
        .collect();
    let ids: Vec<u64> = (0..b as u64).collect();
    let policy = AdaptiveDlm::new(
        DlmEstimator {
            epsilon: -1.0,
            draws: 2,
            ..DlmEstimator::default()
        },
        band,
    )
    .unwrap();
    let mut state = policy.initial_state();
    state.set(RELATIVE_STATE, r);
    let e = policy
        .estimate(
            &mut state,
            structure.as_ref(),
            noise.as_ref(),
            loss.as_ref(),
            &Batch {
                theta: theta.view(),
                sigma: sigma.view(),
                targets: &targets,
                example_ids: &ids,
            },
            NoiseKey { seed: 1, epoch: 0 },
        )
        .unwrap();
    let (zero, draws) = dlm_core::adaptive::zero_directions_with_loss(&e);
    assert!(draws > 0);
    assert_eq!(state.get(EPSILON_STATE), Some(e.diagnostics.epsilon));
    (
        e.diagnostics.epsilon,
        state.get(RELATIVE_STATE).unwrap(),
        zero as f64 / draws as f64,
    )
}

#[test]
fn eps_follows_the_spread_of_the_scores() {
    let (e1, _, z1) = step(1.0, 0.5, (0.0, 1.0));
    let (e2, _, z2) = step(1000.0, 0.5, (0.0, 1.0));
    assert!(e1 < 0.0);
    assert!((e2 / e1 - 1000.0).abs() < 1e-9, "{e1} {e2}");
    // The same problem at another scale gives the same directions.
    assert_eq!(z1, z2);
}

#[test]
fn the_band_grows_and_shrinks_eps() {
    // A tiny eps: every direction with loss is zero, above the band: r grows by 1.25.
    let (_, next, z) = step(1.0, 1e-6, (0.3, 0.6));
    assert_eq!(z, 1.0);
    assert!((next / 1e-6 - 1.25).abs() < 1e-12, "{next}");
    // A huge eps: few zero directions among examples with loss (only draws that happened to
    // be right), below the band: r shrinks.
    let (_, next, z) = step(1.0, 1e6, (0.3, 0.6));
    assert!(z < 0.3, "{z}");
    assert!((next * 1.25 / 1e6 - 1.0).abs() < 1e-12, "{next}");
    // Inside the band: unchanged.
    let (_, next, _) = step(1.0, 1e6, (0.0, 1.0));
    assert_eq!(next, 1e6);
}
