//! `grid-edges`: PyEPO's shortest path on an edge-weighted `rows x cols` grid.
//!
//! Nodes are the grid points `v = i * cols + j` (row `i`, column `j`); arcs go right
//! (`v -> v + 1`) and down (`v -> v + cols`); a solution is a path from the top-left node `0`
//! to the bottom-right node `rows * cols - 1` (`rows + cols - 2` arcs). The potentials have
//! shape `[E]`, `E = rows * (cols - 1) + (rows - 1) * cols`, one entry per arc in **PyEPO's arc
//! order** (`pyepo.model.utils._get_grid_arcs`, checked against PyEPO 2.2.7): for each row `i`,
//! first the row's right arcs `(v, v + 1)` for `j = 0..cols-1`, then, unless `i` is the last
//! row, its down arcs `(v, v + cols)` for `j = 0..cols`. So
//!
//! ```text
//! right(i, j) = i * (2 cols - 1) + j                 (j < cols - 1)
//! down(i, j)  = i * (2 cols - 1) + (cols - 1) + j    (i < rows - 1)
//! ```
//!
//! and PyEPO's cost vector `c` (length 40 for its 5x5 grid) lines up entry by entry with
//! `theta = -c`.
//!
//! The argmax maximises `<theta, phi(y)>`, the sum of `theta` over the path's arcs (the
//! shortest path under `cost = -theta`), with a dynamic program over the nodes in row-major
//! (topological) order: exact, `O(E)`, no allocation after warm-up. **Ties:** at every node
//! where both incoming arcs give the best score, the path arrives from above (the down arc,
//! which is also the lower arc index); the result depends only on `theta`.
//!
//! **Active set:** the path's arc indices from the source to the sink. Along any right/down
//! path the arc indices strictly increase, so this path order is also ascending order (a
//! 0/1 indicator read in ascending order gives the canonical active set).

use dlm_core::structure::checked_slice;
use dlm_core::{Config, DlmError, Result, StructuredArgmax};
use ndarray::ArrayViewD;
use std::cell::RefCell;

/// Largest number of arcs a grid may have (keeps every index and buffer small).
pub const MAX_EDGES: usize = 1 << 24;

/// Most paths [`GridEdges::enumerate`](StructuredArgmax::enumerate) lists.
pub const MAX_ENUMERATED_PATHS: usize = 20_000;

/// The number of arcs of a `rows x cols` grid with right and down moves,
/// `rows * (cols - 1) + (rows - 1) * cols`, or `None` if `rows` or `cols` is 0 or it overflows.
pub fn num_edges(rows: usize, cols: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return None;
    }
    rows.checked_mul(cols - 1)?
        .checked_add((rows - 1).checked_mul(cols)?)
}

/// The `grid-edges` structure (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridEdges {
    rows: usize,
    cols: usize,
    edges: usize,
}

thread_local! {
    /// Best score of a path from the source to each node (scratch, fully rewritten per call).
    static BEST: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl GridEdges {
    /// A `rows x cols` grid: both at least 1, at least 2 nodes (so that there is an arc), at
    /// most [`MAX_EDGES`] arcs.
    pub fn new(rows: usize, cols: usize) -> Result<Self> {
        let edges = num_edges(rows, cols).filter(|e| (1..=MAX_EDGES).contains(e));
        match edges {
            Some(edges) => Ok(GridEdges { rows, cols, edges }),
            None => Err(DlmError::invalid(
                "grid-edges:rows,cols",
                format!(
                    "a {rows} x {cols} grid is not allowed: rows and cols must be at least 1, \
                     with at least 2 nodes and at most {MAX_EDGES} arcs (PyEPO's default is 5 x 5)"
                ),
            )),
        }
    }

    /// From the options `rows=5,cols=5` (PyEPO's default grid).
    pub fn from_config(c: &Config) -> Result<Self> {
        GridEdges::new(c.usize("rows", 5)?, c.usize("cols", 5)?)
    }

    /// Rows of nodes.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of nodes.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The number of arcs `E`, the length of the potentials.
    pub fn num_edges(&self) -> usize {
        self.edges
    }

    /// The potentials shape, `[E]`.
    pub fn shape(&self) -> [usize; 1] {
        [self.edges]
    }

    /// The index of the right arc from node `(i, j)` to `(i, j + 1)` (`j < cols - 1`).
    pub fn right(&self, i: usize, j: usize) -> usize {
        debug_assert!(i < self.rows && j + 1 < self.cols);
        i * (2 * self.cols - 1) + j
    }

    /// The index of the down arc from node `(i, j)` to `(i + 1, j)` (`i < rows - 1`).
    pub fn down(&self, i: usize, j: usize) -> usize {
        debug_assert!(i + 1 < self.rows && j < self.cols);
        i * (2 * self.cols - 1) + self.cols - 1 + j
    }

    /// Every arc as `(source node, target node)`, nodes numbered `i * cols + j`, in potentials
    /// order: the list PyEPO's `_get_grid_arcs` builds.
    pub fn arcs(&self) -> Vec<(usize, usize)> {
        let c = self.cols;
        let mut arcs = Vec::with_capacity(self.edges);
        for i in 0..self.rows {
            for j in 0..c - 1 {
                let v = i * c + j;
                arcs.push((v, v + 1));
            }
            if i + 1 == self.rows {
                continue;
            }
            for j in 0..c {
                let v = i * c + j;
                arcs.push((v, v + c));
            }
        }
        arcs
    }

    /// The nodes a path visits, from node `0` to node `rows * cols - 1`, given its arcs in
    /// path order (an active set of this structure); `None` if the arcs are not such a path.
    pub fn nodes(&self, active: &[usize]) -> Option<Vec<usize>> {
        let arcs = self.arcs();
        let mut nodes = Vec::with_capacity(active.len() + 1);
        nodes.push(0);
        for &a in active {
            let &(from, to) = arcs.get(a)?;
            if from != *nodes.last().expect("non-empty") {
                return None;
            }
            nodes.push(to);
        }
        (*nodes.last().expect("non-empty") == self.rows * self.cols - 1).then_some(nodes)
    }

    /// The maximum-score path for potentials `theta` (length `E`, finite), written into `out`
    /// as arc indices in path order; returns its score. The slice form of
    /// [`argmax`](StructuredArgmax::argmax), same result and tie rule.
    pub fn best_path(&self, theta: &[f64], out: &mut Vec<usize>) -> Result<f64> {
        self.check_len(theta.len())?;
        dlm_core::error::ensure_finite("grid-edges potentials", theta)?;
        Ok(self.solve(theta, 1.0, out))
    }

    /// The minimum-cost path for arc costs `costs` (length `E`, finite; any sign), written into
    /// `out` as arc indices in path order; returns its cost. Exactly the path
    /// [`best_path`](GridEdges::best_path) returns for `theta = -costs`.
    pub fn shortest_path(&self, costs: &[f64], out: &mut Vec<usize>) -> Result<f64> {
        self.check_len(costs.len())?;
        dlm_core::error::ensure_finite("grid-edges costs", costs)?;
        Ok(-self.solve(costs, -1.0, out))
    }

    fn check_len(&self, len: usize) -> Result<()> {
        self.check_shape(&[len])
    }

    /// The dynamic program maximising `sum sign * t` over the path's arcs (sign = +1:
    /// potentials; -1: costs); returns that maximum. Negation is exact in floating point, so
    /// `t` with sign -1 gives the same path as `-t` with sign +1.
    fn solve(&self, t: &[f64], sign: f64, out: &mut Vec<usize>) -> f64 {
        let (rows, cols) = (self.rows, self.cols);
        BEST.with(|b| {
            let best = &mut *b.borrow_mut();
            best.clear();
            best.resize(rows * cols, 0.0);
            // The two ways into node (i, j): from above and from the left, when they exist.
            let above = |best: &[f64], i: usize, j: usize| {
                (i > 0).then(|| best[(i - 1) * cols + j] + sign * t[self.down(i - 1, j)])
            };
            let left = |best: &[f64], i: usize, j: usize| {
                (j > 0).then(|| best[i * cols + j - 1] + sign * t[self.right(i, j - 1)])
            };
            // Ties go to the arc from above.
            let pick = |a: Option<f64>, l: Option<f64>| -> Option<bool> {
                match (a, l) {
                    (Some(a), Some(l)) => Some(a >= l),
                    (Some(_), None) => Some(true),
                    (None, Some(_)) => Some(false),
                    (None, None) => None,
                }
            };
            for i in 0..rows {
                for j in 0..cols {
                    let (a, l) = (above(best, i, j), left(best, i, j));
                    best[i * cols + j] = match pick(a, l) {
                        Some(true) => a.expect("above exists"),
                        Some(false) => l.expect("left exists"),
                        None => 0.0, // the source
                    };
                }
            }
            out.clear();
            let (mut i, mut j) = (rows - 1, cols - 1);
            while let Some(from_above) = pick(above(best, i, j), left(best, i, j)) {
                if from_above {
                    i -= 1;
                    out.push(self.down(i, j));
                } else {
                    j -= 1;
                    out.push(self.right(i, j));
                }
            }
            out.reverse();
            best[rows * cols - 1]
        })
    }
}

impl StructuredArgmax for GridEdges {
    fn name(&self) -> &str {
        "grid-edges"
    }

    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        if shape == [self.edges] {
            Ok(())
        } else {
            Err(DlmError::shape(
                "grid-edges potentials",
                format!(
                    "[{}]: one potential (-cost) per arc of the {} x {} grid, in PyEPO's arc \
                     order (set the grid with grid-edges:rows=R,cols=C)",
                    self.edges, self.rows, self.cols
                ),
                shape,
            ))
        }
    }

    /// Exact dynamic program; ties to the arc from above (see the [module docs](self)).
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        self.solve(t, 1.0, out);
        Ok(())
    }

    /// The nodes of the path, `0` to `rows * cols - 1` (node `v = i * cols + j`); the active
    /// set itself if it is not a path of this grid.
    fn decode(&self, shape: &[usize], active: &[usize]) -> Vec<usize> {
        let _ = shape;
        self.nodes(active).unwrap_or_else(|| active.to_vec())
    }

    /// Every right/down path (`C(rows + cols - 2, rows - 1)` of them) as arcs in path order,
    /// for grids with at most [`MAX_ENUMERATED_PATHS`] paths.
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        self.check_shape(shape)?;
        let (rows, cols) = (self.rows, self.cols);
        let mut count = 1u128; // C(rows + cols - 2, rows - 1), stopped once it is too large
        for i in 0..(rows - 1) as u128 {
            count = count * (cols as u128 + i) / (i + 1);
            if count > MAX_ENUMERATED_PATHS as u128 {
                return Ok(None);
            }
        }
        fn walk(
            g: &GridEdges,
            i: usize,
            j: usize,
            cur: &mut Vec<usize>,
            out: &mut Vec<Vec<usize>>,
        ) {
            if i + 1 == g.rows && j + 1 == g.cols {
                out.push(cur.clone());
                return;
            }
            if j + 1 < g.cols {
                cur.push(g.right(i, j));
                walk(g, i, j + 1, cur, out);
                cur.pop();
            }
            if i + 1 < g.rows {
                cur.push(g.down(i, j));
                walk(g, i + 1, j, cur, out);
                cur.pop();
            }
        }
        let mut out = Vec::with_capacity(count as usize);
        walk(self, 0, 0, &mut Vec::new(), &mut out);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn arc_order_is_pyepos() {
        // PyEPO's _get_grid_arcs((3, 3)), written out by hand.
        let g = GridEdges::new(3, 3).unwrap();
        let want = vec![
            (0, 1),
            (1, 2),
            (0, 3),
            (1, 4),
            (2, 5),
            (3, 4),
            (4, 5),
            (3, 6),
            (4, 7),
            (5, 8),
            (6, 7),
            (7, 8),
        ];
        assert_eq!(g.arcs(), want);
        for (k, &(from, to)) in want.iter().enumerate() {
            let (i, j) = (from / 3, from % 3);
            let idx = if to == from + 1 {
                g.right(i, j)
            } else {
                g.down(i, j)
            };
            assert_eq!(idx, k);
        }
        // 5 x 5: PyEPO's d = (5 - 1) * 5 + (5 - 1) * 5 = 40; the list printed by running
        // pyepo.model.utils._get_grid_arcs((5, 5)) from PyEPO 2.2.7.
        let g = GridEdges::new(5, 5).unwrap();
        assert_eq!(g.num_edges(), 40);
        #[rustfmt::skip]
        let pyepo: [(usize, usize); 40] = [
            (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (1, 6), (2, 7), (3, 8), (4, 9), (5, 6),
            (6, 7), (7, 8), (8, 9), (5, 10), (6, 11), (7, 12), (8, 13), (9, 14), (10, 11),
            (11, 12), (12, 13), (13, 14), (10, 15), (11, 16), (12, 17), (13, 18), (14, 19),
            (15, 16), (16, 17), (17, 18), (18, 19), (15, 20), (16, 21), (17, 22), (18, 23),
            (19, 24), (20, 21), (21, 22), (22, 23), (23, 24),
        ];
        assert_eq!(g.arcs(), pyepo);
        assert_eq!(g.arcs().len(), 40);
        assert_eq!(
            &g.arcs()[..6],
            &[(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (1, 6)]
        );
        assert_eq!(g.arcs()[39], (23, 24));
        // Rectangular: rows * (cols - 1) + (rows - 1) * cols.
        assert_eq!(GridEdges::new(2, 4).unwrap().num_edges(), 2 * 3 + 4);
        assert_eq!(GridEdges::new(2, 4).unwrap().arcs().len(), 10);
    }

    #[test]
    fn a_cost_vector_with_a_known_shortest_path() {
        // 5 x 5, costs 1 everywhere except 0 along "down the first column, then right along
        // the last row": the unique shortest path, arcs down(0..4, 0) then right(4, 0..4).
        let g = GridEdges::new(5, 5).unwrap();
        let mut c = vec![1.0; 40];
        let mut want = Vec::new();
        for i in 0..4 {
            want.push(g.down(i, 0));
        }
        for j in 0..4 {
            want.push(g.right(4, j));
        }
        // The same indices written out from PyEPO's arc list: down(i, 0) = 9 i + 4.
        assert_eq!(want, vec![4, 13, 22, 31, 36, 37, 38, 39]);
        for &a in &want {
            c[a] = 0.0;
        }
        let mut out = Vec::new();
        assert_eq!(g.shortest_path(&c, &mut out).unwrap(), 0.0);
        assert_eq!(out, want);
        let theta = ArrayD::from_shape_vec(IxDyn(&[40]), c.iter().map(|v| -v).collect()).unwrap();
        g.argmax(theta.view(), &mut out).unwrap();
        assert_eq!(out, want);
        assert_eq!(
            g.nodes(&want).unwrap(),
            vec![0, 5, 10, 15, 20, 21, 22, 23, 24]
        );
        // And the mirror image: right along the first row, then down the last column.
        let mut c = vec![1.0; 40];
        let want: Vec<usize> = (0..4)
            .map(|j| g.right(0, j))
            .chain((0..4).map(|i| g.down(i, 4)))
            .collect();
        assert_eq!(want, vec![0, 1, 2, 3, 8, 17, 26, 35]);
        for &a in &want {
            c[a] = 0.25;
        }
        assert_eq!(g.shortest_path(&c, &mut out).unwrap(), 2.0);
        assert_eq!(out, want);
    }

    #[test]
    fn ties_come_from_above_and_paths_ascend() {
        // All costs equal: every path is optimal; from above at every node means the path
        // read backwards goes up first: right along the first row, then down the last column.
        let g = GridEdges::new(3, 4).unwrap();
        let mut out = Vec::new();
        g.best_path(&vec![-1.0; g.num_edges()], &mut out).unwrap();
        let want: Vec<usize> = (0..3)
            .map(|j| g.right(0, j))
            .chain((0..2).map(|i| g.down(i, 3)))
            .collect();
        assert_eq!(out, want);
        // Zero potentials, same rule.
        g.best_path(&vec![0.0; g.num_edges()], &mut out).unwrap();
        assert_eq!(out, want);
        // Every enumerated path is in ascending arc order.
        for p in g.enumerate(&g.shape()).unwrap().unwrap() {
            assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            assert_eq!(p.len(), 3 + 4 - 2);
        }
    }

    #[test]
    fn refuses_bad_grids_and_inputs() {
        assert!(GridEdges::new(0, 5).is_err());
        assert!(GridEdges::new(1, 1).is_err());
        assert!(GridEdges::new(1, 2).is_ok());
        let g = GridEdges::new(2, 2).unwrap();
        let mut out = Vec::new();
        let e = g.best_path(&[0.0; 3], &mut out).unwrap_err().to_string();
        assert!(e.contains("[4]"), "{e}");
        assert!(g
            .shortest_path(&[0.0, f64::NAN, 0.0, 0.0], &mut out)
            .is_err());
        assert!(g.check_shape(&[2, 2]).is_err());
    }

    #[test]
    fn enumerate_counts_paths() {
        for (r, c, n) in [(1, 2, 1), (2, 2, 2), (3, 3, 6), (5, 5, 70), (2, 6, 6)] {
            let g = GridEdges::new(r, c).unwrap();
            let list = g.enumerate(&g.shape()).unwrap().unwrap();
            assert_eq!(list.len(), n, "{r} x {c}");
            for p in &list {
                assert!(g.nodes(p).is_some());
            }
        }
        let big = GridEdges::new(12, 12).unwrap(); // C(22, 11) = 705432 paths
        assert!(big.enumerate(&big.shape()).unwrap().is_none());
    }
}
