//! # dlm-plugin-shortest-path
//!
//! Shortest paths on grids, as the decision-focused learning benchmarks use them, solved
//! exactly as maximisations of `<theta, phi(y)>` with `theta = -cost`:
//!
//! * structure `grid-edges` (options `rows=5,cols=5`; [`GridEdges`], [`edges`]): PyEPO's
//!   shortest path from the top-left to the bottom-right node of an edge-weighted grid with
//!   moves right and down. Potentials `[E]`, `E = rows (cols - 1) + (rows - 1) cols` (40 for
//!   5x5), **in PyEPO's arc order**, so PyEPO's cost vector `c` lines up with `theta = -c`.
//!   A dynamic program over the DAG, `O(E)`; ties to the arc from above. Active set: the
//!   path's arc indices in path order (= ascending order).
//! * structure `grid-vertex` (options `k=12,neighbours=8`; [`GridVertex`], [`vertex`]): the
//!   Warcraft-style path through a vertex-weighted `k x k` grid with 8 (or 4) neighbours,
//!   from the top-left to the bottom-right cell, scoring the potentials of all its cells
//!   (both ends included). Potentials `[k, k]`, **all `<= 0`** (positive ones are refused: the
//!   problem would be NP-hard). Dijkstra with a documented tie rule. Active set: the cells in
//!   path order.
//! * loss `regret` ([`Regret`], [`regret`]): `<c, phi(y)> - <c, phi(truth)>` with the true
//!   costs `c` as the target's `weights` and their optimal path as its `truth`
//!   ([`regret_target`]); linear with `L = c`. [`normalized_regret`] and [`RegretTally`]
//!   compute PyEPO's normalized regret over a test set.
//!
//! ```
//! use dlm_core::{Loss, StructuredArgmax};
//! use dlm_plugin_shortest_path::{regret_target, GridEdges, Regret};
//! use ndarray::{ArrayD, IxDyn};
//!
//! let g = GridEdges::new(5, 5)?;
//! let costs: Vec<f64> = (0..40).map(|e| 1.0 + (e % 7) as f64).collect();
//! let target = regret_target(&g, &[40], &costs)?; // truth = the shortest path under costs
//! let theta = ArrayD::from_shape_fn(IxDyn(&[40]), |_| -1.0); // a prediction: all costs equal
//! let mut y = Vec::new();
//! g.argmax(theta.view(), &mut y)?;
//! assert_eq!(y.len(), 8); // 4 right + 4 down
//! assert!(Regret.value(&target, &[40], &y)? >= 0.0);
//! # Ok::<(), dlm_core::DlmError>(())
//! ```

pub mod edges;
pub mod regret;
pub mod vertex;

pub use edges::{num_edges, GridEdges};
pub use regret::{normalized_regret, regret_target, Regret, RegretTally, NORMALIZED_REGRET_EPS};
pub use vertex::{GridVertex, Neighbours};

use dlm_core::plugin::Registrar;
use dlm_core::Result;

/// Registers `grid-edges`, `grid-vertex` and `regret`.
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.structure(
        "grid-edges",
        "PyEPO's shortest path on a grid (moves right/down, top-left to bottom-right): potentials \
         [E] = -cost per arc in PyEPO's arc order; options rows=5,cols=5",
        GridEdges::from_config,
    )?;
    r.structure(
        "grid-vertex",
        "Warcraft-style shortest path through [k, k] cell potentials (-cost, all <= 0), \
         top-left to bottom-right cell; options k=12,neighbours=8|4",
        GridVertex::from_config,
    )?;
    r.loss(
        "regret",
        "decision regret <c, phi(y)> - <c, phi(truth)> (weights = true costs c, truth = their \
         optimal solution; linear)",
        |_| Ok(Regret),
    )?;
    Ok(())
}

dlm_core::export_plugin!(register);
