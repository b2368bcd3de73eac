//! Value parsers for the flags of `load` and `hold`.

use std::time::Duration;

use zen_utils::duration::parse_duration;

/// A count of at least 1.
pub(crate) fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

/// A count of at least 1, as a `u64`.
pub(crate) fn positive_u64(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

/// A `DUR` longer than zero.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than 0".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// A finite rate above zero.
pub(crate) fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        Ok(_) => Err("must be a positive number".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_and_nonsense() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err());
        assert!(positive("-1").is_err());
        assert!(positive_u64("0").is_err());
        assert!(positive_duration("0").is_err());
        assert!(positive_duration("10").is_err());
        assert_eq!(positive_duration("10ms"), Ok(Duration::from_millis(10)));
        for bad in ["0", "-5", "inf", "NaN", "x"] {
            assert!(positive_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_rate("2.5"), Ok(2.5));
    }
}
