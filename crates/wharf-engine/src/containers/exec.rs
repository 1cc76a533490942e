//! `exec`: another process in a running container, run by the calling
//! process through the runtime (no monitor involved: the caller is its
//! parent and gets its status).

use oci_spec::runtime::{Process, Spec};

use super::{io_err, Container};
use crate::state::ContainerState;
use crate::{Engine, EngineError};

/// `exec` flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE`, over the container's environment.
    pub env: Vec<String>,
    /// `-u user[:group]`, resolved in the container's /etc/passwd.
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-d`: return once it runs.
    pub detach: bool,
    /// `--privileged`: every capability.
    pub privileged: bool,
}

impl Engine {
    /// `exec`: runs a process in the running container `reference` and, in
    /// the foreground, returns its exit status (relaying the terminal when
    /// `tty`). Must be called from a single-threaded process (the runtime
    /// forks).
    ///
    /// # Errors
    ///
    /// No such container; it is not running or is paused; the user is
    /// unknown in the image; the command is not found
    /// ([`EngineError::CommandNotFound`]).
    pub fn exec_container(
        &self,
        reference: &str,
        options: &ExecOptions,
    ) -> Result<i32, EngineError> {
        let container = self.container(reference)?;
        let id = container.record.id.short().to_owned();
        match container.record.state {
            ContainerState::Running => {}
            ContainerState::Paused => {
                return Err(EngineError::NotRunning {
                    id,
                    reason: "container is paused, unpause the container before exec".into(),
                })
            }
            _ => {
                return Err(EngineError::NotRunning {
                    id,
                    reason: "container is not running".into(),
                })
            }
        }
        if options.cmd.is_empty() {
            return Err(EngineError::invalid("exec needs a command"));
        }
        let process = self.exec_process(&container, options)?;
        let request = wharf_runtime::ExecRequest {
            id: Self::runtime_id(&container.record.id),
            process: wharf_runtime::ExecProcess::Full(Box::new(process)),
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            ignore_paused: false,
        };
        if options.detach {
            // Docker's `exec -d`: the process gets no stdio of ours (a
            // caller reading our output to its end must not wait for it).
            let null = fs_err::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(io_err("open", std::path::Path::new("/dev/null")))?;
            let null = std::os::fd::AsFd::as_fd(&null);
            return crate::monitor::with_stdio([null, null, null], || {
                self.runtime().exec(&request, wharf_runtime::Attach::Detach)
            })
            .map_err(io_err("redirect the standard streams of", &container.dir))?
            .map_err(|e| command_error(e, &container));
        }
        self.runtime()
            .exec(&request, wharf_runtime::Attach::Foreground)
            .map_err(|e| command_error(e, &container))
    }

    pub(crate) fn exec_process(
        &self,
        container: &Container,
        options: &ExecOptions,
    ) -> Result<Process, EngineError> {
        let path = container.dir.join("config.json");
        let bytes = fs_err::read(&path).map_err(io_err("read", &path))?;
        let spec: Spec = serde_json::from_slice(&bytes).map_err(EngineError::AssembleSpec)?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(options.cmd.clone()));
        process.set_terminal(Some(options.tty));
        process.set_console_size(None);
        let mut env = process.env().clone().unwrap_or_default();
        let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
        let mut extra = options.env.clone();
        if options.tty && !env.iter().chain(&extra).any(|e| key(e) == "TERM") {
            extra.push("TERM=xterm".into());
        }
        for entry in extra {
            env.retain(|e| key(e) != key(&entry));
            if entry.contains('=') {
                env.push(entry);
            }
        }
        if let Some(w) = &options.workdir {
            if !w.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "invalid --workdir {w:?}: it must be an absolute path"
                )));
            }
            process.set_cwd(w.into());
        }
        if let Some(user) = &options.user {
            let rootfs = self.images.rootfs(container.record.id.as_str())?;
            let resolved = crate::spec::user::resolve(&rootfs.path, user, &[])?;
            let mut u = process.user().clone();
            u.set_uid(resolved.uid);
            u.set_gid(resolved.gid);
            u.set_additional_gids(Some(resolved.additional_gids));
            process.set_user(u);
            let home = format!("HOME={}", resolved.home);
            env.retain(|e| key(e) != "HOME");
            env.push(home);
        }
        process.set_env(Some(env));
        if options.privileged {
            let all = crate::spec::all_capabilities(super::bounding_caps());
            let caps: oci_spec::runtime::LinuxCapabilities = serde_json::from_value(
                serde_json::json!({"bounding": all, "effective": all, "permitted": all}),
            )
            .map_err(EngineError::AssembleSpec)?;
            process.set_capabilities(Some(caps));
        }
        Ok(process)
    }
}

/// Maps the runtime's failure to start a command to Docker's classes.
pub(crate) fn command_error(e: wharf_runtime::RuntimeError, container: &Container) -> EngineError {
    let chain = wharf_runtime::render_chain(&e);
    match start_failure_code(&chain) {
        127 => EngineError::CommandNotFound { chain },
        126 => EngineError::CommandNotExecutable { chain },
        _ => EngineError::ContainerRuntime {
            operation: "exec in",
            id: container.record.id.short().to_owned(),
            source: Box::new(e),
        },
    }
}

/// Docker's exit status for a process the runtime could not start, from
/// the runtime's error chain: 127 when the command is not found, 126 when
/// it cannot be executed, 125 for anything else.
pub(crate) fn start_failure_code(chain: &str) -> i32 {
    if chain.contains("executable file not found") || chain.contains("no such executable file") {
        127
    } else if chain.contains("ermission denied") {
        126
    } else {
        125
    }
}
