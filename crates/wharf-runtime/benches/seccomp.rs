//! Micro-benchmark: what the default seccomp profile costs a container start.
//!
//! Three steps, timed separately (median and p90 of N runs):
//! - compile: OCI object → libseccomp filter → BPF, what runc and crun do on
//!   every start;
//! - cached: the same program read back from Wharf's cache directory, what a
//!   Wharf start does once the profile was compiled;
//! - install: `seccomp(SECCOMP_SET_MODE_FILTER)` of that program, timed in a
//!   fresh child process each run (a filter cannot be removed once loaded).
//!
//! Run with `bench/seccomp-compile.sh` (or `cargo bench -p wharf-runtime
//! --bench seccomp -- [N]`). Prints a Markdown table on stdout.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const CHILD_FLAG: &str = "--install-child";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == CHILD_FLAG) {
        let path = args.get(pos + 1).context("program path")?;
        return install_child(path);
    }
    // cargo bench passes `--bench`; the first number is N.
    let n: usize = args
        .iter()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);

    let caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).collect();
    let profile = wharf_runtime::default_seccomp(&caps);
    let cache = tempfile::tempdir()?;
    let cache_dir = cache.path().join("seccomp");

    let compile = time(n, || {
        wharf_runtime::compile_seccomp_program(&profile, None).map(drop)
    })?;
    let program = wharf_runtime::compile_seccomp_program(&profile, Some(&cache_dir))?;
    let cached = time(n, || {
        wharf_runtime::compile_seccomp_program(&profile, Some(&cache_dir)).map(drop)
    })?;
    let program_path = cache.path().join("program.bpf");
    fs_err::write(&program_path, &program)?;
    let exe = std::env::current_exe()?;
    let mut install = Vec::with_capacity(n);
    for _ in 0..n {
        let out = std::process::Command::new(&exe)
            .arg(CHILD_FLAG)
            .arg(&program_path)
            .output()?;
        if !out.status.success() {
            bail!(
                "install child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let nanos: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        install.push(Duration::from_nanos(nanos));
    }

    let version = libseccomp_version();
    println!("Default seccomp profile (Docker-equivalent, default capabilities), N={n}, libseccomp {version}");
    println!("BPF program: {} instructions\n", program.len() / 8);
    println!("| step | median | p90 |");
    println!("|---|---|---|");
    for (name, mut samples) in [
        ("compile (OCI → libseccomp → BPF)", compile),
        ("cached (read compiled BPF)", cached),
        ("install (seccomp(2) in a fresh process)", install),
    ] {
        samples.sort();
        println!(
            "| {name} | {} | {} |",
            fmt(samples[samples.len() / 2]),
            fmt(samples[samples.len() * 9 / 10])
        );
    }
    Ok(())
}

/// The capabilities Docker and Wharf give a container by default: they
/// decide which groups of the profile are unlocked.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn time<E: std::error::Error + Send + Sync + 'static>(
    n: usize,
    mut step: impl FnMut() -> Result<(), E>,
) -> anyhow::Result<Vec<Duration>> {
    // One warm-up run: first-touch page faults are not the step's cost.
    step()?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        step()?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

fn install_child(path: &str) -> anyhow::Result<()> {
    let program = fs_err::read(path)?;
    rustix::thread::set_no_new_privs(true)?;
    let start = Instant::now();
    wharf_sys::seccomp::install_filter(&program, 0)?;
    let nanos = start.elapsed().as_nanos();
    println!("{nanos}");
    Ok(())
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "(unknown)".into())
}
