//! start (through the monitor), stop, kill, restart, pause, unpause, wait
//! and attach.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read as _;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::attach::{Frame, Streams};
use super::{io_err, Container, DEFAULT_STOP_TIMEOUT};
use crate::state::{ContainerRecord, ContainerState, Transition};
use crate::{Engine, EngineError};

/// How `start` relates to the container's streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Attach to these streams from before the process starts (`run`
    /// without `-d`, `start -a`): no output is missed.
    pub attach: Option<Streams>,
}

/// A client's connection to a container's monitor, after
/// [`Frame::Hello`]: read output frames, write input frames.
#[derive(Debug)]
pub struct AttachStream {
    /// The socket.
    pub socket: UnixStream,
    /// Whether the container has a terminal (output is one stream).
    pub tty: bool,
}

/// What the monitor writes on its ready pipe.
pub(crate) const READY_OK: &str = "ok";

/// The monitor's argument in place of a container id when it is spawned
/// before the container exists and reads the id from fd 5.
pub const EARLY_MONITOR_ID: &str = "-";

/// A monitor spawned before its container exists ([`Engine::early_monitor`],
/// for `run`): it starts up (its exec, its databases) while the caller
/// creates the container, then waits on a pipe for the container's id,
/// which [`Engine::start_container_with`] sends. Dropped unused, it reads
/// end of file, exits without touching anything, and is waited for.
#[derive(Debug)]
pub struct EarlyMonitor {
    go: GoPipe,
    ready: OwnedFd,
    attach: Option<(OwnedFd, Streams)>,
}

/// The write end of an early monitor's id pipe, with the monitor's pid.
/// Dropped without sending (the container was never made), it closes: the
/// monitor reads end of file and exits, and is waited for, so that a failed
/// `run` leaves no process behind.
#[derive(Debug)]
struct GoPipe {
    pid: u32,
    fd: Option<OwnedFd>,
}

impl GoPipe {
    /// Sends the container's id and closes the pipe.
    fn send(mut self, id: &str) {
        if let Some(fd) = self.fd.take() {
            // A monitor that already failed (it reports why on the ready
            // pipe) has closed its end: the report is what counts.
            let _ = rustix::io::write(&fd, format!("{id}\n").as_bytes());
        }
    }
}

impl Drop for GoPipe {
    fn drop(&mut self) {
        if self.fd.take().is_some() {
            if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(self.pid).unwrap_or(0))
            {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
    }
}

impl EarlyMonitor {
    /// Sends the container's id; the monitor's pid, its ready pipe and our
    /// end of the attach socket.
    fn hand_over(self, container: &Container) -> (u32, OwnedFd, Option<OwnedFd>) {
        let pid = self.go.pid;
        self.go.send(container.record.id.as_str());
        (pid, self.ready, self.attach.map(|(ours, _)| ours))
    }
}

/// Polls while waiting on the database.
const POLL: Duration = Duration::from_millis(10);

impl Engine {
    /// `start`: spawns the container's monitor, which mounts the rootfs,
    /// creates and starts the container, records it running and reports
    /// back. Starting a running container does nothing (and attaches if
    /// asked). A pod member's infra container is started first (Podman).
    ///
    /// # Errors
    ///
    /// No such container; it is being removed; the monitor could not be
    /// spawned; the start failed (the command is not found in the image:
    /// [`EngineError::CommandNotFound`], …). A failed start leaves the
    /// container as it was (created or exited) with nothing mounted.
    pub fn start_container(
        &self,
        reference: &str,
        options: &StartOptions,
    ) -> Result<(Container, Option<AttachStream>), EngineError> {
        self.start_container_with(reference, options, None)
    }

    /// [`Engine::start_container`] with a monitor already spawned by
    /// [`Engine::early_monitor`] (for the same streams; one for others is
    /// let go and a new one spawned).
    ///
    /// # Errors
    ///
    /// As [`Engine::start_container`].
    pub fn start_container_with(
        &self,
        reference: &str,
        options: &StartOptions,
        early: Option<EarlyMonitor>,
    ) -> Result<(Container, Option<AttachStream>), EngineError> {
        let store = self.containers()?;
        let record = store.get(reference)?;
        if !record.state.is_up() {
            if let Some(join) = super::ContainerConfig::from_value(&record.config)?.pod {
                // Before this container's lock: the infra takes its own.
                self.start_container(&join.infra, &StartOptions::default())?;
            }
        }
        let _lock = store.lock(&record.id)?;
        let record = self.reconcile(store.get_by_id(&record.id)?, true)?;
        match record.state {
            ContainerState::Running | ContainerState::Paused | ContainerState::Restarting => {
                let container = self.container_from(record)?;
                let stream = match options.attach {
                    Some(streams) => Some(self.connect(&container, streams)?),
                    None => None,
                };
                return Ok((container, stream));
            }
            ContainerState::Removing | ContainerState::Dead => {
                return Err(EngineError::InvalidTransition {
                    id: record.id.short().to_owned(),
                    from: record.state,
                    to: ContainerState::Running,
                })
            }
            ContainerState::Created | ContainerState::Exited => {}
        }
        store.set_stop_requested(&record.id, false)?;
        let container = self.container_from(record)?;
        let early = early.filter(|e| e.attach.as_ref().map(|(_, s)| *s) == options.attach);
        let (monitor, ready_read, ours) = match early {
            Some(early) => early.hand_over(&container),
            None => {
                let (ready_read, ready_write) = pipe(&container.dir)?;
                let attach = match options.attach {
                    Some(streams) => Some(attach_pair(streams, &container.dir)?),
                    None => None,
                };
                let log = open_monitor_log(&container.dir)?;
                let mut fds = vec![(ready_write.as_fd(), 3)];
                if let Some((_, theirs)) = &attach {
                    fds.push((theirs.as_fd(), 4));
                }
                let monitor = self
                    .spawn_monitor(container.record.id.as_str(), log.as_fd(), &fds)
                    .map_err(io_err("spawn the monitor of", &container.dir))?;
                (monitor, ready_read, attach.map(|(ours, _)| ours))
            }
        };
        let report = read_report(ready_read, monitor, &container.dir)?;
        if report != READY_OK {
            return Err(start_error(&container, &report));
        }
        let stream = match (ours, options.attach) {
            (Some(sock), Some(_)) => {
                let socket = UnixStream::from(sock);
                Some(AttachStream {
                    socket,
                    tty: container.config.tty,
                })
            }
            _ => None,
        };
        let record = store.get_by_id(&container.record.id)?;
        Ok((self.container_from(record)?, stream))
    }

    /// Spawns a monitor for `run` before its container exists (see
    /// [`EarlyMonitor`]), attached from the start to `attach`.
    ///
    /// # Errors
    ///
    /// A pipe, socket or the spawn failed.
    pub fn early_monitor(&self, attach: Option<Streams>) -> Result<EarlyMonitor, EngineError> {
        let here = self.root.as_path();
        let (ready_read, ready_write) = pipe(here)?;
        let (go_read, go_write) = pipe(here)?;
        let attach = match attach {
            Some(streams) => Some((attach_pair(streams, here)?, streams)),
            None => None,
        };
        // Until it knows its container (and so its monitor.log), whatever
        // the monitor has to say goes on the ready pipe.
        let null =
            fs_err::File::open("/dev/null").map_err(io_err("open", Path::new("/dev/null")))?;
        let mut fds = vec![(ready_write.as_fd(), 3), (go_read.as_fd(), 5)];
        if let Some(((_, theirs), _)) = &attach {
            fds.push((theirs.as_fd(), 4));
        }
        let pid = self
            .spawn_monitor(EARLY_MONITOR_ID, null.as_fd(), &fds)
            .map_err(io_err("spawn the monitor in", here))?;
        Ok(EarlyMonitor {
            go: GoPipe {
                pid,
                fd: Some(go_write),
            },
            ready: ready_read,
            attach: attach.map(|((ours, _), streams)| (ours, streams)),
        })
    }

    /// Spawns `__monitor ROOT DRIVER ID` in its own session with `stderr`
    /// and `fds` (each moved to its number) and nothing else.
    fn spawn_monitor(
        &self,
        id: &str,
        stderr: std::os::fd::BorrowedFd<'_>,
        fds: &[(std::os::fd::BorrowedFd<'_>, i32)],
    ) -> std::io::Result<u32> {
        let args: Vec<OsString> = vec![
            "__monitor".into(),
            self.root.clone().into_os_string(),
            self.storage_driver().into(),
            id.into(),
        ];
        let env: Vec<(OsString, OsString)> = vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )];
        // The monitor forks containers, so it must run sealed
        // (CVE-2019-5736): spawned from a sealed image of this binary it
        // starts sealed instead of re-executing itself to get there. Moved
        // above the fixed numbers so placing fds 3 to 5 cannot close it
        // before the exec resolves its path.
        // The lean `wharf-monitor` beside this binary when installed,
        // else this binary's own `__monitor` entry.
        let beside = fs_err::read_link("/proc/self/exe")
            .ok()
            .map(|exe| exe.with_file_name("wharf-monitor"))
            .filter(|p| p.is_file());
        let sealed = match &beside {
            Some(monitor) => wharf_sys::exe::sealed_image_of(monitor),
            None => wharf_sys::exe::sealed_image(),
        }
        .and_then(|fd| Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 100)?))?;
        use std::os::fd::AsRawFd as _;
        let exe = std::path::PathBuf::from(format!("/proc/self/fd/{}", sealed.as_raw_fd()));
        let pid = wharf_sys::process::spawn_session(&exe, &args, &env, stderr, fds)?;
        drop(sealed);
        Ok(pid)
    }

    /// Connects to a running container's monitor and says which streams
    /// to send.
    pub(crate) fn connect(
        &self,
        container: &Container,
        streams: Streams,
    ) -> Result<AttachStream, EngineError> {
        let path = attach_socket_path(&container.dir)?;
        let mut socket = UnixStream::connect(&path.1).map_err(|e| EngineError::NotRunning {
            id: container.record.id.short().to_owned(),
            reason: format!("connect to its monitor: {e}"),
        })?;
        drop(path.0);
        Frame::Hello(streams)
            .write_to(&mut socket)
            .map_err(io_err("attach to", &container.dir))?;
        Ok(AttachStream {
            socket,
            tty: container.config.tty,
        })
    }

    /// `attach`: the streams of a running container.
    ///
    /// # Errors
    ///
    /// No such container; it is not running.
    pub fn attach_container(
        &self,
        reference: &str,
        streams: Streams,
    ) -> Result<(Container, AttachStream), EngineError> {
        let container = self.container(reference)?;
        if !container.record.state.is_up() {
            return Err(EngineError::NotRunning {
                id: container.record.id.short().to_owned(),
                reason: "you cannot attach to a stopped container, start it first".into(),
            });
        }
        let stream = self.connect(&container, streams)?;
        Ok((container, stream))
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout` seconds (the
    /// container's `--stop-timeout`, else 10); returns once the monitor has
    /// recorded the exit. The restart policy does not apply to this exit.
    /// Stopping a stopped container does nothing.
    ///
    /// # Errors
    ///
    /// No such container; signalling failed.
    pub fn stop_container(
        &self,
        reference: &str,
        timeout: Option<u32>,
    ) -> Result<Container, EngineError> {
        let container = self.container(reference)?;
        let record = &container.record;
        if !record.state.is_up() {
            return Ok(container);
        }
        let store = self.containers()?;
        store.set_stop_requested(&record.id, true)?;
        let timeout = timeout
            .or(container.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let signal = wharf_runtime::signal::parse(&container.config.stop_signal)
            .map_err(|reason| EngineError::invalid(format!("stop signal: {reason}")))?;
        let runtime = self.runtime();
        let rid = Self::runtime_id(&record.id);
        if runtime.state(&rid).is_ok() {
            let _ = runtime.kill(&rid, signal, false);
            if record.state == ContainerState::Paused {
                let _ = runtime.resume(&rid);
            }
            if !self.wait_process_gone(record, Duration::from_secs(u64::from(timeout))) {
                let _ = runtime.kill(&rid, libc::SIGKILL, true);
                self.wait_process_gone(record, Duration::from_secs(30));
            }
        }
        self.wait_monitor_done(&container)?;
        let _ = store.append_event(&record.id, &record.name, "stop", &BTreeMap::new());
        match store.get_by_id(&record.id) {
            Ok(r) => self.container_from(r),
            // `--rm`: the monitor removed it.
            Err(EngineError::NotFound { .. }) => Ok(container),
            Err(e) => Err(e),
        }
    }

    /// SIGKILL and wait (for `rm -f`; the caller holds the lock).
    pub(crate) fn kill_and_wait(&self, record: &ContainerRecord) -> Result<(), EngineError> {
        let store = self.containers()?;
        store.set_stop_requested(&record.id, true)?;
        let runtime = self.runtime();
        let rid = Self::runtime_id(&record.id);
        if runtime.state(&rid).is_ok() {
            let _ = runtime.kill(&rid, libc::SIGKILL, true);
            if record.state == ContainerState::Paused {
                let _ = runtime.resume(&rid);
            }
            self.wait_process_gone(record, Duration::from_secs(30));
        }
        let container = self.container_from(record.clone())?;
        self.wait_monitor_done(&container)?;
        // A monitor that died without recording.
        let current = store.get_by_id(&record.id)?;
        self.reconcile(current, true)?;
        Ok(())
    }

    /// `kill`: sends `signal` to the container's process. SIGKILL and the
    /// stop signal count as a stop: the restart policy does not apply to
    /// the exit they cause (Docker's rule).
    ///
    /// # Errors
    ///
    /// No such container; it is not running.
    pub fn kill_container(&self, reference: &str, signal: i32) -> Result<Container, EngineError> {
        let container = self.container(reference)?;
        let record = &container.record;
        if !record.state.is_up() || record.state == ContainerState::Restarting {
            return Err(EngineError::NotRunning {
                id: record.id.short().to_owned(),
                reason: "container is not running".into(),
            });
        }
        let stop_signal = wharf_runtime::signal::parse(&container.config.stop_signal).ok();
        if signal == libc::SIGKILL || Some(signal) == stop_signal {
            self.containers()?.set_stop_requested(&record.id, true)?;
        }
        self.runtime()
            .kill(&Self::runtime_id(&record.id), signal, false)
            .map_err(|e| EngineError::ContainerRuntime {
                operation: "kill",
                id: record.id.short().to_owned(),
                source: Box::new(e),
            })?;
        let mut attributes = BTreeMap::new();
        attributes.insert("signal".to_owned(), signal.to_string());
        let _ = self
            .containers()?
            .append_event(&record.id, &record.name, "kill", &attributes);
        Ok(container)
    }

    /// `pause` (`pause: true`) or `unpause`.
    ///
    /// # Errors
    ///
    /// No such container; it is not running (or not paused).
    pub fn pause_container(&self, reference: &str, pause: bool) -> Result<Container, EngineError> {
        let store = self.containers()?;
        let record = store.get(reference)?;
        let _lock = store.lock(&record.id)?;
        let record = self.reconcile(store.get_by_id(&record.id)?, true)?;
        let (wanted, transition, action) = if pause {
            (ContainerState::Running, Transition::Pause, "pause")
        } else {
            (ContainerState::Paused, Transition::Unpause, "unpause")
        };
        if record.state != wanted {
            return Err(EngineError::NotRunning {
                id: record.id.short().to_owned(),
                reason: format!("container is {}, not {}", record.state, wanted),
            });
        }
        let runtime = self.runtime();
        let rid = Self::runtime_id(&record.id);
        let result = if pause {
            runtime.pause(&rid)
        } else {
            runtime.resume(&rid)
        };
        result.map_err(|e| EngineError::ContainerRuntime {
            operation: action,
            id: record.id.short().to_owned(),
            source: Box::new(e),
        })?;
        let record = store.transition_recorded(&record.id, transition, action, &BTreeMap::new())?;
        self.container_from(record)
    }

    /// `wait`: blocks until the container is not running; its exit code
    /// (`None`: unknown). A container removed meanwhile (`--rm`) reports the
    /// code of its last exit from the event journal.
    ///
    /// # Errors
    ///
    /// No such container.
    pub fn wait_container(&self, reference: &str) -> Result<Option<i32>, EngineError> {
        let store = self.containers()?;
        let record = store.get(reference)?;
        let id = record.id.clone();
        let since_seq = store
            .events(None, 0)
            .map(|e| e.last().map_or(0, |e| e.seq))
            .unwrap_or(0);
        let mut record = Some(record);
        loop {
            match record {
                Some(r) => {
                    let r = self.reconcile(r, false)?;
                    if matches!(
                        r.state,
                        ContainerState::Created | ContainerState::Exited | ContainerState::Dead
                    ) {
                        return Ok(r.exit_code);
                    }
                }
                None => {
                    let code = store
                        .events(None, since_seq.saturating_sub(1000))?
                        .into_iter()
                        .rev()
                        .find(|e| e.container == id && e.action == "die")
                        .and_then(|e| e.attributes.get("exitCode").and_then(|c| c.parse().ok()));
                    return Ok(code.filter(|c: &i32| *c >= 0));
                }
            }
            std::thread::sleep(POLL);
            record = match store.get_by_id(&id) {
                Ok(r) => Some(r),
                Err(EngineError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
        }
    }

    /// Waits up to `timeout` for the container's init to be gone.
    fn wait_process_gone(&self, record: &ContainerRecord, timeout: Duration) -> bool {
        let Some(pid) = record.pid.and_then(rustix::process::Pid::from_raw) else {
            return true;
        };
        let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        else {
            return true;
        };
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) => return false,
                Ok(_) => return true,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return true,
            }
        }
    }

    /// Waits until the container's monitor has exited (it records the exit,
    /// cleans up and, with `--rm`, removes the container first).
    fn wait_monitor_done(&self, container: &Container) -> Result<(), EngineError> {
        let Some((file, path)) = super::open_monitor_lock(&container.dir)? else {
            return Ok(());
        };
        // Blocks until the monitor is gone; the lock taken here is released
        // when `file` closes.
        wharf_sys::plock::lock_wait(&file).map_err(io_err("wait for the monitor lock", &path))?;
        Ok(())
    }
}

/// Opens (creating) the monitor's log in a container's directory, for its
/// stderr.
pub(crate) fn open_monitor_log(dir: &Path) -> Result<fs_err::File, EngineError> {
    let path = dir.join("monitor.log");
    fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err("open", &path))
}

/// A close-on-exec pipe (read end, write end).
fn pipe(dir: &Path) -> Result<(OwnedFd, OwnedFd), EngineError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("create a pipe for", dir)(e.into()))
}

/// A socket pair for a client attached from the start: ours, with
/// [`Frame::Hello`] for `streams` already written, and the monitor's.
fn attach_pair(streams: Streams, dir: &Path) -> Result<(OwnedFd, OwnedFd), EngineError> {
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io_err("create a socket pair for", dir)(e.into()))?;
    let mut socket = UnixStream::from(ours.try_clone().map_err(io_err("attach to", dir))?);
    Frame::Hello(streams)
        .write_to(&mut socket)
        .map_err(io_err("attach to", dir))?;
    Ok((ours, theirs))
}

/// Reads the monitor's one-line report. The pipe's end of file cannot be
/// trusted to come when the monitor dies: a container init forked by it and
/// still waiting for `start` holds a copy of the write end. So the wait also
/// watches the monitor itself (our child) and stops when it has exited.
fn read_report(pipe: OwnedFd, monitor: u32, dir: &Path) -> Result<String, EngineError> {
    use rustix::event::{poll, PollFd, PollFlags};
    let read_err = io_err("read the monitor's report for", dir);
    let pid = rustix::process::Pid::from_raw(i32::try_from(monitor).unwrap_or(i32::MAX));
    let mut text = Vec::new();
    let mut file = std::fs::File::from(pipe);
    let mut buf = [0u8; 4096];
    let mut monitor_gone = false;
    loop {
        let mut fds = [PollFd::new(&file, PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                if monitor_gone {
                    break;
                }
                // Reaps the monitor only once it has exited.
                let exited = pid.is_some_and(|pid| {
                    matches!(
                        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG),
                        Ok(Some(_)) | Err(rustix::io::Errno::CHILD)
                    )
                });
                // One more poll round for what it wrote before exiting.
                monitor_gone = exited;
                continue;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(read_err(e.into())),
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                text.extend_from_slice(&buf[..n]);
                if text.ends_with(b"\n") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    if text.is_empty() {
        let log = fs_err::read_to_string(dir.join("monitor.log")).unwrap_or_default();
        let last = log.lines().last().unwrap_or("no message").to_owned();
        return Ok(format!(
            "error 125 the monitor exited without reporting: {last}"
        ));
    }
    Ok(text)
}

/// The error for a report `error CODE CHAIN`.
fn start_error(container: &Container, report: &str) -> EngineError {
    let rest = report.strip_prefix("error ").unwrap_or(report);
    let (code, chain) = rest.split_once(' ').unwrap_or(("125", rest));
    match code {
        "127" => EngineError::CommandNotFound {
            chain: chain.to_owned(),
        },
        "126" => EngineError::CommandNotExecutable {
            chain: chain.to_owned(),
        },
        _ => EngineError::StartFailed {
            id: container.record.id.short().to_owned(),
            reason: chain.to_owned(),
        },
    }
}

/// The attach socket's path for connect/bind: through `/proc/self/fd` of an
/// open directory, as unix socket paths are limited to 108 bytes and the
/// container directory may be deep. Keep the returned fd open while using
/// the path.
pub(crate) fn attach_socket_path(dir: &Path) -> Result<(OwnedFd, std::path::PathBuf), EngineError> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io_err("open", dir)(e.into()))?;
    use std::os::fd::AsRawFd as _;
    let path = std::path::PathBuf::from(format!("/proc/self/fd/{}/attach.sock", fd.as_raw_fd()));
    Ok((fd, path))
}
