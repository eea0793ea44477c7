//! RFC 3339 timestamps to UTC milliseconds and back.
//!
//! `occurredAt` is part of the unique key as an instant, so `2026-05-12T18:34:00Z` and
//! `2026-05-12T13:34:00-05:00` must map to the same number. This parser is hand-written
//! because it runs once per event on the hot path: it does no allocation and no
//! locale or format-string work. It accepts exactly RFC 3339 `date-time`:
//! `YYYY-MM-DD(T|t| )hh:mm:ss(.fraction)?(Z|z|±hh:mm)`. A time zone is required (a
//! local time is not an instant). Fractions beyond milliseconds are truncated.
//! Leap seconds (`:60`) are refused: they have no distinct instant in Unix time.

/// Parses an RFC 3339 date-time into milliseconds since the Unix epoch (UTC).
///
/// Returns `None` for anything that is not a valid RFC 3339 date-time with offset.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
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
    let mut millis = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
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
    Some(secs * 1000 + i64::from(millis))
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDThh:mm:ss.sssZ` (UTC).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
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

    #[test]
    fn offsets_name_the_same_instant() {
        let z = parse_rfc3339_ms("2026-05-12T18:34:00Z").unwrap();
        assert_eq!(parse_rfc3339_ms("2026-05-12T13:34:00-05:00"), Some(z));
        assert_eq!(parse_rfc3339_ms("2026-05-13T00:04:00+05:30"), Some(z));
        assert_eq!(parse_rfc3339_ms("2026-05-12t18:34:00.000z"), Some(z));
        assert_eq!(z, 1_778_610_840_000);
    }

    #[test]
    fn fractions_truncate_to_millis() {
        let base = parse_rfc3339_ms("2026-05-12T18:34:00Z").unwrap();
        assert_eq!(parse_rfc3339_ms("2026-05-12T18:34:00.5Z"), Some(base + 500));
        assert_eq!(
            parse_rfc3339_ms("2026-05-12T18:34:00.123456789Z"),
            Some(base + 123)
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
            "2026-05-12T18:34:00+0500",
            "2026-05-12T18:34:00+24:00",
            "2026-05-12T18:34:00Zjunk",
            "yesterday at noon",
            "1778610840000",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
        assert!(parse_rfc3339_ms("2024-02-29T00:00:00Z").is_some());
    }

    proptest! {
        #[test]
        fn agrees_with_chrono(secs in -62_135_510_400i64..253_402_214_399, ms in 0i64..1000, off in -1439i64..1439) {
            let instant = secs * 1000 + ms;
            let tz = chrono::FixedOffset::east_opt((off * 60) as i32).unwrap();
            let dt = chrono::DateTime::from_timestamp_millis(instant).unwrap().with_timezone(&tz);
            let text = dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
            prop_assert_eq!(parse_rfc3339_ms(&text), Some(instant), "{}", text);
            let utc = format_rfc3339_ms(instant);
            prop_assert_eq!(parse_rfc3339_ms(&utc), Some(instant));
        }
    }
}
