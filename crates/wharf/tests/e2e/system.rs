//! Whole-engine commands end to end on a busybox image: `stats`, `info`,
//! `version`, `port` and `system prune`, judged by their output and by
//! what `ps` sees afterwards.

use std::process::Command;

use wharf_testkit::{require, TestEnv};

use crate::Cli as Wharf;

/// A store with `busybox:latest` imported from the testkit's rootfs, and
/// the containers a test made, removed with `rm -f` on drop (before the
/// `TestEnv` sweeps what is left).
struct Fixture {
    wharf: Wharf,
    containers: Vec<String>,
    // Dropped last: kills processes and detaches mounts under its dir.
    env: TestEnv,
}

impl Fixture {
    fn new() -> Self {
        let env = TestEnv::new();
        let wharf = Wharf { root: env.root() };
        let rootfs = wharf_testkit::busybox_rootfs().unwrap();
        let tar = env.path().join("busybox.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        wharf.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
        Self {
            wharf,
            containers: Vec::new(),
            env,
        }
    }

    /// `run -d --name NAME busybox ARGS…`; returns the full id.
    fn run_detached(&mut self, args: &[&str]) -> (String, String) {
        let name = self.env.name();
        self.containers.push(name.clone());
        let mut all = vec!["run", "-d", "--name", &name, "busybox"];
        all.extend_from_slice(args);
        let id = self.wharf.ok(&all).trim().to_owned();
        assert_eq!(id.len(), 64, "{id:?}");
        (name, id)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = self.wharf.run(&["rm", "-f", name]);
        }
    }
}

#[test]
fn stats_info_and_port_see_a_running_container() {
    require!(Root, Busybox, Overlay);
    let mut fx = Fixture::new();
    let (name, id) = fx.run_detached(&["sleep", "100"]);
    let short = &id[..12];

    let out = fx.wharf.ok(&["stats", "--no-stream"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let cells = |line: &str| -> Vec<String> {
        line.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{out}"
    );
    let row = cells(lines[1]);
    assert_eq!(row.len(), 8, "{out}");
    assert_eq!(row[0], short, "{out}");
    assert_eq!(row[1], name, "{out}");
    assert!(row[2].ends_with('%'), "{out}");
    // Traffic of eth0 on the default bridge, received / sent.
    let (rx, tx) = row[5]
        .split_once(" / ")
        .unwrap_or_else(|| panic!("NET I/O: {out}"));
    assert!(rx.ends_with('B') && tx.ends_with('B'), "NET I/O: {out}");
    assert_eq!(row[7], "1", "PIDS: {out}");

    let json = fx.wharf.ok(&[
        "stats",
        "--no-stream",
        "--no-trunc",
        "--format",
        "json",
        &name,
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["ID"], id.as_str());
    assert_eq!(v["Name"], name.as_str());
    assert_eq!(v["Container"], name.as_str());
    assert_eq!(v["PIDs"], "1");
    let cpu = v["CPUPerc"].as_str().unwrap();
    assert!(cpu.ends_with('%'), "{cpu}");
    let (used, limit) = v["MemUsage"].as_str().unwrap().split_once(" / ").unwrap();
    assert_ne!(used, "0B");
    assert_ne!(limit, "0B");

    let (code, _, err) = fx.wharf.run(&["stats", "--no-stream", "no-such-container"]);
    assert_eq!(code, 125);
    assert_eq!(err, "wharf: error: no such container: no-such-container\n");

    let info: serde_json::Value =
        serde_json::from_str(&fx.wharf.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["Containers"], 1);
    assert_eq!(info["ContainersRunning"], 1);
    assert_eq!(info["ContainersStopped"], 0);
    assert_eq!(info["Images"], 1);
    assert_eq!(info["DefaultRuntime"], "wharf");
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["DockerRootDir"], fx.env.root().to_str().unwrap());
    let text = fx.wharf.ok(&["info"]);
    assert!(
        text.contains(" Containers: 1\n  Running: 1\n  Paused: 0\n  Stopped: 0\n Images: 1\n"),
        "{text}"
    );
    assert!(text.contains(" Cgroup Driver: cgroupfs\n"), "{text}");
    assert_eq!(
        fx.wharf
            .ok(&["info", "--format", "{{.ContainersRunning}}/{{.Images}}"]),
        "1/1\n"
    );

    assert_eq!(fx.wharf.ok(&["port", &name]), "");
    let (code, _, err) = fx.wharf.run(&["port", "no-such-container"]);
    assert_eq!(code, 125);
    assert_eq!(err, "wharf: error: no such container: no-such-container\n");
}

#[test]
fn system_prune_removes_exited_containers_only() {
    require!(Root, Busybox, Overlay);
    let mut fx = Fixture::new();
    let (_, running) = fx.run_detached(&["sleep", "100"]);
    let (_, exited) = fx.run_detached(&["true"]);
    fx.wharf.ok(&["wait", &exited]);

    // Without --force and without a terminal: refused, nothing removed.
    let (code, out, err) = fx.wharf.run(&["system", "prune"]);
    assert_eq!(code, 125, "{out}");
    assert!(err.contains("use --force"), "{err}");
    assert_eq!(fx.wharf.ok(&["ps", "-aq"]).lines().count(), 2);

    let out = fx.wharf.ok(&["system", "prune", "-f"]);
    assert!(
        out.starts_with(&format!("Deleted Containers:\n{exited}\n\n")),
        "{out}"
    );
    assert!(out.contains("\nTotal reclaimed space: "), "{out}");
    assert_eq!(
        fx.wharf.ok(&["ps", "-aq", "--no-trunc"]),
        format!("{running}\n")
    );
    // The image is tagged and used: it stays.
    assert_eq!(fx.wharf.ok(&["images", "-q"]).lines().count(), 1);

    // Nothing left to prune: just the total.
    assert_eq!(
        fx.wharf.ok(&["system", "prune", "-f", "--volumes"]),
        "Total reclaimed space: 0B\n"
    );
}

#[test]
fn version_prints_client_and_server() {
    let env = TestEnv::new();
    let wharf = Wharf { root: env.root() };
    let text = wharf.ok(&["version"]);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.starts_with(&format!(
            "Client:\n Version:           {version}\n API version:       1.43\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("\nServer: Wharf Engine\n Engine:\n"),
        "{text}"
    );
    assert!(text.contains(" wharf:\n"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&wharf.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(v["Client"]["Version"], version);
    assert_eq!(v["Server"]["Version"], version);
    assert_eq!(v["Server"]["Os"], "linux");
    assert_eq!(v["Server"]["Components"][1]["Name"], "wharf");
    assert_eq!(v["Server"]["Components"][1]["Details"]["Spec"], "1.2.0");
    assert_eq!(
        wharf.ok(&["version", "--format", "{{.Server.ApiVersion}}"]),
        "1.43\n"
    );
}
