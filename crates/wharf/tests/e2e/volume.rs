//! Volume commands end to end: create, ls, inspect, rm and prune judged by
//! what the next command sees and what is on disk; Docker's error texts
//! and exit codes.

use wharf_testkit::{require, TestEnv};

/// The `wharf` command line over a test's own store root.
struct Wharf(crate::Cli);

impl std::ops::Deref for Wharf {
    type Target = crate::Cli;
    fn deref(&self) -> &crate::Cli {
        &self.0
    }
}

impl Wharf {
    fn new(env: &TestEnv) -> Self {
        Self(crate::Cli { root: env.root() })
    }

    fn names(&self) -> Vec<String> {
        self.ok(&["volume", "ls", "-q"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["volume", "inspect", name])).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        v[0].clone()
    }
}

#[test]
fn create_ls_inspect_rm() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let name = env.name();
    assert_eq!(
        wharf.ok(&["volume", "create", &name, "--label", "env=prod"]),
        format!("{name}\n")
    );
    // Idempotent, as Docker's.
    assert_eq!(wharf.ok(&["volume", "create", &name]), format!("{name}\n"));
    assert_eq!(
        wharf.ok(&["volume", "ls"]),
        format!("DRIVER    VOLUME NAME\nlocal     {name}\n")
    );

    let v = wharf.inspect(&name);
    let mountpoint = env.root().join("volumes").join(&name).join("_data");
    assert_eq!(v["Name"], name.as_str());
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Mountpoint"], mountpoint.to_str().unwrap());
    assert_eq!(v["Labels"], serde_json::json!({"env": "prod"}));
    assert_eq!(v["Options"], serde_json::Value::Null);
    let created = v["CreatedAt"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(created).is_ok(), "{created}");
    assert!(mountpoint.is_dir());

    let json = wharf.ok(&["volume", "ls", "--format", "json"]);
    let line: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(line["Name"], name.as_str());
    assert_eq!(line["Labels"], "env=prod");
    assert_eq!(
        wharf.ok(&["volume", "ls", "--format", "{{.Name}}"]),
        format!("{name}\n")
    );
    assert_eq!(
        wharf.ok(&["volume", "ls", "--filter", "label=env=dev"]),
        "DRIVER    VOLUME NAME\n"
    );

    // rm reports each name; a missing one fails alone, exit 1.
    let (code, out, err) = wharf.run(&["volume", "rm", &name, "no-such-volume"]);
    assert_eq!(code, 1, "stdout {out:?} stderr {err:?}");
    assert_eq!(out, format!("{name}\n"));
    assert_eq!(err, "wharf: error: no such volume: no-such-volume\n");
    assert!(!mountpoint.exists());
    assert!(wharf.names().is_empty());
    let (code, _, err) = wharf.run(&["volume", "inspect", &name]);
    assert_eq!(code, 1);
    assert_eq!(err, format!("wharf: error: no such volume: {name}\n"));
    assert_eq!(
        wharf.ok(&["volume", "rm", "-f", "no-such-volume"]),
        "no-such-volume\n"
    );
}

#[test]
fn invalid_names_drivers_and_options_are_refused() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let (code, out, err) = wharf.run(&["volume", "create", "my$vol"]);
    assert_eq!(code, 125, "stdout {out:?}");
    assert_eq!(
        err,
        "wharf: error: invalid volume name \"my$vol\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are \
         allowed, at least two characters (to mount a host directory, use an absolute path)\n"
    );
    let (code, _, err) = wharf.run(&["volume", "create", "-d", "nfs", "data1"]);
    assert_eq!(code, 125);
    assert_eq!(
        err,
        "wharf: error: volume driver nfs is not supported: only local\n"
    );
    let (code, _, err) = wharf.run(&["volume", "create", "-o", "colour=blue", "data1"]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid volume option \"colour\""), "{err}");
    assert!(wharf.names().is_empty());
    assert!(!env.root().join("volumes/data1").exists());
}

#[test]
fn create_with_other_options_is_a_conflict() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let name = env.name();
    wharf.ok(&["volume", "create", &name]);
    let (code, _, err) = wharf.run(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        &name,
    ]);
    assert_eq!(code, 125);
    assert_eq!(
        err,
        format!("wharf: error: create volume {name}: it exists with different options\n")
    );
}

#[test]
fn tmpfs_volume_inspect_shows_its_options() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let name = env.name();
    wharf.ok(&[
        "volume",
        "create",
        "--driver",
        "local",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=64m,uid=1000",
        &name,
    ]);
    let v = wharf.inspect(&name);
    assert_eq!(
        v["Options"],
        serde_json::json!({"type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000"})
    );
    assert_eq!(v["Labels"], serde_json::Value::Null);
}

#[test]
fn prune_removes_unused_anonymous_volumes_unless_all() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let anonymous = wharf.ok(&["volume", "create"]).trim_end().to_owned();
    assert_eq!(anonymous.len(), 64);
    let named = env.name();
    wharf.ok(&["volume", "create", &named, "--label", "keep=yes"]);
    let other = env.name();
    wharf.ok(&["volume", "create", &other]);
    fs_err::write(
        env.root().join("volumes").join(&other).join("_data/file"),
        vec![0u8; 1500],
    )
    .unwrap();

    // No terminal and no --force: refused, nothing removed.
    let (code, _, err) = wharf.run(&["volume", "prune"]);
    assert_eq!(code, 125);
    assert!(err.contains("use --force"), "{err}");
    assert_eq!(wharf.names().len(), 3);

    assert_eq!(
        wharf.ok(&["volume", "prune", "-f"]),
        format!("Deleted Volumes:\n{anonymous}\n\nTotal reclaimed space: 0B\n")
    );
    let mut left = vec![named.clone(), other.clone()];
    left.sort();
    assert_eq!(wharf.names(), left);

    assert_eq!(
        wharf.ok(&["volume", "prune", "-a", "-f", "--filter", "label!=keep"]),
        format!("Deleted Volumes:\n{other}\n\nTotal reclaimed space: 1.5kB\n")
    );
    assert_eq!(wharf.names(), std::slice::from_ref(&named));
    assert_eq!(
        wharf.ok(&["volume", "prune", "--force"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(wharf.names(), [named]);
}
