//! Text output as Docker prints it: human sizes (decimal units, three
//! significant digits), "2 hours ago" durations, column tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `4.26MB`, `851kB`, `100B` (go-units' HumanSize: base 1000, 3 digits).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(value, 3), UNITS[unit])
}

/// `1.5MiB`, `15.54GiB`, `0B` (go-units' BytesSize: base 1024, 4 digits).
pub fn bytes_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{}{}", significant(value, 4), UNITS[unit])
}

/// `value` with `digits` significant digits, trailing zeros dropped (%g).
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `About a minute ago`, `2 hours ago` (go-units' HumanDuration + " ago").
pub fn since(unix_seconds: i64) -> String {
    let then = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_seconds).unwrap_or(0));
    let elapsed = SystemTime::now().duration_since(then).unwrap_or_default();
    format!("{} ago", human_duration(elapsed))
}

pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let hours = seconds / 3600;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if seconds / 60 == 1 {
        "About a minute".into()
    } else if seconds < 3600 {
        format!("{} minutes", seconds / 60)
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// `2026-11-27 12:00:00 +0000 UTC`, as Docker's CreatedAt.
pub fn created_at(unix_seconds: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_seconds).unwrap_or(0));
    let rfc = humantime::format_rfc3339_seconds(t).to_string();
    // 2026-11-27T12:00:00Z → 2026-11-27 12:00:00 +0000 UTC
    format!(
        "{} +0000 UTC",
        rfc.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// A table whose columns are padded to their widest cell plus three spaces
/// (at least 10 wide), as Docker's tabwriter prints them.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|s| (*s).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, aligned as Docker's
    /// formatter aligns (Go's tabwriter: min width 10, padding 3).
    pub fn render(&self) -> String {
        let mut text = String::new();
        for row in &self.rows {
            text.push_str(&row.join("\t"));
            text.push('\n');
        }
        crate::format::tabwrite(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(100), "100B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(851_000), "851kB");
        assert_eq!(human_size(12_340_000), "12.3MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
        assert_eq!(human_size(1_500), "1.5kB");
    }

    #[test]
    fn binary_sizes_as_docker_prints_them() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1000), "1000B");
        assert_eq!(bytes_size(1536), "1.5KiB");
        assert_eq!(bytes_size(471_040), "460KiB");
        assert_eq!(bytes_size(16_686_620_672), "15.54GiB");
        assert_eq!(bytes_size(3 << 20), "3MiB");
    }

    #[test]
    fn durations_as_docker_prints_them() {
        assert_eq!(human_duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
    }

    #[test]
    fn table_pads_columns() {
        let mut t = Table::new(&["REPOSITORY", "TAG"]);
        t.row(vec!["busybox".into(), "latest".into()]);
        assert_eq!(t.render(), "REPOSITORY   TAG\nbusybox      latest\n");
        let mut t = Table::new(&["DRIVER", "VOLUME NAME"]);
        t.row(vec!["local".into(), "data".into()]);
        assert_eq!(t.render(), "DRIVER    VOLUME NAME\nlocal     data\n");
    }

    #[test]
    fn created_at_is_dockers_format() {
        assert_eq!(created_at(0), "1970-01-01 00:00:00 +0000 UTC");
    }
}
