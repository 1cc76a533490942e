//! The client side of attaching to a container (`run` in the foreground,
//! `start -a`, `attach`): copies the monitor's output frames to stdout and
//! stderr, and this terminal's input (raw mode with `-t`), size changes
//! (SIGWINCH) and, without a terminal, caught signals (Docker's sig-proxy)
//! to the container. The detach keys (default ctrl-p ctrl-q) end the
//! attachment and leave the container running.

use std::io::{IsTerminal as _, Write as _};
use std::os::fd::AsFd as _;

use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::{PollFd, PollFlags};
use wharf_engine::containers::attach::{Frame, FrameBuffer};
use wharf_engine::containers::AttachStream;

/// How an attachment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The container exited for good with this code (`None`: unknown).
    Exited(Option<i32>),
    /// The detach keys were typed.
    Detached,
    /// The monitor closed the connection without an exit code.
    Closed,
}

/// Docker's `--detach-keys` (`ctrl-p,ctrl-q`, `ctrl-a`, single letters).
pub fn parse_detach_keys(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let key = key.trim();
        if let Some(c) = key.strip_prefix("ctrl-") {
            let b = match c {
                "@" => 0,
                "[" => 27,
                "\\" => 28,
                "]" => 29,
                "^" => 30,
                "_" => 31,
                c if c.len() == 1 && c.as_bytes()[0].is_ascii_lowercase() => {
                    c.as_bytes()[0] - b'a' + 1
                }
                _ => bail!("invalid detach keys {s:?}: unknown key {key:?}"),
            };
            out.push(b);
        } else if key.len() == 1 {
            out.push(key.as_bytes()[0]);
        } else {
            bail!("invalid detach keys {s:?}: unknown key {key:?}");
        }
    }
    Ok(out)
}

/// Restores the terminal's mode when dropped.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = rustix::stdio::stdin();
        let saved = rustix::termios::tcgetattr(stdin).context("read the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("set the terminal to raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            rustix::stdio::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

fn window_size() -> Option<(u16, u16)> {
    for fd in [rustix::stdio::stdout(), rustix::stdio::stdin()] {
        if let Ok(ws) = rustix::termios::tcgetwinsize(fd) {
            if ws.ws_row > 0 && ws.ws_col > 0 {
                return Some((ws.ws_row, ws.ws_col));
            }
        }
    }
    None
}

/// Relays until the container exits, the monitor goes away, or the detach
/// keys are typed. `send_stdin`: forward this process's stdin. `proxy`:
/// called with each SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 this
/// process receives (no terminal).
pub fn relay(
    stream: AttachStream,
    send_stdin: bool,
    detach_keys: &[u8],
    mut proxy: Option<&mut dyn FnMut(i32)>,
) -> anyhow::Result<End> {
    let mut socket = stream.socket;
    let tty = stream.tty;
    let stdin_tty = std::io::stdin().is_terminal();
    let _raw = if tty && send_stdin && stdin_tty {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGWINCH);
    if !tty && proxy.is_some() {
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ] {
            mask.add(s);
        }
    }
    mask.thread_block().context("block signals")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("create a signalfd")?;
    if tty {
        if let Some((rows, cols)) = window_size() {
            Frame::Resize { rows, cols }
                .write_to(&mut socket)
                .context("send the terminal size")?;
        }
    }
    let mut stdin_open = send_stdin;
    let mut inbox = FrameBuffer::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut matched = 0usize;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        let stdin_fd = rustix::stdio::stdin();
        let mut fds = vec![
            PollFd::new(&socket, PollFlags::IN),
            PollFd::new(&sigfd, PollFlags::IN),
        ];
        if stdin_open {
            fds.push(PollFd::new(&stdin_fd, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        if !ready[1].is_empty() {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGWINCH {
                    if let Some((rows, cols)) = window_size() {
                        let _ = Frame::Resize { rows, cols }.write_to(&mut socket);
                    }
                } else if let Some(p) = proxy.as_mut() {
                    p(signo);
                }
            }
        }
        if stdin_open && !ready[2].is_empty() {
            match rustix::io::read(stdin_fd, &mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = Frame::StdinEof.write_to(&mut socket);
                }
                Ok(n) => {
                    let mut data = &buf[..n];
                    if tty && !detach_keys.is_empty() {
                        // The keys may arrive split over reads; bytes of a
                        // partial match are held back, then sent if the
                        // sequence breaks.
                        let mut out = Vec::with_capacity(n);
                        for &b in data {
                            if b == detach_keys[matched] {
                                matched += 1;
                                if matched == detach_keys.len() {
                                    return Ok(End::Detached);
                                }
                            } else {
                                out.extend_from_slice(&detach_keys[..matched]);
                                matched = 0;
                                if b == detach_keys[0] {
                                    matched = 1;
                                } else {
                                    out.push(b);
                                }
                            }
                        }
                        let _ = Frame::Stdin(out).write_to(&mut socket);
                        data = &[];
                    }
                    if !data.is_empty() {
                        let _ = Frame::Stdin(data.to_vec()).write_to(&mut socket);
                    }
                }
            }
        }
        if !ready[0].is_empty() {
            let n = match rustix::io::read(&socket, &mut buf) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                return Ok(End::Closed);
            }
            inbox.extend(&buf[..n]);
            while let Some(frame) = inbox
                .next_frame()
                .context("read from the container's monitor")?
            {
                match frame {
                    Frame::Stdout(b) => {
                        let mut out = stdout.lock();
                        out.write_all(&b).context("write stdout")?;
                        out.flush().context("write stdout")?;
                    }
                    Frame::Stderr(b) => {
                        let mut err = stderr.lock();
                        err.write_all(&b).context("write stderr")?;
                        err.flush().context("write stderr")?;
                    }
                    Frame::Exit(code) => return Ok(End::Exited(code)),
                    _ => {}
                }
            }
        }
        let _ = socket.as_fd();
    }
}
