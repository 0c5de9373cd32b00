//! Times of `container logs`: `--since` values and the `--timestamps` form.
//!
//! `--since` takes a duration back from now, a whole number with a unit `s`, `m`,
//! `h` or `d` (`30s`, `10m`, `2h`, `1d`; units may be combined largest first: `1h30m`),
//! or an RFC 3339 time with a date, a time of day and an offset
//! (`2026-12-03T22:00:00Z`, `2026-12-03T23:00:00.5+01:00`; a space for the `T` is
//! accepted). Times print as RFC 3339 in UTC with nanoseconds
//! (`2026-12-03T22:00:00.000000000Z`), the form Docker prints.

/// What `--since` accepts, for errors.
pub const SINCE_FORMS: &str =
    "a duration back from now (30s, 10m, 2h, 1d, 1h30m) or an RFC 3339 time (2026-12-03T22:00:00Z)";

/// `--since VALUE` as Unix nanoseconds, `now` being the current time in the same unit.
pub fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Some(d) = parse_duration(s) {
        return Ok(now.saturating_sub(d));
    }
    parse_rfc3339(s).ok_or_else(|| format!("`{s}` is not a time: expected {SINCE_FORMS}"))
}

/// `30s`, `10m`, `2h`, `1d`, `1h30m` as nanoseconds.
fn parse_duration(s: &str) -> Option<i64> {
    const UNITS: [(u8, i64); 4] = [(b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];
    let b = s.as_bytes();
    let (mut i, mut total, mut last_unit) = (0, 0i64, usize::MAX);
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || i + digits >= b.len() {
            return None;
        }
        let n: i64 = s[i..i + digits].parse().ok()?;
        let unit = UNITS.iter().position(|(u, _)| *u == b[i + digits])?;
        // Largest first, each unit once: `10m5h` is more likely a typo than a wish.
        if last_unit != usize::MAX && unit <= last_unit {
            return None;
        }
        last_unit = unit;
        total = total.checked_add(n.checked_mul(UNITS[unit].1)?)?;
        i += digits + 1;
    }
    total.checked_mul(1_000_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as Unix nanoseconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for k in 0..9 {
            nanos = nanos * 10 + if k < digits { i64::from(b[i + 1 + k] - b'0') } else { 0 };
        }
        i += 1 + digits;
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Unix nanoseconds as `2026-12-03T22:00:00.000000000Z`.
pub fn rfc3339(nanos: i64) -> String {
    let (secs, frac) = (nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000));
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

/// Now as Unix nanoseconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The `--since` value parser: the value is checked while the arguments are parsed,
/// so a bad one is a usage error (exit 64) that says what is accepted.
pub fn since_arg(s: &str) -> Result<i64, String> {
    parse_since(s, now())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_335_200_000_000_000; // 2026-12-03T22:00:00Z

    #[test]
    fn durations_count_back_from_now() {
        let s = 1_000_000_000;
        assert_eq!(parse_since("30s", NOW), Ok(NOW - 30 * s));
        assert_eq!(parse_since("10m", NOW), Ok(NOW - 600 * s));
        assert_eq!(parse_since("2h", NOW), Ok(NOW - 7200 * s));
        assert_eq!(parse_since("1d", NOW), Ok(NOW - 86_400 * s));
        assert_eq!(parse_since("1h30m", NOW), Ok(NOW - 5400 * s));
        assert_eq!(parse_since("0s", NOW), Ok(NOW));
    }

    #[test]
    fn rfc3339_times_with_offsets_and_fractions() {
        assert_eq!(rfc3339(NOW), "2026-12-03T22:00:00.000000000Z");
        assert_eq!(parse_since("2026-12-03T22:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_since("2026-12-03 23:30:00+01:30", 0), Ok(NOW));
        assert_eq!(parse_since("2026-12-03T21:00:00-01:00", 0), Ok(NOW));
        assert_eq!(parse_since("2026-12-03T22:00:00.25Z", 0), Ok(NOW + 250_000_000));
        assert_eq!(parse_since("1970-01-01T00:00:00Z", 5), Ok(0));
        assert_eq!(parse_since("2024-02-29T00:00:00Z", 0).map(rfc3339), Ok("2024-02-29T00:00:00.000000000Z".into()));
        assert_eq!(rfc3339(NOW + 123), "2026-12-03T22:00:00.000000123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn round_trips_over_many_days() {
        for day in (-100_000..100_000).step_by(97) {
            let t = day * 86_400_000_000_000 + 3_723_000_000_042;
            assert_eq!(parse_since(&rfc3339(t), 0), Ok(t), "{}", rfc3339(t));
        }
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        for bad in [
            "yesterday",
            "",
            "10",
            "m",
            "10x",
            "-5m",
            "10m5h",
            "5m5m",
            "1.5h",
            "2026-12-03",
            "2026-12-03T22:00:00",
            "2026-13-03T22:00:00Z",
            "2026-02-30T22:00:00Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T22:00:00+1:00",
            "2026-12-03T22:00:00.Z",
            "2026-12-03T22:00:00Zjunk",
            "99999999999999999999s",
        ] {
            let e = parse_since(bad, NOW).expect_err(bad);
            assert!(e.contains("30s, 10m, 2h") && e.contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
