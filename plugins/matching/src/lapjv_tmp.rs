//! Temporary shortest-augmenting-path solver (Crouse 2016), replaced by lapjv.rs.

/// Scratch buffers.
#[derive(Default, Debug, Clone)]
pub struct LapWorkspace {
    u: Vec<f64>,
    v: Vec<f64>,
    shortest: Vec<f64>,
    path: Vec<usize>,
    col4row: Vec<usize>,
    row4col: Vec<usize>,
    sr: Vec<bool>,
    sc: Vec<bool>,
    remaining: Vec<usize>,
    cost: Vec<f64>,
}

impl LapWorkspace {
    /// New.
    pub fn new() -> Self {
        Self::default()
    }
    /// Column duals.
    pub fn col_duals(&self) -> &[f64] {
        &self.v
    }
}

/// Maximise.
pub fn solve_max(theta: &[f64], n: usize, ws: &mut LapWorkspace, col_of_row: &mut [usize]) -> f64 {
    ws.cost.clear();
    ws.cost.extend(theta.iter().map(|&t| -t));
    ws.u.clear();
    ws.u.resize(n, 0.0);
    ws.v.clear();
    ws.v.resize(n, 0.0);
    ws.col4row.clear();
    ws.col4row.resize(n, usize::MAX);
    ws.row4col.clear();
    ws.row4col.resize(n, usize::MAX);
    for cur_row in 0..n {
        augment(ws, n, cur_row);
    }
    col_of_row.copy_from_slice(&ws.col4row);
    (0..n).map(|i| theta[i * n + col_of_row[i]]).sum()
}

/// Warm (cold here).
pub fn solve_max_warm(
    theta: &[f64],
    n: usize,
    ws: &mut LapWorkspace,
    col_of_row: &mut [usize],
) -> f64 {
    solve_max(theta, n, ws, col_of_row)
}

fn augment(ws: &mut LapWorkspace, n: usize, cur_row: usize) {
    ws.shortest.clear();
    ws.shortest.resize(n, f64::INFINITY);
    ws.path.clear();
    ws.path.resize(n, usize::MAX);
    ws.sr.clear();
    ws.sr.resize(n, false);
    ws.sc.clear();
    ws.sc.resize(n, false);
    ws.remaining.clear();
    ws.remaining.extend((0..n).rev());
    let mut min_val = 0.0;
    let mut i = cur_row;
    let sink;
    loop {
        let mut index = usize::MAX;
        let mut lowest = f64::INFINITY;
        ws.sr[i] = true;
        for it in 0..ws.remaining.len() {
            let j = ws.remaining[it];
            let r = min_val + ws.cost[i * n + j] - ws.u[i] - ws.v[j];
            if r < ws.shortest[j] {
                ws.path[j] = i;
                ws.shortest[j] = r;
            }
            if ws.shortest[j] < lowest || (ws.shortest[j] == lowest && ws.row4col[j] == usize::MAX)
            {
                lowest = ws.shortest[j];
                index = it;
            }
        }
        min_val = lowest;
        let j = ws.remaining[index];
        ws.sc[j] = true;
        let last = ws.remaining.len() - 1;
        ws.remaining.swap(index, last);
        ws.remaining.pop();
        if ws.row4col[j] == usize::MAX {
            sink = j;
            break;
        }
        i = ws.row4col[j];
    }
    ws.u[cur_row] += min_val;
    for r in 0..n {
        if ws.sr[r] && r != cur_row {
            ws.u[r] += min_val - ws.shortest[ws.col4row[r]];
        }
    }
    for c in 0..n {
        if ws.sc[c] {
            ws.v[c] -= min_val - ws.shortest[c];
        }
    }
    let mut j = sink;
    loop {
        let i = ws.path[j];
        ws.row4col[j] = i;
        let prev = ws.col4row[i];
        ws.col4row[i] = j;
        if i == cur_row {
            break;
        }
        j = prev;
    }
}
