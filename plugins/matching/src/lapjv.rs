//! Dense linear assignment (Jonker–Volgenant shortest augmenting path).

const NONE: usize = usize::MAX;

/// Reusable scratch buffers so repeated solves do not allocate.
#[derive(Default, Debug, Clone)]
pub struct LapWorkspace {
    /// Size of the last completed solve (0 = none).
    n: usize,
    /// Column duals, maximisation sense.
    w: Vec<f64>,
    /// Shortest-path distances.
    d: Vec<f64>,
    /// Column assigned to each row.
    x: Vec<usize>,
    /// Row assigned to each column.
    y: Vec<usize>,
    /// Predecessor row of each column on the shortest-path tree.
    pred: Vec<usize>,
    /// Column list (ready | scan | todo).
    cols: Vec<usize>,
    /// Free rows.
    free: Vec<usize>,
    /// Column duals with +inf for columns already on the shortest-path tree.
    wt: Vec<f64>,
    /// Distances of the columns in `cols` (tree order).
    dd: Vec<f64>,
    /// Free columns.
    fcols: Vec<usize>,
    /// Offsets `h` of the rows scanned in the current search.
    hs: Vec<f64>,
}

impl LapWorkspace {
    /// Creates an empty workspace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Column dual variables of the last solve (length n), for warm starts.
    pub fn col_duals(&self) -> &[f64] {
        &self.w[..self.n]
    }

    fn prepare(&mut self, n: usize) {
        fn sz<T: Copy>(v: &mut Vec<T>, n: usize, z: T) {
            if v.len() != n {
                v.clear();
                v.resize(n, z);
            }
        }
        sz(&mut self.w, n, 0.0);
        sz(&mut self.d, n, 0.0);
        sz(&mut self.x, n, NONE);
        sz(&mut self.y, n, NONE);
        sz(&mut self.pred, n, 0);
        sz(&mut self.cols, n, 0);
        sz(&mut self.free, n, 0);
        sz(&mut self.wt, n, 0.0);
        sz(&mut self.dd, n, 0.0);
        sz(&mut self.hs, n + 1, 0.0);
        self.fcols.reserve(n);
    }
}

/// Maximise sum_i theta[i*n + col_of_row[i]] over permutations.
pub fn solve_max(theta: &[f64], n: usize, ws: &mut LapWorkspace, col_of_row: &mut [usize]) -> f64 {
    assert!(n >= 1 && theta.len() == n * n && col_of_row.len() >= n);
    ws.n = 0;
    ws.prepare(n);
    if n == 1 {
        return finish_one(theta, ws, col_of_row);
    }
    let nfree = init_cold(theta, n, ws);
    let nfree = arr(theta, n, ws, nfree);
    augment(theta, n, ws, nfree);
    finish(theta, n, ws, col_of_row)
}

/// Warm start.
pub fn solve_max_warm(theta_new: &[f64], n: usize, ws: &mut LapWorkspace, col_of_row: &mut [usize]) -> f64 {
    if ws.n != n || n == 1 {
        return solve_max(theta_new, n, ws, col_of_row);
    }
    assert!(theta_new.len() == n * n && col_of_row.len() >= n);
    ws.n = 0;
    let nfree = init_warm(theta_new, n, ws);
    let nfree = arr(theta_new, n, ws, nfree);
    augment(theta_new, n, ws, nfree);
    finish(theta_new, n, ws, col_of_row)
}

fn finish_one(theta: &[f64], ws: &mut LapWorkspace, col_of_row: &mut [usize]) -> f64 {
    ws.w[0] = theta[0];
    ws.x[0] = 0;
    ws.y[0] = 0;
    col_of_row[0] = 0;
    ws.n = 1;
    theta[0]
}

fn finish(theta: &[f64], n: usize, ws: &mut LapWorkspace, col_of_row: &mut [usize]) -> f64 {
    let mut total = 0.0;
    for i in 0..n {
        let j = ws.x[i];
        col_of_row[i] = j;
        total += theta[i * n + j];
    }
    ws.n = n;
    total
}

/// Column reduction + reduction transfer. Returns number of free rows (in ws.free).
#[inline(never)]
fn init_cold(p: &[f64], n: usize, ws: &mut LapWorkspace) -> usize {
    let w = &mut ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    let matches = &mut ws.pred[..n];
    w.copy_from_slice(&p[..n]);
    y.fill(0);
    for i in 1..n {
        let row = &p[i * n..(i + 1) * n];
        for ((wj, yj), &pij) in w.iter_mut().zip(y.iter_mut()).zip(row) {
            if pij > *wj {
                *wj = pij;
                *yj = i;
            }
        }
    }
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
        } else if matches[i] == 1 {
            let j1 = x[i];
            let row = &p[i * n..(i + 1) * n];
            let mut m = f64::INFINITY;
            for j in 0..n {
                if j != j1 {
                    let r = w[j] - row[j];
                    if r < m {
                        m = r;
                    }
                }
            }
            w[j1] += m;
        }
    }
    nfree
}

#[inline(never)]
fn init_warm(p: &[f64], n: usize, ws: &mut LapWorkspace) -> usize {
    let w = &ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    y.fill(NONE);
    let mut nfree = 0;
    for i in 0..n {
        let row = &p[i * n..(i + 1) * n];
        let mut m = f64::INFINITY;
        let mut jm = 0;
        for j in 0..n {
            let r = w[j] - row[j];
            if r < m {
                m = r;
                jm = j;
            }
        }
        let old = x[i];
        if old < n && w[old] - row[old] == m && y[old] == NONE {
            jm = old;
        }
        if y[jm] == NONE {
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

/// Smallest and second smallest of `w[j] - row[j]` (values only).
#[inline(always)]
fn two_min(row: &[f64], w: &[f64]) -> (f64, f64) {
    let n = row.len();
    let m = n - n % L;
    let mut a = [f64::INFINITY; L];
    let mut b = [f64::INFINITY; L];
    for (r, wv) in row[..m].chunks_exact(L).zip(w[..m].chunks_exact(L)) {
        for l in 0..L {
            let h = wv[l] - r[l];
            let hi = if h < a[l] { a[l] } else { h };
            b[l] = if hi < b[l] { hi } else { b[l] };
            a[l] = if h < a[l] { h } else { a[l] };
        }
    }
    let (mut u1, mut u2) = (f64::INFINITY, f64::INFINITY);
    let mut push = |h: f64| {
        if h < u2 {
            if h < u1 {
                u2 = u1;
                u1 = h;
            } else {
                u2 = h;
            }
        }
    };
    for l in 0..L {
        push(a[l]);
        push(b[l]);
    }
    for j in m..n {
        push(w[j] - row[j]);
    }
    (u1, u2)
}

/// Augmenting row reduction passes. Returns the number of rows still free.
#[inline(never)]
fn arr(p: &[f64], n: usize, ws: &mut LapWorkspace, mut nfree: usize) -> usize {
    let w = &mut ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    let free = &mut ws.free[..n];
    let passes = ARR_PASSES.load(std::sync::atomic::Ordering::Relaxed);
    let budget_mult = ARR_BUDGET.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..passes {
        let mut k = 0;
        let prev = nfree;
        nfree = 0;
        let mut budget = budget_mult * prev / 4;
        while k < prev {
            let i = free[k];
            k += 1;
            let row = &p[i * n..(i + 1) * n];
            if budget == 0 {
                free[nfree] = i;
                nfree += 1;
                continue;
            }
            budget -= 1;
            let (u1, u2) = two_min(row, w);
            let mut j1 = row.iter().zip(w.iter()).position(|(&r, &wv)| wv - r == u1).unwrap_or(0);
            let mut i0 = y[j1];
            let wnew = w[j1] + (u2 - u1);
            let lowers = wnew > w[j1];
            if lowers {
                w[j1] = wnew;
            } else if i0 != NONE {
                let j2 = (0..n).find(|&j| j != j1 && w[j] - row[j] == u2).unwrap_or(j1);
                j1 = j2;
                i0 = y[j2];
            }
            x[i] = j1;
            y[j1] = i;
            if i0 != NONE && i0 != i {
                x[i0] = NONE;
                if lowers {
                    k -= 1;
                    free[k] = i0;
                } else {
                    free[nfree] = i0;
                    nfree += 1;
                }
            }
        }
    }
    nfree
}

/// Tuning knobs (temporary).
pub static ARR_PASSES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(2);
/// Tuning knobs (temporary): budget per pass = mult * nfree / 4.
pub static ARR_BUDGET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1000000);

/// Lanes of the manually unrolled loops (4 x f64 = one AVX register, two SSE2 registers).
const L: usize = 4;

/// One Dijkstra relaxation pass over all columns from a row (`row` = its profits) with
/// offset `h`: `dt[j] = min(dt[j], wt[j] - row[j] - h)`; returns `min_j dt[j]` after the
/// update. Done columns have `wt[j] = dt[j] = +inf`, so they are never updated nor selected.
/// Predecessors are not recorded here (see `path_pred`), which keeps the loop branch-free.
#[inline(always)]
fn relax(row: &[f64], wt: &[f64], dt: &mut [f64], h: f64) -> f64 {
    let n = row.len();
    let m = n - n % L;
    let mut mn = [f64::INFINITY; L];
    for ((r, wv), dv) in row[..m]
        .chunks_exact(L)
        .zip(wt[..m].chunks_exact(L))
        .zip(dt[..m].chunks_exact_mut(L))
    {
        for l in 0..L {
            let nd = (wv[l] - r[l]) - h;
            let v = if nd < dv[l] { nd } else { dv[l] };
            dv[l] = v;
            mn[l] = if v < mn[l] { v } else { mn[l] };
        }
    }
    let mut best = f64::INFINITY;
    for j in m..n {
        let nd = (wt[j] - row[j]) - h;
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
/// order) whose relaxation value equals `dj` (updates are strict, so it is the setter;
/// the value is recomputed with the identical expression, hence bit-identical).
#[inline(always)]
fn path_pred(p: &[f64], n: usize, w: &[f64], rows: &[usize], hs: &[f64], j: usize, dj: f64) -> usize {
    for (&i, &h) in rows.iter().zip(hs) {
        if (w[j] - p[i * n + j]) - h == dj {
            return i;
        }
    }
    // Unreachable: dj was produced by one of the scanned rows.
    rows[0]
}

#[inline(never)]
fn augment(p: &[f64], n: usize, ws: &mut LapWorkspace, nfree: usize) {
    let w = &mut ws.w[..n];
    let y = &mut ws.y[..n];
    let x = &mut ws.x[..n];
    let dt = &mut ws.d[..n];
    let wt = &mut ws.wt[..n];
    let rows = &mut ws.pred[..n];
    let done = &mut ws.cols[..n];
    let dd = &mut ws.dd[..n];
    let hs = &mut ws.hs[..n];
    let fc = &mut ws.fcols;
    fc.clear();
    fc.extend((0..n).filter(|&j| y[j] == NONE));
    for f in 0..nfree {
        let freerow = ws.free[f];
        wt.copy_from_slice(w);
        dt.fill(f64::INFINITY);
        let mut mn = relax(&p[freerow * n..(freerow + 1) * n], wt, dt, 0.0);
        rows[0] = freerow;
        hs[0] = 0.0;
        let mut ndone = 0;
        let endofpath;
        loop {
            // Select a column at minimum distance, preferring a free one.
            let mut j = dt.iter().position(|&v| v == mn).unwrap_or(0);
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
            dd[ndone] = mn;
            ndone += 1;
            let h = (w[j] - p[i * n + j]) - mn;
            rows[ndone] = i;
            hs[ndone] = h;
            wt[j] = f64::INFINITY;
            dt[j] = f64::INFINITY;
            mn = relax(&p[i * n..(i + 1) * n], wt, dt, h);
        }
        // Reconstruct and flip the alternating path (before touching w).
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
            dj = dd[done[..ndone].iter().position(|&c| c == j).unwrap_or(0)];
        }
        for k in 0..ndone {
            w[done[k]] += mn - dd[k];
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
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
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
                            let l = if truth[i] == j { -x[j] * x[j] } else { x[j] * x[j] };
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
}
