//! The sync channel between the runtime and the processes it forks.
//!
//! A `SOCK_SEQPACKET` socket pair: message boundaries are kept, a peer that
//! dies reads as end-of-file, and every message is a small JSON document of
//! bounded size (the reader refuses anything larger than [`MAX_MESSAGE`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{socketpair, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};

/// Largest message accepted.
const MAX_MESSAGE: usize = 64 * 1024;

/// Messages on the sync channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Message {
    /// Parent → child: the child is in the container's cgroup; it may
    /// start (and create its cgroup namespace).
    Placed,
    /// Child → parent: the child unshared its user namespace; write its
    /// id maps.
    UsernsReady,
    /// Parent → child: the id maps are written.
    MapsWritten,
    /// Child → parent: the pid (in the parent's namespace) of the process that
    /// will become the container's init or exec'd process.
    Pid(i32),
    /// Child → parent: mounts are done, before pivot_root: run the
    /// runtime-namespace hooks (prestart, createRuntime).
    MountsDone,
    /// Parent → child: the runtime-namespace hooks ran; the OCI state
    /// document for the container-namespace hooks.
    HooksDone(String),
    /// Child → parent: setup is complete; waiting for start (or about to
    /// exec, for an exec'd process).
    Ready,
    /// Parent → child (create): the container's state is saved; the init
    /// may wait for start. An init that gets EOF here instead exits: its
    /// runtime died before recording it, and nothing could ever start or
    /// delete it.
    Created,
    /// Child → parent: setup failed; the rendered error chain.
    Error(String),
}

/// One end of the sync channel.
#[derive(Debug)]
pub(crate) struct SyncSocket {
    fd: OwnedFd,
}

/// Creates a connected pair (parent end, child end), both close-on-exec.
pub(crate) fn pair() -> io::Result<(SyncSocket, SyncSocket)> {
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((SyncSocket { fd: a }, SyncSocket { fd: b }))
}

impl SyncSocket {
    pub(crate) fn send(&self, msg: &Message) -> io::Result<()> {
        let data = serde_json::to_vec(msg).map_err(io::Error::other)?;
        rustix::net::send(&self.fd, &data, SendFlags::NOSIGNAL)?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the peer has gone.
    pub(crate) fn recv(&self) -> io::Result<Option<Message>> {
        // Peek at the size first: most messages are a few bytes.
        let mut probe = [0u8; 1];
        let mut reset_seen = false;
        let size = loop {
            match rustix::net::recv(&self.fd, &mut probe, RecvFlags::PEEK | RecvFlags::TRUNC) {
                Ok((_, total)) => break total,
                Err(rustix::io::Errno::INTR) => continue,
                // A peer that exited with a message of ours unread resets
                // the connection; the kernel reports that before what the
                // peer sent last (its error, usually), and only once.
                Err(rustix::io::Errno::CONNRESET) if !reset_seen => reset_seen = true,
                Err(e) => return Err(e.into()),
            }
        };
        let mut buf = vec![0u8; size.clamp(1, MAX_MESSAGE)];
        let (n, total) = loop {
            match rustix::net::recv(&self.fd, &mut buf, RecvFlags::TRUNC) {
                Ok((n, total)) => break (n, total),
                Err(rustix::io::Errno::INTR) => continue,
                // The peer may exit between the peek and this read.
                Err(rustix::io::Errno::CONNRESET) if !reset_seen => reset_seen = true,
                Err(e) => return Err(e.into()),
            }
        };
        if total == 0 {
            return Ok(None);
        }
        if total > n {
            return Err(io::Error::other(format!(
                "sync message of {total} bytes exceeds the {MAX_MESSAGE}-byte limit"
            )));
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(io::Error::other)
    }

    /// The error the peer reported before it went away, when one is
    /// waiting; never blocks.
    pub(crate) fn pending_error(&self) -> Option<String> {
        let mut probe = [0u8; 1];
        let flags = RecvFlags::PEEK | RecvFlags::TRUNC | RecvFlags::DONTWAIT;
        let peeked = match rustix::net::recv(&self.fd, &mut probe, flags) {
            // Reported once, before the peer's last messages (see `recv`).
            Err(rustix::io::Errno::CONNRESET) => rustix::net::recv(&self.fd, &mut probe, flags),
            other => other,
        };
        match peeked {
            Ok((_, total)) if total > 0 => {}
            _ => return None,
        }
        match self.recv() {
            Ok(Some(Message::Error(chain))) => Some(chain),
            _ => None,
        }
    }

    /// Receives a message and requires it to be `expected`; an `Error`
    /// message or end-of-file become errors carrying the peer's chain.
    pub(crate) fn expect(&self, expected: &Message) -> Result<(), SyncFailure> {
        match self.recv() {
            Ok(Some(msg)) if &msg == expected => Ok(()),
            Ok(Some(Message::Error(chain))) => Err(SyncFailure::Peer(chain)),
            Ok(Some(other)) => Err(SyncFailure::Protocol(format!(
                "expected {expected:?}, got {other:?}"
            ))),
            Ok(None) => Err(SyncFailure::Closed),
            Err(e) => Err(SyncFailure::Io(e)),
        }
    }
}

impl AsFd for SyncSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Why a sync exchange failed.
#[derive(Debug)]
pub(crate) enum SyncFailure {
    /// The peer reported an error.
    Peer(String),
    /// The peer closed the channel (exited) without reporting.
    Closed,
    /// An unexpected message.
    Protocol(String),
    /// The channel itself failed.
    Io(io::Error),
}

impl SyncFailure {
    pub(crate) fn describe(self) -> String {
        match self {
            SyncFailure::Peer(chain) => chain,
            SyncFailure::Closed => "exited during setup without reporting an error".into(),
            SyncFailure::Protocol(what) => format!("sync protocol: {what}"),
            SyncFailure::Io(e) => format!("sync channel: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (a, b) = pair().unwrap();
        a.send(&Message::Pid(42)).unwrap();
        a.send(&Message::Error("mount proc: EPERM".into())).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Message::Pid(42)));
        match b.expect(&Message::Ready) {
            Err(SyncFailure::Peer(chain)) => assert_eq!(chain, "mount proc: EPERM"),
            other => panic!("{other:?}"),
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn a_reset_comes_before_the_peers_last_message() {
        // The peer sends its error and exits with a message of ours unread.
        let (a, b) = pair().unwrap();
        b.send(&Message::Placed).unwrap();
        a.send(&Message::Error("exec: not found".into())).unwrap();
        drop(a);
        assert_eq!(
            b.recv().unwrap(),
            Some(Message::Error("exec: not found".into()))
        );
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn a_reset_between_peek_and_read_is_skipped() {
        let (a, b) = pair().unwrap();
        b.send(&Message::Placed).unwrap();
        a.send(&Message::Error("mount /sys: not a directory".into()))
            .unwrap();
        // The size is peeked before the peer goes, the message read after.
        let mut probe = [0u8; 1];
        rustix::net::recv(
            &b.fd,
            &mut probe,
            RecvFlags::PEEK | RecvFlags::TRUNC | RecvFlags::DONTWAIT,
        )
        .unwrap();
        drop(a);
        assert_eq!(
            b.recv().unwrap(),
            Some(Message::Error("mount /sys: not a directory".into()))
        );
    }

    #[test]
    fn pending_error_never_blocks() {
        let (a, b) = pair().unwrap();
        assert_eq!(b.pending_error(), None);
        a.send(&Message::Error("mount /x: ENODEV".into())).unwrap();
        drop(a);
        assert_eq!(b.pending_error().as_deref(), Some("mount /x: ENODEV"));
        assert_eq!(b.pending_error(), None);
    }
}
