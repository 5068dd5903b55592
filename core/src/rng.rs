//! Counter-based seeding.
//!
//! The noise of draw `d` of example `i` in epoch `e` comes from a generator seeded by
//! `(seed, stream, e, i, d)` alone, so results do not depend on the number of threads or the
//! order in which work is scheduled.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator used for every random draw in `dlm`.
pub type DlmRng = Xoshiro256PlusPlus;

/// Named random streams, so that e.g. data generation and noise never share numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Perturbation noise of the estimator and predictor.
    Noise = 1,
    /// Synthetic training data.
    TrainData = 2,
    /// Synthetic test data.
    TestData = 3,
    /// Parameter initialisation.
    Init = 4,
    /// Data shuffling and batching.
    Shuffle = 5,
    /// Anything else (benchmarks, samples).
    Other = 6,
}

/// One step of the SplitMix64 generator (Steele, Lea & Flood 2014): advances `x` and returns
/// a well-mixed 64-bit value. The one copy in `dlm`, used for seeding and small initialisers.
#[inline]
pub fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a seed and a tuple of counters into one 64-bit key (order-sensitive).
pub fn mix(seed: u64, counters: &[u64]) -> u64 {
    let mut state = seed;
    let mut key = splitmix64(&mut state);
    for &c in counters {
        state ^= c.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(17);
        key ^= splitmix64(&mut state);
        state = state.wrapping_add(key);
    }
    key
}

/// A generator for `(seed, stream, counters...)`.
///
/// ```
/// use dlm_core::rng::{rng_for, Stream};
/// use rand::RngCore;
/// let a = rng_for(7, Stream::Noise, &[0, 3, 1]).next_u64();
/// let b = rng_for(7, Stream::Noise, &[0, 3, 1]).next_u64();
/// let c = rng_for(7, Stream::Noise, &[0, 3, 2]).next_u64();
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// ```
pub fn rng_for(seed: u64, stream: Stream, counters: &[u64]) -> DlmRng {
    let mut s = mix(seed ^ (stream as u64).rotate_left(56), counters);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut s).to_le_bytes());
    }
    DlmRng::from_seed(bytes)
}

/// The generator of noise draw `draw` of example `example` in epoch `epoch`.
pub fn noise_rng(seed: u64, epoch: u64, example: u64, draw: u64) -> DlmRng {
    rng_for(seed, Stream::Noise, &[epoch, example, draw])
}

/// A uniform draw in the open interval (0, 1) (never exactly 0 or 1), 53-bit resolution.
#[inline]
pub fn open01(rng: &mut DlmRng) -> f64 {
    use rand::RngCore;
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// In-place Fisher-Yates shuffle driven by [`open01`] (the one shuffle of `dlm`, so every task
/// orders its data the same way for a given generator).
pub fn shuffle<T>(rng: &mut DlmRng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = ((open01(rng) * (i + 1) as f64) as usize).min(i);
        v.swap(i, j);
    }
}
