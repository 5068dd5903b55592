//! Dense linear assignment solver (Jonker–Volgenant family), maximisation form.
//!
//! [`solve_max`] maximises `sum_i theta[i][col_of_row[i]]` over permutations of an `n x n`
//! row-major matrix. The algorithm is the classic LAPJV pipeline:
//!
//! 1. **column reduction** (every column's dual = its maximum, first row wins ties) with
//!    **reduction transfer** for rows that own exactly one column;
//! 2. one pass of **augmenting row reduction** (ARR), with a work budget of two row scans
//!    per free row (unbounded ARR chains were measured to cost more than they save once
//!    the shortest-path phase is vectorised);
//! 3. **shortest augmenting paths** (Dijkstra on reduced costs) for the rows left free.
//!
//! Internally this minimises the reduced costs `w[j] - theta[i][j]`, where `w` are the
//! column duals of the maximisation problem; nothing is negated, scaled or rounded, so the
//! solver works on the input values exactly as given (all arithmetic is IEEE `f64`).
//!
//! Implementation notes (speed):
//! * The Dijkstra phase is *dense and branch-free*: a relaxation pass updates all columns
//!   (`dt[j] = min(dt[j], w[j] - p[i][j] - h)`) and returns the new minimum in one
//!   vectorised sweep. Columns already on the shortest-path tree hold `NaN`, which every
//!   comparison rejects, so no mask is needed. Predecessors are not stored during the
//!   sweep; the few on the final path are recovered afterwards by recomputing the
//!   (bit-identical) relaxation values.
//! * Hot loops work on fixed-size lane arrays so that LLVM vectorises them (SSE2 on any
//!   x86-64). For `n >= 32` the whole solve is additionally compiled for AVX2 and selected
//!   at run time (about 15-20% faster at n = 100..200; slower below n ~ 32). Both paths
//!   perform the same IEEE operations, so they return identical results.
//! * No allocation once a [`LapWorkspace`] has been grown to size `n`.
//!
//! Termination is guaranteed with any finite input (ties, equal rows, constant matrices):
//! every Dijkstra step settles one column, ARR is budgeted, and no loop depends on a
//! tolerance. Integer-valued inputs (below 2^53) are solved exactly; otherwise, as in any
//! floating-point LAP solver, rounding in the dual updates can only matter for
//! assignments whose totals differ by a few ulps. The returned total is summed from the
//! chosen input entries (so it is infinite when that sum overflows `f64`). Entries must be
//! finite; any finite magnitude works: a matrix whose entries are so large that sums of `n`
//! differences could overflow (`max|theta| * n (2n + 4) > 2^1000`) is first multiplied by a
//! power of two ([`crate::scale`]), which is exact except for entries that become subnormal,
//! negligible next to the largest ones. Deterministic: the output depends
//! only on the input (and, for warm starts, on the workspace contents), not on the CPU.

use crate::scale;

const NONE: usize = usize::MAX;

/// Lanes of the manually unrolled loops (8 x f64: two AVX or four SSE2 registers).
const L: usize = 8;

/// Lanes of the two-smallest loop (4 vectorised better than 8 there, ~5% overall).
const TWO_MIN_L: usize = 4;

/// Smallest `n` for which the AVX2 build is used (measured crossover on AMD Zen 4: below
/// n ~ 32 the SSE2 build is faster, e.g. 0.22 vs 0.27 us at n = 8).
#[cfg(target_arch = "x86_64")]
const AVX2_MIN_N: usize = 32;

/// Augmenting row reduction budget: row scans per initially free row.
const ARR_SCANS_PER_FREE_ROW: usize = 2;

/// Relative slack (4 ulps of the magnitudes involved) within which a warm start keeps a
/// previous pair as tight: floating-point dual updates leave previously tight pairs up to
/// ~0.5 ulp above the row minimum (measured on Gumbel-perturbed matrices). Accepting such
/// a pair perturbs the optimum by at most a few ulps per row.
const TIE_ULPS: f64 = 4.0 * f64::EPSILON;

/// Reusable scratch buffers so repeated solves do not allocate.
#[derive(Default, Debug, Clone)]
pub struct LapWorkspace {
    /// Size of the last completed solve (0 = none).
    n: usize,
    /// Column duals, maximisation sense: `theta[i][j] <= r[i] + w[j]`, with equality on
    /// the assignment.
    w: Vec<f64>,
    /// Row duals of the last solve, `r[i] = theta[i][x[i]] - w[x[i]]`.
    r: Vec<f64>,
    /// Column assigned to each row.
    x: Vec<usize>,
    /// Row assigned to each column.
    y: Vec<usize>,
    /// Tentative shortest-path distances (`NaN` once settled).
    d: Vec<f64>,
    /// Distance of each settled column.
    dd: Vec<f64>,
    /// Rows scanned by the current search, in order (also: ownership counts).
    rows: Vec<usize>,
    /// Offsets `h` of the rows in `rows`.
    hs: Vec<f64>,
    /// Settled columns of the current search, in order (also: previous `y`).
    cols: Vec<usize>,
    /// Free rows.
    free: Vec<usize>,
    /// Free columns.
    fcols: Vec<usize>,
    /// Previous assignment (warm start scratch).
    xo: Vec<usize>,
    /// Warm start: snapshot of the first candidate's assignment.
    sx: Vec<usize>,
    /// Warm start: snapshot of the first candidate's column owners.
    sy: Vec<usize>,
    /// Warm start: snapshot of the first candidate's free rows.
    sfree: Vec<usize>,
    /// Warm start: try the row-dual candidate first (it won last time).
    warm_rows_first: bool,
    /// The last solve worked on `theta * 2^scale_exp` (0 unless the entries were large).
    scale_exp: i32,
    /// The scaled copy of the matrix, when `scale_exp != 0`.
    scaled: Vec<f64>,
}

impl LapWorkspace {
    /// Creates an empty workspace; buffers grow on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Column dual variables of the last solve (length n), for warm starts.
    ///
    /// Maximisation sense: with `r[i] = max_j (theta[i][j] - w[j])` (see
    /// [`LapWorkspace::row_duals`]), `theta[i][j] <= r[i] + w[j]` for all pairs, with
    /// equality on the returned assignment (up to rounding), so `sum r + sum w` equals the
    /// optimal total. Empty before the first solve.
    pub fn col_duals(&self) -> &[f64] {
        &self.w[..self.n]
    }

    /// Row dual variables of the last solve (length n):
    /// `r[i] = theta[i][col_of_row[i]] - w[col_of_row[i]]`.
    pub fn row_duals(&self) -> &[f64] {
        &self.r[..self.n]
    }

    /// The exponent `k` of the power of two the last solve multiplied the matrix by (0 unless
    /// its entries were too large to solve as given, see [`crate::scale`]): the duals are
    /// those of `theta * 2^k`.
    pub fn dual_scale_exponent(&self) -> i32 {
        self.scale_exp
    }

    fn prepare(&mut self, n: usize) {
        fn sz<T: Copy>(v: &mut Vec<T>, n: usize, z: T) {
            if v.len() != n {
                v.clear();
                v.resize(n, z);
            }
        }
        sz(&mut self.w, n, 0.0);
        sz(&mut self.r, n, 0.0);
        sz(&mut self.x, n, NONE);
        sz(&mut self.y, n, NONE);
        sz(&mut self.d, n, 0.0);
        sz(&mut self.dd, n, 0.0);
        sz(&mut self.rows, n, 0);
        sz(&mut self.hs, n, 0.0);
        sz(&mut self.cols, n, 0);
        sz(&mut self.free, n, 0);
        sz(&mut self.xo, n, NONE);
        sz(&mut self.sx, n, NONE);
        sz(&mut self.sy, n, NONE);
        sz(&mut self.sfree, n, 0);
        self.fcols.reserve(n);
    }
}

/// Maximise `sum_i theta[i*n + col_of_row[i]]` over permutations. `theta` is row-major n x n.
/// Writes col_of_row (length n). Returns the optimal total score.
/// Precondition (checked by caller): all entries finite, theta.len() == n*n, n >= 1.
///
/// The total is summed from the chosen entries of `theta` in row order.
///
/// # Panics
/// If `n == 0`, `theta.len() != n * n` or `col_of_row.len() < n`.
pub fn solve_max(theta: &[f64], n: usize, ws: &mut LapWorkspace, col_of_row: &mut [usize]) -> f64 {
    assert!(
        n >= 1 && theta.len() == n * n && col_of_row.len() >= n,
        "solve_max: bad dimensions"
    );
    ws.n = 0;
    ws.prepare(n);
    // A cold solve forgets which warm-start candidate won before, so that a following
    // solve_max_warm depends only on the two matrices, not on what this thread solved earlier
    // (results must not depend on how work is spread over threads).
    ws.warm_rows_first = false;
    ws.scale_exp = 0;
    if n == 1 {
        return finish_one(theta, ws, col_of_row);
    }
    ws.scale_exp = scale_for(theta, n);
    solve_scaled(theta, n, ws, col_of_row, false)
}

/// The exponent of the power of two that brings `theta` into the solver's safe range (0 for
/// ordinary matrices, see [`crate::scale`]).
fn scale_for(theta: &[f64], n: usize) -> i32 {
    scale::shrink_exponent(scale::max_abs(theta), scale::lap_growth(n), scale::LAP_SAFE)
}

/// Runs the phases on `theta`, or on `theta * 2^k` (kept in `ws.scaled`) when its entries are
/// so large that the solver's sums could overflow (`ws.scale_exp` must already be `k`), and
/// writes the result; the returned total is summed from `theta` itself.
fn solve_scaled(
    theta: &[f64],
    n: usize,
    ws: &mut LapWorkspace,
    col_of_row: &mut [usize],
    warm: bool,
) -> f64 {
    let k = ws.scale_exp;
    if k == 0 {
        dispatch(theta, n, ws, warm);
        return finish(theta, theta, n, ws, col_of_row);
    }
    let mut scaled = std::mem::take(&mut ws.scaled);
    scaled.clear();
    scaled.extend(theta.iter().map(|&v| scale::ldexp(v, k)));
    dispatch(&scaled, n, ws, warm);
    let total = finish(&scaled, theta, n, ws, col_of_row);
    ws.scaled = scaled;
    total
}

/// Warm start: solve `theta_new` (n x n) reusing the column duals left in `ws` by a previous
/// solve_max of a related matrix (e.g. theta_new = theta + eps * L, which differs in a few
/// entries or by per-row constants). Must return an exactly optimal assignment for theta_new
/// whatever ws holds (fall back to a cold solve if ws is from a different n).
///
/// Two starting points are derived from the previous solve, and the one leaving fewer
/// unassigned rows is completed by augmenting row reduction and shortest augmenting paths:
/// * the previous column duals with fresh row minima (exact when rows changed by
///   constants, or a few entries changed), keeping each row's previous column when it is
///   still of minimum reduced cost;
/// * the previous row duals with fresh column maxima (exact when columns changed by
///   constants), keeping each column's previous row when still maximal.
///
/// The candidate that won last time (since the last [`solve_max`]) is tried first, and the
/// second one only when the first leaves more than n/8 rows unassigned.
///
/// # Panics
/// As [`solve_max`].
pub fn solve_max_warm(
    theta_new: &[f64],
    n: usize,
    ws: &mut LapWorkspace,
    col_of_row: &mut [usize],
) -> f64 {
    if ws.n != n || n == 1 || theta_new.len() != n * n {
        return solve_max(theta_new, n, ws, col_of_row);
    }
    // The duals in `ws` belong to the matrix scaled by 2^ws.scale_exp: warm-start only from
    // duals on the same scale.
    if scale_for(theta_new, n) != ws.scale_exp {
        return solve_max(theta_new, n, ws, col_of_row);
    }
    assert!(col_of_row.len() >= n, "solve_max_warm: bad dimensions");
    ws.n = 0;
    solve_scaled(theta_new, n, ws, col_of_row, true)
}

fn finish_one(theta: &[f64], ws: &mut LapWorkspace, col_of_row: &mut [usize]) -> f64 {
    ws.w[0] = theta[0];
    ws.r[0] = 0.0;
    ws.x[0] = 0;
    ws.y[0] = 0;
    col_of_row[0] = 0;
    ws.n = 1;
    theta[0]
}

/// Writes the assignment and the row duals (of `solved`, the matrix the phases ran on) and
/// returns the total of the chosen entries of `theta` (the caller's matrix).
fn finish(
    solved: &[f64],
    theta: &[f64],
    n: usize,
    ws: &mut LapWorkspace,
    col_of_row: &mut [usize],
) -> f64 {
    let mut total = 0.0;
    for i in 0..n {
        let j = ws.x[i];
        col_of_row[i] = j;
        total += theta[i * n + j];
        ws.r[i] = solved[i * n + j] - ws.w[j];
    }
    ws.n = n;
    total
}

/// Runs the three phases on `p` (n x n, n >= 2), leaving the assignment in `ws.x`.
#[inline(always)]
fn phases(p: &[f64], n: usize, ws: &mut LapWorkspace, warm: bool) {
    let nfree = if warm {
        init_warm(p, n, ws)
    } else {
        init_cold::<false>(p, n, ws)
    };
    let nfree = arr(p, n, ws, nfree);
    augment(p, n, ws, nfree);
}

/// Portable instantiation of [`phases`] (SSE2 on x86-64).
#[inline(never)]
fn phases_base(p: &[f64], n: usize, ws: &mut LapWorkspace, warm: bool) {
    phases(p, n, ws, warm)
}

/// [`phases`] compiled with AVX2 enabled.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn phases_avx2(p: &[f64], n: usize, ws: &mut LapWorkspace, warm: bool) {
    phases(p, n, ws, warm)
}

#[inline(always)]
fn dispatch(p: &[f64], n: usize, ws: &mut LapWorkspace, warm: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if n >= AVX2_MIN_N && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 support was just checked at run time. (Measured gain of the AVX2
            // build, CPU time per solve on uniform matrices, 2-core AMD Zen 4: n = 100
            // 31 -> 27 us, n = 200 144 -> 114 us.)
            unsafe { phases_avx2(p, n, ws, warm) };
            return;
        }
    }
    phases_base(p, n, ws, warm)
}

/// Column reduction of `p[i][j] - off[i]` (`off = ws.r` when `R`, else 0), then the JV
/// assignment of each row to (one of) the columns it maximises, plus, in the cold case,
/// reduction transfer. With `R`, a column's previous owner (`ws.cols`) is kept when it is
/// still maximal (within `TIE_ULPS`). Returns the number of free rows (listed in
/// `ws.free`).
#[inline(always)]
fn init_cold<const R: bool>(p: &[f64], n: usize, ws: &mut LapWorkspace) -> usize {
    let w = &mut ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    let matches = &mut ws.rows[..n];
    let roff = &ws.r[..if R { n } else { 0 }];
    let off = |i: usize| if R { roff[i] } else { 0.0 };
    for j in 0..n {
        w[j] = p[j] - off(0);
    }
    y.fill(0);
    // Column maxima (first row wins ties), row by row. (A column-blocked variant, with
    // w / y held in registers, and a two-rows-per-sweep variant were both slower.)
    let m = n - n % L;
    for i in 1..n {
        let row = &p[i * n..(i + 1) * n];
        let o = off(i);
        for ((wc, yc), rc) in w[..m]
            .chunks_exact_mut(L)
            .zip(y[..m].chunks_exact_mut(L))
            .zip(row[..m].chunks_exact(L))
        {
            let r: [f64; L] = rc.try_into().unwrap();
            let mut wv: [f64; L] = (&*wc).try_into().unwrap();
            let mut yv: [usize; L] = (&*yc).try_into().unwrap();
            for l in 0..L {
                let q = r[l] - o;
                let b = q > wv[l];
                wv[l] = if b { q } else { wv[l] };
                yv[l] = if b { i } else { yv[l] };
            }
            wc.copy_from_slice(&wv);
            yc.copy_from_slice(&yv);
        }
        for j in m..n {
            let q = row[j] - o;
            if q > w[j] {
                w[j] = q;
                y[j] = i;
            }
        }
    }
    if R {
        let yold = &ws.cols[..n];
        for j in 0..n {
            let io = yold[j];
            if io < n
                && w[j] - (p[io * n + j] - off(io)) <= TIE_ULPS * (w[j].abs() + p[io * n + j].abs())
            {
                y[j] = io;
            }
        }
    }
    // A row that maximises several columns takes the one where it is largest; the other
    // columns stay free. Reverse column order, as in LAPJV.
    matches.fill(0);
    x.fill(NONE);
    for j in (0..n).rev() {
        let i = y[j];
        matches[i] += 1;
        if matches[i] == 1 {
            x[i] = j;
        } else if w[j] > w[x[i]] {
            y[x[i]] = NONE;
            x[i] = j;
        } else {
            y[j] = NONE;
        }
    }
    let free = &mut ws.free;
    let mut nfree = 0;
    for i in 0..n {
        if matches[i] == 0 {
            free[nfree] = i;
            nfree += 1;
        } else if matches[i] == 1 && !R {
            // Reduction transfer: raise w[j1] so that the reduced cost of (i, j1) becomes
            // min_{j != j1} (w[j] - p[i][j]). (i, j1) attains the row minimum (exactly 0:
            // w only grew since the column reduction and w[j1] is touched by row i alone),
            // so that minimum is the second smallest value u2 when (i, j1) is at u1.
            let row = &p[i * n..(i + 1) * n];
            let j1 = x[i];
            let (u1, u2) = two_min(row, w);
            let rj1 = w[j1] - row[j1];
            let other = if rj1 == u1 { u2 } else { u1 };
            w[j1] += other - rj1;
        }
    }
    nfree
}

/// Warm-start row pass: with the column duals `w`, assigns every row to a column of
/// minimum reduced cost (its previous column `xo[i]` when that one is still of minimum
/// reduced cost within `TIE_ULPS`), first come first served. Returns the number of free
/// rows.
#[inline(always)]
fn warm_rows(p: &[f64], n: usize, ws: &mut LapWorkspace) -> usize {
    let w = &ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    let xo = &ws.xo[..n];
    y.fill(NONE);
    let mut nfree = 0;
    for i in 0..n {
        let row = &p[i * n..(i + 1) * n];
        let (u1, _) = two_min(row, w);
        let old = xo[i];
        let jm = if old < n
            && y[old] == NONE
            && (w[old] - row[old]) - u1 <= TIE_ULPS * (w[old].abs() + row[old].abs())
        {
            old
        } else {
            find_rc(row, w, u1, n)
        };
        if jm < n && y[jm] == NONE {
            y[jm] = i;
            x[i] = jm;
        } else {
            x[i] = NONE;
            ws.free[nfree] = i;
            nfree += 1;
        }
    }
    nfree
}

/// Warm-start initialisation (see [`solve_max_warm`]). Returns the number of free rows.
#[inline(always)]
fn init_warm(p: &[f64], n: usize, ws: &mut LapWorkspace) -> usize {
    ws.xo[..n].copy_from_slice(&ws.x[..n]);
    ws.cols[..n].copy_from_slice(&ws.y[..n]);
    // Previous w, kept to undo the row-dual candidate (which overwrites w).
    ws.d[..n].copy_from_slice(&ws.w[..n]);
    let good = |nf: usize| nf * 8 <= n;
    let first_rows = ws.warm_rows_first;
    let nf1 = if first_rows {
        init_cold::<true>(p, n, ws)
    } else {
        warm_rows(p, n, ws)
    };
    if good(nf1) {
        return nf1;
    }
    // Keep the first candidate (O(n) copies) and try the other one.
    ws.sx[..n].copy_from_slice(&ws.x[..n]);
    ws.sy[..n].copy_from_slice(&ws.y[..n]);
    ws.sfree[..nf1].copy_from_slice(&ws.free[..nf1]);
    if first_rows {
        ws.dd[..n].copy_from_slice(&ws.w[..n]);
        ws.w[..n].copy_from_slice(&ws.d[..n]);
    }
    let nf2 = if first_rows {
        warm_rows(p, n, ws)
    } else {
        init_cold::<true>(p, n, ws)
    };
    if nf2 < nf1 {
        ws.warm_rows_first = !first_rows;
        return nf2;
    }
    ws.x[..n].copy_from_slice(&ws.sx[..n]);
    ws.y[..n].copy_from_slice(&ws.sy[..n]);
    ws.free[..nf1].copy_from_slice(&ws.sfree[..nf1]);
    if first_rows {
        ws.w[..n].copy_from_slice(&ws.dd[..n]);
    } else {
        ws.w[..n].copy_from_slice(&ws.d[..n]);
    }
    nf1
}

/// Smallest and second smallest of `w[j] - row[j]` (values only; the second equals the
/// first when the minimum is attained twice).
#[inline(always)]
fn two_min(row: &[f64], w: &[f64]) -> (f64, f64) {
    const L: usize = TWO_MIN_L;
    let n = row.len();
    let m = n - n % L;
    let mut a = [f64::INFINITY; L];
    let mut b = [f64::INFINITY; L];
    for (r, wv) in row[..m].chunks_exact(L).zip(w[..m].chunks_exact(L)) {
        let r: [f64; L] = r.try_into().unwrap();
        let wv: [f64; L] = wv.try_into().unwrap();
        for l in 0..L {
            let h = wv[l] - r[l];
            // Two selects on the same comparison: this form vectorises cleanly (other
            // spellings made LLVM emit per-iteration lane permutations).
            let lo = if h < a[l] { h } else { a[l] };
            let hi = if h < a[l] { a[l] } else { h };
            b[l] = if hi < b[l] { hi } else { b[l] };
            a[l] = lo;
        }
    }
    // Tree merge of the per-lane (smallest, second smallest) pairs.
    let mut k = L / 2;
    while k > 0 {
        for l in 0..k {
            let (a1, b1, a2, b2) = (a[l], b[l], a[l + k], b[l + k]);
            let lo = if a2 < a1 { a2 } else { a1 };
            let hi = if a2 < a1 { a1 } else { a2 };
            let bb = if b2 < b1 { b2 } else { b1 };
            a[l] = lo;
            b[l] = if hi < bb { hi } else { bb };
        }
        k /= 2;
    }
    let (mut u1, mut u2) = (a[0], b[0]);
    for j in m..n {
        let h = w[j] - row[j];
        if h < u2 {
            if h < u1 {
                u2 = u1;
                u1 = h;
            } else {
                u2 = h;
            }
        }
    }
    (u1, u2)
}

/// First `j != skip` with `w[j] - row[j] == u` (`n` if none).
#[inline(always)]
fn find_rc(row: &[f64], w: &[f64], u: f64, skip: usize) -> usize {
    let n = row.len();
    let m = n - n % L;
    let mut j = 0;
    for (r, wv) in row[..m].chunks_exact(L).zip(w[..m].chunks_exact(L)) {
        let r: [f64; L] = r.try_into().unwrap();
        let wv: [f64; L] = wv.try_into().unwrap();
        let mut any = false;
        for l in 0..L {
            any |= wv[l] - r[l] == u;
        }
        if any {
            for l in 0..L {
                if wv[l] - r[l] == u && j + l != skip {
                    return j + l;
                }
            }
        }
        j += L;
    }
    (m..n)
        .find(|&j| w[j] - row[j] == u && j != skip)
        .unwrap_or(n)
}

/// First `j` with `dt[j] == v` (`dt.len()` if none).
#[inline(always)]
fn find_eq(dt: &[f64], v: f64) -> usize {
    let n = dt.len();
    let m = n - n % L;
    let mut j = 0;
    for c in dt[..m].chunks_exact(L) {
        let c: [f64; L] = c.try_into().unwrap();
        let mut any = false;
        for x in c {
            any |= x == v;
        }
        if any {
            for (l, x) in c.into_iter().enumerate() {
                if x == v {
                    return j + l;
                }
            }
        }
        j += L;
    }
    dt[m..].iter().position(|&x| x == v).map_or(n, |k| m + k)
}

/// One pass of augmenting row reduction over the free rows, with a budget of
/// `ARR_SCANS_PER_FREE_ROW` row scans per free row. Returns the number of rows still free.
#[inline(always)]
fn arr(p: &[f64], n: usize, ws: &mut LapWorkspace, nfree: usize) -> usize {
    let w = &mut ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    let free = &mut ws.free[..n];
    let prev = nfree;
    let mut nfree = 0;
    let mut budget = ARR_SCANS_PER_FREE_ROW * prev;
    let mut k = 0;
    // Invariant: nfree <= k, so the rows still to be processed (free[k..prev]) are never
    // overwritten.
    while k < prev {
        let i = free[k];
        k += 1;
        if budget == 0 {
            free[nfree] = i;
            nfree += 1;
            continue;
        }
        budget -= 1;
        let row = &p[i * n..(i + 1) * n];
        let (u1, u2) = two_min(row, w);
        let mut j1 = find_rc(row, w, u1, n);
        let mut i0 = y[j1];
        // Raise w[j1] so that row i's reduced cost there reaches its second minimum.
        let wnew = w[j1] + (u2 - u1);
        let raises = wnew > w[j1];
        if raises {
            w[j1] = wnew;
        } else if i0 != NONE {
            // Tie: take another minimal column, which may be free.
            let j2 = find_rc(row, w, u2, j1);
            if j2 < n {
                j1 = j2;
                i0 = y[j2];
            }
        }
        x[i] = j1;
        y[j1] = i;
        if i0 != NONE {
            x[i0] = NONE;
            if raises {
                // Continue the augmenting chain with the displaced row right away.
                k -= 1;
                free[k] = i0;
            } else {
                free[nfree] = i0;
                nfree += 1;
            }
        }
    }
    nfree
}

/// Starts a search from a free row: `dt[j] = w[j] - row[j]`; returns `min_j dt[j]`.
#[inline(always)]
fn first_row(row: &[f64], w: &[f64], dt: &mut [f64]) -> f64 {
    let n = row.len();
    let m = n - n % L;
    let mut mn = [f64::INFINITY; L];
    for ((r, wv), dv) in row[..m]
        .chunks_exact(L)
        .zip(w[..m].chunks_exact(L))
        .zip(dt[..m].chunks_exact_mut(L))
    {
        let r: [f64; L] = r.try_into().unwrap();
        let wv: [f64; L] = wv.try_into().unwrap();
        let mut d = [0.0; L];
        for l in 0..L {
            d[l] = wv[l] - r[l];
            mn[l] = if d[l] < mn[l] { d[l] } else { mn[l] };
        }
        dv.copy_from_slice(&d);
    }
    let mut best = f64::INFINITY;
    for j in m..n {
        dt[j] = w[j] - row[j];
        if dt[j] < best {
            best = dt[j];
        }
    }
    for v in mn {
        if v < best {
            best = v;
        }
    }
    best
}

/// One Dijkstra relaxation pass over all columns from a row (`row` = its entries) with
/// offset `h`: `dt[j] = min(dt[j], w[j] - row[j] - h)`; returns `min_j dt[j]` after the
/// update. Columns already settled hold `dt[j] = NaN`: every comparison with NaN is false,
/// so `if nd < d { nd } else { d }` keeps the NaN and `if d < mn` ignores it. They are thus
/// never updated nor selected, with no mask in the loop. Predecessors are not recorded
/// here (see [`path_pred`]), which keeps the loop branch-free.
#[inline(always)]
fn relax(row: &[f64], w: &[f64], dt: &mut [f64], h: f64) -> f64 {
    let n = row.len();
    let m = n - n % L;
    let mut mn = [f64::INFINITY; L];
    for ((r, wv), dv) in row[..m]
        .chunks_exact(L)
        .zip(w[..m].chunks_exact(L))
        .zip(dt[..m].chunks_exact_mut(L))
    {
        let r: [f64; L] = r.try_into().unwrap();
        let wv: [f64; L] = wv.try_into().unwrap();
        let mut d: [f64; L] = (&*dv).try_into().unwrap();
        for l in 0..L {
            let nd = (wv[l] - r[l]) - h;
            d[l] = if nd < d[l] { nd } else { d[l] };
            mn[l] = if d[l] < mn[l] { d[l] } else { mn[l] };
        }
        dv.copy_from_slice(&d);
    }
    let mut best = f64::INFINITY;
    for j in m..n {
        let nd = (w[j] - row[j]) - h;
        if nd < dt[j] {
            dt[j] = nd;
        }
        if dt[j] < best {
            best = dt[j];
        }
    }
    for v in mn {
        if v < best {
            best = v;
        }
    }
    best
}

/// Row that set the final distance `dj` of column `j`: the first scanned row (in scan
/// order) whose relaxation value equals `dj`. Updates are strict, so that row is the one
/// that set it, and the value is recomputed with the identical expression, hence
/// bit-identical (`x - 0.0 == x` covers the free row, scanned with `h = 0`).
#[inline(always)]
fn path_pred(
    p: &[f64],
    n: usize,
    w: &[f64],
    rows: &[usize],
    hs: &[f64],
    j: usize,
    dj: f64,
) -> usize {
    for (&i, &h) in rows.iter().zip(hs) {
        if (w[j] - p[i * n + j]) - h == dj {
            return i;
        }
    }
    unreachable!("lapjv: no predecessor found on the shortest-path tree")
}

/// Shortest augmenting path phase: augments every free row in turn.
#[inline(always)]
fn augment(p: &[f64], n: usize, ws: &mut LapWorkspace, nfree: usize) {
    let w = &mut ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    let dt = &mut ws.d[..n];
    let dd = &mut ws.dd[..n];
    let rows = &mut ws.rows[..n];
    let hs = &mut ws.hs[..n];
    let done = &mut ws.cols[..n];
    let fc = &mut ws.fcols;
    fc.clear();
    fc.extend((0..n).filter(|&j| y[j] == NONE));
    for f in 0..nfree {
        let freerow = ws.free[f];
        let mut mn = first_row(&p[freerow * n..(freerow + 1) * n], w, dt);
        rows[0] = freerow;
        hs[0] = 0.0;
        let mut ndone = 0;
        let endofpath;
        loop {
            // Settle a column at minimum distance, preferring a free one (ties).
            let mut j = find_eq(dt, mn);
            if y[j] != NONE {
                if let Some(&jf) = fc.iter().find(|&&jf| dt[jf] == mn) {
                    j = jf;
                }
            }
            let i = y[j];
            if i == NONE {
                endofpath = j;
                break;
            }
            done[ndone] = j;
            dd[j] = mn;
            ndone += 1;
            // Row i reaches its column j at distance mn; relax all columns through it.
            let h = (w[j] - p[i * n + j]) - mn;
            rows[ndone] = i;
            hs[ndone] = h;
            dt[j] = f64::NAN;
            mn = relax(&p[i * n..(i + 1) * n], w, dt, h);
        }
        // Flip the alternating path (before the duals change).
        let mut j = endofpath;
        let mut dj = mn;
        loop {
            let i = path_pred(p, n, w, &rows[..=ndone], &hs[..=ndone], j, dj);
            y[j] = i;
            let next = x[i];
            x[i] = j;
            if i == freerow {
                break;
            }
            j = next;
            dj = dd[j];
        }
        // Dual update of the settled columns keeps every assigned pair tight.
        for &c in &done[..ndone] {
            w[c] += mn - dd[c];
        }
        if let Some(pos) = fc.iter().position(|&jf| jf == endofpath) {
            fc.swap_remove(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            dlm_core::rng::splitmix64(&mut self.0)
        }
        fn unif(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, k: u64) -> u64 {
            self.next_u64() % k
        }
        fn gumbel(&mut self) -> f64 {
            -(-(self.unif().max(1e-300)).ln()).ln()
        }
    }

    /// Brute-force maximum over all permutations (Heap's algorithm).
    fn brute(theta: &[f64], n: usize) -> f64 {
        let mut perm: Vec<usize> = (0..n).collect();
        let score = |p: &[usize]| -> f64 { (0..n).map(|i| theta[i * n + p[i]]).sum() };
        let mut best = score(&perm);
        let mut c = vec![0usize; n];
        let mut i = 1;
        while i < n {
            if c[i] < i {
                if i % 2 == 0 {
                    perm.swap(0, i);
                } else {
                    perm.swap(c[i], i);
                }
                best = best.max(score(&perm));
                c[i] += 1;
                i = 1;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        best
    }

    /// Independent O(n^3) Hungarian (potentials, e-maxx formulation), maximisation.
    fn hungarian_max(theta: &[f64], n: usize) -> f64 {
        let cost = |i: usize, j: usize| -theta[(i - 1) * n + (j - 1)];
        let inf = f64::INFINITY;
        let mut u = vec![0.0; n + 1];
        let mut v = vec![0.0; n + 1];
        let mut p = vec![0usize; n + 1];
        let mut way = vec![0usize; n + 1];
        for i in 1..=n {
            p[0] = i;
            let mut j0 = 0;
            let mut minv = vec![inf; n + 1];
            let mut used = vec![false; n + 1];
            loop {
                used[j0] = true;
                let i0 = p[j0];
                let mut delta = inf;
                let mut j1 = 0;
                for j in 1..=n {
                    if !used[j] {
                        let cur = cost(i0, j) - u[i0] - v[j];
                        if cur < minv[j] {
                            minv[j] = cur;
                            way[j] = j0;
                        }
                        if minv[j] < delta {
                            delta = minv[j];
                            j1 = j;
                        }
                    }
                }
                for j in 0..=n {
                    if used[j] {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    } else {
                        minv[j] -= delta;
                    }
                }
                j0 = j1;
                if p[j0] == 0 {
                    break;
                }
            }
            loop {
                let j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
                if j0 == 0 {
                    break;
                }
            }
        }
        (1..=n).map(|j| theta[(p[j] - 1) * n + (j - 1)]).sum()
    }

    /// Solves (cold, then warm on the same matrix) and checks the result is a
    /// permutation whose score equals the returned total.
    fn check_solution(theta: &[f64], n: usize, ws: &mut LapWorkspace) -> f64 {
        let mut col = vec![0usize; n];
        let total = solve_max(theta, n, ws, &mut col);
        assert_perm(theta, n, &col, total);
        assert_eq!(ws.col_duals().len(), n);
        let mut col2 = vec![0usize; n];
        let total2 = solve_max_warm(theta, n, ws, &mut col2);
        assert_perm(theta, n, &col2, total2);
        assert!(close(total, total2), "warm {total2} vs cold {total}");
        total
    }

    fn assert_perm(theta: &[f64], n: usize, col: &[usize], total: f64) {
        let mut seen = vec![false; n];
        for &j in &col[..n] {
            assert!(j < n && !seen[j], "not a permutation: {col:?}");
            seen[j] = true;
        }
        let s: f64 = (0..n).map(|i| theta[i * n + col[i]]).sum();
        assert_eq!(s, total);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
    }

    fn gen(rng: &mut Rng, n: usize, kind: usize) -> Vec<f64> {
        match kind {
            0 => (0..n * n).map(|_| rng.unif()).collect(),
            1 => (0..n * n).map(|_| rng.below(4) as f64).collect(),
            2 => vec![3.5; n * n],
            3 => {
                let row: Vec<f64> = (0..n).map(|_| rng.below(3) as f64).collect();
                (0..n * n).map(|k| row[k % n]).collect()
            }
            4 => (0..n * n).map(|_| (rng.unif() - 0.5) * 1e12).collect(),
            5 => (0..n * n).map(|_| (rng.unif() - 0.5) * 1e-12).collect(),
            6 => (0..n * n).map(|_| -1e6 - rng.below(5) as f64).collect(),
            7 => (0..n * n).map(|_| rng.unif() * 1e300).collect(),
            _ => {
                // equal columns
                let colv: Vec<f64> = (0..n).map(|_| rng.unif()).collect();
                (0..n * n).map(|k| colv[k / n]).collect()
            }
        }
    }

    #[test]
    fn brute_force_small() {
        let mut rng = Rng(1);
        let mut ws = LapWorkspace::new();
        for n in 1..=7 {
            for kind in 0..9 {
                let reps = if n <= 5 { 20 } else { 4 };
                for _ in 0..reps {
                    let theta = gen(&mut rng, n, kind);
                    let got = check_solution(&theta, n, &mut ws);
                    let want = brute(&theta, n);
                    assert!(close(got, want), "n={n} kind={kind}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn against_hungarian() {
        let mut rng = Rng(2);
        let mut ws = LapWorkspace::new();
        for t in 0..60 {
            let n = 1 + rng.below(60) as usize;
            let kind = t % 9;
            let theta = gen(&mut rng, n, kind);
            let got = check_solution(&theta, n, &mut ws);
            let want = hungarian_max(&theta, n);
            assert!(close(got, want), "n={n} kind={kind}: {got} vs {want}");
        }
    }

    #[test]
    fn warm_start_related_pairs() {
        let mut rng = Rng(3);
        let mut ws = LapWorkspace::new();
        let mut col = vec![0usize; 40];
        let mut col_w = vec![0usize; 40];
        let mut ws_cold = LapWorkspace::new();
        for t in 0..60 {
            let n = 1 + rng.below(40) as usize;
            let theta: Vec<f64> = (0..n * n).map(|_| rng.unif() + rng.gumbel()).collect();
            let x: Vec<f64> = (0..n).map(|_| rng.unif()).collect();
            let truth: Vec<usize> = {
                let mut p: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    p.swap(i, rng.below(i as u64 + 1) as usize);
                }
                p
            };
            let eps = [-0.5, -12.0, 0.3, 5.0][t % 4];
            let mut new = theta.clone();
            match t % 3 {
                0 => {
                    for i in 0..n {
                        for j in 0..n {
                            let l = if truth[i] == j {
                                -x[j] * x[j]
                            } else {
                                x[j] * x[j]
                            };
                            new[i * n + j] += eps * l;
                        }
                    }
                }
                1 => {
                    for i in 0..n {
                        let c = rng.unif() * eps;
                        for j in 0..n {
                            new[i * n + j] += c;
                        }
                    }
                }
                _ => {
                    for _ in 0..3 {
                        let k = rng.below((n * n) as u64) as usize;
                        new[k] += eps * rng.unif();
                    }
                }
            }
            solve_max(&theta, n, &mut ws, &mut col[..n]);
            let warm = solve_max_warm(&new, n, &mut ws, &mut col_w[..n]);
            assert_perm(&new, n, &col_w, warm);
            let cold = solve_max(&new, n, &mut ws_cold, &mut col[..n]);
            assert!(close(warm, cold), "n={n} t={t}: warm {warm} vs cold {cold}");
            // Warm start from a workspace of a different size falls back to cold.
            let mut other = LapWorkspace::new();
            let mut c3 = vec![0usize; n + 1];
            let m: Vec<f64> = (0..(n + 1) * (n + 1)).map(|_| rng.unif()).collect();
            solve_max(&m, n + 1, &mut other, &mut c3);
            let w2 = solve_max_warm(&new, n, &mut other, &mut col_w[..n]);
            assert!(close(w2, cold));
        }
    }

    #[test]
    fn deterministic() {
        let mut rng = Rng(4);
        let n = 30;
        let theta = gen(&mut rng, n, 1);
        let mut a = vec![0usize; n];
        let mut b = vec![0usize; n];
        let ta = solve_max(&theta, n, &mut LapWorkspace::new(), &mut a);
        let mut ws = LapWorkspace::new();
        solve_max(&gen(&mut rng, 50, 0), 50, &mut ws, &mut vec![0; 50]);
        let tb = solve_max(&theta, n, &mut ws, &mut b);
        assert_eq!(ta, tb);
        assert_eq!(a, b);
    }

    #[test]
    fn magnitudes_and_signs() {
        let mut rng = Rng(5);
        let mut ws = LapWorkspace::new();
        for &scale in &[1e12, 1e-12, -1.0, -1e12, 1e300] {
            for n in [2usize, 8, 33] {
                let theta: Vec<f64> = (0..n * n).map(|_| rng.unif() * scale).collect();
                let got = check_solution(&theta, n, &mut ws);
                let want = hungarian_max(&theta, n);
                assert!(close(got, want), "scale={scale} n={n}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn larger_ties_against_hungarian() {
        let mut rng = Rng(6);
        let mut ws = LapWorkspace::new();
        for &(n, k) in &[(64usize, 3u64), (100, 2), (130, 5)] {
            let theta: Vec<f64> = (0..n * n).map(|_| rng.below(k) as f64).collect();
            let got = check_solution(&theta, n, &mut ws);
            let want = hungarian_max(&theta, n);
            assert_eq!(got, want, "n={n}");
        }
    }

    #[test]
    fn simd_paths_agree() {
        // The SSE2 and AVX2 builds must give identical results (same IEEE operations).
        let mut rng = Rng(7);
        for &n in &[33usize, 40, 71] {
            for kind in [0, 1, 4] {
                let theta = gen(&mut rng, n, kind);
                let mut a = LapWorkspace::new();
                a.prepare(n);
                phases_base(&theta, n, &mut a, false);
                let mut col = vec![0usize; n];
                let mut b = LapWorkspace::new();
                solve_max(&theta, n, &mut b, &mut col);
                assert_eq!(&a.x[..n], &col[..]);
                assert_eq!(&a.w[..n], b.col_duals());
            }
        }
    }

    #[test]
    fn duals_certify_optimality() {
        let mut rng = Rng(8);
        let mut ws = LapWorkspace::new();
        for &n in &[5usize, 40, 90] {
            let theta = gen(&mut rng, n, 0);
            let mut col = vec![0usize; n];
            let total = solve_max(&theta, n, &mut ws, &mut col);
            let (r, w) = (ws.row_duals(), ws.col_duals());
            for i in 0..n {
                for j in 0..n {
                    assert!(
                        theta[i * n + j] <= r[i] + w[j] + 1e-12,
                        "dual infeasible at ({i},{j})"
                    );
                }
            }
            let dual: f64 = r.iter().sum::<f64>() + w.iter().sum::<f64>();
            assert!(close(dual, total), "{dual} vs {total}");
        }
    }

    #[test]
    fn warm_sequences_switch_candidates() {
        // Alternate column-constant and row-constant perturbations so that both warm-start
        // candidates win in turn; every answer must match a cold solve.
        let mut rng = Rng(9);
        let n = 48;
        let mut theta: Vec<f64> = (0..n * n).map(|_| rng.unif() + rng.gumbel()).collect();
        let mut ws = LapWorkspace::new();
        let mut cold_ws = LapWorkspace::new();
        let mut col = vec![0usize; n];
        let mut colc = vec![0usize; n];
        solve_max(&theta, n, &mut ws, &mut col);
        let mut seen = [false; 2];
        for t in 0..12 {
            for i in 0..n {
                let ci = rng.unif() * 4.0;
                for j in 0..n {
                    theta[i * n + j] += if t % 2 == 0 {
                        (j as f64 * 0.37).sin() * 3.0
                    } else {
                        ci
                    };
                }
            }
            if t % 3 == 2 {
                let k = rng.below((n * n) as u64) as usize;
                theta[k] += 2.0;
            }
            let warm = solve_max_warm(&theta, n, &mut ws, &mut col);
            seen[usize::from(ws.warm_rows_first)] = true;
            assert_perm(&theta, n, &col, warm);
            let cold = solve_max(&theta, n, &mut cold_ws, &mut colc);
            assert!(close(warm, cold), "t={t}: warm {warm} vs cold {cold}");
        }
        assert!(
            seen[0] && seen[1],
            "both warm-start candidates should have won: {seen:?}"
        );
    }
}
