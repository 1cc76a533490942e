//! The attach protocol between a container's monitor and its clients
//! (`run` in the foreground, `start -a`, `attach`): frames over a unix
//! stream socket, `kind (1 byte) | length (4 bytes, big endian) | payload`.
//!
//! A client's first frame is [`Frame::Hello`], saying which streams it
//! wants. The monitor then sends the container's output and, when the
//! container has exited for good (no restart follows), [`Frame::Exit`].

use std::io::{self, Read, Write};

/// The largest payload accepted; output is sent in chunks below it.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What a client attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    /// It sends input.
    pub stdin: bool,
    /// It wants the container's stdout (with a terminal: all output).
    pub stdout: bool,
    /// It wants the container's stderr.
    pub stderr: bool,
}

impl Streams {
    fn bits(self) -> u8 {
        u8::from(self.stdin) | (u8::from(self.stdout) << 1) | (u8::from(self.stderr) << 2)
    }

    fn from_bits(b: u8) -> Self {
        Self {
            stdin: b & 1 != 0,
            stdout: b & 2 != 0,
            stderr: b & 4 != 0,
        }
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → monitor, first: the streams it attaches to.
    Hello(Streams),
    /// Client → monitor: input for the container.
    Stdin(Vec<u8>),
    /// Client → monitor: the client's input ended.
    StdinEof,
    /// Client → monitor: the client's terminal size.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Monitor → client: standard output (all output with a terminal).
    Stdout(Vec<u8>),
    /// Monitor → client: standard error.
    Stderr(Vec<u8>),
    /// Monitor → client: the container exited and stays exited; `None`
    /// when its status is unknown.
    Exit(Option<i32>),
}

const HELLO: u8 = 0;
const STDIN: u8 = 1;
const STDIN_EOF: u8 = 2;
const RESIZE: u8 = 3;
const STDOUT: u8 = 4;
const STDERR: u8 = 5;
const EXIT: u8 = 6;

impl Frame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            Self::Hello(s) => (HELLO, vec![s.bits()]),
            Self::Stdin(b) => (STDIN, b.clone()),
            Self::StdinEof => (STDIN_EOF, Vec::new()),
            Self::Resize { rows, cols } => {
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                (RESIZE, p)
            }
            Self::Stdout(b) => (STDOUT, b.clone()),
            Self::Stderr(b) => (STDERR, b.clone()),
            Self::Exit(code) => (
                EXIT,
                code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default(),
            ),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Writes the frame.
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())
    }

    fn decode(kind: u8, payload: Vec<u8>) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        Ok(match kind {
            HELLO if payload.len() == 1 => Self::Hello(Streams::from_bits(payload[0])),
            STDIN => Self::Stdin(payload),
            STDIN_EOF => Self::StdinEof,
            RESIZE if payload.len() == 4 => Self::Resize {
                rows: u16::from_be_bytes([payload[0], payload[1]]),
                cols: u16::from_be_bytes([payload[2], payload[3]]),
            },
            STDOUT => Self::Stdout(payload),
            STDERR => Self::Stderr(payload),
            EXIT if payload.is_empty() => Self::Exit(None),
            EXIT if payload.len() == 4 => Self::Exit(Some(i32::from_be_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ]))),
            _ => return Err(bad("malformed attach frame")),
        })
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream.
    ///
    /// # Errors
    ///
    /// The read failed, or the bytes are not a frame.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Self>> {
        let mut header = [0u8; 5];
        let mut got = 0;
        while got < header.len() {
            match r.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "attach frame too large",
            ));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)?;
        Self::decode(header[0], payload).map(Some)
    }
}

/// Splits a byte stream into frames as it arrives (the monitor reads
/// non-blocking sockets).
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if any.
    ///
    /// # Errors
    ///
    /// The bytes are not a frame, or one is too large.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "attach frame too large",
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Frame::decode(kind, payload).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_whole_and_in_pieces() {
        let frames = vec![
            Frame::Hello(Streams {
                stdin: true,
                stdout: true,
                stderr: false,
            }),
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::StdinEof,
            Frame::Resize {
                rows: 40,
                cols: 120,
            },
            Frame::Stdout(vec![0, 255, 10]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(Some(-1)),
            Frame::Exit(None),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut cursor = io::Cursor::new(bytes.clone());
        for f in &frames {
            assert_eq!(Frame::read_from(&mut cursor).unwrap().as_ref(), Some(f));
        }
        assert_eq!(Frame::read_from(&mut cursor).unwrap(), None);

        let mut buffer = FrameBuffer::default();
        let mut got = Vec::new();
        for b in bytes {
            buffer.extend(&[b]);
            while let Some(f) = buffer.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut buffer = FrameBuffer::default();
        buffer.extend(&[HELLO, 0, 0, 0, 2, 1, 1]);
        assert!(buffer.next_frame().is_err());
        let mut buffer = FrameBuffer::default();
        buffer.extend(&[STDOUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(buffer.next_frame().is_err());
    }
}
