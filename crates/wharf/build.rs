//! Records the compiler's version for `wharf version` (Docker shows its Go
//! version there). `WHARF_GIT_COMMIT`, when set at build time, is read by
//! `option_env!` directly.

#![allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's directives from its stdout"
)]

fn main() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    println!("cargo:rustc-env=WHARF_RUSTC_VERSION={}", version.trim());
    println!("cargo:rerun-if-env-changed=WHARF_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
}
