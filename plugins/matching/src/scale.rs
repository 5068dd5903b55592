//! Exact power-of-two rescaling of potentials, so that the solvers work over the whole finite
//! range of `f64`.
//!
//! Multiplying by `2^k` changes only the exponent of a float: it is exact (no rounding, so
//! every comparison of entries, and of sums that do not overflow, keeps its outcome) unless the
//! result leaves the normal range. Scaling down therefore rounds only entries that become
//! subnormal, i.e. smaller than `2^-1022` after scaling, which are negligible next to the
//! largest entry (at least `2^-1022 * 2^52` times smaller) in any sum the solver forms.
//!
//! * [`lapjv`](crate::lapjv) and the second-best search of [`zero_one`](crate::zero_one)
//!   scale down by [`shrink_exponent`] when `max|theta|` times their growth factor would come
//!   near `f64::MAX` (their dual variables and path lengths are sums of up to `n` differences
//!   of entries);
//! * [`kuhn_munkres_max`](crate::kuhn_munkres_max) scales up or down by [`km_exponent`] so that
//!   the largest entry becomes an integer just below `2^50 / n`, whatever its magnitude
//!   (`1e-320` and `1.7e308` alike).

/// Largest `max|theta| * growth` the LAP solver is handed (`2^1000`, about `1.07e301`):
/// its sums of `n` differences of entries stay far below `f64::MAX`.
pub const LAP_SAFE: f64 = f64::from_bits((1000 + 1023) << 52);

/// `floor(log2 |x|)` for a finite, nonzero `x` (subnormals included); `None` for `0`, NaN and
/// infinities.
pub fn exponent(x: f64) -> Option<i32> {
    if x == 0.0 || !x.is_finite() {
        return None;
    }
    let bits = x.abs().to_bits();
    let biased = (bits >> 52) as i32;
    if biased == 0 {
        let mantissa = bits & ((1u64 << 52) - 1);
        Some(63 - mantissa.leading_zeros() as i32 - 1074)
    } else {
        Some(biased - 1023)
    }
}

/// `2^k` for `-1022 <= k <= 1023`.
fn pow2(k: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&k));
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// `x * 2^k`, computed without intermediate overflow or underflow: exact whenever the result
/// is a normal number (or zero); a subnormal result is rounded, a result beyond `f64::MAX`
/// is infinite.
pub fn ldexp(x: f64, k: i32) -> f64 {
    let (mut x, mut k) = (x, k);
    while k > 1000 {
        x *= pow2(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= pow2(-1000);
        k += 1000;
    }
    x * pow2(k)
}

/// The largest `|v|` in `values` (0 for an empty slice; NaN entries are skipped).
pub fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0f64, |a, &v| a.max(v.abs()))
}

/// The exponent `k <= 0` of the power of two that brings `max_abs * growth` to at most
/// `limit`: 0 when it is there already (so that ordinary inputs are used exactly as given),
/// otherwise the largest `k` that does it.
pub fn shrink_exponent(max_abs: f64, growth: f64, limit: f64) -> i32 {
    if max_abs * growth <= limit || max_abs.is_nan() {
        return 0;
    }
    // Work with exponents: max_abs * growth may itself overflow.
    let (Some(e_max), Some(e_growth), Some(e_limit)) =
        (exponent(max_abs), exponent(growth), exponent(limit))
    else {
        return 0;
    };
    // max_abs < 2^(e_max+1), growth < 2^(e_growth+1): the product stays below
    // 2^(e_max + e_growth + 2 + k) <= 2^e_limit <= limit.
    (e_limit - e_max - e_growth - 2).min(0)
}

/// The growth factor of the LAP solver's sums for an `n x n` matrix, `n * (2n + 4)`.
pub fn lap_growth(n: usize) -> f64 {
    let n = n as f64;
    n * (2.0 * n + 4.0)
}

/// The exponent `k` such that entries scaled by `2^k` and rounded to integers have
/// `|round(v * 2^k)| <= 2^49 / 2^ceil(log2 n)`, so that sums of `n` of them stay below
/// `2^50`; 0 when `max_abs` is 0.
pub fn km_exponent(max_abs: f64, n: usize) -> i32 {
    let Some(e) = exponent(max_abs) else {
        return 0;
    };
    let log2_n = n.max(1).next_power_of_two().trailing_zeros() as i32;
    // max_abs < 2^(e+1), so max_abs * 2^k < 2^(49 - log2_n).
    48 - e - log2_n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_cover_the_whole_range() {
        assert_eq!(exponent(1.0), Some(0));
        assert_eq!(exponent(-3.0), Some(1));
        assert_eq!(exponent(0.75), Some(-1));
        assert_eq!(exponent(f64::MAX), Some(1023));
        assert_eq!(exponent(f64::MIN_POSITIVE), Some(-1022));
        assert_eq!(exponent(5e-324), Some(-1074));
        assert_eq!(exponent(3.0 * 5e-324), Some(-1073));
        assert_eq!(exponent(0.0), None);
        assert_eq!(exponent(f64::NAN), None);
        assert_eq!(exponent(f64::INFINITY), None);
        for x in [1e-310, 1e-300, 0.1, 7.0, 1e300, 1.5e308] {
            let e = exponent(x).unwrap();
            assert!(ldexp(1.0, e) <= x && x < ldexp(2.0, e), "{x}: {e}");
        }
    }

    #[test]
    fn ldexp_is_exact_and_never_overflows_in_between() {
        assert_eq!(ldexp(f64::MAX, -1100), f64::MAX * pow2(-1000) * pow2(-100));
        assert_eq!(ldexp(ldexp(f64::MAX, -2000), 2000), f64::MAX);
        assert_eq!(ldexp(5e-324, 1124), pow2(50));
        assert_eq!(ldexp(3.0, 2), 12.0);
        assert_eq!(ldexp(-3.0, -1), -1.5);
        assert_eq!(ldexp(1.0, 1024), f64::INFINITY);
        assert_eq!(ldexp(0.0, 3000), 0.0);
    }

    #[test]
    fn shrinking_reaches_the_limit_without_overshooting_much() {
        assert_eq!(shrink_exponent(1.0, 10.0, LAP_SAFE), 0);
        for max in [1e296, 1e300, 1e307, f64::MAX] {
            for n in [1usize, 2, 10, 1000] {
                let g = lap_growth(n);
                let k = shrink_exponent(max, g, LAP_SAFE);
                if max * g <= LAP_SAFE {
                    assert_eq!(k, 0);
                    continue;
                }
                assert!(k < 0);
                let scaled = ldexp(max, k);
                assert!(scaled * g <= LAP_SAFE, "{max} {n}: {k}");
                assert!(
                    scaled * g > LAP_SAFE / 16.0,
                    "{max} {n}: {k} shrinks too much"
                );
            }
        }
    }

    #[test]
    fn km_integers_stay_below_two_to_the_fifty_over_n() {
        for max in [5e-324, 1e-310, 1e-12, 1.0, 3.7, 1e300, f64::MAX] {
            for n in [1usize, 2, 3, 4, 5, 100] {
                let k = km_exponent(max, n);
                let top = ldexp(max, k).round();
                assert!(top * n as f64 <= pow2(50), "{max} {n}: {top}");
                assert!(top * n as f64 >= pow2(46), "{max} {n}: {top} is too coarse");
            }
        }
        assert_eq!(km_exponent(0.0, 3), 0);
    }
}
