//! An external `dlm` structure plugin: the best monotone path on a grid.
//!
//! Potentials have shape `[H, W]`: `theta[r][c]` is the score of visiting cell `(r, c)`. A
//! structure is a path from the top-left to the bottom-right cell that moves only right or
//! down (`H + W - 1` cells); `phi(y)` is the 0/1 mask of its cells, so its score is the sum of
//! the visited potentials. The argmax is an exact `O(H W)` dynamic program; on ties the path
//! comes from above rather than from the left, so the result is deterministic.
//!
//! Loss `path-miss`: the number of true-path cells the prediction misses,
//! `l = (H + W - 1) - <1_true, phi(y)>`, linear with `L = -1_true`.
//!
//! Build with `cargo build -p dlm-example-grid-path` (this crate is a cdylib only) and load it
//! with `dlm --plugin target/debug/libdlm_example_grid_path.so solve -s grid-path ...`.
//! See docs/plugin-guide.md, which walks through this file.

use dlm_core::ndarray::{ArrayViewD, ArrayViewMutD};
use dlm_core::plugin::Registrar;
use dlm_core::structure::checked_slice;
use dlm_core::{DlmError, Loss, Result, StructuredArgmax, Target};

/// The grid-path structure.
#[derive(Debug, Clone, Default)]
pub struct GridPath;

impl StructuredArgmax for GridPath {
    fn name(&self) -> &str {
        "grid-path"
    }

    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        match shape {
            [h, w] if *h >= 1 && *w >= 1 => Ok(()),
            _ => Err(DlmError::shape(
                "grid-path potentials",
                "[H, W] with H, W >= 1",
                shape,
            )),
        }
    }

    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        let (h, w) = (theta.shape()[0], theta.shape()[1]);
        // best[r*w + c]: best score of a path from (0,0) to (r,c).
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
                best[i] = prev + t[i];
            }
        }
        // Walk back from the bottom-right corner, preferring the cell above on ties.
        out.clear();
        let (mut r, mut c) = (h - 1, w - 1);
        out.push(r * w + c);
        while r > 0 || c > 0 {
            if r > 0 && (c == 0 || best[(r - 1) * w + c] >= best[r * w + c - 1]) {
                r -= 1;
            } else {
                c -= 1;
            }
            out.push(r * w + c);
        }
        out.reverse();
        Ok(())
    }

    /// Every right/down path, for grids with at most 20 000 of them (`C(H+W-2, H-1)`).
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        self.check_shape(shape)?;
        let (h, w) = (shape[0], shape[1]);
        let mut count = 1u128; // C(h + w - 2, h - 1), stopped early once it is too large
        for i in 0..(h - 1) as u128 {
            count = count * (w as u128 - 1 + i + 1) / (i + 1);
            if count > 20_000 {
                return Ok(None);
            }
        }
        fn walk(
            r: usize,
            c: usize,
            h: usize,
            w: usize,
            cur: &mut Vec<usize>,
            out: &mut Vec<Vec<usize>>,
        ) {
            cur.push(r * w + c);
            if r + 1 == h && c + 1 == w {
                out.push(cur.clone());
            }
            if r + 1 < h {
                walk(r + 1, c, h, w, cur, out);
            }
            if c + 1 < w {
                walk(r, c + 1, h, w, cur, out);
            }
            cur.pop();
        }
        let mut out = Vec::new();
        walk(0, 0, h, w, &mut Vec::new(), &mut out);
        Ok(Some(out))
    }
}

/// Cells of the true path that the prediction misses.
#[derive(Debug, Clone, Default)]
pub struct PathMiss;

impl Loss for PathMiss {
    fn name(&self) -> &str {
        "path-miss"
    }

    fn value(&self, target: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
        Ok(target.truth.iter().filter(|i| !active.contains(i)).count() as f64)
    }

    fn linear_form(&self, target: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        out.fill(0.0);
        let s = out.as_slice_mut().expect("contiguous");
        for &i in &target.truth {
            *s.get_mut(i).ok_or_else(|| {
                DlmError::invalid("path-miss target", format!("cell {i} is outside the grid"))
            })? = -1.0;
        }
        Ok(Some(target.truth.len() as f64))
    }
}

fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.structure(
        "grid-path",
        "best right/down path through [H, W] cell potentials (example plugin)",
        |_| Ok(GridPath),
    )?;
    r.loss(
        "path-miss",
        "true-path cells missed by the predicted path (linear)",
        |_| Ok(PathMiss),
    )
}

dlm_core::export_plugin!(register);
