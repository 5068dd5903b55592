//! What the matching's brute-force tests share: a small deterministic generator and the
//! permutations to compare against (independent of the crate's own `enumerate`).
#![allow(dead_code)] // each test file uses its own subset

/// SplitMix64: a small deterministic generator (no dev-dependency needed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// +1 or -1.
    pub fn sign(&mut self) -> f64 {
        if self.next() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
    /// Uniform in `0..k`.
    pub fn below(&mut self, k: usize) -> usize {
        (self.next() % k as u64) as usize
    }
    /// A uniform random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}

/// All permutations of `0..n` (`col_of_row`), in lexicographic order.
pub fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn rec(n: usize, cur: &mut Vec<usize>, used: &mut [bool], all: &mut Vec<Vec<usize>>) {
        if cur.len() == n {
            all.push(cur.clone());
            return;
        }
        for j in 0..n {
            if !used[j] {
                used[j] = true;
                cur.push(j);
                rec(n, cur, used, all);
                cur.pop();
                used[j] = false;
            }
        }
    }
    let mut all = Vec::new();
    rec(n, &mut Vec::new(), &mut vec![false; n], &mut all);
    all
}
