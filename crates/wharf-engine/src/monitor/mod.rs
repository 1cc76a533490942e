//! The per-container monitor: `wharf __monitor ROOT DRIVER ID`, spawned by
//! `start` in a new session, holding no terminal. It is the container's
//! parent (child subreaper) for the container's whole life, across
//! restarts:
//!
//! 1. takes `monitor.lock` (a POSIX lock: released however the monitor
//!    dies, which is how commands tell a dead monitor from a live one);
//! 2. mounts the rootfs, creates the container through the runtime with
//!    its stdio on pipes (or a terminal), starts it, records it running,
//!    and reports `ok` (or `error CODE CHAIN`) on fd 3 to `start`;
//! 3. relays output to the log driver and to attached clients (fd 4 from
//!    `start -a`/`run`, or `attach.sock`), input and terminal resizes from
//!    clients to the container;
//! 4. on exit: drains the output, deletes the runtime container (cgroup),
//!    unmounts the rootfs, records the exit code and time, and applies the
//!    restart policy (Docker's back-off: 100 ms doubling);
//! 5. when no restart follows: tells attached clients the exit code, and
//!    with `--rm` removes the container.
//!
//! It also runs the container's health checks ([`health`]).
//!
//! Single-threaded (the runtime forks); SIGCHLD arrives on a signalfd.

mod health;

pub use health::{HealthResult, HealthState};

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;

use crate::containers::attach::{Frame, FrameBuffer, Streams};
use crate::containers::ContainerConfig;
use crate::logs::{LogWriter, Stream};
use crate::state::{ContainerId, ContainerName, ContainerState, Transition};
use crate::{Engine, EngineError, EngineOptions};

/// Output waiting for a slow client beyond this stops reading the
/// container's output until it drains (back-pressure, as Docker).
const CLIENT_BUFFER_LIMIT: usize = 4 << 20;

/// Restart back-off: Docker's 100 ms doubling, capped at one minute, reset
/// after a run of ten seconds.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const BACKOFF_RESET: Duration = Duration::from_secs(10);
/// When the monitor gives back the memory it is not using (see
/// `Monitor::trim_and_poll`): this long after the container started, and
/// again whenever its loop has then been quiet (nothing to relay, no client,
/// no signal) this long. A `run --rm` of a quick command never waits for
/// it, and a container that writes often does not make its monitor trim
/// over and over.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Runs the monitor of container `id`; returns the process exit status.
/// `ready` is the pipe `start` reads the outcome of the first start from;
/// `attach` a first client connected before the start.
pub fn run(
    root: &Path,
    storage_driver: &str,
    id: &str,
    ready: OwnedFd,
    attach: Option<OwnedFd>,
) -> i32 {
    let mut ready = Some(ready);
    let opened = Monitor::open_engine(root, storage_driver)
        .and_then(|(engine, options)| Monitor::open(engine, options, id));
    let monitor = match opened {
        Ok(m) => m,
        Err(e) => {
            report(&mut ready, Err((125, render(&e))));
            tracing::error!(container = id, error = %render(&e), "monitor setup failed");
            return 1;
        }
    };
    serve(monitor, ready, attach)
}

/// Runs a monitor spawned before its container existed
/// ([`crate::containers::EarlyMonitor`]): opens the engine, then reads the
/// container's id from `go` (end of file: the container was never made,
/// exit quietly), sends its own stderr to the container's `monitor.log`
/// and carries on as [`run`].
pub fn run_early(
    root: &Path,
    storage_driver: &str,
    go: OwnedFd,
    ready: OwnedFd,
    attach: Option<OwnedFd>,
) -> i32 {
    let mut ready = Some(ready);
    let opened = Monitor::open_engine(root, storage_driver).and_then(|(engine, options)| {
        // Both databases open (each connection rebuilds its WAL index and
        // parses its schema) while the container is being made.
        engine.containers()?;
        let Some(id) = read_id(go)? else {
            return Ok(None);
        };
        let monitor = Monitor::open(engine, options, &id)?;
        let log = crate::containers::open_monitor_log(&monitor.dir)?;
        rustix::stdio::dup2_stderr(&log).map_err(|e| EngineError::Io {
            operation: "send stderr to",
            path: log.path().to_path_buf(),
            source: e.into(),
        })?;
        Ok(Some(monitor))
    });
    let monitor = match opened {
        Ok(Some(m)) => m,
        Ok(None) => return 0,
        Err(e) => {
            report(&mut ready, Err((125, render(&e))));
            tracing::error!(error = %render(&e), "monitor setup failed");
            return 1;
        }
    };
    serve(monitor, ready, attach)
}

/// The container id sent on an early monitor's `go` pipe, `None` at end of
/// file.
fn read_id(go: OwnedFd) -> Result<Option<String>, EngineError> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(go), &mut text).map_err(|source| {
        EngineError::Io {
            operation: "read the container id from",
            path: std::path::PathBuf::from("the start pipe"),
            source,
        }
    })?;
    let id = text.trim_end_matches('\n');
    Ok((!id.is_empty()).then(|| id.to_owned()))
}

fn serve(mut monitor: Monitor, mut ready: Option<OwnedFd>, attach: Option<OwnedFd>) -> i32 {
    match monitor.main(&mut ready, attach) {
        Ok(()) => 0,
        Err(e) => {
            report(&mut ready, Err((125, render(&e))));
            tracing::error!(container = %monitor.id, error = %render(&e), "monitor failed");
            1
        }
    }
}

fn render(e: &(dyn std::error::Error + 'static)) -> String {
    wharf_runtime::render_chain(e)
}

/// Writes the outcome of the first start to `start` (once).
fn report(ready: &mut Option<OwnedFd>, outcome: Result<(), (i32, String)>) {
    let Some(fd) = ready.take() else { return };
    let text = match outcome {
        Ok(()) => format!("{}\n", crate::containers::READY_OK),
        Err((code, chain)) => format!("error {code} {}\n", chain.replace('\n', " ")),
    };
    let _ = rustix::io::write(&fd, text.as_bytes());
}

struct Monitor {
    /// Open while the monitor works on the store; closed by `trim_and_poll`
    /// while the container runs, opened again on the next use (`engine()`).
    engine: std::cell::OnceCell<Engine>,
    options: EngineOptions,
    id: ContainerId,
    name: ContainerName,
    dir: PathBuf,
    config: ContainerConfig,
    _lock: fs_err::File,
    /// What `trim_and_poll` drops, planned at the first trim: the binary's
    /// mappings do not change after that.
    resident: Option<wharf_sys::process::ResidentTrim>,
}

/// A started container instance.
struct Instance {
    pid: i32,
    /// What the container's networking holds while it runs.
    network: crate::networks::NetworkHold,
    /// Terminal master, or the stdout pipe.
    out: OwnedFd,
    /// The stderr pipe (no terminal).
    err: Option<OwnedFd>,
    /// Where client input goes: the master (dup) or the stdin pipe.
    input: Option<OwnedFd>,
    started: Instant,
}

struct Client {
    socket: UnixStream,
    inbox: FrameBuffer,
    streams: Option<Streams>,
    pending: Vec<u8>,
}

impl Client {
    fn new(socket: UnixStream) -> io::Result<Client> {
        socket.set_nonblocking(true)?;
        Ok(Client {
            socket,
            inbox: FrameBuffer::default(),
            streams: None,
            pending: Vec::new(),
        })
    }

    fn queue(&mut self, frame: &Frame) {
        self.pending.extend_from_slice(&frame.encode());
    }

    /// Writes what it can; `false` when the client is gone.
    fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match rustix::io::write(&self.socket, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(rustix::io::Errno::AGAIN) => return true,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
        true
    }
}

impl Monitor {
    /// The engine, opened before the container is known (an early monitor
    /// does this while its container is being created).
    fn open_engine(
        root: &Path,
        storage_driver: &str,
    ) -> Result<(Engine, EngineOptions), EngineError> {
        let options = EngineOptions {
            root: root.to_path_buf(),
            storage_driver: Some(storage_driver.to_owned()),
        };
        Ok((Engine::open(&options)?, options))
    }

    fn open(engine: Engine, options: EngineOptions, id: &str) -> Result<Monitor, EngineError> {
        let id = ContainerId::parse(id)?;
        let store = engine.containers()?;
        let record = store.get_by_id(&id)?;
        let config = ContainerConfig::from_value(&record.config)?;
        let dir = store.container_dir(&id);
        let lock_path = dir.join("monitor.lock");
        let lock = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|source| EngineError::Io {
                operation: "open",
                path: lock_path.clone(),
                source,
            })?;
        let locked = wharf_sys::plock::try_lock(&lock).map_err(|source| EngineError::Io {
            operation: "lock",
            path: lock_path.clone(),
            source,
        })?;
        if !locked {
            return Err(EngineError::StartFailed {
                id: id.short().to_owned(),
                reason: "another monitor runs for this container".into(),
            });
        }
        Ok(Monitor {
            engine: engine.into(),
            options,
            name: record.name,
            id,
            dir,
            config,
            _lock: lock,
            resident: None,
        })
    }

    /// The engine, opened again if `trim_and_poll` closed it.
    fn engine(&self) -> Result<&Engine, EngineError> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let engine = Engine::open(&self.options)?;
        Ok(self.engine.get_or_init(|| engine))
    }

    /// Gives back the memory the monitor does not need while it waits,
    /// then waits in `poll(2)`: the database connections (their caches and
    /// shared-memory maps; the engine opens again when next needed), free
    /// heap memory and the resident pages of code the loop does not run
    /// (`wharf_sys::process::ResidentTrim`).
    fn trim_and_poll(
        &mut self,
        fds: &mut [PollFd<'_>],
        timeout: Option<&rustix::event::Timespec>,
    ) -> rustix::io::Result<usize> {
        drop(self.engine.take());
        if self.resident.is_none() {
            match wharf_sys::process::ResidentTrim::plan() {
                Ok(trim) => {
                    tracing::debug!(container = %self.id, bytes = trim.exe_bytes(), "plan the resident-set trim");
                    self.resident = Some(trim);
                }
                Err(e) => {
                    tracing::debug!(container = %self.id, error = %e, "plan the resident-set trim");
                }
            }
        }
        match &self.resident {
            Some(trim) => trim.trim_and_poll(fds, timeout),
            None => rustix::event::poll(fds, timeout),
        }
    }

    fn main(
        &mut self,
        ready: &mut Option<OwnedFd>,
        attach: Option<OwnedFd>,
    ) -> Result<(), EngineError> {
        let me = rustix::process::getpid();
        rustix::process::set_child_subreaper(Some(me))
            .map_err(|e| self.io("become subreaper", e.into()))?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.add(Signal::SIGPIPE);
        mask.thread_block()
            .map_err(|e| self.io("block SIGCHLD", e.into()))?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| self.io("create a signalfd", e.into()))?;
        let listener = self.listen()?;
        let mut clients: Vec<Client> = Vec::new();
        if let Some(fd) = attach {
            // `start` wrote the client's Hello before spawning us: read it
            // now, so that not a byte of output precedes it.
            let mut socket = UnixStream::from(fd);
            let hello =
                Frame::read_from(&mut socket).map_err(|e| self.io("read the attach hello", e))?;
            let mut client =
                Client::new(socket).map_err(|e| self.io("set up the attach socket", e))?;
            if let Some(Frame::Hello(streams)) = hello {
                client.streams = Some(streams);
            }
            clients.push(client);
        }
        let mut log = LogWriter::open(
            &self.config.log,
            &self.dir.join("container.log"),
            &self.id,
            &self.name,
        )?;

        let mut backoff = BACKOFF_START;
        let mut last_exit: Option<i32>;
        loop {
            let mut instance = match self.start_once() {
                Ok(i) => i,
                Err((code, chain)) => {
                    if ready.is_some() {
                        report(ready, Err((code, chain)));
                        return Ok(());
                    }
                    // A restart failed: stay exited.
                    tracing::error!(container = %self.id, error = %chain, "restart failed");
                    let store = self.engine()?.containers()?;
                    let _ = store.transition(
                        &self.id,
                        Transition::Exit {
                            exit_code: Some(code),
                        },
                    );
                    last_exit = Some(code);
                    break;
                }
            };
            report(ready, Ok(()));
            let started = instance.started;
            // The host ports stay reserved until their rules are gone:
            // released first, a port the kernel hands to another
            // container's `-p` would still be published by this one.
            let ports = std::mem::take(&mut instance.network);
            let code = self.pump(instance, &sigfd, &listener, &mut clients, &mut log);
            let _ = log.flush();
            self.release();
            drop(ports);
            let store = self.engine()?.containers()?;
            let attributes =
                BTreeMap::from([("exitCode".to_owned(), code.unwrap_or(-1).to_string())]);
            let record = store.transition_recorded(
                &self.id,
                Transition::Exit { exit_code: code },
                "die",
                &attributes,
            )?;
            last_exit = code;
            if !self.config.restart.should_restart(
                code,
                record.restart_count,
                record.stop_requested,
            ) {
                break;
            }
            if started.elapsed() >= BACKOFF_RESET {
                backoff = BACKOFF_START;
            }
            store.transition(&self.id, Transition::Restart)?;
            if !self.sleep_unless_stopped(backoff, &listener, &mut clients) {
                store.transition(&self.id, Transition::Exit { exit_code: code })?;
                break;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        for client in &mut clients {
            client.queue(&Frame::Exit(last_exit));
        }
        let leftovers = if self.config.auto_remove {
            self.auto_remove()
        } else {
            None
        };
        finish_clients(&mut clients);
        drop(listener);
        let _ = fs_err::remove_file(self.dir.join("attach.sock"));
        // The clients are told: the files go now, and the databases'
        // WALs are checkpointed here rather than by the next command's
        // commit.
        drop(leftovers);
        if let Ok(engine) = self.engine() {
            engine.checkpoint();
        }
        Ok(())
    }

    fn io(&self, operation: &'static str, source: io::Error) -> EngineError {
        EngineError::Io {
            operation,
            path: self.dir.clone(),
            source,
        }
    }

    fn listen(&self) -> Result<UnixListener, EngineError> {
        let (dirfd, path) = crate::containers::attach_socket_path(&self.dir)?;
        let _ = fs_err::remove_file(self.dir.join("attach.sock"));
        let listener =
            UnixListener::bind(&path).map_err(|e| self.io("listen on the attach socket in", e))?;
        drop(dirfd);
        listener
            .set_nonblocking(true)
            .map_err(|e| self.io("set up the attach socket in", e))?;
        Ok(listener)
    }

    /// Mounts, creates and starts the container; records it running.
    fn start_once(&mut self) -> Result<Instance, (i32, String)> {
        let fail = |e: &(dyn std::error::Error + 'static)| (125, wharf_runtime::render_chain(e));
        // An infra container's rootfs is a plain directory (see `pods`).
        if !self.config.infra {
            self.engine()
                .map_err(|e| fail(&e))?
                .images
                .remount_rootfs(self.id.as_str())
                .map_err(|e| fail(&e))?;
        }
        let runtime = self.engine().map_err(|e| fail(&e))?.runtime();
        let rid = Engine::runtime_id(&self.id);
        if runtime.state(&rid).is_ok() {
            // Left by a monitor that died.
            let _ = runtime.delete(&rid, true);
        }
        if let Err(e) = self.join_shared_namespaces() {
            self.release();
            return Err(fail(&e));
        }
        let request = wharf_runtime::CreateRequest {
            id: rid.clone(),
            bundle: self.dir.clone(),
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            no_pivot: false,
        };
        let created = if self.config.tty {
            runtime
                .create_with_terminal(&request)
                .map_err(|e| classify(&e))
                .map(|(state, master)| {
                    let master = master.expect("a terminal container's create returns its master");
                    let input = if self.config.open_stdin {
                        rustix::io::dup(&master).ok()
                    } else {
                        None
                    };
                    (state, master, None, input)
                })
        } else {
            self.create_with_pipes(&runtime, &request)
        };
        let (state, out, err, input) = match created {
            Ok(c) => c,
            Err(e) => {
                self.release();
                return Err(e);
            }
        };
        for fd in [Some(&out), err.as_ref(), input.as_ref()]
            .into_iter()
            .flatten()
        {
            let _ = set_nonblocking(fd.as_fd());
        }
        let network = match self
            .engine()
            .and_then(|e| e.network_up(&self.id, &self.config, state.pid))
        {
            Ok(hold) => hold,
            Err(e) => {
                let _ = runtime.delete(&rid, true);
                self.release();
                return Err(fail(&e));
            }
        };
        if let Err(e) = runtime.start(&rid) {
            let _ = runtime.delete(&rid, true);
            self.release();
            return Err(classify(&e));
        }
        let pid = state.pid;
        let store = self
            .engine()
            .and_then(Engine::containers)
            .map_err(|e| fail(&e))?;
        store
            .transition_recorded(
                &self.id,
                Transition::Start {
                    pid,
                    monitor_pid: Some(rustix::process::getpid().as_raw_nonzero().get()),
                },
                "start",
                &BTreeMap::new(),
            )
            .map_err(|e| fail(&e))?;

        Ok(Instance {
            pid,
            network,
            out,
            err,
            input,
            started: Instant::now(),
        })
    }

    /// Points the runtime spec at the namespaces of the container this one
    /// shares them with (its pod's infra, `--network container:`), whose
    /// init may have changed since the last start.
    fn join_shared_namespaces(&self) -> Result<(), EngineError> {
        self.engine()?
            .refresh_joined_namespaces(&self.dir, &self.config)
    }

    /// Creates the container with its stdio on fresh pipes: the runtime
    /// passes the caller's 0, 1 and 2 to the init, so they are swapped in
    /// for the call and restored after.
    #[allow(clippy::type_complexity, reason = "a private tuple of the pipes' ends")]
    fn create_with_pipes(
        &self,
        runtime: &wharf_runtime::Runtime,
        request: &wharf_runtime::CreateRequest,
    ) -> Result<
        (
            wharf_runtime::ContainerState,
            OwnedFd,
            Option<OwnedFd>,
            Option<OwnedFd>,
        ),
        (i32, String),
    > {
        let sys = |what: &str| {
            let what = what.to_owned();
            move |e: rustix::io::Errno| (125, format!("{what}: {}", io::Error::from(e)))
        };
        let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
        let (out_r, out_w) = pipe().map_err(sys("create the stdout pipe"))?;
        let (err_r, err_w) = pipe().map_err(sys("create the stderr pipe"))?;
        let (in_r, in_w) = if self.config.open_stdin {
            let (r, w) = pipe().map_err(sys("create the stdin pipe"))?;
            (r, Some(w))
        } else {
            let null = rustix::fs::open(
                "/dev/null",
                OFlags::RDONLY | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(sys("open /dev/null"))?;
            (null, None)
        };
        let created = with_stdio([in_r.as_fd(), out_w.as_fd(), err_w.as_fd()], || {
            runtime.create(request)
        })
        .map_err(|e| (125, format!("hand the pipes to the container: {e}")))?;
        let state = created.map_err(|e| classify(&e))?;
        Ok((state, out_r, Some(err_r), in_w))
    }

    /// Relays output and input until the init exits; its exit code (128 +
    /// signal when killed).
    fn pump(
        &mut self,
        mut instance: Instance,
        sigfd: &SignalFd,
        listener: &UnixListener,
        clients: &mut Vec<Client>,
        log: &mut LogWriter,
    ) -> Option<i32> {
        // Freed before each trim; `scratch` allocates it again.
        let mut buf = Vec::new();
        let mut out_open = true;
        let mut err_open = instance.err.is_some();
        let mut prober = self.config.health.clone().map(health::Prober::new);
        if let Some(p) = &prober {
            self.save_health(&p.state);
        }
        // When the next trim is due: TRIM_AFTER from the start, then
        // TRIM_AFTER after the last work that followed a trim.
        let mut trim_at = Some(Instant::now() + TRIM_AFTER);
        let mut trimmed_once = false;
        loop {
            if let Some(p) = prober.as_mut() {
                if p.due() {
                    self.start_probe(p);
                }
                if let Some(pid) = p.overdue() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let throttled = clients
                .iter()
                .any(|c| c.pending.len() > CLIENT_BUFFER_LIMIT);
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4 + clients.len());
            fds.push(PollFd::new(sigfd, PollFlags::IN));
            fds.push(PollFd::new(listener, PollFlags::IN));
            let out_idx = (out_open && !throttled).then(|| {
                fds.push(PollFd::new(&instance.out, PollFlags::IN));
                fds.len() - 1
            });
            let err_idx = match (&instance.err, err_open && !throttled) {
                (Some(e), true) => {
                    fds.push(PollFd::new(e, PollFlags::IN));
                    Some(fds.len() - 1)
                }
                _ => None,
            };
            let probe_idx = prober.as_ref().and_then(|p| p.probe.as_ref()).map(|probe| {
                fds.push(PollFd::new(&probe.output, PollFlags::IN));
                fds.len() - 1
            });
            let first_client = fds.len();
            for c in clients.iter() {
                let mut flags = PollFlags::IN;
                if !c.pending.is_empty() {
                    flags |= PollFlags::OUT;
                }
                fds.push(PollFd::new(&c.socket, flags));
            }
            let until_trim = trim_at.map(|at| at.saturating_duration_since(Instant::now()));
            let trim_now = until_trim == Some(Duration::ZERO);
            let timeout = match (
                prober.as_ref().map(health::Prober::timeout),
                until_trim.filter(|_| !trim_now),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = timeout.map(|t| rustix::event::Timespec {
                tv_sec: t.as_secs() as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            let polled = if trim_now {
                trim_at = None;
                trimmed_once = true;
                buf = Vec::new();
                self.trim_and_poll(&mut fds, timeout.as_ref())
            } else {
                rustix::event::poll(&mut fds, timeout.as_ref())
            };
            match polled {
                Ok(ready) => {
                    if ready > 0 && trimmed_once {
                        trim_at = Some(Instant::now() + TRIM_AFTER);
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::error!(container = %self.id, error = %e, "poll");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
            let ready: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
            drop(fds);
            // Clients accepted below were not polled this round.
            let polled = clients.len();

            if !ready[1].is_empty() {
                while let Ok((socket, _)) = listener.accept() {
                    if let Ok(c) = Client::new(socket) {
                        clients.push(c);
                    }
                }
            }
            if let Some(i) = out_idx {
                if !ready[i].is_empty() {
                    let stream = Stream::Stdout;
                    out_open = relay(
                        &instance.out,
                        stream,
                        scratch(&mut buf),
                        log,
                        clients,
                        self.config.tty,
                    );
                }
            }
            if let (Some(i), Some(err)) = (err_idx, &instance.err) {
                if !ready[i].is_empty() {
                    err_open = relay(err, Stream::Stderr, scratch(&mut buf), log, clients, false);
                }
            }
            let mut gone = Vec::new();
            for (n, c) in clients.iter_mut().enumerate().take(polled) {
                let r = ready[first_client + n];
                if r.is_empty() {
                    continue;
                }
                if r.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
                    && !self.client_input(c, &mut instance, scratch(&mut buf))
                {
                    gone.push(n);
                    continue;
                }
                if !c.flush() {
                    gone.push(n);
                }
            }
            for n in gone.into_iter().rev() {
                clients.remove(n);
            }
            if let (Some(i), Some(p)) = (probe_idx, prober.as_mut()) {
                if !ready[i].is_empty() {
                    p.read_output();
                }
            }
            if !ready[0].is_empty() {
                while let Ok(Some(_)) = sigfd.read_signal() {}
                let exited = reap();
                if let Some(p) = prober.as_mut() {
                    let probe_pid = p.probe.as_ref().map(|probe| probe.pid);
                    if let Some(&(_, code)) = exited.iter().find(|(pid, _)| Some(*pid) == probe_pid)
                    {
                        p.exited(code);
                        let state = p.state.clone();
                        self.save_health(&state);
                    }
                }
                if let Some(&(_, code)) = exited.iter().find(|(pid, _)| *pid == instance.pid) {
                    // Drain what the container wrote before it ended.
                    if out_open {
                        while relay(
                            &instance.out,
                            Stream::Stdout,
                            scratch(&mut buf),
                            log,
                            clients,
                            self.config.tty,
                        ) {}
                    }
                    if let (true, Some(err)) = (err_open, &instance.err) {
                        while relay(err, Stream::Stderr, scratch(&mut buf), log, clients, false) {}
                    }
                    return Some(code);
                }
            }
        }
    }

    /// Starts a health check in the container (as `exec -d` does, its
    /// output on a pipe); a check that cannot start is a failed result.
    fn start_probe(&self, prober: &mut health::Prober) {
        match self.spawn_probe(prober.command()) {
            Ok((pid, output)) => prober.started(pid, output),
            Err(reason) => {
                prober.failed_to_start(&reason);
                let state = prober.state.clone();
                self.save_health(&state);
            }
        }
    }

    fn spawn_probe(&self, cmd: Vec<String>) -> Result<(i32, OwnedFd), String> {
        let engine = self.engine().map_err(|e| render(&e))?;
        let store = engine.containers().map_err(|e| render(&e))?;
        let record = store.get_by_id(&self.id).map_err(|e| render(&e))?;
        let container = engine.container_from(record).map_err(|e| render(&e))?;
        let options = crate::containers::ExecOptions {
            cmd,
            ..Default::default()
        };
        let process = engine
            .exec_process(&container, &options)
            .map_err(|e| render(&e))?;
        let pid_file = self.dir.join("health.pid");
        let _ = fs_err::remove_file(&pid_file);
        let request = wharf_runtime::ExecRequest {
            id: Engine::runtime_id(&self.id),
            process: wharf_runtime::ExecProcess::Full(Box::new(process)),
            pid_file: Some(pid_file.clone()),
            console_socket: None,
            preserve_fds: 0,
            ignore_paused: false,
        };
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("create a pipe: {e}"))?;
        let null = rustix::fs::open(
            "/dev/null",
            OFlags::RDONLY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| format!("open /dev/null: {e}"))?;
        let runtime = engine.runtime();
        with_stdio([null.as_fd(), write.as_fd(), write.as_fd()], || {
            runtime.exec(&request, wharf_runtime::Attach::Detach)
        })
        .map_err(|e| format!("hand a pipe to the health check: {e}"))?
        .map_err(|e| render(&e))?;
        drop(write);
        let pid: i32 = fs_err::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| "the health check's pid is unknown".to_owned())?;
        let _ = fs_err::remove_file(&pid_file);
        let _ = set_nonblocking(read.as_fd());
        Ok((pid, read))
    }

    fn save_health(&self, state: &health::HealthState) {
        let value = serde_json::to_value(state).ok();
        if let Ok(store) = self.engine().and_then(Engine::containers) {
            if let Err(e) = store.set_health(&self.id, value.as_ref()) {
                tracing::warn!(container = %self.id, error = %render(&e), "record the health state");
            }
        }
    }

    /// Reads a client's frames; `false` when it is gone.
    fn client_input(&self, c: &mut Client, instance: &mut Instance, buf: &mut [u8]) -> bool {
        loop {
            match rustix::io::read(&c.socket, &mut *buf) {
                Ok(0) => return false,
                Ok(n) => c.inbox.extend(&buf[..n]),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
        loop {
            match c.inbox.next_frame() {
                Ok(Some(Frame::Hello(s))) => c.streams = Some(s),
                Ok(Some(Frame::Stdin(bytes))) => {
                    if let Some(input) = &instance.input {
                        write_all_blocking(input.as_fd(), &bytes);
                    }
                }
                Ok(Some(Frame::StdinEof)) => {
                    // Closing the pipe is the container's EOF; a terminal
                    // stays open (Docker).
                    if !self.config.tty {
                        instance.input = None;
                    }
                }
                Ok(Some(Frame::Resize { rows, cols })) => {
                    if self.config.tty {
                        let _ = wharf_sys::console::set_window_size(&instance.out, rows, cols);
                    }
                }
                Ok(Some(_)) => return false,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Deletes the runtime container and unmounts the rootfs.
    fn release(&self) {
        match self.engine() {
            Ok(engine) => engine.release_runtime(&self.id),
            Err(e) => {
                tracing::error!(container = %self.id, error = %render(&e), "open the store to release the container");
            }
        }
    }

    /// Sleeps the restart back-off, accepting attach clients; `false` when
    /// a stop was asked for meanwhile.
    fn sleep_unless_stopped(
        &self,
        pause: Duration,
        listener: &UnixListener,
        clients: &mut Vec<Client>,
    ) -> bool {
        let deadline = Instant::now() + pause;
        loop {
            match self
                .engine()
                .and_then(Engine::containers)
                .and_then(|s| s.get_by_id(&self.id))
            {
                Ok(r) if r.stop_requested || r.state != ContainerState::Restarting => return false,
                Ok(_) => {}
                Err(_) => return false,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
            while let Ok((socket, _)) = listener.accept() {
                if let Ok(c) = Client::new(socket) {
                    clients.push(c);
                }
            }
        }
    }

    /// `--rm`: removes the container. A command may hold its lock: the
    /// client that started it does until it has read this monitor's report,
    /// and a short container can be done by then, so wait for the lock. A
    /// command that removes the container itself (`rm -f`) asked for the
    /// stop first and holds the lock until this monitor is done: leave it
    /// to that command.
    fn auto_remove(&self) -> Option<crate::containers::Leftovers> {
        let engine = self.engine().ok()?;
        let store = engine.containers().ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let lock = loop {
            match store.try_lock(&self.id) {
                Ok(Some(l)) => break l,
                Ok(None) => {}
                Err(_) => return None,
            }
            match store.get_by_id(&self.id) {
                Ok(r) if !r.stop_requested && Instant::now() < deadline => {}
                _ => return None,
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let record = store.get_by_id(&self.id).ok()?;
        let leftovers = match engine.destroy_deferred(&record, true) {
            Ok(leftovers) => Some(leftovers),
            Err(e) => {
                tracing::error!(container = %self.id, error = %render(&e), "auto-remove failed");
                None
            }
        };
        drop(lock);
        leftovers
    }
}

/// Reaps every exited child; the init's exit code if it was among them.
/// Reaps every exited child: `(pid, exit code)` of each (128 + signal when
/// killed).
fn reap() -> Vec<(i32, i32)> {
    let mut found = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => found.push((pid.as_raw(), code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => found.push((pid.as_raw(), 128 + sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

/// Runs `f` with `fds` as this process's stdin, stdout and stderr (what the
/// runtime hands to the process it starts), then puts the monitor's own
/// back.
/// Runs `f` with `fds` as this process's stdin, stdout and stderr, then
/// puts the originals back.
pub(crate) fn with_stdio<T>(fds: [BorrowedFd<'_>; 3], f: impl FnOnce() -> T) -> io::Result<T> {
    let saved: Vec<OwnedFd> = [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ]
    .into_iter()
    .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 10))
    .collect::<Result<_, _>>()?;
    let swap = |fds: [BorrowedFd<'_>; 3]| -> io::Result<()> {
        for (n, fd) in fds.into_iter().enumerate() {
            wharf_sys::fd::dup_onto(fd, n as i32)?;
        }
        Ok(())
    };
    swap(fds)?;
    let out = f();
    swap([saved[0].as_fd(), saved[1].as_fd(), saved[2].as_fd()])?;
    Ok(out)
}

/// Size of the monitor's read buffer for the container's output and
/// clients' input.
const RELAY_BUFFER: usize = 64 * 1024;

/// The read buffer, allocated on first use after a trim freed it.
fn scratch(buf: &mut Vec<u8>) -> &mut [u8] {
    if buf.is_empty() {
        buf.resize(RELAY_BUFFER, 0);
    }
    buf
}

/// Reads one chunk from `fd` into the log and the clients; `false` at end
/// of stream (EOF, or EIO from a terminal whose other side closed) or when
/// nothing is left to read right now after the process ended.
fn relay(
    fd: &OwnedFd,
    stream: Stream,
    buf: &mut [u8],
    log: &mut LogWriter,
    clients: &mut [Client],
    tty: bool,
) -> bool {
    match rustix::io::read(fd, &mut *buf) {
        Ok(0) => false,
        Ok(n) => {
            let bytes = &buf[..n];
            if let Err(e) = log.write(stream, bytes) {
                tracing::warn!(error = %render(&e), "write the container log");
            }
            for c in clients.iter_mut() {
                let Some(s) = c.streams else { continue };
                let frame = match stream {
                    Stream::Stdout if s.stdout => Frame::Stdout(bytes.to_vec()),
                    Stream::Stderr if s.stderr => Frame::Stderr(bytes.to_vec()),
                    Stream::Stdout if tty && s.stderr => Frame::Stdout(bytes.to_vec()),
                    _ => continue,
                };
                c.queue(&frame);
                let _ = c.flush();
            }
            true
        }
        Err(rustix::io::Errno::INTR) => true,
        Err(_) => false,
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)
}

/// Writes input to the container, waiting while its pipe is full (input is
/// small and interactive; a container that never reads its stdin only
/// stalls input, output still flows once the pipe drains).
fn write_all_blocking(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bytes.is_empty() && Instant::now() < deadline {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                let ts = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 50_000_000,
                };
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Sends what is queued to each client (blocking, bounded), then closes.
fn finish_clients(clients: &mut Vec<Client>) {
    for c in clients.iter_mut() {
        let _ = c.socket.set_nonblocking(false);
        let _ = c.socket.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = io::Write::write_all(&mut c.socket, &c.pending);
        c.pending.clear();
    }
    clients.clear();
}

/// Maps a runtime failure to Docker's exit codes: 127 command not found,
/// 126 not executable, 125 anything else.
fn classify(e: &wharf_runtime::RuntimeError) -> (i32, String) {
    let chain = wharf_runtime::render_chain(e);
    (crate::containers::start_failure_code(&chain), chain)
}
