//! cp, diff, export and commit end to end on busybox containers: Docker's
//! copy rules both ways, running and stopped containers, and symlinks in
//! the container (absolute, and swapped while copying) that must never
//! lead `cp` to the host's files (CVE-2018-15664).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wharf_testkit::{busybox_rootfs, leaked_mounts, require, TestEnv};

/// The `wharf` command line over a test's store, with busybox imported;
/// removes the containers it made on drop.
struct Wharf {
    root: PathBuf,
    containers: std::cell::RefCell<Vec<String>>,
}

impl Drop for Wharf {
    fn drop(&mut self) {
        for c in self.containers.borrow().iter() {
            let _ = self.run(&["rm", "-f", c]);
        }
    }
}

impl Wharf {
    fn new(env: &TestEnv) -> Self {
        let wharf = Self {
            root: env.path().join("store"),
            containers: std::cell::RefCell::new(Vec::new()),
        };
        let tar = env.path().join("busybox.tar");
        let rootfs = busybox_rootfs().unwrap();
        assert!(Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success());
        wharf.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
        wharf
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    fn output(&self, args: &[&str], input: Option<&[u8]>) -> (i32, Vec<u8>, String) {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wharf");
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let (code, out, err) = self.output(args, None);
        (code, String::from_utf8_lossy(&out).into_owned(), err)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "wharf {args:?}: stdout {out:?} stderr {err:?}");
        out
    }

    fn fails(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 125, "wharf {args:?}: stdout {out:?} stderr {err:?}");
        err
    }

    /// `run -d` of busybox `sleep 1000` after `setup` (a shell script).
    fn container(&self, env: &TestEnv, setup: &str) -> (String, String) {
        let name = env.name();
        self.containers.borrow_mut().push(name.clone());
        let script = format!("{setup}\ntouch /.ready\nexec sleep 1000");
        let id = self
            .ok(&["run", "-d", "--name", &name, "busybox", "sh", "-c", &script])
            .trim()
            .to_owned();
        assert!(
            crate::eventually(|| self.run(&["exec", &name, "test", "-e", "/.ready"]).0 == 0),
            "container {name} never got ready"
        );
        self.ok(&["exec", &name, "rm", "/.ready"]);
        (name, id)
    }

    /// The regular files of the tar `cp CONTAINER:PATH -` writes: (name,
    /// content).
    fn cp_out(&self, from: &str) -> Result<Vec<(String, String)>, String> {
        let (code, out, err) = self.output(&["cp", from, "-"], None);
        if code != 0 {
            return Err(err);
        }
        let mut files = Vec::new();
        let mut archive = tar::Archive::new(&out[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            if entry.header().entry_type() == tar::EntryType::Regular {
                let mut content = String::new();
                std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
                files.push((name, content));
            } else {
                files.push((name, String::new()));
            }
        }
        Ok(files)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cp_through_container_symlinks_never_reaches_the_host() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    // The same absolute path on the host and in the container.
    let dir = env.path().join("shared");
    fs_err::create_dir(&dir).unwrap();
    fs_err::write(dir.join("secret"), "host-secret\n").unwrap();
    let host_file = env.path().join("payload");
    fs_err::write(&host_file, "payload\n").unwrap();
    let (c, _) = wharf.container(
        &env,
        &format!(
            "mkdir -p {d}; echo container > {d}/secret; ln -s / /evil; ln -s ../../../.. /up",
            d = dir.display()
        ),
    );

    // Reading through an absolute and a relative symlink to / gives the
    // container's own files.
    for link in ["/evil", "/up"] {
        let files = wharf
            .cp_out(&format!("{c}:{link}{}/secret", dir.display()))
            .unwrap();
        assert_eq!(files, vec![("secret".into(), "container\n".into())]);
    }
    let hostname = wharf.cp_out(&format!("{c}:/evil/etc/hostname"));
    let host_hostname = fs_err::read_to_string("/etc/hostname").unwrap_or_default();
    if let Ok(files) = hostname {
        assert_ne!(files[0].1, host_hostname, "read the host's /etc/hostname");
    }
    let files = wharf.cp_out(&format!("{c}:/evil/etc/passwd")).unwrap();
    assert_ne!(
        files[0].1,
        fs_err::read_to_string("/etc/passwd").unwrap(),
        "read the host's /etc/passwd"
    );

    // Writing through them lands in the container.
    for (link, name) in [("/evil", "w1"), ("/up", "w2")] {
        wharf.ok(&[
            "cp",
            path(&host_file),
            &format!("{c}:{link}{}/{name}", dir.display()),
        ]);
        assert!(!dir.join(name).exists(), "cp wrote {name} on the host");
        let files = wharf
            .cp_out(&format!("{c}:{}/{name}", dir.display()))
            .unwrap();
        assert_eq!(files, vec![(name.into(), "payload\n".into())]);
    }
    // A tar with a symlink out and a file through it, copied in.
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    builder.append_link(&mut h, "link", &dir).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    builder
        .append_data(&mut h, "link/w3", &b"tar\n"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let (code, _, err) = wharf.output(&["cp", "-", &format!("{c}:/tmp")], Some(&tar));
    assert_eq!(code, 0, "{err}");
    assert!(!dir.join("w3").exists(), "cp - wrote through a tar symlink");
    let files = wharf.cp_out(&format!("{c}:{}/w3", dir.display())).unwrap();
    assert_eq!(files, vec![("w3".into(), "tar\n".into())]);
    // ... and back out to the host: the symlink comes as a symlink.
    let out = env.path().join("out");
    fs_err::create_dir(&out).unwrap();
    wharf.ok(&["cp", &format!("{c}:/tmp/."), path(&out)]);
    assert_eq!(fs_err::read_link(out.join("link")).unwrap(), dir);
    assert!(!dir.join("w3").exists());
    // A ".." entry is refused.
    let mut raw = tar::Header::new_gnu();
    raw.set_size(4);
    raw.set_mode(0o644);
    raw.set_entry_type(tar::EntryType::Regular);
    raw.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../../escaped");
    raw.set_cksum();
    let mut bad = raw.as_bytes().to_vec();
    bad.extend_from_slice(b"bad\n");
    bad.resize(512 * 4, 0);
    let (code, _, err) = wharf.output(&["cp", "-", &format!("{c}:/tmp")], Some(&bad));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("refusing tar entry"), "{err}");

    assert_eq!(
        fs_err::read_to_string(dir.join("secret")).unwrap(),
        "host-secret\n"
    );
}

#[test]
fn cp_during_a_symlink_swap_race_stays_in_the_container() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let dir = env.path().join("shared");
    fs_err::create_dir(&dir).unwrap();
    fs_err::write(dir.join("secret"), "host-secret\n").unwrap();
    let host_file = env.path().join("payload");
    fs_err::write(&host_file, "payload\n").unwrap();
    // /data flips between a directory and a symlink to / as fast as the
    // container can.
    let (c, _) = wharf.container(
        &env,
        &format!(
            "mkdir -p {d}; echo container > {d}/secret\n\
             (while :; do mkdir -p /data{d}; ln -s / /data.new; \
              rm -rf /data; mv /data.new /data; rm /data; done) &",
            d = dir.display()
        ),
    );
    let source = format!("{c}:/data{}/secret", dir.display());
    let target = format!("{c}:/data{}/x", dir.display());
    for _ in 0..60 {
        if let Ok(files) = wharf.cp_out(&source) {
            for (_, content) in files {
                assert_ne!(content, "host-secret\n", "cp read the host's file");
            }
        }
        let _ = wharf.run(&["cp", path(&host_file), &target]);
        assert!(!dir.join("x").exists(), "cp wrote on the host");
    }
    assert_eq!(
        fs_err::read_to_string(dir.join("secret")).unwrap(),
        "host-secret\n"
    );
}

#[test]
fn cp_follows_dockers_rules_on_running_and_stopped_containers() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let (c, id) = wharf.container(
        &env,
        "mkdir -p /data/sub; echo one > /data/f; echo two > /data/sub/g; \
         chown -R 1000:1000 /data; ln -s /data /link",
    );
    let host = env.path().join("host");
    fs_err::create_dir(&host).unwrap();

    // A directory to a missing destination: it becomes the destination.
    wharf.ok(&["cp", &format!("{c}:/data"), path(&host.join("copy"))]);
    assert_eq!(
        fs_err::read_to_string(host.join("copy/sub/g")).unwrap(),
        "two\n"
    );
    // To an existing directory: it goes inside; `/.`: its contents do.
    wharf.ok(&["cp", &format!("{c}:/data"), path(&host)]);
    assert_eq!(
        fs_err::read_to_string(host.join("data/f")).unwrap(),
        "one\n"
    );
    let contents = host.join("contents");
    fs_err::create_dir(&contents).unwrap();
    wharf.ok(&["cp", &format!("{c}:/data/."), path(&contents)]);
    assert_eq!(fs_err::read_to_string(contents.join("f")).unwrap(), "one\n");
    // Copied out files belong to the caller; -a keeps the owners.
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(fs_err::metadata(host.join("data/f")).unwrap().uid(), 0);
    wharf.ok(&[
        "cp",
        "-a",
        &format!("{c}:/data/f"),
        path(&host.join("kept")),
    ]);
    assert_eq!(fs_err::metadata(host.join("kept")).unwrap().uid(), 1000);
    // A file onto an existing file replaces it; a symlink is copied as one
    // unless -L.
    wharf.ok(&["cp", &format!("{c}:/data/sub/g"), path(&host.join("kept"))]);
    assert_eq!(fs_err::read_to_string(host.join("kept")).unwrap(), "two\n");
    wharf.ok(&["cp", &format!("{c}:/link"), path(&host.join("l"))]);
    assert!(fs_err::symlink_metadata(host.join("l"))
        .unwrap()
        .file_type()
        .is_symlink());
    wharf.ok(&["cp", "-L", &format!("{c}:/link"), path(&host.join("l2"))]);
    assert_eq!(fs_err::read_to_string(host.join("l2/f")).unwrap(), "one\n");

    // Docker's errors.
    let err = wharf.fails(&["cp", &format!("{c}:/nope"), path(&host)]);
    assert_eq!(
        err,
        format!("wharf: error: could not find the file /nope in container {c}\n")
    );
    let err = wharf.fails(&["cp", &format!("{c}:/data"), &format!("{c}:/x")]);
    assert!(
        err.contains("copying between containers is not supported"),
        "{err}"
    );
    let err = wharf.fails(&["cp", path(&host), path(&host)]);
    assert!(
        err.contains("must specify at least one container source"),
        "{err}"
    );
    let err = wharf.fails(&["cp", path(&host.join("copy")), &format!("{c}:/data/f")]);
    assert!(err.contains("cannot copy directory"), "{err}");
    let err = wharf.fails(&["cp", path(&host.join("kept")), &format!("{c}:/none/")]);
    assert!(err.contains("no such directory"), "{err}");

    // Into the container: root owns what is copied unless -a.
    fs_err::write(host.join("in"), "in\n").unwrap();
    std::os::unix::fs::chown(host.join("in"), Some(1234), Some(1234)).unwrap();
    wharf.ok(&["cp", path(&host.join("in")), &format!("{c}:/data/sub")]);
    wharf.ok(&[
        "cp",
        "-a",
        path(&host.join("in")),
        &format!("{c}:/data/in2"),
    ]);
    let ls = wharf.ok(&["exec", &c, "ls", "-n", "/data/sub/in", "/data/in2"]);
    let owners: Vec<(String, String)> = ls
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_owned(), f[3].to_owned())
        })
        .collect();
    assert_eq!(
        owners,
        vec![
            ("1234".to_owned(), "1234".to_owned()),
            ("0".to_owned(), "0".to_owned())
        ],
        "{ls}"
    );

    // Stopped: the rootfs is mounted for the copy only.
    wharf.ok(&["stop", "-t", "0", &c]);
    assert!(leaked_mounts(&id).is_empty());
    wharf.ok(&["cp", path(&host.join("in")), &format!("{c}:/stopped")]);
    assert_eq!(
        wharf.cp_out(&format!("{c}:/stopped")).unwrap(),
        vec![("stopped".to_owned(), "in\n".to_owned())]
    );
    assert!(leaked_mounts(&id).is_empty(), "{:?}", leaked_mounts(&id));
    wharf.ok(&["start", &c]);
    assert_eq!(wharf.ok(&["exec", &c, "cat", "/stopped"]), "in\n");
}

#[test]
fn diff_export_and_commit() {
    require!(Root);
    let env = TestEnv::new();
    let wharf = Wharf::new(&env);
    let (c, id) = wharf.container(&env, "mkdir /data; echo hi > /data/f; rm /bin/vi");
    assert_eq!(
        wharf.ok(&["diff", &c]),
        "C /bin\nD /bin/vi\nA /data\nA /data/f\n"
    );
    assert_eq!(
        wharf.ok(&["container", "diff", &c]),
        "C /bin\nD /bin/vi\nA /data\nA /data/f\n"
    );

    wharf.ok(&["stop", "-t", "0", &c]);
    let tar = env.path().join("export.tar");
    wharf.ok(&["export", "-o", path(&tar), &c]);
    assert!(leaked_mounts(&id).is_empty());
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let names = String::from_utf8(listing.stdout).unwrap();
    assert!(names.lines().any(|l| l == "data/f"), "{names}");
    assert!(names.lines().any(|l| l == "bin/busybox"), "{names}");
    assert!(!names.lines().any(|l| l == "bin/vi"), "{names}");

    let out = wharf.ok(&[
        "commit",
        "-m",
        "a message",
        "-a",
        "someone",
        "-c",
        "ENV FOO=bar",
        "-c",
        "CMD [\"cat\", \"/data/f\"]",
        &c,
        "committed:v1",
    ]);
    assert!(out.starts_with("sha256:") && out.len() == 72, "{out:?}");
    let inspect: serde_json::Value =
        serde_json::from_str(&wharf.ok(&["image", "inspect", "committed:v1"])).unwrap();
    let image = &inspect[0];
    assert_eq!(image["Author"], "someone", "{image}");
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["cat", "/data/f"])
    );
    assert!(image["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("FOO=bar")));
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let name = env.name();
    wharf.containers.borrow_mut().push(name.clone());
    assert_eq!(wharf.ok(&["run", "--name", &name, "committed:v1"]), "hi\n");
    let (code, _, _) = wharf.run(&["run", "--rm", "committed:v1", "test", "-e", "/bin/vi"]);
    assert_eq!(code, 1, "vi was deleted before the commit");
}
