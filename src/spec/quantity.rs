//! Kubernetes resource quantities: `512Mi`, `1.5G`, `100m`, `1e3`, `0.5`.
//!
//! The syntax is Kubernetes' own: an optional sign, a decimal number (`2`,
//! `1.5`, `.5`, `1.`), then one optional suffix:
//!
//! - binary: `Ki` `Mi` `Gi` `Ti` `Pi` `Ei` (powers of 1024);
//! - decimal SI: `n` `u` `m` (milli) `k` `M` `G` `T` `P` `E` (powers of 1000);
//! - a decimal exponent: `e` or `E` followed by a signed integer (`1e3`,
//!   `5E-1`). A bare `E` is exa, so `1E` is 10^18 while `1E3` is 1000.
//!
//! Values are kept exact (no floating point) and converted to whole bytes or
//! millicores by rounding up, as Kubernetes does: `0.5` bytes is 1 byte and
//! `0.1m` of CPU is 1 millicore. Negative values are refused: no resource
//! peapod reads can be negative.

use std::str::FromStr;

/// Largest number of significant digits kept exactly (10^36 < 2^120).
const MAX_DIGITS: usize = 36;

/// Why a text is not a usable quantity. The Display text is a fragment meant
/// to follow the quoted value: `"1.5Gx" is not a quantity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is empty.
    #[error("is empty")]
    Empty,
    /// The value is below zero.
    #[error("is negative")]
    Negative,
    /// The text does not follow the quantity syntax.
    #[error("is not a quantity")]
    Syntax,
    /// The value does not fit in 64 bits once converted, or has more digits
    /// than can be kept exactly.
    #[error("is out of range")]
    OutOfRange,
}

/// An exact, non-negative quantity: `mantissa × 10^exp10 × 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantity {
    mantissa: u128,
    exp10: i64,
    exp2: u32,
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Empty);
        }
        let (negative, unsigned) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = unsigned
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(QuantityError::Syntax);
        }
        if frac_part.contains('.') {
            return Err(QuantityError::Syntax);
        }
        let (suffix_exp10, exp2) = parse_suffix(suffix)?;

        // Significant digits, without leading zeros and (adjusting the
        // exponent) without trailing zeros.
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let trimmed = digits.trim_end_matches('0');
        let trailing_zeros = (digits.len() - trimmed.len()) as i64;
        if trimmed.len() > MAX_DIGITS {
            return Err(QuantityError::OutOfRange);
        }
        let mantissa = trimmed
            .bytes()
            .fold(0u128, |acc, b| acc * 10 + u128::from(b - b'0'));
        if negative && mantissa != 0 {
            return Err(QuantityError::Negative);
        }
        let exp10 = suffix_exp10 + trailing_zeros - frac_part.len() as i64;
        Ok(Quantity {
            mantissa,
            exp10,
            exp2,
        })
    }
}

/// Maps a suffix to (power of ten, power of two).
fn parse_suffix(suffix: &str) -> Result<(i64, u32), QuantityError> {
    let pair = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => (parse_exponent(suffix)?, 0),
    };
    Ok(pair)
}

/// Parses `e<int>` / `E<int>`; the result is clamped far beyond any useful
/// range so that it cannot overflow later arithmetic.
fn parse_exponent(suffix: &str) -> Result<i64, QuantityError> {
    let rest = suffix
        .strip_prefix(['e', 'E'])
        .ok_or(QuantityError::Syntax)?;
    let (negative, digits) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Syntax);
    }
    let magnitude = digits.bytes().fold(0i64, |acc, b| {
        (acc * 10 + i64::from(b - b'0')).min(1_000_000)
    });
    Ok(if negative { -magnitude } else { magnitude })
}

impl Quantity {
    /// The value in units of 10^-`scale10`, rounded up to a whole number.
    fn ceil_scaled(&self, scale10: i64) -> Result<u64, QuantityError> {
        if self.mantissa == 0 {
            return Ok(0);
        }
        let exp10 = self.exp10 + scale10;
        let value: u128 = if exp10 >= 0 {
            let pow10 = u32::try_from(exp10)
                .ok()
                .and_then(|e| 10u128.checked_pow(e))
                .ok_or(QuantityError::OutOfRange)?;
            self.mantissa
                .checked_mul(pow10)
                .and_then(|v| v.checked_mul(1u128 << self.exp2))
                .ok_or(QuantityError::OutOfRange)?
        } else {
            let divisor = u32::try_from(-exp10)
                .ok()
                .and_then(|e| 10u128.checked_pow(e));
            match divisor {
                Some(divisor) => ceil_mul_pow2_div(self.mantissa, self.exp2, divisor)?,
                // The mantissa has at most 36 digits, so without a binary
                // factor the value is a positive fraction below one.
                None if self.exp2 == 0 => 1,
                None => return Err(QuantityError::OutOfRange),
            }
        };
        u64::try_from(value).map_err(|_| QuantityError::OutOfRange)
    }

    /// The value in bytes (or plain units), rounded up.
    pub(crate) fn to_units(self) -> Result<u64, QuantityError> {
        self.ceil_scaled(0)
    }

    /// The value in thousandths (millicores for CPU), rounded up.
    pub(crate) fn to_millis(self) -> Result<u64, QuantityError> {
        self.ceil_scaled(3)
    }
}

/// ceil(m × 2^exp2 / divisor), exact, without overflowing u128 on the way.
fn ceil_mul_pow2_div(m: u128, exp2: u32, divisor: u128) -> Result<u128, QuantityError> {
    let mut quotient = m / divisor;
    let mut remainder = m % divisor;
    // Long division of the remainder, one binary digit at a time: the
    // remainder stays below the divisor (< 2^127), so doubling cannot wrap.
    for _ in 0..exp2 {
        quotient = quotient.checked_mul(2).ok_or(QuantityError::OutOfRange)?;
        remainder *= 2;
        if remainder >= divisor {
            remainder -= divisor;
            quotient += 1;
        }
    }
    if remainder > 0 {
        quotient += 1;
    }
    Ok(quotient)
}

/// Parses a memory or storage quantity into bytes, rounding up.
///
/// ```
/// use peapod::spec::quantity::parse_bytes;
/// assert_eq!(parse_bytes("1.5Gi"), Ok(1610612736));
/// assert_eq!(parse_bytes("1e3"), Ok(1000));
/// ```
pub fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    text.parse::<Quantity>()?.to_units()
}

/// Parses a CPU quantity into millicores, rounding up: `"100m"` is 100,
/// `"0.5"` is 500, `"2"` is 2000.
///
/// ```
/// use peapod::spec::quantity::parse_millicores;
/// assert_eq!(parse_millicores("250m"), Ok(250));
/// assert_eq!(parse_millicores("1.5"), Ok(1500));
/// ```
pub fn parse_millicores(text: &str) -> Result<u64, QuantityError> {
    text.parse::<Quantity>()?.to_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1024;
    const MI: u64 = 1024 * KI;
    const GI: u64 = 1024 * MI;

    #[test]
    fn test_parse_bytes_valid_table() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("+5", 5),
            ("-0", 0),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("123Mi", 123 * MI),
            ("1Ki", KI),
            ("1Gi", GI),
            ("1.5Gi", 3 * GI / 2),
            ("0.5Gi", GI / 2),
            (".5Gi", GI / 2),
            ("1.Gi", GI),
            ("2Ti", 2 * 1024 * GI),
            ("1Pi", 1 << 50),
            ("1Ei", 1 << 60),
            ("15Ei", 15 << 60),
            ("1k", 1000),
            ("1M", 1_000_000),
            ("1.5G", 1_500_000_000),
            ("1T", 1_000_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1e3", 1000),
            ("1E3", 1000),
            ("1e+3", 1000),
            ("5e-1", 1),
            ("1e0", 1),
            ("0.5", 1),
            ("1.1", 2),
            ("100m", 1),
            ("1000m", 1),
            ("1001m", 2),
            ("1n", 1),
            ("1u", 1),
            ("0.000001Ki", 1),
            ("000000000000000000000000000000000000000000001Ki", KI),
            ("1.0000000000000000000000000000000000000000000", 1),
            ("1e-1000000000", 1),
            ("0e1000000000", 0),
            ("18446744073709551615", u64::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bytes(text), Ok(*want), "parse_bytes({text:?})");
        }
        // 36 significant digits are kept exactly: 1024 + a tiny fraction.
        let precise = format!("1.{}1Ki", "0".repeat(34));
        assert_eq!(parse_bytes(&precise), Ok(KI + 1));
        let too_precise = format!("1.{}1Ki", "0".repeat(35));
        assert_eq!(parse_bytes(&too_precise), Err(QuantityError::OutOfRange));
    }

    #[test]
    fn test_parse_millicores_valid_table() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("100m", 100),
            ("0.1", 100),
            ("0.5", 500),
            (".5", 500),
            ("1", 1000),
            ("2", 2000),
            ("1.5", 1500),
            ("250m", 250),
            ("0.1m", 1),
            ("1500u", 2),
            ("1n", 1),
            ("1e-3", 1),
            ("2e0", 2000),
            ("1k", 1_000_000),
            ("64", 64_000),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_millicores(text),
                Ok(*want),
                "parse_millicores({text:?})"
            );
        }
    }

    #[test]
    fn test_parse_bytes_invalid_table() {
        use QuantityError::*;
        let cases: &[(&str, QuantityError)] = &[
            ("", Empty),
            ("-1", Negative),
            ("-1Gi", Negative),
            ("-0.5", Negative),
            ("1.5Gx", Syntax),
            ("Gi", Syntax),
            ("abc", Syntax),
            (".", Syntax),
            ("+", Syntax),
            ("-", Syntax),
            ("1..5", Syntax),
            ("1.2.3", Syntax),
            ("1 Gi", Syntax),
            (" 1Gi", Syntax),
            ("1Gi ", Syntax),
            ("1gi", Syntax),
            ("1K", Syntax),
            ("1KiB", Syntax),
            ("1GB", Syntax),
            ("1e", Syntax),
            ("1e+", Syntax),
            ("1e3.5", Syntax),
            ("1ee3", Syntax),
            ("0x10", Syntax),
            ("1_000", Syntax),
            ("NaN", Syntax),
            ("inf", Syntax),
            ("--1", Syntax),
            ("16Ei", OutOfRange),
            ("18446744073709551616", OutOfRange),
            ("1e20", OutOfRange),
            ("1e1000000000", OutOfRange),
            ("1234567890123456789012345678901234567", OutOfRange),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bytes(text), Err(*want), "parse_bytes({text:?})");
        }
    }

    #[test]
    fn test_parse_millicores_invalid_table() {
        use QuantityError::*;
        let cases: &[(&str, QuantityError)] = &[
            ("", Empty),
            ("-100m", Negative),
            ("100 m", Syntax),
            ("1 cpu", Syntax),
            ("100mi", Syntax),
            ("2x", Syntax),
            ("20000000000000000", OutOfRange),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_millicores(text),
                Err(*want),
                "parse_millicores({text:?})"
            );
        }
    }

    #[test]
    fn test_quantity_error_display_is_a_fragment() {
        assert_eq!(QuantityError::Syntax.to_string(), "is not a quantity");
        assert_eq!(QuantityError::Negative.to_string(), "is negative");
    }
}
