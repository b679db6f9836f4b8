//! Conversions between counts and measures that say what happens at the edges: floats are
//! rounded up and clamped (NaN and negatives to 0), wide integers saturate. The workspace lints
//! refuse bare `as` casts that could truncate or wrap; these are the checked ones.

/// `x` rounded up, as a count of at most `u32::MAX`.
pub fn ceil_u32(x: f64) -> u32 {
    u32::try_from(ceil_u64(x)).unwrap_or(u32::MAX)
}

/// `x` rounded up, as a count or measure of at most `u64::MAX`.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped first: a float-to-int `as` saturates, and NaN is taken to 0 explicitly"
)]
pub fn ceil_u64(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    x.ceil() as u64
}

/// `x` rounded down, as a measure of at most `u64::MAX` (NaN and negatives to 0).
pub fn floor_u64(x: f64) -> u64 {
    ceil_u64(x.floor())
}

/// `x` rounded to the nearest integer (halves away from zero), as a count of at most `u32::MAX`.
pub fn round_u32(x: f64) -> u32 {
    ceil_u32(x.round())
}

/// A collection's length as a `u32` count, saturating.
pub fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends `n` in decimal, as `write!(out, "{n}")` would, without the formatting machinery
/// (pool messages' deduplication IDs and the in-memory queue's receipts are written per call).
pub fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|d| char::from(*d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for n in [0, 7, 10, 99, 1_000_000_007, u64::MAX] {
            let mut written = String::from("x");
            push_decimal(&mut written, n);
            assert_eq!(written, format!("x{n}"));
        }
    }

    #[test]
    fn floats_round_up_and_clamp_at_both_ends() {
        assert_eq!(ceil_u32(2.1), 3);
        assert_eq!(ceil_u32(2.0), 2);
        assert_eq!(ceil_u32(-5.0), 0);
        assert_eq!(ceil_u32(f64::NAN), 0);
        assert_eq!(ceil_u32(1e12), u32::MAX);
        assert_eq!(ceil_u64(f64::INFINITY), u64::MAX);
        assert_eq!(round_u32(2.5), 3);
        assert_eq!(floor_u64(2.9), 2);
        assert_eq!(floor_u64(-0.5), 0);
        assert_eq!(round_u32(2.6), 3);
        assert_eq!(round_u32(0.2), 0);
    }

    #[test]
    fn lengths_saturate() {
        assert_eq!(count_u32(7), 7);
        assert_eq!(count_u32(usize::MAX), u32::MAX);
    }
}
