//! `grid-vertex`: the Warcraft-style shortest path through a vertex-weighted `k x k` grid.
//!
//! Potentials `theta` have shape `[k, k]`: `theta[r][c] = -cost` of cell `(r, c)`. A solution
//! is a simple path of cells from the top-left cell `(0, 0)` to the bottom-right cell
//! `(k - 1, k - 1)`, moving to one of the 8 (or, with `neighbours=4`, 4) neighbouring cells at
//! each step; its score is the sum of the potentials of its cells, **both ends included**
//! (the Warcraft benchmark's convention: a path pays for every tile it stands on).
//!
//! **Sign restriction.** Because a path may move in any direction, maximising the score is a
//! shortest-path problem only when every cost is non-negative, i.e. every `theta <= 0`. With
//! a positive potential a path gains by detouring through that cell, and the maximum-score
//! simple path is the longest-path problem, which is NP-hard. So `argmax` refuses any
//! `theta > 0` with an error (a non-positive parametrisation such as `theta = -softplus(z)`
//! keeps the potentials valid). Potentials of `0` (free cells) are allowed.
//!
//! The argmax is Dijkstra's algorithm on the costs `-theta` (the start cell's cost plus the
//! cost of each cell entered), exact and `O(k^2 log k)`, written here rather than taken from
//! `pathfinding` so that its **tie rule** is explicit: cells are settled in increasing order
//! of `(distance, flat index)`, and a cell's predecessor is the first settled neighbour that
//! gives it its final distance (a later neighbour replaces it only with a strictly smaller
//! distance). The result depends only on `theta`.
//!
//! **Active set:** the path's flat cell indices `r * k + c` in path order, from `0` to
//! `k * k - 1` (not ascending in general: a path may go up or left).

use dlm_core::structure::checked_slice;
use dlm_core::{Config, DlmError, Result, StructuredArgmax};
use ndarray::ArrayViewD;
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Largest side `k` of a `grid-vertex` grid.
pub const MAX_SIDE: usize = 1 << 12;

/// Most paths [`GridVertex::enumerate`](StructuredArgmax::enumerate) lists.
pub const MAX_ENUMERATED_PATHS: usize = 20_000;

/// Which cells are adjacent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbours {
    /// The 4 cells sharing a side.
    Four,
    /// The 8 cells sharing a side or a corner (Warcraft maps).
    Eight,
}

impl Neighbours {
    /// The moves `(dr, dc)`.
    pub fn moves(self) -> &'static [(isize, isize)] {
        match self {
            Neighbours::Four => &[(-1, 0), (0, -1), (0, 1), (1, 0)],
            Neighbours::Eight => &[
                (-1, -1),
                (-1, 0),
                (-1, 1),
                (0, -1),
                (0, 1),
                (1, -1),
                (1, 0),
                (1, 1),
            ],
        }
    }
}

/// The `grid-vertex` structure (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridVertex {
    k: usize,
    neighbours: Neighbours,
}

/// A heap entry: ordered by `(distance, cell)`.
#[derive(Debug, Clone, Copy)]
struct Key(f64, usize);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Dijkstra's scratch (fully reset per call).
#[derive(Default)]
struct Scratch {
    dist: Vec<f64>,
    pred: Vec<usize>,
    done: Vec<bool>,
    heap: BinaryHeap<Reverse<Key>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl GridVertex {
    /// A `k x k` grid (`1 <= k <=` [`MAX_SIDE`]) with the given adjacency.
    pub fn new(k: usize, neighbours: Neighbours) -> Result<Self> {
        if k == 0 || k > MAX_SIDE {
            return Err(DlmError::invalid(
                "grid-vertex:k",
                format!("{k} is not allowed: the grid side must be in 1..={MAX_SIDE} (Warcraft maps use 12)"),
            ));
        }
        Ok(GridVertex { k, neighbours })
    }

    /// From the options `k=12,neighbours=8` (`neighbours` is 8 or 4).
    pub fn from_config(c: &Config) -> Result<Self> {
        let neighbours = match c.usize("neighbours", 8)? {
            8 => Neighbours::Eight,
            4 => Neighbours::Four,
            n => {
                return Err(DlmError::invalid(
                    "grid-vertex:neighbours",
                    format!("{n} is not allowed: use 8 (moves to any adjacent cell, Warcraft) or 4 (no diagonal moves)"),
                ))
            }
        };
        GridVertex::new(c.usize("k", 12)?, neighbours)
    }

    /// The grid side `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The adjacency.
    pub fn neighbours(&self) -> Neighbours {
        self.neighbours
    }

    /// The potentials shape, `[k, k]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.k, self.k]
    }

    /// Calls `f` with each neighbour of cell `v` (flat index).
    fn for_neighbours(&self, v: usize, mut f: impl FnMut(usize)) {
        let k = self.k as isize;
        let (r, c) = ((v / self.k) as isize, (v % self.k) as isize);
        for &(dr, dc) in self.neighbours.moves() {
            let (r2, c2) = (r + dr, c + dc);
            if (0..k).contains(&r2) && (0..k).contains(&c2) {
                f((r2 * k + c2) as usize);
            }
        }
    }

    /// Refuses positive potentials (see the [module docs](self)).
    fn check_sign(&self, t: &[f64], what: &str) -> Result<()> {
        match t.iter().position(|&v| v > 0.0) {
            None => Ok(()),
            Some(i) => Err(DlmError::invalid(
                format!("grid-vertex {what}"),
                format!(
                    "cell ({}, {}) (flat index {i}) has potential {} > 0. grid-vertex potentials \
                     are negative costs and must be <= 0: with a positive potential a path gains \
                     by detouring, and the maximum-score simple path is NP-hard (longest path). \
                     Use a non-positive parametrisation, e.g. theta = -softplus(z)",
                    i / self.k,
                    i % self.k,
                    t[i]
                ),
            )),
        }
    }

    /// The maximum-score path for potentials `theta` (`k * k` entries, row-major, finite,
    /// all `<= 0`), written into `out` as cells in path order; returns its score. The slice
    /// form of [`argmax`](StructuredArgmax::argmax), same result and tie rule.
    pub fn best_path(&self, theta: &[f64], out: &mut Vec<usize>) -> Result<f64> {
        if theta.len() != self.k * self.k {
            return Err(DlmError::shape(
                "grid-vertex potentials",
                format!(
                    "{} entries ([{k}, {k}] row-major)",
                    self.k * self.k,
                    k = self.k
                ),
                &[theta.len()],
            ));
        }
        dlm_core::error::ensure_finite("grid-vertex potentials", theta)?;
        self.check_sign(theta, "potentials")?;
        Ok(-self.dijkstra(theta, out))
    }

    /// Dijkstra on the costs `-theta`; returns the path's cost.
    fn dijkstra(&self, theta: &[f64], out: &mut Vec<usize>) -> f64 {
        let n = self.k * self.k;
        // 0.0 - t, not -t: a potential of 0.0 is a cost of +0.0 (never -0.0).
        let cost = |v: usize| 0.0 - theta[v];
        let target = n - 1;
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            s.dist.clear();
            s.dist.resize(n, f64::INFINITY);
            s.pred.clear();
            s.pred.resize(n, usize::MAX);
            s.done.clear();
            s.done.resize(n, false);
            s.heap.clear();
            s.dist[0] = cost(0);
            s.heap.push(Reverse(Key(s.dist[0], 0)));
            while let Some(Reverse(Key(d, u))) = s.heap.pop() {
                if s.done[u] {
                    continue; // a stale entry
                }
                s.done[u] = true;
                if u == target {
                    break;
                }
                let Scratch {
                    dist,
                    pred,
                    done,
                    heap,
                } = s;
                self.for_neighbours(u, |v| {
                    if !done[v] {
                        let nd = d + cost(v);
                        if nd < dist[v] {
                            dist[v] = nd;
                            pred[v] = u;
                            heap.push(Reverse(Key(nd, v)));
                        }
                    }
                });
            }
            out.clear();
            let mut v = target;
            out.push(v);
            while v != 0 {
                v = s.pred[v];
                out.push(v);
            }
            out.reverse();
            s.dist[target]
        })
    }
}

impl StructuredArgmax for GridVertex {
    fn name(&self) -> &str {
        "grid-vertex"
    }

    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        if shape == [self.k, self.k] {
            Ok(())
        } else {
            Err(DlmError::shape(
                "grid-vertex potentials",
                format!(
                    "[{k}, {k}]: one potential (-cost, <= 0) per cell (set the side with \
                     grid-vertex:k=K)",
                    k = self.k
                ),
                shape,
            ))
        }
    }

    /// Dijkstra with the tie rule of the [module docs](self); refuses any potential `> 0`.
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        self.check_sign(t, "potentials")?;
        self.dijkstra(t, out);
        Ok(())
    }

    /// Every simple path from the first to the last cell, cells in path order (depth-first,
    /// neighbours in [`Neighbours::moves`] order), for grids with at most
    /// [`MAX_ENUMERATED_PATHS`] of them (e.g. `k <= 3` with 8 neighbours, `k <= 4` with 4).
    ///
    /// These are all the solutions, but the test kit's conformance checks cannot use them:
    /// they solve random potentials of both signs, which `argmax` refuses. The optimality of
    /// `argmax` on non-positive potentials is tested against this list in this crate's tests.
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        self.check_shape(shape)?;
        let n = self.k * self.k;
        if n > 25 {
            return Ok(None); // far more than MAX_ENUMERATED_PATHS simple paths
        }
        fn walk(
            g: &GridVertex,
            v: usize,
            seen: &mut [bool],
            cur: &mut Vec<usize>,
            out: &mut Vec<Vec<usize>>,
        ) -> bool {
            cur.push(v);
            seen[v] = true;
            let mut ok = true;
            if v + 1 == seen.len() {
                out.push(cur.clone());
                ok = out.len() <= MAX_ENUMERATED_PATHS;
            } else {
                let mut next = Vec::with_capacity(8);
                g.for_neighbours(v, |w| next.push(w));
                for w in next {
                    if ok && !seen[w] {
                        ok = walk(g, w, seen, cur, out);
                    }
                }
            }
            seen[v] = false;
            cur.pop();
            ok
        }
        let mut out = Vec::new();
        if walk(self, 0, &mut vec![false; n], &mut Vec::new(), &mut out) {
            Ok(Some(out))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerate_counts_simple_paths() {
        let count = |k, nb| {
            let g = GridVertex::new(k, nb).unwrap();
            g.enumerate(&g.shape()).unwrap().map(|l| l.len())
        };
        assert_eq!(count(1, Neighbours::Eight), Some(1));
        // 2 x 2 with 8 neighbours is K4: 0-3, 0-1-3, 0-2-3, 0-1-2-3, 0-2-1-3.
        assert_eq!(count(2, Neighbours::Eight), Some(5));
        assert_eq!(count(2, Neighbours::Four), Some(2));
        // Self-avoiding corner-to-corner walks on the 3 x 3 and 4 x 4 grids (OEIS A007764).
        assert_eq!(count(3, Neighbours::Four), Some(12));
        assert_eq!(count(4, Neighbours::Four), Some(184));
        // Against an independent count: simple paths by subset dynamic programming.
        for (k, nb) in [
            (3, Neighbours::Eight),
            (4, Neighbours::Four),
            (2, Neighbours::Eight),
        ] {
            let g = GridVertex::new(k, nb).unwrap();
            let n = k * k;
            // ways[mask][v]: simple paths from cell 0 visiting exactly `mask`, ending at v.
            let mut ways = vec![vec![0u64; n]; 1 << n];
            ways[1][0] = 1;
            let mut total = 0;
            for mask in 1..1usize << n {
                for v in 0..n {
                    let w = ways[mask][v];
                    if w == 0 {
                        continue;
                    }
                    if v == n - 1 {
                        total += w;
                        continue; // a path ends at the last cell
                    }
                    g.for_neighbours(v, |u| {
                        if mask >> u & 1 == 0 {
                            ways[mask | 1 << u][u] += w;
                        }
                    });
                }
            }
            assert_eq!(count(k, nb), Some(total as usize), "k {k}, {nb:?}");
        }
        assert_eq!(count(6, Neighbours::Eight), None);
    }

    #[test]
    fn refuses_positive_potentials_and_bad_options() {
        let g = GridVertex::new(3, Neighbours::Eight).unwrap();
        let mut t = vec![-1.0; 9];
        t[4] = 0.5;
        let e = g.best_path(&t, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("(1, 1)") && e.contains("NP-hard"), "{e}");
        t[4] = 0.0;
        assert!(g.best_path(&t, &mut Vec::new()).is_ok());
        assert!(g.best_path(&t[..8], &mut Vec::new()).is_err());
        assert!(GridVertex::new(0, Neighbours::Four).is_err());
        let e = GridVertex::from_config(
            &dlm_core::Spec::named("grid-vertex")
                .with("neighbours", 6)
                .config(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("8") && e.contains("4"), "{e}");
    }

    #[test]
    fn one_cell_grid_is_the_single_cell() {
        let g = GridVertex::new(1, Neighbours::Eight).unwrap();
        let mut out = Vec::new();
        assert_eq!(g.best_path(&[-2.0], &mut out).unwrap(), -2.0);
        assert_eq!(out, vec![0]);
    }
}
