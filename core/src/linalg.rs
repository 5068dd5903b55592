//! Matrix products on all worker threads, with results that do not depend on their number.
//!
//! [`par_gemm`] splits `C = alpha A B + beta C` into blocks of rows (or of columns, whichever
//! dimension of `C` is larger) and computes the blocks in parallel with rayon, each by one
//! `ndarray::linalg::general_mat_mul` on views. The blocks depend only on the shapes, never
//! on the number of threads, and every entry of `C` is computed by the same call on the same
//! block whatever the thread count, so the result is identical with 1, 2 or 16 threads.
//! (Within a block, `matrixmultiply` sums each entry over `k` in the same fixed order as for
//! the whole matrix, so in practice the result is also the unsplit product's; the tests check
//! it, but the thread-count independence does not rely on it.)
//!
//! [`par_map_inplace`] and [`par_zip_for_each`] do the same for element-wise work on large
//! arrays (fixed chunks of [`ELEMENT_CHUNK`] elements).

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// Products below this many flops (`2 m n k`) are computed in one call: splitting them
/// costs more (fork/join, a few microseconds) than it saves.
pub const PAR_MIN_FLOPS: usize = 1 << 21;

/// Most blocks a product is split into.
const MAX_BLOCKS: usize = 8;

/// Fewest rows (or columns) of `C` per block: a multiple of the micro-kernels' tile sizes.
const MIN_BLOCK: usize = 32;

/// Element-wise loops over fewer entries run on one thread; longer ones in chunks of this
/// many entries.
pub const ELEMENT_CHUNK: usize = 1 << 15;

/// The block size along a dimension of length `len`: at most [`MAX_BLOCKS`] blocks of at
/// least [`MIN_BLOCK`], rounded up to a multiple of 8.
fn block_size(len: usize) -> usize {
    let b = len.div_ceil(MAX_BLOCKS).max(MIN_BLOCK);
    b.div_ceil(8) * 8
}

/// `C = alpha A B + beta C` (`A` `[m, k]`, `B` `[k, n]`, `C` `[m, n]`), in parallel blocks
/// fixed by the shapes (see the [module docs](self)).
///
/// # Panics
/// If the shapes do not agree (as `general_mat_mul`).
pub fn par_gemm(
    alpha: f64,
    a: &ArrayView2<'_, f64>,
    b: &ArrayView2<'_, f64>,
    beta: f64,
    c: &mut ArrayViewMut2<'_, f64>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    if flops < PAR_MIN_FLOPS || m.max(n) < 2 * MIN_BLOCK {
        general_mat_mul(alpha, a, b, beta, c);
        return;
    }
    assert!(
        b.nrows() == k && c.dim() == (m, n),
        "par_gemm: shapes {:?} x {:?} -> {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if m >= n {
        let bs = block_size(m);
        let blocks: Vec<_> = a
            .axis_chunks_iter(Axis(0), bs)
            .zip(c.axis_chunks_iter_mut(Axis(0), bs))
            .collect();
        blocks
            .into_par_iter()
            .for_each(|(a, mut c)| general_mat_mul(alpha, &a, b, beta, &mut c));
    } else {
        let bs = block_size(n);
        let blocks: Vec<_> = b
            .axis_chunks_iter(Axis(1), bs)
            .zip(c.axis_chunks_iter_mut(Axis(1), bs))
            .collect();
        blocks
            .into_par_iter()
            .for_each(|(b, mut c)| general_mat_mul(alpha, a, &b, beta, &mut c));
    }
}

/// `f` applied to every entry of `xs`, in parallel chunks of [`ELEMENT_CHUNK`] when `xs` is
/// longer than one chunk.
pub fn par_map_inplace(xs: &mut [f64], f: impl Fn(f64) -> f64 + Sync) {
    if xs.len() <= ELEMENT_CHUNK {
        xs.iter_mut().for_each(|x| *x = f(*x));
    } else {
        xs.par_chunks_mut(ELEMENT_CHUNK)
            .for_each(|c| c.iter_mut().for_each(|x| *x = f(*x)));
    }
}

/// `f(out[i], a[i])` for every `i`, in parallel chunks of [`ELEMENT_CHUNK`] when longer
/// than one chunk.
///
/// # Panics
/// If the slices differ in length.
pub fn par_zip_for_each(out: &mut [f64], a: &[f64], f: impl Fn(&mut f64, f64) + Sync) {
    assert_eq!(out.len(), a.len(), "par_zip_for_each: lengths differ");
    if out.len() <= ELEMENT_CHUNK {
        out.iter_mut().zip(a).for_each(|(o, &x)| f(o, x));
    } else {
        out.par_chunks_mut(ELEMENT_CHUNK)
            .zip(a.par_chunks(ELEMENT_CHUNK))
            .for_each(|(o, a)| o.iter_mut().zip(a).for_each(|(o, &x)| f(o, x)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn random(m: usize, n: usize, seed: u64) -> Array2<f64> {
        let mut s = seed;
        Array2::from_shape_fn((m, n), |_| {
            (crate::rng::splitmix64(&mut s) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
    }

    #[test]
    fn split_products_equal_one_call_bit_for_bit_on_any_pool() {
        // Row splits, column splits, transposed operands, beta 0 and 1, odd sizes.
        for &(m, k, n, ta, beta) in &[
            (900, 784, 256, false, 0.0),
            (784, 900, 256, true, 1.0),
            (100, 64, 800, false, 1.0),
            (1000, 32, 100, false, 0.0),
            (37, 3, 5, false, 1.0),
            (250, 100, 25, true, 1.0),
        ] {
            let a = if ta {
                random(k, m, 1).reversed_axes()
            } else {
                random(m, k, 1)
            };
            let b = random(k, n, 2);
            let c0 = random(m, n, 3);
            let mut want = c0.clone();
            general_mat_mul(1.0, &a, &b, beta, &mut want);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut got = c0.clone();
                pool.install(|| par_gemm(1.0, &a.view(), &b.view(), beta, &mut got.view_mut()));
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n} on {threads} threads differs from one call"
                );
            }
        }
    }

    #[test]
    fn element_wise_helpers_cover_every_entry() {
        let mut v: Vec<f64> = (0..100_000).map(|i| i as f64).collect();
        par_map_inplace(&mut v, |x| 2.0 * x);
        assert!(v.iter().enumerate().all(|(i, &x)| x == 2.0 * i as f64));
        let a = v.clone();
        par_zip_for_each(&mut v, &a, |o, x| *o += x);
        assert!(v.iter().enumerate().all(|(i, &x)| x == 4.0 * i as f64));
    }
}
