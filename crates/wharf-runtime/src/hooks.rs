//! OCI hooks: run with the state document on stdin, the configured args
//! and env only, and a timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// The phases of the hook lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Phase {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    pub(crate) fn hooks(self, spec: &oci_spec::runtime::Spec) -> Vec<Hook> {
        let Some(hooks) = spec.hooks() else {
            return Vec::new();
        };
        #[allow(
            deprecated,
            reason = "prestart is deprecated in the spec but still honoured, as runc does"
        )]
        let list = match self {
            Phase::Prestart => hooks.prestart(),
            Phase::CreateRuntime => hooks.create_runtime(),
            Phase::CreateContainer => hooks.create_container(),
            Phase::StartContainer => hooks.start_container(),
            Phase::Poststart => hooks.poststart(),
            Phase::Poststop => hooks.poststop(),
        };
        list.clone().unwrap_or_default()
    }
}

/// Why a hook failed.
#[derive(Debug)]
pub(crate) struct HookFailure {
    pub(crate) path: std::path::PathBuf,
    pub(crate) reason: String,
}

/// Runs every hook of a phase in order; stops at the first failure.
pub(crate) fn run(hooks: &[Hook], state_json: &str) -> Result<(), HookFailure> {
    for hook in hooks {
        run_one(hook, state_json).map_err(|reason| HookFailure {
            path: hook.path().clone(),
            reason,
        })?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state_json: &str) -> Result<(), String> {
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE ignored).
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {} s",
                hook.timeout().unwrap_or_default()
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn hook_gets_state_on_stdin_and_only_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {0}; echo \"$FOO:$HOME\" >> {0}", out.display())],
            "env": ["FOO=bar"]
        }));
        run(&[h], "{\"id\":\"x\"}").unwrap();
        assert_eq!(
            fs_err::read_to_string(&out).unwrap(),
            "{\"id\":\"x\"}bar:\n"
        );
    }

    #[test]
    fn failing_and_slow_hooks_are_errors() {
        let fail = hook(serde_json::json!({"path": "/bin/false"}));
        assert!(run(&[fail], "{}").is_err());
        let slow =
            hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}));
        let err = run(&[slow], "{}").unwrap_err();
        assert!(err.reason.contains("timed out"), "{}", err.reason);
    }
}
