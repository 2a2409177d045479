//! Decision times as RFC 3339 UTC with nanoseconds, and back.
//!
//! One fixed form, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, so the text in a receipt
//! determines the nanosecond time a policy saw (replay depends on it).

/// Formats UNIX nanoseconds as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (RFC 3339, UTC).
#[must_use]
pub fn format_rfc3339_ns(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses exactly the form [`format_rfc3339_ns`] writes.
///
/// # Errors
///
/// A message naming what is wrong.
pub fn parse_rfc3339_ns(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let shape = b.len() == 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[29] == b'Z';
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            Ok(t.parse().expect("digits"))
        } else {
            Err(format!("{s:?} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"))
        }
    };
    if !shape {
        return Err(format!("{s:?} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"));
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se, ns) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..29)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return Err(format!("{s:?} is not a valid time"));
    }
    let days = days_from_civil(y, mo, d);
    Ok((days * 86_400 + h * 3600 + mi * 60 + se) * 1_000_000_000 + ns)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_times() {
        assert_eq!(format_rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        // date -u -d @1764072000 → Tue Nov 25 12:00:00 UTC 2025
        assert_eq!(
            format_rfc3339_ns(1_764_072_000_123_456_789),
            "2025-11-25T12:00:00.123456789Z"
        );
        assert_eq!(
            format_rfc3339_ns(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert!(parse_rfc3339_ns("2025-02-29T00:00:00.000000000Z").is_err());
        assert!(parse_rfc3339_ns("2025-11-25T12:00:00Z").is_err());
        assert!(parse_rfc3339_ns("2025-11-25T24:00:00.000000000Z").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(ns in 0i64..i64::MAX) {
            prop_assert_eq!(parse_rfc3339_ns(&format_rfc3339_ns(ns)).unwrap(), ns);
        }
    }
}
