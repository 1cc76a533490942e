//! The local registry fixture against skopeo: each flavour (plain, TLS, htpasswd,
//! token) accepts a push and serves it back, and refuses clients without
//! credentials where it should.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::process::Command;

    use wharf_testkit::{busybox_layout, LayerCompression, LocalRegistry, RegistryOptions};

    fn seed_and_inspect(registry: &LocalRegistry) {
        let dir = tempfile::tempdir().unwrap();
        let (layout, image) =
            busybox_layout(&dir.path().join("layout"), "v1", LayerCompression::Gzip).unwrap();
        registry
            .skopeo_copy_in(&layout.reference("v1"), "test/busybox:v1", false)
            .unwrap();
        let raw = registry.skopeo_inspect("test/busybox:v1", true).unwrap();
        assert_eq!(raw["config"]["digest"], image.config.digest);
        assert_eq!(raw["layers"][0]["digest"], image.layers[0].digest);
    }

    #[test]
    fn plain_registry_round_trips_an_image() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry = LocalRegistry::start(RegistryOptions::plain()).unwrap();
        assert!(registry.url().starts_with("http://127.0.0.1:"));
        seed_and_inspect(&registry);
    }

    #[test]
    fn tls_registry_is_trusted_through_its_ca() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry = LocalRegistry::start(RegistryOptions::plain().tls()).unwrap();
        let ca = registry.ca_cert().unwrap();
        assert!(ca.is_file());
        let verify = Command::new("openssl")
            .args(["s_client", "-brief", "-verify_return_error", "-CAfile"])
            .arg(&ca)
            .arg("-connect")
            .arg(registry.host())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        seed_and_inspect(&registry);
    }

    #[test]
    fn basic_auth_registry_needs_credentials() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry =
            LocalRegistry::start(RegistryOptions::plain().basic_auth("alice", "s3cret")).unwrap();
        seed_and_inspect(&registry);
        let anonymous = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--no-creds"])
            .arg(format!("docker://{}/test/busybox:v1", registry.host()))
            .output()
            .unwrap();
        assert!(!anonymous.status.success());
    }

    #[test]
    fn token_registry_accepts_signed_tokens() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry =
            LocalRegistry::start(RegistryOptions::plain().token_auth("bob", "hunter2")).unwrap();
        seed_and_inspect(&registry);
        let requests = registry.token_requests();
        assert!(
            requests
                .iter()
                .any(|r| r.contains("repository:test/busybox:")),
            "{requests:?}"
        );
        let anonymous = Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--no-creds"])
            .arg(format!("docker://{}/test/busybox:v1", registry.host()))
            .output()
            .unwrap();
        assert!(!anonymous.status.success());
    }

    #[test]
    fn registry_process_is_gone_after_drop() {
        wharf_testkit::require!(Registry);
        let registry = LocalRegistry::start(RegistryOptions::plain()).unwrap();
        let port = registry.port();
        drop(registry);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
