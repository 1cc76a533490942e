//! Reading `json-file` logs back: rotated files in order, `tail` read
//! backwards, `since`/`until`, and `follow` across rotations.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::write::rotated_path;
use super::{LogConfig, LogDriver, Stream};
use crate::error::EngineError;

/// How often `follow` looks for appended lines.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// How far back `tail` reads at a time.
const TAIL_CHUNK: usize = 64 * 1024;

/// What [`read_logs`] returns and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only lines logged at or after this time.
    pub since: Option<SystemTime>,
    /// Only lines logged at or before this time; reading stops at the
    /// first later line.
    pub until: Option<SystemTime>,
    /// Only the last this many lines (across rotated files) before
    /// `since`/`until` apply, as Docker does; `None` for all.
    pub tail: Option<usize>,
    /// Whether the caller prints [`LogLine::time`] (see
    /// [`format_timestamp`](super::format_timestamp)); the reader does not change the lines.
    pub timestamps: bool,
    /// Keep reading appended lines until the container stops.
    pub follow: bool,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The stream it was written to.
    pub stream: Stream,
    /// When it was logged.
    pub time: SystemTime,
    /// The bytes, with their newline unless it was a partial record.
    pub bytes: Vec<u8>,
}

/// Reads a container's `json-file` logs: the rotated files oldest first
/// (`path.N` … `path.1`), then `path`, applying `options`, handing each
/// line to `sink`. With `follow`, it then waits for appended lines
/// (reopening `path` when it is rotated or replaced) until `is_running`
/// returns false and the file is drained. Malformed lines are skipped.
///
/// # Errors
///
/// [`EngineError::LogsNotReadable`] for the `none` driver,
/// [`EngineError::JournaldNotReadable`] for `journald`;
/// [`EngineError::Io`] when a log file cannot be read;
/// [`EngineError::ForwardLogs`] when `sink` fails.
pub fn read_logs(
    config: &LogConfig,
    path: &Path,
    options: &ReadOptions,
    mut is_running: impl FnMut() -> bool,
    sink: impl FnMut(LogLine) -> std::io::Result<()>,
) -> Result<(), EngineError> {
    match config.driver {
        LogDriver::JsonFile => {}
        LogDriver::None => {
            return Err(EngineError::LogsNotReadable {
                driver: config.driver,
            })
        }
        LogDriver::Journald => return Err(EngineError::JournaldNotReadable),
    }
    let mut forward = Forward {
        since: options.since,
        until: options.until,
        sink,
    };
    // Oldest first; the live file is opened first so that a rotation while
    // reading the older ones cannot make it skip a file.
    let live = open_existing(path)?;
    let mut files = Vec::new();
    for n in (1..config.max_file.max(1)).rev() {
        let rotated = rotated_path(path, n);
        if let Some(file) = open_existing(&rotated)? {
            files.push(LogFile::new(rotated, file));
        }
    }
    let live_index = files.len();
    if let Some(file) = live {
        files.push(LogFile::new(path.to_path_buf(), file));
    }
    if let Some(mut remaining) = options.tail {
        for file in files.iter_mut().rev() {
            let (offset, found) = file.tail_offset(remaining)?;
            file.seek(offset)?;
            remaining -= found;
        }
    }
    let mut live = None;
    for (i, mut file) in files.into_iter().enumerate() {
        if file.drain(&mut forward, false)? == Flow::Stop {
            return Ok(());
        }
        if i == live_index {
            live = Some(file);
        }
    }
    if !options.follow {
        return Ok(());
    }
    loop {
        // Checked before draining: what the container wrote before it
        // stopped is read before returning.
        let running = is_running();
        loop {
            if let Some(file) = &mut live {
                if file.drain(&mut forward, true)? == Flow::Stop {
                    return Ok(());
                }
            }
            match reopen_if_rotated(path, &mut live, &mut forward)? {
                Reopen::Same => break,
                Reopen::Changed => {}
                Reopen::Stop => return Ok(()),
            }
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

enum Reopen {
    Same,
    Changed,
    Stop,
}

/// Switches `live` to the file now at `path` when that is another inode
/// (rotated or replaced), after draining the old one; rewinds when the file
/// was truncated.
fn reopen_if_rotated<F: FnMut(LogLine) -> std::io::Result<()>>(
    path: &Path,
    live: &mut Option<LogFile>,
    forward: &mut Forward<F>,
) -> Result<Reopen, EngineError> {
    let meta = match fs_err::metadata(path) {
        Ok(meta) => meta,
        // Between the rotation's rename and the new file's creation.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Reopen::Same),
        Err(source) => {
            return Err(EngineError::Io {
                operation: "stat log",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if let Some(file) = live {
        if file.dev == meta.dev() && file.ino == meta.ino() {
            if meta.len() < file.pos {
                file.seek(0)?;
                return Ok(Reopen::Changed);
            }
            return Ok(Reopen::Same);
        }
        // Lines written just before the rename.
        if file.drain(forward, false)? == Flow::Stop {
            return Ok(Reopen::Stop);
        }
    }
    *live = open_existing(path)?.map(|file| LogFile::new(path.to_path_buf(), file));
    Ok(if live.is_some() {
        Reopen::Changed
    } else {
        Reopen::Same
    })
}

fn open_existing(path: &Path) -> Result<Option<fs_err::File>, EngineError> {
    match fs_err::File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EngineError::Io {
            operation: "open log",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Applies `since`/`until` and hands lines to the sink.
struct Forward<F> {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    sink: F,
}

/// One open log file being read.
struct LogFile {
    path: PathBuf,
    reader: BufReader<fs_err::File>,
    dev: u64,
    ino: u64,
    /// Offset of the next unread line.
    pos: u64,
}

impl LogFile {
    fn new(path: PathBuf, file: fs_err::File) -> LogFile {
        let (dev, ino) = file
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or_default();
        LogFile {
            path,
            reader: BufReader::new(file),
            dev,
            ino,
            pos: 0,
        }
    }

    fn io_error(&self, operation: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = self.path.clone();
        move |source| EngineError::Io {
            operation,
            path,
            source,
        }
    }

    fn seek(&mut self, offset: u64) -> Result<(), EngineError> {
        self.reader
            .seek(SeekFrom::Start(offset))
            .map_err(self.io_error("seek in log"))?;
        self.pos = offset;
        Ok(())
    }

    /// Where the last `n` lines start, reading backwards from the end, and
    /// how many lines that is (fewer when the file has fewer).
    fn tail_offset(&mut self, n: usize) -> Result<(u64, usize), EngineError> {
        let error = self.io_error("read log");
        let file = self.reader.get_mut();
        tail_offset(file, n).map_err(error)
    }

    /// Forwards the complete lines from `pos` to the end of the file. An
    /// unterminated last line is left for later when `wait_for_newline`
    /// (the writer is in the middle of it), else read as it is.
    fn drain<F: FnMut(LogLine) -> std::io::Result<()>>(
        &mut self,
        forward: &mut Forward<F>,
        wait_for_newline: bool,
    ) -> Result<Flow, EngineError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .map_err(self.io_error("read log"))?;
            if n == 0 {
                return Ok(Flow::Continue);
            }
            if !line.ends_with(b"\n") && wait_for_newline {
                let pos = self.pos;
                self.seek(pos)?;
                return Ok(Flow::Continue);
            }
            self.pos += n as u64;
            let Some(record) = decode_json_record(&line) else {
                tracing::warn!(path = %self.path.display(), offset = self.pos - n as u64, "skipping a malformed log line");
                continue;
            };
            if forward.since.is_some_and(|since| record.time < since) {
                continue;
            }
            if forward.until.is_some_and(|until| record.time > until) {
                return Ok(Flow::Stop);
            }
            (forward.sink)(record).map_err(|source| EngineError::ForwardLogs {
                path: self.path.clone(),
                source,
            })?;
        }
    }
}

fn tail_offset<R: Read + Seek>(file: &mut R, n: usize) -> std::io::Result<(u64, usize)> {
    let len = file.seek(SeekFrom::End(0))?;
    if n == 0 || len == 0 {
        return Ok((len, 0));
    }
    let mut found = 0;
    let mut end = len;
    let mut buf = vec![0u8; TAIL_CHUNK];
    while end > 0 {
        let start = end.saturating_sub(TAIL_CHUNK as u64);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(TAIL_CHUNK)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            let offset = start + i as u64;
            // The newline ending the last line starts no line after it.
            if b == b'\n' && offset + 1 != len {
                found += 1;
                if found == n {
                    return Ok((offset + 1, found));
                }
            }
        }
        end = start;
    }
    // The first line has no newline before it.
    Ok((0, found + 1))
}

#[derive(Deserialize)]
struct JsonRecord {
    log: String,
    stream: String,
    time: String,
}

fn decode_json_record(line: &[u8]) -> Option<LogLine> {
    let record: JsonRecord = serde_json::from_slice(line).ok()?;
    let stream = match record.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let time = DateTime::parse_from_rfc3339(&record.time).ok()?;
    Some(LogLine {
        stream,
        time: time.with_timezone(&Utc).into(),
        bytes: record.log.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::tests::*;
    use crate::logs::LogWriter;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn tail_since_and_until_span_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = json_config(Some(1_000_000), 3);
        write_timed(&rotated_path(&path, 2), 0..4);
        write_timed(&rotated_path(&path, 1), 4..8);
        write_timed(&path, 8..10);
        let read = |options: ReadOptions| texts(&read_all(&config, &path, &options));
        let all = read(ReadOptions::default());
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], "line 0\n");
        assert_eq!(
            read(ReadOptions {
                tail: Some(5),
                ..Default::default()
            }),
            ["line 5\n", "line 6\n", "line 7\n", "line 8\n", "line 9\n"]
        );
        assert_eq!(
            read(ReadOptions {
                tail: Some(0),
                ..Default::default()
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            read(ReadOptions {
                tail: Some(100),
                ..Default::default()
            })
            .len(),
            10
        );
        assert_eq!(
            read(ReadOptions {
                since: Some(at(1003)),
                until: Some(at(1005)),
                ..Default::default()
            }),
            ["line 3\n", "line 4\n", "line 5\n"]
        );
        // Docker takes the tail first, then filters it by time.
        assert_eq!(
            read(ReadOptions {
                tail: Some(3),
                since: Some(at(1008)),
                ..Default::default()
            }),
            ["line 8\n", "line 9\n"]
        );
    }

    #[test]
    fn tail_offset_counts_lines_from_the_end() {
        let mut text = std::io::Cursor::new(b"a\nb\nc\n".to_vec());
        assert_eq!(tail_offset(&mut text, 1).unwrap(), (4, 1));
        assert_eq!(tail_offset(&mut text, 2).unwrap(), (2, 2));
        assert_eq!(tail_offset(&mut text, 3).unwrap(), (0, 3));
        assert_eq!(tail_offset(&mut text, 9).unwrap(), (0, 3));
        let mut open = std::io::Cursor::new(b"a\nb".to_vec());
        assert_eq!(tail_offset(&mut open, 1).unwrap(), (2, 1));
        let mut empty = std::io::Cursor::new(Vec::new());
        assert_eq!(tail_offset(&mut empty, 3).unwrap(), (0, 0));
        // Longer than one backwards chunk.
        let mut big = std::io::Cursor::new(
            (0..30_000)
                .map(|i| format!("{i}\n"))
                .collect::<String>()
                .into_bytes(),
        );
        let (offset, found) = tail_offset(&mut big, 20_000).unwrap();
        assert_eq!(found, 20_000);
        assert!(big.get_ref()[offset as usize..].starts_with(b"10000\n"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        write_timed(&path, 0..1);
        fs_err::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        write_timed(&path, 1..2);
        let lines = texts(&read_all(
            &LogConfig::default(),
            &path,
            &ReadOptions::default(),
        ));
        assert_eq!(lines, ["line 0\n", "line 1\n"]);
    }

    #[test]
    fn follow_picks_up_appended_lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = json_config(Some(300), 2);
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let writer = {
            let (path, config, running) = (path.clone(), config.clone(), running.clone());
            std::thread::spawn(move || {
                let mut w = LogWriter::open(&config, &path, &id(), &name()).unwrap();
                for i in 0..12 {
                    w.write(Stream::Stdout, format!("line {i:02}\n").as_bytes())
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(120));
                }
                w.write(Stream::Stderr, b"bye").unwrap();
                w.flush().unwrap();
                running.store(false, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let mut lines = Vec::new();
        read_logs(
            &config,
            &path,
            &ReadOptions {
                follow: true,
                ..Default::default()
            },
            || running.load(std::sync::atomic::Ordering::SeqCst),
            |l| {
                lines.push(l);
                Ok(())
            },
        )
        .unwrap();
        writer.join().unwrap();
        let mut expected: Vec<String> = (0..12).map(|i| format!("line {i:02}\n")).collect();
        expected.push("bye\n".into());
        assert_eq!(texts(&lines), expected);
        assert!(rotated_path(&path, 1).exists(), "the test rotates");
    }

    #[test]
    fn follow_stops_at_until_and_errors_of_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        write_timed(&path, 0..5);
        let mut seen = 0;
        read_logs(
            &LogConfig::default(),
            &path,
            &ReadOptions {
                follow: true,
                until: Some(at(1002)),
                ..Default::default()
            },
            || true,
            |_| {
                seen += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, 3);
        let err = read_logs(
            &LogConfig::default(),
            &path,
            &ReadOptions::default(),
            || false,
            |_| Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        )
        .unwrap_err();
        assert!(matches!(err, EngineError::ForwardLogs { .. }), "{err}");
    }

    #[test]
    fn missing_log_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let lines = read_all(
            &LogConfig::default(),
            &dir.path().join("nope.log"),
            &ReadOptions {
                follow: true,
                ..Default::default()
            },
        );
        assert!(lines.is_empty());
    }
}
