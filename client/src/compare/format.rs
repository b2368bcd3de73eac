//! How every figure of the comparison is written, in one place: the
//! terminal's tables, report.md, report.html and the charts all say
//! `12,346 answers/s`, `1.2 ms` and `2.0 MiB` the same way. A leaf: it
//! knows numbers, not experiments.

/// `12345.6` as `12,346`.
pub(crate) fn group_digits(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A figure as it reads best: whole numbers grouped, small ones with two
/// decimals.
pub(crate) fn figure(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        if value < 0.0 {
            format!("-{}", group_digits(-value))
        } else {
            group_digits(value)
        }
    } else {
        format!("{value:.2}")
    }
}

/// A latency in microseconds, in the unit that reads best.
pub(crate) fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 10_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else if us >= 1_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// A size in KiB, in the unit that reads best.
pub(crate) fn kib(kib: f64) -> String {
    if kib >= 10.0 * 1024.0 {
        format!("{:.0} MiB", kib / 1024.0)
    } else if kib >= 1024.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else if kib >= 10.0 {
        format!("{kib:.0} KiB")
    } else {
        format!("{kib:.1} KiB")
    }
}

/// An axis label in answers per second: `0`, `50k`, `1.2M`.
pub(crate) fn per_second(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        let k = value / 1e3;
        if k.fract().abs() < 1e-9 {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else {
        format!("{value:.0}")
    }
}

/// An axis label in time for a value in microseconds: `10µs`, `1ms`, `2s`.
pub(crate) fn duration_label(us: f64) -> String {
    let (value, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}{unit}")
    } else {
        format!("{value:.1}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits_by_three() {
        assert_eq!(group_digits(0.4), "0");
        assert_eq!(group_digits(999.0), "999");
        assert_eq!(group_digits(1000.0), "1,000");
        assert_eq!(group_digits(1234567.8), "1,234,568");
    }

    #[test]
    fn figures_read_well() {
        assert_eq!(figure(1234.4), "1,234");
        assert_eq!(figure(64.0), "64");
        assert_eq!(figure(1.234), "1.23");
        assert_eq!(figure(-2048.0), "-2,048");
    }

    #[test]
    fn units_that_read_best() {
        assert_eq!(micros(48.3), "48 µs");
        assert_eq!(micros(1234.0), "1.2 ms");
        assert_eq!(micros(20_400.0), "20 ms");
        assert_eq!(micros(2_030_000.0), "2.03 s");
        assert_eq!(kib(2.5), "2.5 KiB");
        assert_eq!(kib(300.0), "300 KiB");
        assert_eq!(kib(2048.0), "2.0 MiB");
        assert_eq!(kib(40_960.0), "40 MiB");
    }

    #[test]
    fn axis_labels() {
        assert_eq!(per_second(0.0), "0");
        assert_eq!(per_second(50_000.0), "50k");
        assert_eq!(per_second(2_500.0), "2.5k");
        assert_eq!(per_second(1_200_000.0), "1.2M");
        assert_eq!(duration_label(10.0), "10µs");
        assert_eq!(duration_label(1_000.0), "1ms");
        assert_eq!(duration_label(2_000_000.0), "2s");
    }
}
