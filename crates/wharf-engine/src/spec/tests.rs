//! Merge rules and the golden defaults of [`super::build_spec`].

use super::*;
use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

fn image(env: &[&str], entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfiguration {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut config = ConfigBuilder::default().env(strings(env));
    if let Some(e) = entrypoint {
        config = config.entrypoint(strings(e));
    }
    if let Some(c) = cmd {
        config = config.cmd(strings(c));
    }
    ImageConfigurationBuilder::default()
        .config(config.build().unwrap())
        .build()
        .unwrap()
}

fn host() -> HostFacts {
    HostFacts {
        rlimit_nofile_hard: 20_000,
        rlimit_nproc_hard: 96_365,
        cgroup_v2: true,
        bounding_caps: None,
    }
}

fn request() -> ContainerRequest {
    ContainerRequest {
        hostname: "abc123".into(),
        ..ContainerRequest::default()
    }
}

fn build(img: &ImageConfiguration, req: &ContainerRequest) -> Result<Spec, EngineError> {
    let rootfs = tempfile::tempdir().unwrap();
    build_spec(img, req, rootfs.path(), Path::new("/run/c"), &host()).map(|p| p.spec)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn env_image_then_cli_with_cli_winning_per_key() {
    let img = image(
        &["A=image", "B=image", "PATH=/image/bin"],
        None,
        Some(&["sh"]),
    );
    let req = ContainerRequest {
        env: strings(&["B=cli", "C=cli", "A"]),
        ..request()
    };
    let spec = build(&img, &req).unwrap();
    assert_eq!(
        spec.process().as_ref().unwrap().env().clone().unwrap(),
        strings(&[
            "PATH=/image/bin",
            "HOSTNAME=abc123",
            "B=cli",
            "C=cli",
            "HOME=/"
        ])
    );
}

#[test]
fn path_defaults_when_the_image_has_none_and_tty_sets_term() {
    let img = image(&[], None, Some(&["sh"]));
    let req = ContainerRequest {
        tty: true,
        ..request()
    };
    let env = build(&img, &req)
        .unwrap()
        .process()
        .clone()
        .unwrap()
        .env()
        .clone()
        .unwrap();
    assert_eq!(
        env,
        strings(&[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=abc123",
            "TERM=xterm",
            "HOME=/"
        ])
    );
}

fn args(img: &ImageConfiguration, req: &ContainerRequest) -> Result<Vec<String>, EngineError> {
    build(img, req).map(|s| s.process().clone().unwrap().args().clone().unwrap())
}

#[test]
fn entrypoint_and_cmd_follow_docker() {
    let img = image(&[], Some(&["/entry"]), Some(&["default", "cmd"]));
    assert_eq!(
        args(&img, &request()).unwrap(),
        strings(&["/entry", "default", "cmd"])
    );
    // Args replace Cmd only.
    let req = ContainerRequest {
        cmd: strings(&["x"]),
        ..request()
    };
    assert_eq!(args(&img, &req).unwrap(), strings(&["/entry", "x"]));
    // --entrypoint replaces the entrypoint and drops the image's Cmd.
    let req = ContainerRequest {
        entrypoint: Some(strings(&["/other"])),
        ..request()
    };
    assert_eq!(args(&img, &req).unwrap(), strings(&["/other"]));
    // --entrypoint "" clears it.
    let req = ContainerRequest {
        entrypoint: Some(vec![]),
        cmd: strings(&["sh", "-c", "true"]),
        ..request()
    };
    assert_eq!(args(&img, &req).unwrap(), strings(&["sh", "-c", "true"]));
}

#[test]
fn no_command_at_all_is_a_clear_error() {
    let img = image(&[], None, None);
    let err = args(&img, &request()).unwrap_err();
    assert!(matches!(err, EngineError::NoCommand));
    assert_eq!(
        err.to_string(),
        "no command specified: the image has no entrypoint or cmd and none was given"
    );
    let img = image(&[], Some(&["/entry"]), Some(&["cmd"]));
    let req = ContainerRequest {
        entrypoint: Some(vec![]),
        ..request()
    };
    assert!(matches!(args(&img, &req), Err(EngineError::NoCommand)));
}

#[test]
fn init_runs_in_front_of_the_command() {
    let img = image(&[], None, Some(&["sh"]));
    let req = ContainerRequest {
        init: Some("/usr/libexec/wharf/init".into()),
        ..request()
    };
    let spec = build(&img, &req).unwrap();
    assert_eq!(
        spec.process().clone().unwrap().args().clone().unwrap(),
        strings(&[INIT_PATH, "--", "sh"])
    );
    assert!(spec
        .mounts()
        .clone()
        .unwrap()
        .iter()
        .any(|m| m.destination() == Path::new(INIT_PATH)));
}

#[test]
fn workdir_defaults_to_root_and_must_be_absolute() {
    let img = image(&[], None, Some(&["sh"]));
    let cwd = |req: &ContainerRequest| {
        build(&img, req).map(|s| s.process().clone().unwrap().cwd().clone())
    };
    assert_eq!(cwd(&request()).unwrap(), Path::new("/"));
    let req = ContainerRequest {
        workdir: Some("/srv/../app".into()),
        ..request()
    };
    assert_eq!(cwd(&req).unwrap(), Path::new("/app"));
    let req = ContainerRequest {
        workdir: Some("app".into()),
        ..request()
    };
    assert_eq!(
        cwd(&req).unwrap_err().to_string(),
        "invalid --workdir \"app\": it must be an absolute path"
    );
}

fn caps_of(req: &ContainerRequest) -> Result<Vec<String>, EngineError> {
    let spec = build(&image(&[], None, Some(&["sh"])), req)?;
    let caps = spec
        .process()
        .clone()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    let mut names: Vec<String> = caps
        .effective()
        .clone()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    Ok(names)
}

#[test]
fn cap_add_and_drop_with_all() {
    let req = ContainerRequest {
        cap_add: strings(&["net_admin"]),
        cap_drop: strings(&["CAP_CHOWN", "MKNOD"]),
        ..request()
    };
    let caps = caps_of(&req).unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
    assert!(!caps.contains(&"CAP_CHOWN".to_owned()) && !caps.contains(&"CAP_MKNOD".to_owned()));
    assert_eq!(caps.len(), 13);

    let req = ContainerRequest {
        cap_drop: strings(&["ALL"]),
        cap_add: strings(&["KILL"]),
        ..request()
    };
    assert_eq!(caps_of(&req).unwrap(), strings(&["CAP_KILL"]));

    let req = ContainerRequest {
        cap_add: strings(&["ALL"]),
        cap_drop: strings(&["SYS_ADMIN"]),
        ..request()
    };
    assert_eq!(caps_of(&req).unwrap().len(), 40);

    let req = ContainerRequest {
        cap_add: strings(&["BOGUS"]),
        ..request()
    };
    assert_eq!(
        caps_of(&req).unwrap_err().to_string(),
        "unknown capability \"BOGUS\""
    );
}

#[test]
fn seccomp_follows_security_opt_and_no_new_privileges() {
    let img = image(&[], None, Some(&["sh"]));
    let mut req = request();
    req.security.seccomp = SeccompOption::Unconfined;
    req.security.no_new_privileges = true;
    let spec = build(&img, &req).unwrap();
    assert!(spec.linux().clone().unwrap().seccomp().is_none());
    assert_eq!(
        spec.process().clone().unwrap().no_new_privileges(),
        Some(true)
    );

    // An explicit profile applies even when privileged.
    let mut req = request();
    req.privileged = true;
    req.security.seccomp = SeccompOption::Profile(Box::new(wharf_runtime::default_seccomp(&[])));
    assert!(build(&img, &req)
        .unwrap()
        .linux()
        .clone()
        .unwrap()
        .seccomp()
        .is_some());
}

#[test]
fn systempaths_unconfined_clears_masked_and_readonly_paths_only() {
    let mut req = request();
    req.security.systempaths_unconfined = true;
    let spec = build(&image(&[], None, Some(&["sh"])), &req).unwrap();
    let linux = spec.linux().clone().unwrap();
    assert_eq!(linux.masked_paths().clone().unwrap_or_default().len(), 0);
    assert_eq!(linux.readonly_paths().clone().unwrap_or_default().len(), 0);
    assert!(linux.seccomp().is_some());
}

#[test]
fn read_only_root_makes_sys_and_network_files_ro_but_not_dev() {
    let req = ContainerRequest {
        read_only: true,
        privileged: true,
        ..request()
    };
    let spec = build(&image(&[], None, Some(&["sh"])), &req).unwrap();
    assert_eq!(spec.root().clone().unwrap().readonly(), Some(true));
    for m in spec.mounts().clone().unwrap() {
        let ro = m
            .options()
            .clone()
            .unwrap_or_default()
            .contains(&"ro".to_owned());
        let dest = m.destination().display().to_string();
        let writable =
            ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"].contains(&dest.as_str());
        assert_eq!(ro, !writable, "{dest}");
    }
}

#[test]
fn network_host_creates_no_network_namespace() {
    let req = ContainerRequest {
        network: NetworkMode::Host,
        ..request()
    };
    let spec = build(&image(&[], None, Some(&["sh"])), &req).unwrap();
    let types: Vec<String> = spec
        .linux()
        .clone()
        .unwrap()
        .namespaces()
        .clone()
        .unwrap()
        .iter()
        .map(|n| {
            serde_json::to_value(n.typ())
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, strings(&["mount", "uts", "pid", "ipc", "cgroup"]));
}

#[test]
fn net_sysctls_are_refused_with_host_network() {
    let sysctls = vec![("net.ipv4.ip_forward".to_owned(), "1".to_owned())];
    let req = ContainerRequest {
        sysctls: sysctls.clone(),
        ..request()
    };
    let spec = build(&image(&[], None, Some(&["sh"])), &req).unwrap();
    assert_eq!(
        spec.linux().clone().unwrap().sysctl().clone().unwrap()["net.ipv4.ip_forward"],
        "1"
    );
    let req = ContainerRequest {
        sysctls,
        network: NetworkMode::Host,
        ..request()
    };
    assert_eq!(
        build(&image(&[], None, Some(&["sh"])), &req)
            .unwrap_err()
            .to_string(),
        "invalid --sysctl net.ipv4.ip_forward: net.* sysctls are not allowed with --network host"
    );
}

#[test]
fn binds_tmpfs_and_devices() {
    let req = ContainerRequest {
        binds: vec![BindMount {
            source: "/srv/data".into(),
            destination: "/data".into(),
            read_only: true,
            propagation: Some("rshared".into()),
        }],
        tmpfs: vec![TmpfsMount {
            destination: "/dev/shm".into(),
            options: strings(&["size=1m"]),
        }],
        devices: vec![DeviceMapping {
            destination: "/dev/fuse".into(),
            block: false,
            major: 10,
            minor: 229,
            file_mode: 0o666,
            access: "rwm".into(),
        }],
        ..request()
    };
    let spec =
        serde_json::to_value(build(&image(&[], None, Some(&["sh"])), &req).unwrap()).unwrap();
    let mounts = spec["mounts"].as_array().unwrap();
    let shm: Vec<_> = mounts
        .iter()
        .filter(|m| m["destination"] == "/dev/shm")
        .collect();
    assert_eq!(shm.len(), 1, "a user mount replaces the default one");
    assert_eq!(
        shm[0]["options"],
        json!(["nosuid", "noexec", "nodev", "size=1m"])
    );
    let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
    assert_eq!(data["options"], json!(["rbind", "rshared", "ro"]));
    assert_eq!(spec["linux"]["devices"][0]["path"], "/dev/fuse");
    let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(
        rules.last().unwrap(),
        &json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    );

    let bad = ContainerRequest {
        binds: vec![BindMount {
            source: "/x".into(),
            destination: "/".into(),
            read_only: false,
            propagation: None,
        }],
        ..request()
    };
    assert!(build(&image(&[], None, Some(&["sh"])), &bad).is_err());
}

#[test]
fn stop_signal_comes_from_the_image() {
    let rootfs = tempfile::tempdir().unwrap();
    let plan = build_spec(
        &image(&[], None, Some(&["sh"])),
        &request(),
        rootfs.path(),
        Path::new("/c"),
        &host(),
    )
    .unwrap();
    assert_eq!(plan.stop_signal, "SIGTERM");
}

/// The effective defaults, projected as the golden file lists them.
fn effective(spec: &Spec) -> Value {
    let v = serde_json::to_value(spec).unwrap();
    let sorted = |caps: &Value| {
        let mut c: Vec<String> = caps
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        c.sort();
        json!(c)
    };
    let caps = &v["process"]["capabilities"];
    let mounts: Vec<Value> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut out = json!({"destination": m["destination"], "type": m["type"], "options": m["options"]});
            if m["type"] == "bind" {
                out["source"] = m["source"].clone();
            }
            out
        })
        .collect();
    json!({
        "capabilities": {
            "bounding": sorted(&caps["bounding"]),
            "effective": sorted(&caps["effective"]),
            "permitted": sorted(&caps["permitted"]),
            "inheritable": sorted(&caps["inheritable"]),
            "ambient": sorted(&caps["ambient"]),
        },
        "noNewPrivileges": v["process"]["noNewPrivileges"],
        "seccomp": v["linux"]["seccomp"].is_object(),
        "maskedPaths": v["linux"].get("maskedPaths").cloned().unwrap_or(json!([])),
        "readonlyPaths": v["linux"].get("readonlyPaths").cloned().unwrap_or(json!([])),
        "mounts": mounts,
        "devices": v["linux"]["resources"]["devices"],
        "pids": v["linux"]["resources"]["pids"],
        "rlimits": v["process"]["rlimits"],
        "namespaces": v["linux"]["namespaces"],
    })
}

fn golden() -> Value {
    serde_json::from_str(include_str!("../../tests/golden/default-spec.json")).unwrap()
}

#[test]
fn golden_plain_defaults() {
    let spec = build(&image(&[], None, Some(&["sh"])), &request()).unwrap();
    assert_eq!(effective(&spec), golden()["plain"]);
}

#[test]
fn golden_privileged_defaults() {
    let req = ContainerRequest {
        privileged: true,
        ..request()
    };
    let spec = build(&image(&[], None, Some(&["sh"])), &req).unwrap();
    let mut expected = golden()["privileged"].clone();
    let bounding = expected["capabilities"]["bounding"].clone();
    expected["capabilities"]["effective"] = bounding.clone();
    expected["capabilities"]["permitted"] = bounding;
    assert_eq!(effective(&spec), expected);
}

#[test]
fn golden_lists_match_the_constants() {
    let g = golden();
    let mut defaults: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    defaults.sort_unstable();
    assert_eq!(g["plain"]["capabilities"]["bounding"], json!(defaults));
    assert_eq!(
        g["privileged"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        41
    );
}
