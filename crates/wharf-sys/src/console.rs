//! Terminals and descriptor passing.
//!
//! A container's terminal is created inside its own devpts instance; the
//! master goes to the caller over a unix socket with `SCM_RIGHTS`, as runc
//! does with `--console-socket`. The slave is obtained from the master with
//! `TIOCGPTPEER`, never by a path a container could swap (CVE-2025-52565).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::pty::OpenptFlags;

/// Sends `fd` over the unix socket `sock`, with `payload` as the data.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, payload: &[u8]) -> io::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("control buffer too small for one fd"));
    }
    let payload = if payload.is_empty() {
        b"\0".as_slice()
    } else {
        payload
    };
    sendmsg(
        sock,
        &[IoSlice::new(payload)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Receives one descriptor (and up to `buf.len()` bytes of data) from the
/// unix socket `sock`. Any extra descriptors are closed.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(OwnedFd, usize)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                if received.is_none() {
                    received = Some(fd);
                }
            }
        }
    }
    let fd = received.ok_or_else(|| io::Error::other("no descriptor in the message"))?;
    Ok((fd, msg.bytes))
}

/// Opens a new pseudo-terminal pair from the devpts instance whose `ptmx`
/// is `ptmx` (an `O_PATH` descriptor of `/dev/pts/ptmx` or `/dev/ptmx`):
/// returns (master, slave).
pub fn open_pty(ptmx: BorrowedFd<'_>) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = rustix::fs::openat(
        ptmx,
        "",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .or_else(|_| reopen(ptmx))?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?;
    Ok((master, slave))
}

/// Reopens an `O_PATH` descriptor read-write through `/proc/thread-self/fd`.
fn reopen(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    Ok(rustix::fs::open(
        format!("/proc/thread-self/fd/{}", fd.as_raw_fd()),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// Sets the window size of a terminal.
pub fn set_window_size<Fd: AsFd>(tty: Fd, rows: u16, cols: u16) -> io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(tty, size)?)
}

/// Makes `tty` the controlling terminal of the calling session leader.
pub fn set_controlling_terminal<Fd: AsFd>(tty: Fd) -> io::Result<()> {
    Ok(rustix::process::ioctl_tiocsctty(tty)?)
}
