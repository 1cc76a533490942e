//! `run --rm -it` in a real terminal, driven through tmux: typing into a
//! shell in the container, a window resize reaching it, detaching with
//! ctrl-p ctrl-q, re-attaching, and the container removed when the shell
//! exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wharf_testkit::{require, TestEnv};

use crate::run::Engine;

/// A tmux server on its own socket, killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn new(dir: &Path) -> Tmux {
        Tmux {
            socket: dir.join("tmux.sock"),
        }
    }

    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self, target: &str) -> String {
        self.cmd(&["capture-pane", "-p", "-t", target])
    }

    /// Waits up to 10 s for `text` on the pane.
    fn wait_for(&self, target: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.screen(target);
            if screen.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_line(&self, target: &str, line: &str) {
        self.cmd(&["send-keys", "-t", target, "-l", line]);
        self.cmd(&["send-keys", "-t", target, "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[test]
fn run_it_in_a_terminal_resize_detach_and_reattach() {
    require!(Root, Busybox, Overlay, Registry, Skopeo, Tmux);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let tmux = Tmux::new(env.path());
    let wharf = env!("CARGO_BIN_EXE_wharf");
    let root = w.root.to_str().unwrap();
    // The shell around each client prints its exit status when it ends.
    let run = format!(
        "{wharf} --root {root} run --rm -it --name tty busybox sh; echo client-exit=$?; sleep 600"
    );
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-n",
        "run",
        "-x",
        "80",
        "-y",
        "24",
        &run,
    ]);
    tmux.wait_for("t:run", "/ #");

    // Typing reaches the shell, its output comes back.
    tmux.type_line("t:run", "echo $((6 * 7))x");
    tmux.wait_for("t:run", "42x");
    // The terminal's size, then a resize (SIGWINCH relayed).
    tmux.type_line("t:run", "stty size | tr ' ' x");
    tmux.wait_for("t:run", "24x80");
    tmux.cmd(&["resize-window", "-t", "t:run", "-x", "100", "-y", "30"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.type_line("t:run", "stty size | tr ' ' y");
    tmux.wait_for("t:run", "30y100");
    // A terminal's ctrl-c goes to the shell's foreground job, not to Wharf.
    tmux.type_line("t:run", "sleep 100");
    std::thread::sleep(Duration::from_millis(300));
    tmux.cmd(&["send-keys", "-t", "t:run", "C-c"]);
    tmux.type_line("t:run", "echo after-interrupt");
    tmux.wait_for("t:run", "after-interrupt");

    // ctrl-p ctrl-q detaches: the client exits 0, the container runs on.
    tmux.cmd(&["send-keys", "-t", "t:run", "C-p", "C-q"]);
    tmux.wait_for("t:run", "client-exit=0");
    assert_eq!(w.inspect("tty", "{{.State.Status}}"), "running");

    // Re-attach from a new window, keep typing, exit: --rm removes it.
    let attach = format!("{wharf} --root {root} attach tty; echo client-exit=$?; sleep 600");
    tmux.cmd(&["new-window", "-t", "t", "-n", "again", &attach]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.type_line("t:again", "echo back-$((1 + 1))");
    tmux.wait_for("t:again", "back-2");
    tmux.type_line("t:again", "exit 5");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.ok(&["ps", "-aq"]).is_empty() {
        assert!(Instant::now() < deadline, "the container was not removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // attach exits with the container's status.
    tmux.wait_for("t:again", "client-exit=5");
    assert!(w.mounts().is_empty());
}
