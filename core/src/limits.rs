//! Sizes that come from outside (a file header, a command-line flag) checked before anything
//! is allocated from them.
//!
//! A header that claims `(100000, 100000)` float64 values behind it must not make the reader
//! ask for 80 GB: the claim is compared with the bytes actually present first
//! ([`claimed_exactly`], [`claimed_within`]), and a flag that sizes an allocation is compared
//! with a stated limit ([`at_most`]). The messages name the claim and what is there, so that a
//! corrupt file reads as corrupt rather than as an out-of-memory abort.

use crate::error::{DlmError, Result};

/// Bytes taken by `dims` elements of `elem_size` bytes each, or `None` if the product
/// overflows `usize` or exceeds `isize::MAX` (the most any allocation can hold).
pub fn checked_bytes(dims: &[usize], elem_size: usize) -> Option<usize> {
    if dims.contains(&0) {
        return Some(0);
    }
    dims.iter()
        .try_fold(elem_size, |a, &d| a.checked_mul(d))
        .filter(|&b| b <= isize::MAX as usize)
}

/// Checks that an array header claiming shape `dims` of `elem_size`-byte values describes
/// exactly the `present` bytes that follow it; returns the byte count.
///
/// # Errors
/// A message such as "the header claims shape [100000, 100000] = 10000000000 values
/// (80000000000 bytes), the file holds 32 bytes (4 values)".
pub fn claimed_exactly(
    dims: &[usize],
    elem_size: usize,
    present: usize,
) -> std::result::Result<usize, String> {
    match checked_bytes(dims, elem_size) {
        Some(b) if b == present => Ok(b),
        claimed => Err(claim_message(dims, elem_size, claimed, present)),
    }
}

/// Checks that an array header claiming shape `dims` of `elem_size`-byte values fits in the
/// `available` bytes left (more may follow); returns the byte count.
///
/// # Errors
/// As [`claimed_exactly`], when the claim is larger than what is there.
pub fn claimed_within(
    dims: &[usize],
    elem_size: usize,
    available: usize,
) -> std::result::Result<usize, String> {
    match checked_bytes(dims, elem_size) {
        Some(b) if b <= available => Ok(b),
        claimed => Err(claim_message(dims, elem_size, claimed, available)),
    }
}

fn claim_message(
    dims: &[usize],
    elem_size: usize,
    claimed: Option<usize>,
    present: usize,
) -> String {
    if let ([bytes], 1) = (dims, elem_size) {
        return format!("the header claims {bytes} bytes, the file holds {present}");
    }
    let values = dims
        .iter()
        .try_fold(1u128, |a, &d| a.checked_mul(d as u128));
    let claim = match (values, claimed) {
        (Some(v), Some(b)) => format!("{v} values ({b} bytes)"),
        (Some(v), None) => format!("{v} values (more bytes than any allocation can hold)"),
        (None, _) => "more values than can be counted".to_string(),
    };
    let what = if elem_size == 1 {
        String::new()
    } else {
        format!(" ({} values)", present / elem_size.max(1))
    };
    format!("the header claims shape {dims:?} = {claim}, the file holds {present} bytes{what}")
}

/// Checks a size given by a flag (or read from a file) against a stated limit, before it
/// sizes an allocation.
///
/// # Errors
/// [`DlmError::InvalidParameter`] naming `flag`, the value, the limit and `reason` (why the
/// limit is there).
pub fn at_most(flag: &str, value: usize, max: usize, reason: &str) -> Result<()> {
    if value > max {
        return Err(DlmError::invalid(
            flag,
            format!("{value} is above the limit of {max} ({reason})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_compared_with_the_bytes_present() {
        assert_eq!(claimed_exactly(&[2, 3], 8, 48), Ok(48));
        let e = claimed_exactly(&[100_000, 100_000], 8, 32).unwrap_err();
        assert!(e.contains("10000000000 values"), "{e}");
        assert!(e.contains("80000000000 bytes"), "{e}");
        assert!(e.contains("holds 32 bytes (4 values)"), "{e}");
        assert!(claimed_exactly(&[2, 3], 8, 49).is_err());
        let e = claimed_exactly(&[usize::MAX, usize::MAX, 2], 8, 0).unwrap_err();
        assert!(e.contains("more values than can be counted"), "{e}");
        let e = claimed_exactly(&[usize::MAX / 4], 8, 0).unwrap_err();
        assert!(e.contains("more bytes than any allocation"), "{e}");
        assert_eq!(claimed_within(&[4], 1, 10), Ok(4));
        let e = claimed_within(&[11], 1, 10).unwrap_err();
        assert_eq!(e, "the header claims 11 bytes, the file holds 10");
        assert!(claimed_within(&[11], 1, 10).is_err());
        assert_eq!(checked_bytes(&[], 8), Some(8));
        assert_eq!(checked_bytes(&[0, usize::MAX], 8), Some(0));
        assert_eq!(checked_bytes(&[usize::MAX, 0], 8), Some(0));
    }

    #[test]
    fn flags_are_compared_with_their_limit() {
        at_most("--n", 10, 10, "why").unwrap();
        let e = at_most("--n", 11, 10, "why").unwrap_err().to_string();
        assert!(
            e.contains("--n") && e.contains("11") && e.contains("10 (why)"),
            "{e}"
        );
    }
}
