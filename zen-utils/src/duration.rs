//! The protocol's `DUR`: a number and a unit (`250us`, `10ms`, `1.5s`,
//! `1m`), read from flags and from `--work block:DUR`, and written back the
//! same way in logs and summaries. A leaf: it knows nothing of flags or work.

use std::time::Duration;

use thiserror::Error;

/// The longest `DUR` accepted: a year. Every deadline is "now + DUR", and
/// the clock cannot hold one for the longest `Duration`; a year is beyond
/// any timeout or simulated work that means something.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A `DUR` that does not parse, or is longer than [`MAX_DURATION`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Not a number and a unit.
    #[error("invalid duration `{0}`: expected a number and a unit, e.g. 250us, 10ms, 2s, 1m")]
    Invalid(String),
    /// Longer than [`MAX_DURATION`].
    #[error("duration `{0}` is too long: at most a year (525600m)")]
    TooLong(String),
}

/// Parses the protocol's `DUR`: a number and a unit (`ns`, `us`, `ms`, `s`, `m`),
/// e.g. `250us`, `10ms`, `1.5s`. A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = || DurationError::Invalid(text.to_owned());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(error)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| error())?;
    let seconds_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(error()),
    };
    // `number` is finite and not negative (digits and dots only), so the
    // conversion fails only for a duration too long for `Duration` itself.
    match Duration::try_from_secs_f64(number * seconds_per_unit) {
        Ok(duration) if duration <= MAX_DURATION => Ok(duration),
        _ => Err(DurationError::TooLong(text.to_owned())),
    }
}

/// [`parse_duration`], refusing zero: a timeout of nothing.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than 0".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// Formats a duration the way [`parse_duration`] reads it, in the largest
/// unit that keeps it whole (`250us`, `10ms`, `2s`).
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let units = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")];
    units
        .iter()
        .find(|(size, _)| nanos % size == 0 && nanos > 0)
        .map_or_else(
            || format!("{nanos}ns"),
            |(size, unit)| format!("{}{unit}", nanos / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "ms", "10 ms", "-1s", "1h", "1e3s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn refuses_durations_longer_than_a_year() {
        assert_eq!(parse_duration("525600m"), Ok(MAX_DURATION));
        let endless = "9".repeat(400) + "s";
        for long in [
            "525601m",
            "10000000000000000000s",
            "100000000000000000000s",
            &endless,
        ] {
            assert_eq!(
                parse_duration(long),
                Err(DurationError::TooLong(long.to_owned()))
            );
        }
    }

    #[test]
    fn formats_durations_as_they_parse() {
        for text in ["250us", "10ms", "2s", "7ns"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
