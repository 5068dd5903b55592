//! Writes the example data of the grid-path plugin, `examples/grid-path-plugin/data/paths.npz`:
//! a shortest-path-on-a-grid problem in the style of PyEPO (Tang & Khalil), small enough to
//! commit and to train on in a test.
//!
//! * `x` float64 `[400, 5]`: features, i.i.d. standard normal;
//! * cell costs `c = B x / sqrt(5) + 0.2 * noise` on a 4 x 4 grid, with a fixed random
//!   `B` `[16, 5]` (standard normal) and standard normal noise per cell;
//! * `truth` int64 `[400, 7]`: the cheapest right/down path from the top-left to the
//!   bottom-right cell, i.e. the grid-path argmax of the potentials `-c` (the plugin's dynamic
//!   program, ties coming from above), as flat cell indices in path order;
//! * `shape` int64 `[2]` = `[4, 4]`.
//!
//! Everything comes from `dlm_core::rng` with a fixed seed, so the file is reproducible:
//!
//! ```sh
//! cargo run -p dlm-tasks --example make_grid_paths            # rewrites the committed file
//! cargo run -p dlm-tasks --example make_grid_paths -- OUT.npz # or writes elsewhere
//! ```

use dlm_core::rng::{open01, rng_for, DlmRng, Stream};
use ndarray::{Array1, Array2};
use ndarray_npy::NpzWriter;
use std::path::PathBuf;

/// Examples.
const N: usize = 400;
/// Features per example.
const F: usize = 5;
/// Grid rows.
const H: usize = 4;
/// Grid columns.
const W: usize = 4;
/// Standard deviation of the per-cell cost noise.
const NOISE: f64 = 0.2;
/// Seed of every draw.
const SEED: u64 = 2021;

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut DlmRng) -> f64 {
    let (u, v) = (open01(rng), open01(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The best right/down path through `theta` `[h, w]` (row-major), as the grid-path plugin
/// computes it: the maximum-score path, ties coming from above.
fn best_path(theta: &[f64], h: usize, w: usize) -> Vec<usize> {
    let mut best = vec![0.0f64; h * w];
    for r in 0..h {
        for c in 0..w {
            let i = r * w + c;
            let prev = match (r > 0, c > 0) {
                (false, false) => 0.0,
                (true, false) => best[i - w],
                (false, true) => best[i - 1],
                (true, true) => best[i - w].max(best[i - 1]),
            };
            best[i] = prev + theta[i];
        }
    }
    let (mut r, mut c) = (h - 1, w - 1);
    let mut path = vec![r * w + c];
    while r > 0 || c > 0 {
        if r > 0 && (c == 0 || best[(r - 1) * w + c] >= best[r * w + c - 1]) {
            r -= 1;
        } else {
            c -= 1;
        }
        path.push(r * w + c);
    }
    path.reverse();
    path
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args_os().nth(1).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/grid-path-plugin/data/paths.npz")
        },
        PathBuf::from,
    );
    let mut rng = rng_for(SEED, Stream::Init, &[0]);
    let b = Array2::from_shape_fn((H * W, F), |_| normal(&mut rng));
    let mut rng = rng_for(SEED, Stream::TrainData, &[0]);
    let x = Array2::from_shape_fn((N, F), |_| normal(&mut rng));
    let mut truth = Array2::<i64>::zeros((N, H + W - 1));
    let mut rng = rng_for(SEED, Stream::Other, &[0]);
    // Examples whose noiseless costs give the same path: what a model that knows B gets.
    let mut oracle = 0usize;
    for (i, xi) in x.rows().into_iter().enumerate() {
        let cost = b.dot(&xi) / (F as f64).sqrt();
        let theta: Vec<f64> = cost
            .iter()
            .map(|c| -(c + NOISE * normal(&mut rng)))
            .collect();
        let path = best_path(&theta, H, W);
        let clean: Vec<f64> = cost.iter().map(|c| -c).collect();
        oracle += (best_path(&clean, H, W) == path) as usize;
        for (j, &cell) in path.iter().enumerate() {
            truth[[i, j]] = cell as i64;
        }
    }
    let mut npz = NpzWriter::new(std::fs::File::create(&out)?);
    npz.add_array("x", &x)?;
    npz.add_array("truth", &truth)?;
    npz.add_array("shape", &Array1::from(vec![H as i64, W as i64]))?;
    npz.finish()?;
    let mut counts = std::collections::BTreeMap::<Vec<i64>, usize>::new();
    for row in truth.rows() {
        *counts.entry(row.to_vec()).or_default() += 1;
    }
    let top = counts.values().max().copied().unwrap_or(0);
    eprintln!(
        "wrote {}: {N} examples, {F} features, a {H} x {W} grid, {} distinct paths (the most \
         frequent covers {:.1}% of the examples); the true linear costs B x give the noisy \
         truth on {:.1}% of the examples",
        out.display(),
        counts.len(),
        100.0 * top as f64 / N as f64,
        100.0 * oracle as f64 / N as f64
    );
    Ok(())
}
