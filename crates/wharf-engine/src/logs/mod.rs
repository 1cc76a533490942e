//! Container logs with Docker's semantics: the logging drivers a
//! container's output goes to (`json-file`, `journald`, `none`), reading
//! `json-file` logs back (`since`, `until`, `tail`, `follow`), and the
//! `--since`/`--until` time arguments.
//!
//! Who calls what: the per-container monitor opens one [`LogWriter`] per
//! container and feeds it the raw chunks read from the container's stdout
//! and stderr pipes; `wharf logs` and the API call [`read_logs`] with the
//! container's [`LogConfig`] (stored in its config) and log path.
//!
//! The `json-file` format is Docker's, one JSON object per line:
//! `{"log":"hello\n","stream":"stdout","time":"2026-11-27T14:00:00.123456789Z"}`,
//! so files written by Wharf read like Docker's and the other way round.

mod read;
mod time;
mod write;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

pub use read::{read_logs, LogLine, ReadOptions};
pub use time::{format_timestamp, parse_duration_arg, parse_time_arg};
pub use write::LogWriter;

/// journald's native protocol socket (systemd.journal-fields(7)).
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Where a container's output goes (`--log-driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// Docker's default: JSON lines in a file under the container's
    /// directory, optionally rotated.
    JsonFile,
    /// journald's native protocol; read back with `journalctl`.
    Journald,
    /// Discarded.
    None,
}

impl LogDriver {
    /// The driver's name as `--log-driver` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonFile => "json-file",
            Self::Journald => "journald",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for LogDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container's logging configuration (`--log-driver`, `--log-opt`),
/// stored in the container's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// The driver.
    pub driver: LogDriver,
    /// `json-file`: rotate when the file would grow past this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// `json-file`: how many files to keep, the live one included (1: the
    /// live file is replaced when full).
    #[serde(default = "one")]
    pub max_file: u32,
}

fn one() -> u32 {
    1
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            driver: LogDriver::JsonFile,
            max_size: None,
            max_file: 1,
        }
    }
}

impl LogConfig {
    /// Validates `--log-driver` and `--log-opt key=value` pairs as Docker
    /// does: `json-file` (also for an empty driver), `journald` or `none`;
    /// `json-file` takes `max-size` (go-units' `FromHumanSize`: `10m`,
    /// `1.5g`, `100k`, decimal units) and `max-file` (at least 1, only with
    /// `max-size`). `none` ignores options, as Docker does.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidArgument`] naming the unknown driver or option,
    /// or the malformed value.
    pub fn parse(driver: &str, opts: &[(String, String)]) -> Result<LogConfig, EngineError> {
        let driver = match driver {
            "" | "json-file" => LogDriver::JsonFile,
            "journald" => LogDriver::Journald,
            "none" => LogDriver::None,
            other => {
                return Err(EngineError::invalid(format!(
                    "no log driver named \"{other}\" is registered: use json-file, journald or none"
                )))
            }
        };
        let mut config = LogConfig {
            driver,
            ..LogConfig::default()
        };
        if driver == LogDriver::None {
            return Ok(config);
        }
        let mut max_file = None;
        for (key, value) in opts {
            match (driver, key.as_str()) {
                (LogDriver::JsonFile, "max-size") => {
                    let size = parse_human_size(value).ok_or_else(|| {
                        EngineError::invalid(format!(
                            "invalid log opt max-size={value:?}: expected a size such as 10m, 512k or 1g"
                        ))
                    })?;
                    if size == 0 {
                        return Err(EngineError::invalid("max-size must be a positive number"));
                    }
                    config.max_size = Some(size);
                }
                (LogDriver::JsonFile, "max-file") => {
                    let n: i64 = value.trim().parse().map_err(|_| {
                        EngineError::invalid(format!(
                            "invalid log opt max-file={value:?}: expected a number"
                        ))
                    })?;
                    if n < 1 {
                        return Err(EngineError::invalid("max-file cannot be less than 1"));
                    }
                    max_file = Some(u32::try_from(n).map_err(|_| {
                        EngineError::invalid(format!(
                            "invalid log opt max-file={value:?}: too large"
                        ))
                    })?);
                }
                (driver, key) => {
                    return Err(EngineError::invalid(format!(
                        "unknown log opt '{key}' for {driver} log driver"
                    )))
                }
            }
        }
        if let Some(n) = max_file {
            if config.max_size.is_none() {
                return Err(EngineError::invalid(
                    "max-file cannot be set if max-size is not set",
                ));
            }
            config.max_file = n;
        }
        Ok(config)
    }
}

/// go-units' `FromHumanSize`: `<number>[ ][kmgtp][i][b]`, decimal units
/// (`10m` is 10,000,000 bytes), case-insensitive, fractions allowed.
fn parse_human_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let suffix = suffix
        .strip_prefix(' ')
        .unwrap_or(suffix)
        .to_ascii_lowercase();
    let mut rest = suffix.as_str();
    let multiplier = match rest.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            rest = &rest[1..];
            match c {
                'k' => 1e3,
                'm' => 1e6,
                'g' => 1e9,
                't' => 1e12,
                _ => 1e15,
            }
        }
        _ => 1.0,
    };
    let rest = rest.strip_prefix('i').unwrap_or(rest);
    let rest = rest.strip_prefix('b').unwrap_or(rest);
    if !rest.is_empty() {
        return None;
    }
    let bytes = value * multiplier;
    // Truncation is go-units' behaviour (int64(size * multiplier)).
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Which of the container's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as the log records name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Stdout => 0,
            Self::Stderr => 1,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::time::SystemTime;

    use chrono::{DateTime, Utc};

    use super::write::encode_json_record;
    use super::*;
    use crate::state::{ContainerId, ContainerName};

    pub(crate) fn id() -> ContainerId {
        ContainerId::parse(&"ab12".repeat(16)).unwrap()
    }

    pub(crate) fn name() -> ContainerName {
        ContainerName::parse("web-1").unwrap()
    }

    pub(crate) fn json_config(max_size: Option<u64>, max_file: u32) -> LogConfig {
        LogConfig {
            driver: LogDriver::JsonFile,
            max_size,
            max_file,
        }
    }

    pub(crate) fn read_all(config: &LogConfig, path: &Path, options: &ReadOptions) -> Vec<LogLine> {
        let mut lines = Vec::new();
        read_logs(
            config,
            path,
            options,
            || false,
            |l| {
                lines.push(l);
                Ok(())
            },
        )
        .unwrap();
        lines
    }

    pub(crate) fn texts(lines: &[LogLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8(l.bytes.clone()).unwrap())
            .collect()
    }

    pub(crate) fn at(seconds: i64) -> SystemTime {
        DateTime::<Utc>::from_timestamp(seconds, 0).unwrap().into()
    }

    /// Writes `count` records `line <i>` with times 1000+i seconds.
    pub(crate) fn write_timed(path: &Path, range: std::ops::Range<u32>) {
        let mut out = Vec::new();
        for i in range {
            encode_json_record(
                format!("line {i}\n").as_bytes(),
                true,
                Stream::Stdout,
                at(1000 + i64::from(i)),
                &mut out,
            );
        }
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(&out).unwrap();
    }

    #[test]
    fn parse_defaults_to_json_file() {
        assert_eq!(LogConfig::parse("", &[]).unwrap(), LogConfig::default());
        assert_eq!(
            LogConfig::parse("none", &[("anything".into(), "x".into())])
                .unwrap()
                .driver,
            LogDriver::None
        );
        assert_eq!(
            LogConfig::parse("journald", &[]).unwrap().driver,
            LogDriver::Journald
        );
    }

    #[test]
    fn parse_sizes_and_file_counts() {
        let opts = [
            ("max-size".to_owned(), "10m".to_owned()),
            ("max-file".to_owned(), "3".to_owned()),
        ];
        assert_eq!(
            LogConfig::parse("json-file", &opts).unwrap(),
            json_config(Some(10_000_000), 3)
        );
        assert_eq!(parse_human_size("512k"), Some(512_000));
        assert_eq!(parse_human_size("1.5g"), Some(1_500_000_000));
        assert_eq!(parse_human_size("100"), Some(100));
        assert_eq!(parse_human_size("20MB"), Some(20_000_000));
        assert_eq!(parse_human_size("2 KiB"), Some(2_000));
        assert_eq!(parse_human_size("10x"), None);
        assert_eq!(parse_human_size("m"), None);
        assert_eq!(parse_human_size(""), None);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let err = |driver: &str, opts: &[(&str, &str)]| {
            let opts: Vec<(String, String)> = opts
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let e = LogConfig::parse(driver, &opts).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            e.to_string()
        };
        assert_eq!(
            err("syslog", &[]),
            "no log driver named \"syslog\" is registered: use json-file, journald or none"
        );
        assert_eq!(
            err("json-file", &[("max-sise", "1m")]),
            "unknown log opt 'max-sise' for json-file log driver"
        );
        assert_eq!(
            err("journald", &[("max-size", "1m")]),
            "unknown log opt 'max-size' for journald log driver"
        );
        assert_eq!(
            err("json-file", &[("max-file", "3")]),
            "max-file cannot be set if max-size is not set"
        );
        assert_eq!(
            err("json-file", &[("max-size", "1m"), ("max-file", "0")]),
            "max-file cannot be less than 1"
        );
        assert_eq!(
            err("json-file", &[("max-size", "0")]),
            "max-size must be a positive number"
        );
        assert!(err("json-file", &[("max-size", "ten")]).contains("max-size=\"ten\""));
        assert!(err("json-file", &[("max-size", "1m"), ("max-file", "x")]).contains("max-file"));
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = json_config(Some(1_000), 2);
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(
            text,
            r#"{"driver":"json-file","max_size":1000,"max_file":2}"#
        );
        assert_eq!(serde_json::from_str::<LogConfig>(&text).unwrap(), config);
        let journald: LogConfig = serde_json::from_str(r#"{"driver":"journald"}"#).unwrap();
        assert_eq!(journald.max_file, 1);
    }
}
