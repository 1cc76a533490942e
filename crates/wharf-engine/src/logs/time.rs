//! Log times: the formats of the `time` field and of `--timestamps`, and
//! the `--since`/`--until` arguments as Docker's client parses them.

use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::error::EngineError;

/// Go's `time.RFC3339Nano` in UTC: nanoseconds with trailing zeros
/// dropped (`2026-11-27T14:00:00.1234Z`, `2026-11-27T14:00:00Z`), the
/// format of the `time` field of Docker's json-file.
pub(super) fn format_rfc3339_nano(time: SystemTime) -> String {
    let time: DateTime<Utc> = time.into();
    let mut text = time.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    while text.ends_with('0') {
        text.pop();
    }
    if text.ends_with('.') {
        text.pop();
    }
    text.push('Z');
    text
}

/// A log line's time as `logs --timestamps` prints it: RFC 3339 in UTC
/// with all nine digits of nanoseconds (Docker's `RFC3339NanoFixed`),
/// `2026-11-27T14:00:00.120000000Z`.
pub fn format_timestamp(time: SystemTime) -> String {
    let time: DateTime<Utc> = time.into();
    time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Parses a `--since`/`--until` value as Docker's `GetTimestamp` does: a
/// Go duration before `now` (`10m`, `1h30m`, `1.5h`), RFC 3339 with or
/// without fraction or zone (`2026-11-27T14:00:00Z`,
/// `2026-11-27T14:00:00.5+01:00`, `2026-11-27T14:00`, `2026-11-27`; no
/// zone means local time), or a unix timestamp (`1700000000`,
/// `1700000000.123456789`).
///
/// # Errors
///
/// [`EngineError::InvalidArgument`] naming the value when it is none of
/// these.
pub fn parse_time_arg(s: &str, now: SystemTime) -> Result<SystemTime, EngineError> {
    let invalid = || {
        EngineError::invalid(format!(
            "failed to parse value as time or duration: {s:?}: expected RFC 3339 \
             (2026-11-27T14:00:00Z), a date, a unix timestamp or a duration (10m)"
        ))
    };
    if s != "0" {
        if let Some(nanos) = parse_go_duration(s) {
            let now = i128::from(
                DateTime::<Utc>::from(now)
                    .timestamp_nanos_opt()
                    .ok_or_else(invalid)?,
            );
            let then = i64::try_from(now - nanos).map_err(|_| invalid())?;
            return Ok(DateTime::<Utc>::from_timestamp_nanos(then).into());
        }
    }
    // Docker: no zone unless the value has a Z, a + or three dashes.
    let local = !s.contains(['z', 'Z', '+']) && s.matches('-').count() != 3;
    match parse_date_time(s, local) {
        Some(time) => Ok(time),
        None if s.contains('-') => Err(invalid()),
        None => parse_unix_timestamp(s).ok_or_else(invalid),
    }
}

/// A flag's Go duration (`30s`, `1m30s`, `1.5h`, `500ms`), non-negative,
/// as `--health-interval` and the like take.
///
/// # Errors
///
/// The value is not a Go duration, or is negative.
pub fn parse_duration_arg(flag: &str, s: &str) -> Result<std::time::Duration, EngineError> {
    match parse_go_duration(s.trim()) {
        Some(n) if n >= 0 => Ok(std::time::Duration::from_nanos(
            u64::try_from(n).unwrap_or(u64::MAX),
        )),
        _ => Err(EngineError::invalid(format!(
            "invalid {flag} {s:?}: expected a duration like 30s, 1m30s or 500ms"
        ))),
    }
}

/// Go's `time.ParseDuration` in nanoseconds: `[-+]` then one or more
/// `<number>[.<fraction>]<unit>` with units ns, us, µs, ms, s, m, h.
pub(crate) fn parse_go_duration(s: &str) -> Option<i128> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut whole_total: i128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let unit: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        whole_total = whole_total.checked_add(whole.checked_mul(unit)?)?;
        if !fraction.is_empty() {
            let digits: f64 = fraction.parse().ok()?;
            total += digits / 10f64.powi(i32::try_from(fraction.len()).ok()?) * unit as f64;
        }
        rest = tail;
    }
    let nanos = whole_total.checked_add(total as i128)?;
    Some(if negative { -nanos } else { nanos })
}

/// `YYYY-MM-DD[THH[:MM[:SS[.fraction]]]]` then, unless `local`, a zone
/// (`Z` or `±HH:MM`); without a zone the time is local.
fn parse_date_time(s: &str, local: bool) -> Option<SystemTime> {
    let (text, offset) = if local {
        (s, None)
    } else if let Some(text) = s.strip_suffix(['Z', 'z']) {
        (text, Some(FixedOffset::east_opt(0)?))
    } else {
        let sign_at = s.len().checked_sub(6)?;
        let (text, zone) = s.split_at(sign_at);
        let sign = match zone.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return None,
        };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let seconds = digits(hours, 2)? * 3600 + digits(minutes, 2)? * 60;
        (
            text,
            Some(FixedOffset::east_opt(sign * i32::try_from(seconds).ok()?)?),
        )
    };
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = digits(parts.next()?, 4)?;
    let month = digits(parts.next()?, 2)?;
    let day = digits(parts.next()?, 2)?;
    if parts.next().is_some() {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let time = match time {
        None => NaiveTime::MIN,
        Some(time) => {
            let (clock, fraction) = match time.split_once('.') {
                Some((clock, fraction)) => (clock, Some(fraction)),
                None => (time, None),
            };
            let mut fields = clock.split(':');
            let hour = digits(fields.next()?, 2)?;
            let minute = fields.next().map_or(Some(0), |m| digits(m, 2))?;
            let second = fields.next().map_or(Some(0), |s| digits(s, 2))?;
            if fields.next().is_some() || (fraction.is_some() && clock.matches(':').count() != 2) {
                return None;
            }
            let nanos = match fraction {
                None => 0,
                Some(f)
                    if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    f.parse::<u32>().ok()? * 10u32.pow(9 - u32::try_from(f.len()).ok()?)
                }
                Some(_) => return None,
            };
            NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?
        }
    };
    let naive = NaiveDateTime::new(date, time);
    let time: DateTime<Utc> = match offset {
        Some(offset) => offset
            .from_local_datetime(&naive)
            .single()?
            .with_timezone(&Utc),
        None => Local
            .from_local_datetime(&naive)
            .earliest()?
            .with_timezone(&Utc),
    };
    Some(time.into())
}

/// Exactly `n` ASCII digits.
fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `seconds[.fraction]` since the epoch; the fraction is scaled to
/// nanoseconds as Docker's `ParseTimestamps` does (`.5` is half a second).
fn parse_unix_timestamp(s: &str) -> Option<SystemTime> {
    let (seconds, fraction) = s.split_once('.').unwrap_or((s, ""));
    if seconds.is_empty() || !seconds.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = seconds.parse().ok()?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        fraction.parse::<u32>().ok()? * 10u32.pow(9 - u32::try_from(fraction.len()).ok()?)
    };
    Some(DateTime::<Utc>::from_timestamp(seconds, nanos)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::tests::*;
    use std::time::Duration;

    #[test]
    fn times_drop_trailing_zeros_as_go_does() {
        let t = at(1_795_788_000);
        assert_eq!(format_rfc3339_nano(t), "2026-11-27T14:00:00Z");
        assert_eq!(
            format_rfc3339_nano(t + Duration::from_millis(120)),
            "2026-11-27T14:00:00.12Z"
        );
        assert_eq!(
            format_timestamp(t + Duration::from_millis(120)),
            "2026-11-27T14:00:00.120000000Z"
        );
    }

    #[test]
    fn time_args_accept_dockers_forms() {
        let now = at(1_795_788_000); // 2026-11-27T14:00:00Z
        let parse = |s: &str| parse_time_arg(s, now).unwrap();
        assert_eq!(parse("2026-11-27T14:00:00Z"), now);
        assert_eq!(
            parse("2026-11-27T14:00:00.5+01:00"),
            at(1_795_784_400) + Duration::from_millis(500)
        );
        assert_eq!(parse("2026-11-27T09:00:00-05:00"), now);
        assert_eq!(
            parse("2026-11-27T14:00:00.123456789Z"),
            now + Duration::from_nanos(123_456_789)
        );
        assert_eq!(parse("1700000000"), at(1_700_000_000));
        assert_eq!(
            parse("1700000000.123456789"),
            at(1_700_000_000) + Duration::from_nanos(123_456_789)
        );
        assert_eq!(
            parse("1700000000.5"),
            at(1_700_000_000) + Duration::from_millis(500)
        );
        assert_eq!(parse("0"), at(0));
        assert_eq!(parse("10m"), at(1_795_788_000 - 600));
        assert_eq!(parse("1h30m"), at(1_795_788_000 - 5400));
        assert_eq!(parse("5s"), at(1_795_788_000 - 5));
        assert_eq!(parse("1.5h"), at(1_795_788_000 - 5400));
        assert_eq!(parse("-1m"), at(1_795_788_000 + 60));
        assert_eq!(parse("250ms"), now - Duration::from_millis(250));
        // Without a zone: local time, as Docker's client.
        let local = |y, mo, d, h, mi| -> SystemTime {
            Local
                .with_ymd_and_hms(y, mo, d, h, mi, 0)
                .earliest()
                .unwrap()
                .with_timezone(&Utc)
                .into()
        };
        assert_eq!(parse("2026-11-27"), local(2026, 11, 27, 0, 0));
        assert_eq!(parse("2026-11-27T14:30"), local(2026, 11, 27, 14, 30));
        assert_eq!(parse("2026-11-27T14"), local(2026, 11, 27, 14, 0));
        assert_eq!(parse("2026-11-27T14:30:00"), local(2026, 11, 27, 14, 30));
        assert_eq!(parse("2026-11-27Z"), at(1_795_737_600));
    }

    #[test]
    fn time_args_reject_garbage() {
        let now = at(1_795_788_000);
        for bad in [
            "",
            "yesterday",
            "10",
            "2026-13-01",
            "2026-02-30",
            "2026-11-27T25:00:00Z",
            "2026-11-27T14:00:00+0100",
            "1h30",
            "1700000000.1234567891",
            "12abc",
            "-",
        ] {
            let result = parse_time_arg(bad, now);
            if bad == "10" {
                // A bare number is a unix timestamp.
                assert_eq!(result.unwrap(), at(10));
                continue;
            }
            let err = result.unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
            assert!(
                err.to_string().starts_with(&format!(
                    "failed to parse value as time or duration: {bad:?}"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_go_duration("2us"), Some(2_000));
        assert_eq!(parse_go_duration("2µs"), Some(2_000));
        assert_eq!(parse_go_duration("1"), None);
        assert_eq!(parse_go_duration("h"), None);
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
