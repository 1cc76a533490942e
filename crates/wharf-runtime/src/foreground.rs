//! Foreground `run` and `exec`: the runtime stays the parent, forwards
//! signals to the container's process, relays its terminal, and returns its
//! exit status.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::error::{Result, RuntimeError};

/// Signals forwarded to the container's process.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGURG,
    Signal::SIGALRM,
    Signal::SIGPROF,
    Signal::SIGVTALRM,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Blocks the forwarded signals (and SIGCHLD) so they queue for the
/// signalfd; restores the old mask on drop. Taken before the container's
/// process is forked, so no signal is lost in between.
#[derive(Debug)]
pub(crate) struct SignalBlock {
    old: SigSet,
}

fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set
}

impl SignalBlock {
    pub(crate) fn new() -> Result<Self> {
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(
            SigmaskHow::SIG_BLOCK,
            Some(&forwarded_set()),
            Some(&mut old),
        )
        .map_err(|e| RuntimeError::sys("block signals", std::io::Error::from(e)))?;
        Ok(Self { old })
    }
}

impl Drop for SignalBlock {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// Restores the caller's terminal mode on drop.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = rustix::stdio::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin) else {
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw);
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

fn copy_winsize(master: &OwnedFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(rustix::stdio::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// Copies what is readable from `from` to `to`; false at end of file.
fn pump(from: impl AsFd, to: impl AsFd) -> bool {
    let mut buf = [0u8; 16 * 1024];
    match rustix::io::read(&from, &mut buf) {
        Ok(0) => false,
        Ok(n) => {
            let mut off = 0;
            while off < n {
                match rustix::io::write(&to, &buf[off..n]) {
                    Ok(w) => off += w,
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                    Err(_) => return false,
                }
            }
            true
        }
        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => true,
        Err(_) => false,
    }
}

/// Waits for `pid` (a child of this process), forwarding signals and
/// relaying `master` (the container's terminal) to stdio. Returns the exit
/// status: the code, or 128 + the signal number.
pub(crate) fn wait(pid: i32, master: Option<OwnedFd>, _block: &SignalBlock) -> Result<i32> {
    let sfd = SignalFd::with_flags(
        &forwarded_set(),
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|e| RuntimeError::sys("create signalfd", std::io::Error::from(e)))?;
    let _raw = master.as_ref().map(|m| {
        copy_winsize(m);
        RawMode::enter()
    });
    let mut stdin_open = master.is_some();
    let target = nix::unistd::Pid::from_raw(pid);
    loop {
        let mut fds = vec![rustix::event::PollFd::new(
            &sfd,
            rustix::event::PollFlags::IN,
        )];
        let stdin = rustix::stdio::stdin();
        if let Some(m) = &master {
            fds.push(rustix::event::PollFd::new(m, rustix::event::PollFlags::IN));
            if stdin_open {
                fds.push(rustix::event::PollFd::from_borrowed_fd(
                    stdin,
                    rustix::event::PollFlags::IN,
                ));
            }
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(RuntimeError::sys("poll", std::io::Error::from(e))),
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if let (Some(m), Some(true)) = (&master, ready.get(1)) {
            if !pump(m, rustix::stdio::stdout()) {
                // EIO: every slave is closed; the process is exiting.
            }
        }
        if let (Some(m), Some(true)) = (&master, ready.get(2)) {
            if !pump(stdin, m) {
                stdin_open = false;
            }
        }
        if !ready[0] {
            continue;
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == libc::SIGCHLD {
                loop {
                    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(p, code)) if p == target => {
                            drain(master.as_ref());
                            return Ok(code);
                        }
                        Ok(WaitStatus::Signaled(p, sig, _)) if p == target => {
                            drain(master.as_ref());
                            return Ok(128 + sig as i32);
                        }
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            } else if signo == libc::SIGWINCH {
                if let Some(m) = &master {
                    copy_winsize(m);
                }
            } else if let Ok(sig) = Signal::try_from(signo) {
                let _ = nix::sys::signal::kill(target, sig);
            }
        }
    }
}

fn drain(master: Option<&OwnedFd>) {
    let Some(m) = master else { return };
    let _ = rustix::fs::fcntl_setfl(m, rustix::fs::OFlags::NONBLOCK);
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = rustix::io::read(m, &mut buf) {
        let _ = rustix::io::write(rustix::stdio::stdout(), &buf[..n]);
    }
}
