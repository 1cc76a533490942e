//! Writing a container's output to its logging driver: lines split as
//! Docker's copier does, `json-file` records and rotation, journald's
//! native protocol.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fs_err::os::unix::fs::OpenOptionsExt;

use super::time::format_rfc3339_nano;
use super::{LogConfig, LogDriver, Stream, JOURNALD_SOCKET};
use crate::error::EngineError;
use crate::state::{ContainerId, ContainerName};

/// Docker's copier buffer: a line longer than this is logged in parts
/// ("partial" records, without a trailing newline).
const MAX_RECORD: usize = 16 * 1024;

/// Writes one container's output to its logging driver.
///
/// Lifecycle: the per-container monitor opens it when the container
/// starts, calls [`LogWriter::write`] with each chunk read from the
/// container's stdout or stderr pipe, and [`LogWriter::flush`] once both
/// pipes are at end of file. Lines are split as Docker's copier does: a
/// record per `\n`-terminated line (the newline kept), a line longer than
/// 16 KiB in 16 KiB partial records without newline, and at `flush` the
/// unterminated rest as a last record to which `json-file` adds the
/// newline (as Docker does).
#[derive(Debug)]
pub struct LogWriter {
    sink: Sink,
    /// The unterminated tail of each stream (stdout, stderr).
    pending: [Vec<u8>; 2],
}

#[derive(Debug)]
enum Sink {
    JsonFile(JsonFile),
    Journald(Journald),
    Discard,
}

impl LogWriter {
    /// Opens the writer of `config`'s driver: for `json-file`, `path` is
    /// the live log file, created (mode 0640) or appended to; `journald`
    /// connects to [`JOURNALD_SOCKET`]; `none` discards everything.
    ///
    /// # Errors
    ///
    /// [`EngineError::Io`] when the log file cannot be opened;
    /// [`EngineError::JournaldNotRunning`] when journald's socket is
    /// missing or nobody listens on it.
    pub fn open(
        config: &LogConfig,
        path: &Path,
        id: &ContainerId,
        name: &ContainerName,
    ) -> Result<LogWriter, EngineError> {
        Self::open_with(config, path, id, name, Path::new(JOURNALD_SOCKET))
    }

    fn open_with(
        config: &LogConfig,
        path: &Path,
        id: &ContainerId,
        name: &ContainerName,
        journald: &Path,
    ) -> Result<LogWriter, EngineError> {
        let sink = match config.driver {
            LogDriver::JsonFile => Sink::JsonFile(JsonFile::open(config, path)?),
            LogDriver::Journald => Sink::Journald(Journald::connect(journald, id, name)?),
            LogDriver::None => Sink::Discard,
        };
        Ok(LogWriter {
            sink,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Logs a chunk of `stream`'s output as it came from the pipe.
    ///
    /// # Errors
    ///
    /// [`EngineError::Io`] when the log file cannot be written or rotated;
    /// [`EngineError::SendJournal`] when journald refuses the entry.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), EngineError> {
        if matches!(self.sink, Sink::Discard) {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending[stream.index()]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        let result = loop {
            let Some((len, complete)) = next_record(&pending[start..]) else {
                break Ok(());
            };
            let record = &pending[start..start + len];
            if let Err(e) = self.sink.record(stream, record, complete) {
                break Err(e);
            }
            start += len;
        };
        pending.drain(..start);
        self.pending[stream.index()] = pending;
        result
    }

    /// Logs what is left of each stream without a newline; called once the
    /// container's pipes are closed.
    ///
    /// # Errors
    ///
    /// As [`LogWriter::write`].
    pub fn flush(&mut self) -> Result<(), EngineError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream.index()]);
            if !pending.is_empty() {
                self.sink.record(stream, &pending, true)?;
            }
        }
        if let Sink::JsonFile(file) = &mut self.sink {
            file.file.flush().map_err(|source| EngineError::Io {
                operation: "write log",
                path: file.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// The next record at the start of `buf`: its length and whether it is a
/// complete line (ends with `\n`, or is the last record at `flush`), or
/// `None` while more input is needed.
fn next_record(buf: &[u8]) -> Option<(usize, bool)> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(newline) if newline < MAX_RECORD => Some((newline + 1, true)),
        _ if buf.len() >= MAX_RECORD => Some((MAX_RECORD, false)),
        _ => None,
    }
}

impl Sink {
    /// Logs one record; `complete` is false for a partial one.
    fn record(&mut self, stream: Stream, record: &[u8], complete: bool) -> Result<(), EngineError> {
        let now = SystemTime::now();
        match self {
            Self::JsonFile(file) => {
                let mut line = Vec::with_capacity(record.len() + 80);
                encode_json_record(record, complete, stream, now, &mut line);
                file.append(&line)
            }
            Self::Journald(journald) => journald.send(stream, record, complete),
            Self::Discard => Ok(()),
        }
    }
}

/// Encodes one `json-file` line. A complete record without its newline
/// (the last at `flush`) gets one, as Docker's json-file adds it to every
/// record that is not a partial one.
pub(super) fn encode_json_record(
    record: &[u8],
    complete: bool,
    stream: Stream,
    time: SystemTime,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"log\":\"");
    json_escape(record, out);
    if complete && !record.ends_with(b"\n") {
        out.extend_from_slice(b"\\n");
    }
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(format_rfc3339_nano(time).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Docker's jsonlog string escaping: `"` `\` and `\n` `\r` `\t` escaped,
/// other control characters and `<` `>` `&` as `\u00XX`, U+2028/U+2029
/// escaped, each invalid UTF-8 byte as U+FFFD.
fn json_escape(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

/// The live `json-file` log and its rotation.
#[derive(Debug)]
struct JsonFile {
    path: PathBuf,
    file: fs_err::File,
    size: u64,
    max_size: Option<u64>,
    max_file: u32,
}

impl JsonFile {
    fn open(config: &LogConfig, path: &Path) -> Result<JsonFile, EngineError> {
        let file = create_log(path, false)?;
        let size = file
            .metadata()
            .map_err(|source| EngineError::Io {
                operation: "stat log",
                path: path.to_path_buf(),
                source,
            })?
            .len();
        Ok(JsonFile {
            path: path.to_path_buf(),
            file,
            size,
            max_size: config.max_size,
            max_file: config.max_file.max(1),
        })
    }

    fn append(&mut self, line: &[u8]) -> Result<(), EngineError> {
        let len = line.len() as u64;
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + len > max {
                self.rotate()?;
            }
        }
        self.file
            .write_all(line)
            .map_err(|source| EngineError::Io {
                operation: "write log",
                path: self.path.clone(),
                source,
            })?;
        self.size += len;
        Ok(())
    }

    /// `path.(n-1)` → `path.n` … `path` → `path.1`, keeping `max_file`
    /// files; with one file the live one is replaced by an empty one.
    fn rotate(&mut self) -> Result<(), EngineError> {
        let rename = |from: &Path, to: &Path| match fs_err::rename(from, to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(EngineError::Io {
                operation: "rotate log",
                path: from.to_path_buf(),
                source,
            }),
        };
        for n in (1..self.max_file.saturating_sub(1)).rev() {
            rename(
                &rotated_path(&self.path, n),
                &rotated_path(&self.path, n + 1),
            )?;
        }
        if self.max_file > 1 {
            rename(&self.path, &rotated_path(&self.path, 1))?;
        }
        // A fresh file (a new inode), so that a follower sees the change
        // even when the live file is simply replaced.
        self.file = create_log(&self.path, true)?;
        self.size = 0;
        tracing::debug!(path = %self.path.display(), "rotated log");
        Ok(())
    }
}

/// Opens the live log for appending; `replace` unlinks what is there
/// first, so that the new file is a new inode.
fn create_log(path: &Path, replace: bool) -> Result<fs_err::File, EngineError> {
    if replace {
        match fs_err::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(EngineError::Io {
                    operation: "replace log",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| EngineError::Io {
            operation: "open log",
            path: path.to_path_buf(),
            source,
        })
}

/// `<path>.<n>`: the n-th most recent rotated log.
pub(super) fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The journald driver: one datagram per record on journald's socket.
#[derive(Debug)]
struct Journald {
    socket: UnixDatagram,
    path: PathBuf,
    id: String,
    short_id: String,
    name: String,
}

impl Journald {
    fn connect(
        path: &Path,
        id: &ContainerId,
        name: &ContainerName,
    ) -> Result<Journald, EngineError> {
        let socket = UnixDatagram::unbound().map_err(|source| EngineError::Io {
            operation: "create a socket for journald",
            path: path.to_path_buf(),
            source,
        })?;
        match socket.connect(path) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(EngineError::JournaldNotRunning {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(EngineError::Io {
                    operation: "connect to journald",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        Ok(Journald {
            socket,
            path: path.to_path_buf(),
            id: id.as_str().to_owned(),
            short_id: id.short().to_owned(),
            name: name.as_str().to_owned(),
        })
    }

    /// The fields Docker's journald driver sends; the message without its
    /// newline, `CONTAINER_PARTIAL_MESSAGE=true` on a partial record.
    fn send(&mut self, stream: Stream, record: &[u8], complete: bool) -> Result<(), EngineError> {
        let message = record.strip_suffix(b"\n").unwrap_or(record);
        let priority: &[u8] = match stream {
            Stream::Stdout => b"6",
            Stream::Stderr => b"3",
        };
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("MESSAGE", message),
            ("CONTAINER_ID", self.short_id.as_bytes()),
            ("CONTAINER_ID_FULL", self.id.as_bytes()),
            ("CONTAINER_NAME", self.name.as_bytes()),
            ("CONTAINER_TAG", self.short_id.as_bytes()),
            ("SYSLOG_IDENTIFIER", self.short_id.as_bytes()),
            ("PRIORITY", priority),
        ];
        if !complete {
            fields.push(("CONTAINER_PARTIAL_MESSAGE", b"true"));
        }
        let datagram = journal_datagram(&fields);
        self.socket
            .send(&datagram)
            .map_err(|source| EngineError::SendJournal {
                path: self.path.clone(),
                source,
            })?;
        Ok(())
    }
}

/// journald's native protocol: `KEY=value\n`, or for a value holding a
/// newline `KEY\n`, its length as little-endian u64, the value, `\n`.
fn journal_datagram(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        if value.contains(&b'\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::tests::*;
    use crate::logs::{read_logs, ReadOptions};
    use std::time::Duration;

    #[test]
    fn records_are_dockers_json_lines() {
        let mut out = Vec::new();
        let time = at(1_795_788_000) + Duration::from_nanos(123_456_789);
        encode_json_record(b"hi \"there\"\n", true, Stream::Stderr, time, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"hi \\\"there\\\"\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-27T14:00:00.123456789Z\"}\n"
        );
    }

    #[test]
    fn escapes_and_invalid_utf8_as_docker() {
        let mut out = Vec::new();
        json_escape(b"a\tb\\c<d>&\x01\r\xffz\xe2\x80\xa8\xc3\xa9", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\\\c\\u003cd\\u003e\\u0026\\u0001\\r\\ufffdz\\u2028é"
        );
    }

    #[test]
    fn writer_and_reader_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = LogConfig::default();
        let mut w = LogWriter::open(&config, &path, &id(), &name()).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err \xff\n").unwrap();
        w.write(Stream::Stdout, b"o\nthree").unwrap();
        w.flush().unwrap();
        let lines = read_all(&config, &path, &ReadOptions::default());
        assert_eq!(
            texts(&lines),
            ["one\n", "err \u{fffd}\n", "two\n", "three\n"]
        );
        assert_eq!(
            lines.iter().map(|l| l.stream).collect::<Vec<_>>(),
            [
                Stream::Stdout,
                Stream::Stderr,
                Stream::Stdout,
                Stream::Stdout
            ]
        );
        assert!(lines.windows(2).all(|w| w[0].time <= w[1].time));
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"log\":\"one\\n\",\"stream\":\"stdout\",\"time\":\""));
    }

    #[test]
    fn long_lines_are_split_in_16k_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = LogConfig::default();
        let mut w = LogWriter::open(&config, &path, &id(), &name()).unwrap();
        let long = vec![b'x'; MAX_RECORD * 2 + 10];
        w.write(Stream::Stdout, &long[..100]).unwrap();
        w.write(Stream::Stdout, &long[100..]).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        w.write(Stream::Stdout, &vec![b'y'; MAX_RECORD]).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        w.flush().unwrap();
        let lines = read_all(&config, &path, &ReadOptions::default());
        let sizes: Vec<usize> = lines.iter().map(|l| l.bytes.len()).collect();
        assert_eq!(sizes, [MAX_RECORD, MAX_RECORD, 11, MAX_RECORD, 1]);
        assert!(!lines[0].bytes.ends_with(b"\n"));
        assert_eq!(lines[2].bytes, b"xxxxxxxxxx\n");
        assert_eq!(lines[4].bytes, b"\n");
    }

    #[test]
    fn next_record_waits_for_a_newline_or_16k() {
        assert_eq!(next_record(b"abc"), None);
        assert_eq!(next_record(b"abc\ndef"), Some((4, true)));
        assert_eq!(
            next_record(&vec![b'a'; MAX_RECORD]),
            Some((MAX_RECORD, false))
        );
        let mut exactly = vec![b'a'; MAX_RECORD - 1];
        exactly.push(b'\n');
        assert_eq!(next_record(&exactly), Some((MAX_RECORD, true)));
    }

    #[test]
    fn rotation_keeps_max_file_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        // Each record is about 80 bytes: 3 fit in 250.
        let config = json_config(Some(250), 3);
        let mut w = LogWriter::open(&config, &path, &id(), &name()).unwrap();
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i:02}\n").as_bytes())
                .unwrap();
        }
        w.flush().unwrap();
        let mut names: Vec<String> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log", "c-json.log.1", "c-json.log.2"]);
        for name in &names {
            let size = fs_err::metadata(dir.path().join(name)).unwrap().len();
            assert!(size <= 250, "{name} is {size} bytes");
        }
        let lines = texts(&read_all(&config, &path, &ReadOptions::default()));
        let expected: Vec<String> = (20 - lines.len()..20)
            .map(|i| format!("line {i:02}\n"))
            .collect();
        assert_eq!(lines, expected);
        assert!(lines.len() >= 7, "{lines:?}");
    }

    #[test]
    fn rotation_with_one_file_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = json_config(Some(200), 1);
        let mut w = LogWriter::open(&config, &path, &id(), &name()).unwrap();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let entries = fs_err::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1);
        let lines = texts(&read_all(&config, &path, &ReadOptions::default()));
        assert_eq!(lines.last().unwrap(), "line 9\n");
        assert!(lines.len() < 10);
    }

    #[test]
    fn none_discards_and_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let config = LogConfig::parse("none", &[]).unwrap();
        let mut w = LogWriter::open(&config, &path, &id(), &name()).unwrap();
        w.write(Stream::Stdout, b"lost\n").unwrap();
        w.flush().unwrap();
        assert!(!path.exists());
        let err = read_logs(
            &config,
            &path,
            &ReadOptions::default(),
            || false,
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configured logging driver does not support reading"
        );
    }

    #[test]
    fn journald_missing_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("journal.sock");
        let config = LogConfig::parse("journald", &[]).unwrap();
        let err = LogWriter::open_with(&config, Path::new("/unused"), &id(), &name(), &socket)
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
        assert_eq!(
            err.to_string(),
            format!(
                "journald is not running on this host: {} not found",
                socket.display()
            )
        );
    }

    #[test]
    fn journald_gets_native_protocol_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&socket).unwrap();
        let config = LogConfig::parse("journald", &[]).unwrap();
        let mut w =
            LogWriter::open_with(&config, Path::new("/unused"), &id(), &name(), &socket).unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        let id = id();
        let short = id.short();
        assert_eq!(
            text,
            format!(
                "MESSAGE=oops\nCONTAINER_ID={short}\nCONTAINER_ID_FULL={}\nCONTAINER_NAME=web-1\n\
                 CONTAINER_TAG={short}\nSYSLOG_IDENTIFIER={short}\nPRIORITY=3\n",
                id
            )
        );
    }

    #[test]
    fn journal_values_with_newlines_are_length_prefixed() {
        let datagram = journal_datagram(&[("MESSAGE", b"a\nb"), ("PRIORITY", b"6")]);
        let mut expected = b"MESSAGE\n".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"a\nb\nPRIORITY=6\n");
        assert_eq!(datagram, expected);
    }
}
