//! UTC instants as traces write them: RFC 3339 (`2026-01-05T09:00:00Z`, `...+00:00`, with or
//! without fractions, a space allowed for the `T`) or epoch seconds or milliseconds; and the
//! weekday and minute a schedule window needs. Only the proleptic Gregorian calendar of RFC
//! 3339; no time zone database, offsets are applied as written.

const DAY_MS: i64 = 86_400_000;
/// Epoch numbers above this are milliseconds (it is 2286 in seconds, 1970-04 in milliseconds).
const SECONDS_LIMIT: f64 = 1e10;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm, restated).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn number(raw: &str, what: &str) -> Result<i64, String> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {raw:?} is not a number"));
    }
    raw.parse().map_err(|_| format!("{what} {raw:?} is out of range"))
}

/// Milliseconds since the epoch of `raw`; the reason when it is no instant.
pub fn parse_instant(raw: &str) -> Result<u64, String> {
    let raw = raw.trim().trim_matches('"');
    if raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !raw.is_empty() {
        let value: f64 = raw.parse().map_err(|_| format!("{raw:?} is not an epoch time"))?;
        let ms = if value < SECONDS_LIMIT { value * 1_000.0 } else { value };
        return Ok(warmpool_core::num::floor_u64(ms));
    }
    parse_rfc3339(raw).map_err(|why| format!("{raw:?} is not a UTC time (RFC 3339 or epoch seconds): {why}"))
}

fn parse_rfc3339(raw: &str) -> Result<u64, String> {
    let (date, rest) = raw.split_once(['T', 't', ' ']).ok_or("no `T` between date and time")?;
    let mut parts = date.splitn(3, '-');
    let (Some(y), Some(mo), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("the date is not YYYY-MM-DD".into());
    };
    let (year, month, day) = (number(y, "year")?, number(mo, "month")?, number(d, "day")?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date".into());
    }
    let offset_at = rest.find(['Z', 'z', '+', '-']).ok_or("no time zone (Z or ±HH:MM)")?;
    let (clock, zone) = rest.split_at(offset_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut fields = hms.splitn(3, ':');
    let (Some(h), Some(mi), Some(s)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("the time is not HH:MM:SS".into());
    };
    let (hour, minute, second) = (number(h, "hour")?, number(mi, "minute")?, number(s, "second")?);
    if hour > 23 || minute > 59 || second > 60 {
        return Err("no such time of day".into());
    }
    let millis = match fraction {
        "" => 0,
        f => {
            let digits: String = f.chars().chain("000".chars()).take(3).collect();
            number(&digits, "fraction")?
        }
    };
    let offset_minutes = match zone {
        "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z[1..].split_once(':').ok_or("the offset is not ±HH:MM")?;
            sign * (number(oh, "offset hour")? * 60 + number(om, "offset minute")?)
        }
    };
    let ms = days_from_civil(year, month, day) * DAY_MS
        + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1_000
        + millis;
    u64::try_from(ms).map_err(|_| "before 1970".to_string())
}

/// `2026-01-05T09:00:00Z` for a chart's or a report's reader.
pub fn format_instant(ms: u64) -> String {
    // To the second: `.mmmZ` dropped.
    let full = warmpool_core::clock::format_utc(ms);
    format!("{}Z", &full[..full.len() - 5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_epoch_times_read_as_the_same_instant() {
        let monday = 1_767_603_600_000; // 2026-01-05T09:00:00Z
        assert_eq!(parse_instant("2026-01-05T09:00:00Z"), Ok(monday));
        assert_eq!(parse_instant("2026-01-05T10:00:00+01:00"), Ok(monday));
        assert_eq!(parse_instant("2026-01-05 09:00:00.250Z"), Ok(monday + 250));
        assert_eq!(parse_instant("1767603600"), Ok(monday));
        assert_eq!(parse_instant("1767603600000"), Ok(monday));
        assert_eq!(format_instant(monday), "2026-01-05T09:00:00Z");
        assert_eq!(format_instant(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn what_is_no_instant_is_refused_with_the_reason() {
        for bad in [
            "",
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-01-05T25:00:00Z",
            "2026-01-05T09:00:00",
            "2026-01-05",
        ] {
            assert!(parse_instant(bad).is_err(), "accepted {bad:?}");
        }
    }
}
