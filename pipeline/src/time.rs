//! RFC 3339 timestamps to UTC microseconds and back.
//!
//! `occurredAt` is part of the unique key as an instant, so `2026-05-12T18:34:00Z` and
//! `2026-05-12T13:34:00-05:00` must map to the same number. This parser is hand-written
//! because it runs once per event on the hot path: it does no allocation and no
//! locale or format-string work. It accepts exactly RFC 3339 `date-time`:
//! `YYYY-MM-DD(T|t| )hh:mm:ss(.fraction)?(Z|z|±hh:mm)`. A time zone is required (a
//! local time is not an instant). Leap seconds (`:60`) are refused: they have no
//! distinct instant in Unix time.
//!
//! # Precision: microseconds, rounded as Postgres `timestamptz` rounds
//! Instants keep microseconds, like Postgres `timestamptz`, so `…00.0001Z` and
//! `…00.0002Z` are two keys. A fraction with more than six digits is rounded to the
//! nearest microsecond exactly as Postgres does it (`ParseFractionalSecond` in its
//! `datetime.c`): the fraction is read as an IEEE double and `rint(fraction × 10⁶)` is
//! taken, i.e. round half to even on the double. So `.0000005` becomes `.000000`,
//! `.0000015` and `.0000025` both `.000002`, `.9999995` carries into the next second,
//! and, where the decimal tie is not exact in binary, the double decides: `.0001255`
//! becomes `.000125` and `.0001265` `.000127` (values checked against Postgres 15).
//! Fractions of at most six digits are exact and take an integer-only path.

/// Parses an RFC 3339 date-time into microseconds since the Unix epoch (UTC).
///
/// Digits beyond the sixth of the fraction round as Postgres rounds them (see the
/// module docs). Returns `None` for anything that is not a valid RFC 3339 date-time
/// with offset.
pub fn parse_rfc3339_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)? as i64;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        let dot = i;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - dot <= 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - dot - 1;
        if n == 0 {
            return None;
        }
        if n <= 6 {
            for _ in n..6 {
                micros *= 10;
            }
        } else {
            // Postgres: rint(strtod(".ddd…") * 1e6). Rust's float parsing is correctly
            // rounded like glibc's strtod and does not allocate; `round_ties_even` is
            // `rint` in the default rounding mode. The result is 0..=1_000_000.
            let frac: f64 = s[dot..i].parse().ok()?;
            micros = (frac * 1e6).round_ties_even() as i64;
        }
    }
    let offset_minutes: i64 = match b.get(i)? {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            if b.len() < i + 6 || b[i + 3] != b':' {
                return None;
            }
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let m = i64::from(oh * 60 + om);
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    Some(secs * 1_000_000 + micros)
}

/// Formats microseconds since the epoch as `YYYY-MM-DDThh:mm:ss.ffffffZ` (UTC), six
/// fractional digits always: what [`parse_rfc3339_us`] reads back to the same value.
pub fn format_rfc3339_us(us: i64) -> String {
    let (date, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    format!("{}.{micros:06}Z", seconds(date))
}

/// Formats microseconds since the epoch as RFC 3339 UTC with as many fractional
/// digits as the instant needs: none, 3 or 6 (`2026-06-01T13:00:00Z`,
/// `…:00.250Z`, `…:00.000001Z`). [`parse_rfc3339_us`] reads it back to the same value.
pub fn format_rfc3339_short_us(us: i64) -> String {
    let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    match micros {
        0 => format!("{}Z", seconds(secs)),
        m if m % 1000 == 0 => format!("{}.{:03}Z", seconds(secs), m / 1000),
        m => format!("{}.{m:06}Z", seconds(secs)),
    }
}

/// How many minutes start in `[since_ms, until_ms)` counting from `since_ms`: the
/// buckets of a per-minute count over that window (the last one may be partial).
pub fn minutes_spanned(since_ms: i64, until_ms: i64) -> usize {
    usize::try_from((until_ms - since_ms + 59_999).div_euclid(60_000)).unwrap_or(0)
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDThh:mm:ss.sssZ` (UTC), for the
/// instants kept in milliseconds (key creation times, `ingested_at`).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    format!("{}.{millis:03}Z", seconds(secs))
}

/// `YYYY-MM-DDThh:mm:ss` of seconds since the epoch.
fn seconds(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = "2026-05-12T18:34:00";

    #[test]
    fn a_window_spans_the_minutes_that_start_in_it() {
        assert_eq!(minutes_spanned(0, 0), 0);
        assert_eq!(minutes_spanned(0, 1), 1);
        assert_eq!(minutes_spanned(0, 60_000), 1);
        assert_eq!(minutes_spanned(0, 60_001), 2);
        assert_eq!(minutes_spanned(60_000, 3_660_000), 60);
        assert_eq!(minutes_spanned(10, 0), 0, "an empty window has none");
    }

    fn at(fraction: &str) -> i64 {
        parse_rfc3339_us(&format!("{BASE}{fraction}Z"))
            .unwrap_or_else(|| panic!("{fraction:?} refused"))
    }

    #[test]
    fn offsets_name_the_same_instant() {
        let z = parse_rfc3339_us("2026-05-12T18:34:00Z").unwrap();
        assert_eq!(parse_rfc3339_us("2026-05-12T13:34:00-05:00"), Some(z));
        assert_eq!(parse_rfc3339_us("2026-05-13T00:04:00+05:30"), Some(z));
        assert_eq!(parse_rfc3339_us("2026-05-12t18:34:00.000z"), Some(z));
        assert_eq!(z, 1_778_610_840_000_000);
    }

    #[test]
    fn microseconds_are_kept() {
        let base = at("");
        assert_eq!(at(".5"), base + 500_000);
        assert_eq!(at(".123"), base + 123_000);
        assert_eq!(at(".0001"), base + 100);
        assert_eq!(at(".0002"), base + 200);
        assert_eq!(at(".123456"), base + 123_456);
        assert_ne!(at(".0001"), at(".0002"));
    }

    /// What Postgres 15 answers for `'2026-05-12T18:34:00<fraction>Z'::timestamptz`
    /// (`to_char(..., 'SS.US')`), including the ties the binary double decides.
    #[test]
    fn digits_past_the_sixth_round_as_postgres_rounds_them() {
        let base = at("");
        for (fraction, micros) in [
            (".0000005", 0),
            (".0000015", 2),
            (".0000025", 2),
            (".0000035", 4),
            (".00000051", 1),
            (".0000004999", 0),
            (".000000500000000001", 1),
            (".1234565", 123_456),
            (".1234575", 123_458),
            (".12345650000000000001", 123_456),
            (".1234564999999999999", 123_456),
            (".0000615", 62),
            (".0001245", 124),
            (".0001255", 125),
            (".0001265", 127),
            (".9999994", 999_999),
            (".123456789", 123_457),
        ] {
            assert_eq!(at(fraction) - base, micros, "{fraction}");
        }
        // Rounding up can carry into the next second, day and year.
        assert_eq!(
            parse_rfc3339_us("2026-12-31T23:59:59.9999995Z"),
            parse_rfc3339_us("2027-01-01T00:00:00Z")
        );
        assert_eq!(parse_rfc3339_us("1969-12-31T23:59:59.9999995Z"), Some(0));
        assert_eq!(
            parse_rfc3339_us(&format!("{BASE}.{}Z", "9".repeat(400))),
            Some(at("") + 1_000_000)
        );
    }

    #[test]
    fn refuses_what_is_not_an_instant() {
        for bad in [
            "",
            "2026-05-12",
            "2026-05-12T18:34:00",
            "2026-05-12T18:34Z",
            "2026-13-12T18:34:00Z",
            "2026-02-30T18:34:00Z",
            "2025-02-29T00:00:00Z",
            "2026-05-12T24:00:00Z",
            "2026-05-12T18:60:00Z",
            "2026-05-12T18:34:60Z",
            "2026-05-12T18:34:00.Z",
            "2026-05-12T18:34:00.1234567.Z",
            "2026-05-12T18:34:00.1e5Z",
            "2026-05-12T18:34:00+0500",
            "2026-05-12T18:34:00+24:00",
            "2026-05-12T18:34:00Zjunk",
            "yesterday at noon",
            "1778610840000",
        ] {
            assert_eq!(parse_rfc3339_us(bad), None, "{bad:?}");
        }
        assert!(parse_rfc3339_us("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn formats_six_digits() {
        let us = at(".000100");
        assert_eq!(format_rfc3339_us(us), "2026-05-12T18:34:00.000100Z");
        assert_eq!(format_rfc3339_us(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_rfc3339_ms(1_778_610_840_007),
            "2026-05-12T18:34:00.007Z"
        );
    }

    proptest! {
        #[test]
        fn agrees_with_chrono(secs in -62_135_510_400i64..253_402_214_399, us in 0i64..1_000_000, off in -1439i64..1439) {
            let instant = secs * 1_000_000 + us;
            let tz = chrono::FixedOffset::east_opt((off * 60) as i32).unwrap();
            let dt = chrono::DateTime::from_timestamp_micros(instant).unwrap().with_timezone(&tz);
            let text = dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
            prop_assert_eq!(parse_rfc3339_us(&text), Some(instant), "{}", text);
            let utc = format_rfc3339_us(instant);
            prop_assert_eq!(parse_rfc3339_us(&utc), Some(instant));
            prop_assert_eq!(utc, chrono::DateTime::from_timestamp_micros(instant).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        }

        /// Nanoseconds round to the nearest microsecond; only an exact tie can go
        /// either way (to even, or where the double representing it leans).
        #[test]
        fn nanoseconds_round_to_the_nearest_microsecond(secs in 0i64..4_102_444_800, ns in 0i64..1_000_000_000) {
            let dt = chrono::DateTime::from_timestamp(secs, ns as u32).unwrap();
            let text = dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let got = parse_rfc3339_us(&text).unwrap() - secs * 1_000_000;
            let (whole, rest) = (ns / 1000, ns % 1000);
            match rest.cmp(&500) {
                std::cmp::Ordering::Less => prop_assert_eq!(got, whole, "{}", text),
                std::cmp::Ordering::Greater => prop_assert_eq!(got, whole + 1, "{}", text),
                std::cmp::Ordering::Equal => prop_assert!(got == whole || got == whole + 1, "{}", text),
            }
        }
    }

    #[test]
    fn short_format_keeps_only_the_digits_needed_and_reads_back() {
        for (us, text) in [
            (1_780_318_800_000_000, "2026-06-01T13:00:00Z"),
            (1_780_318_800_250_000, "2026-06-01T13:00:00.250Z"),
            (1_780_318_800_000_001, "2026-06-01T13:00:00.000001Z"),
        ] {
            assert_eq!(format_rfc3339_short_us(us), text);
            assert_eq!(parse_rfc3339_us(text), Some(us));
        }
    }
}
