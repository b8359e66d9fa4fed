//! Human byte sizes: parsing `"20GiB"`, `"500MB"`, `"1.5T"` and formatting bytes for messages.
//!
//! Units follow coreutils (`df -B`, `numfmt`): a bare letter and the `iB` form are powers of 1024
//! (`1.5T`, `20GiB`), the `B` form is a power of 1000 (`500MB`). Letters are case-insensitive.

use crate::error::{Error, Result};

/// What a size argument may be, for error messages.
pub const SIZE_RULE: &str =
    "expected a non-negative byte count: an int, or a string such as '20GiB', '500MB', '1.5T' or '4096'";

/// A byte count given as a float: finite, non-negative and whole (`1e9` is a billion bytes).
/// A fraction such as `0.1` is refused: as a size it would mean 0 bytes, which is never what was
/// meant (fractions of the filesystem belong to the arguments that take fractions).
pub fn bytes_from_float(name: &'static str, value: f64) -> Result<u64> {
    // 2**64 is exactly representable; anything at or above it does not fit a u64.
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 18_446_744_073_709_551_616.0 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range and wholeness checked
        return Ok(value as u64);
    }
    Err(Error::invalid(
        name,
        value,
        format!("{SIZE_RULE}; a float must be a whole number of bytes (fractions are not sizes)"),
    ))
}

/// Parses a human size into bytes. `name` is the argument's name, used in the error.
pub fn parse_size(name: &'static str, text: &str) -> Result<u64> {
    let bad = || Error::invalid(name, format!("'{}'", text.escape_debug()), SIZE_RULE);
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() || number == "." {
        return Err(bad());
    }
    let multiplier = unit_multiplier(unit.trim_start()).ok_or_else(bad)?;
    let bytes = if let Some((whole, fraction)) = number.split_once('.') {
        // Exact decimal arithmetic: "1.5T" must be 1649267441664, not a float rounded near it.
        if fraction.contains('.') {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        // Digits past the 18th cannot change a u64 result by a whole byte; dropping them keeps u128 room.
        let digits = fraction.len().min(18);
        let fraction_value: u128 = if digits == 0 {
            0
        } else {
            fraction[..digits].parse().map_err(|_| bad())?
        };
        // "0.5" or "1.5B" is half a byte: a fraction typed where a size was meant, not a size.
        if multiplier == 1 && fraction_value != 0 {
            return Err(bad());
        }
        let scale = 10u128.pow(u32::try_from(digits).map_err(|_| bad())?);
        whole
            .checked_mul(multiplier)
            .and_then(|w| fraction_value.checked_mul(multiplier).map(|f| w + f / scale))
            .ok_or_else(bad)?
    } else {
        number
            .parse::<u128>()
            .map_err(|_| bad())?
            .checked_mul(multiplier)
            .ok_or_else(bad)?
    };
    u64::try_from(bytes).map_err(|_| bad())
}

fn unit_multiplier(unit: &str) -> Option<u128> {
    let lower = unit.to_ascii_lowercase();
    let (prefix, base) = match lower.as_str() {
        "" | "b" => return Some(1),
        s if s.len() == 1 => (s, 1024u128),
        s if s.len() == 3 && s.ends_with("ib") => (&s[..1], 1024),
        s if s.len() == 2 && s.ends_with('b') => (&s[..1], 1000),
        _ => return None,
    };
    let power = match prefix {
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        _ => return None,
    };
    Some(base.pow(power))
}

/// Formats bytes with IEC units and one decimal (`"1.5 GiB"`), for messages and reports.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_like_coreutils() {
        assert_eq!(parse_size("s", "4096").ok(), Some(4096));
        assert_eq!(parse_size("s", "0").ok(), Some(0));
        assert_eq!(parse_size("s", "20GiB").ok(), Some(20 << 30));
        assert_eq!(parse_size("s", "20 GiB").ok(), Some(20 << 30));
        assert_eq!(parse_size("s", "20gib").ok(), Some(20 << 30));
        assert_eq!(parse_size("s", "500MB").ok(), Some(500_000_000));
        assert_eq!(parse_size("s", "1.5T").ok(), Some(1_649_267_441_664));
        assert_eq!(parse_size("s", "1.5t").ok(), Some(1_649_267_441_664));
        assert_eq!(parse_size("s", "2k").ok(), Some(2048));
        assert_eq!(parse_size("s", "2KB").ok(), Some(2000));
        assert_eq!(parse_size("s", ".5K").ok(), Some(512));
        assert_eq!(parse_size("s", "3.").ok(), Some(3));
        assert_eq!(parse_size("s", "7B").ok(), Some(7));
        assert_eq!(parse_size("s", "16E").ok(), None, "2^64 does not fit");
        assert_eq!(parse_size("s", "15E").ok(), Some(15 << 60));
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        for bad in [
            "", " ", "-5GiB", "GiB", "1.2.3G", "5XB", "5 G B", "nan", "inf", "1e9", ".", "5GiBs",
        ] {
            let err = parse_size("min_free", bad).expect_err(bad);
            let message = err.to_string();
            assert!(message.starts_with("min_free="), "{message}");
            assert!(message.contains("'20GiB'"), "{message}");
        }
    }

    #[test]
    fn formats_with_iec_units() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(20 << 30), "20.0 GiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }
}
