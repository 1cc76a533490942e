//! Stored registry credentials, compatible with Podman's `auth.json` and Docker's
//! `config.json`: `auths` entries (base64 `auth` = `user:password`, or an
//! `identitytoken`), per-registry `credHelpers` and a default `credsStore`, both
//! answered by `docker-credential-<name> get`.
//!
//! Lookup order: `--creds`, `--authfile`, `$REGISTRY_AUTH_FILE`,
//! `${XDG_RUNTIME_DIR}/containers/auth.json`, `~/.docker/config.json`; the first
//! source that knows the registry wins. `login` writes one auth file (the first of
//! `--authfile`, `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`,
//! `/run/containers/<uid>/auth.json`) atomically with mode 0600.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::RegistryError;

/// The key Docker uses for Docker Hub in auth files and with credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User and password, sent as Basic auth (to the registry or its token realm).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken {
        /// User name, if known.
        username: String,
        /// The refresh token.
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs or panics.
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Self::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

impl Credential {
    /// Parses `user:password` (`--creds`); a missing password is an error.
    ///
    /// # Errors
    ///
    /// No `:` or an empty user name.
    pub fn parse_creds(text: &str) -> Result<Self, RegistryError> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Self::Basic {
                username: user.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(RegistryError::invalid(
                "--creds must be USERNAME:PASSWORD with a non-empty user name",
            )),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        match self {
            Self::Basic { username, .. } | Self::IdentityToken { username, .. } => username,
        }
    }

    /// `Basic <base64(user:password)>`, for Basic credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Self::Basic { username, password } => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            )),
            Self::IdentityToken { .. } => None,
        }
    }
}

/// Where credentials are looked up and stored.
#[derive(Debug, Clone, Default)]
pub struct AuthSources {
    /// `--creds`: used for every registry.
    pub creds: Option<Credential>,
    /// Auth files, looked up in order.
    pub files: Vec<PathBuf>,
    /// Where `login` writes and `logout` removes.
    pub login_file: PathBuf,
    /// Directory holding `docker-credential-*` helpers; `None` searches `$PATH`.
    pub helper_dir: Option<PathBuf>,
}

impl AuthSources {
    /// The sources of the standard order, from `--creds`, `--authfile` and the
    /// environment (`REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`, `HOME`).
    ///
    /// # Errors
    ///
    /// `creds` is not `user:password`.
    pub fn from_env(creds: Option<&str>, authfile: Option<&Path>) -> Result<Self, RegistryError> {
        let creds = creds.map(Credential::parse_creds).transpose()?;
        let env_file = std::env::var_os("REGISTRY_AUTH_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let xdg_file = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(|d| PathBuf::from(d).join("containers/auth.json"));
        let docker_file = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".docker/config.json"));
        let mut files = Vec::new();
        files.extend(authfile.map(Path::to_owned));
        files.extend(env_file.clone());
        files.extend(xdg_file.clone());
        files.extend(docker_file);
        let login_file = authfile
            .map(Path::to_owned)
            .or(env_file)
            .or(xdg_file)
            .unwrap_or_else(|| {
                PathBuf::from(format!("/run/containers/{}/auth.json", effective_uid()))
            });
        Ok(Self {
            creds,
            files,
            login_file,
            helper_dir: None,
        })
    }

    /// Credentials for `repository` on `registry`, or `None` (anonymous).
    ///
    /// # Errors
    ///
    /// An auth file exists but cannot be read or parsed, an entry is malformed, or
    /// a credential helper fails for another reason than "not found".
    pub fn lookup(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        if let Some(creds) = &self.creds {
            return Ok(Some(creds.clone()));
        }
        for file in &self.files {
            let Some(json) = read_auth_file(file)? else {
                continue;
            };
            if let Some(found) = self.lookup_in(&json, file, registry, repository)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn lookup_in(
        &self,
        json: &serde_json::Value,
        file: &Path,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        let registry = normalize_key(registry);
        if let Some(helpers) = json.get("credHelpers").and_then(|v| v.as_object()) {
            let helper = helpers
                .iter()
                .find(|(k, _)| normalize_key(k) == registry)
                .and_then(|(_, v)| v.as_str());
            if let Some(helper) = helper {
                return self.run_helper(helper, &registry);
            }
        }
        if let Some(auths) = json.get("auths").and_then(|v| v.as_object()) {
            // The most specific key wins: `reg/ns/repo`, `reg/ns`, then `reg`.
            let full = format!("{registry}/{repository}");
            let best = auths
                .iter()
                .map(|(k, v)| (normalize_key(k), v))
                .filter(|(k, _)| {
                    *k == registry
                        || (full.starts_with(k.as_str()) && full[k.len()..].starts_with('/'))
                })
                .max_by_key(|(k, _)| k.len());
            if let Some((_, entry)) = best {
                if let Some(credential) = parse_entry(entry, &registry, file)? {
                    return Ok(Some(credential));
                }
            }
        }
        if let Some(store) = json.get("credsStore").and_then(|v| v.as_str()) {
            return self.run_helper(store, &registry);
        }
        Ok(None)
    }

    /// `docker-credential-<helper> get` with the server on stdin.
    fn run_helper(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        let fail = |reason: String| RegistryError::CredentialHelper {
            helper: helper.to_owned(),
            registry: registry.to_owned(),
            reason,
        };
        if helper.is_empty() || helper.contains('/') {
            return Err(fail("invalid helper name".into()));
        }
        let program = match &self.helper_dir {
            Some(dir) => dir.join(format!("docker-credential-{helper}")),
            None => PathBuf::from(format!("docker-credential-{helper}")),
        };
        let server = if registry == "docker.io" {
            DOCKER_HUB_KEY
        } else {
            registry
        };
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("run {}: {e}", program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading closes the pipe: its exit
            // status and output below tell what happened.
            match stdin.write_all(server.as_bytes()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(fail(format!("write to the helper: {e}"))),
            }
        }
        let output = child
            .wait_with_output()
            .map_err(|e| fail(format!("wait for the helper: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            // The helper protocol's "no credentials" answer.
            if stdout.contains("credentials not found") {
                return Ok(None);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(fail(format!(
                "exited with {}: {}",
                output.status,
                format!("{} {}", stdout.trim(), stderr.trim()).trim()
            )));
        }
        #[derive(serde::Deserialize)]
        struct HelperAnswer {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
            .map_err(|e| fail(format!("parse its answer: {e}")))?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if answer.username == "<token>" {
            Credential::IdentityToken {
                username: String::new(),
                token: answer.secret,
            }
        } else {
            Credential::Basic {
                username: answer.username,
                password: answer.secret,
            }
        }))
    }
}

/// The effective uid, for `/run/containers/<uid>`.
fn effective_uid() -> u32 {
    // /proc/self is always there on Linux; its owner is the effective uid.
    use std::os::unix::fs::MetadataExt as _;
    fs_err::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// An auth file's JSON, or `None` when it does not exist.
fn read_auth_file(path: &Path) -> Result<Option<serde_json::Value>, RegistryError> {
    match fs_err::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Some(serde_json::json!({}))),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
            RegistryError::ParseAuthFile {
                path: path.to_owned(),
                source,
            }
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RegistryError::AuthFile {
            op: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// An auth-file key as a registry (or `registry/namespace`) name: no scheme, no
/// `/v1/` or `/v2/` suffix, Docker Hub's aliases as `docker.io`.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.trim_end_matches('/');
    let key = key
        .strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key);
    let (host, rest) = key.split_once('/').unwrap_or((key, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    };
    if rest.is_empty() {
        host.to_owned()
    } else {
        format!("{host}/{rest}")
    }
}

fn parse_entry(
    entry: &serde_json::Value,
    registry: &str,
    file: &Path,
) -> Result<Option<Credential>, RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidCredentials {
        registry: registry.to_owned(),
        source_name: file.display().to_string(),
        reason: reason.to_owned(),
    };
    let auth = entry.get("auth").and_then(|v| v.as_str()).unwrap_or("");
    let (username, password) = if auth.is_empty() {
        (String::new(), String::new())
    } else {
        let decoded = STANDARD
            .decode(auth.trim())
            .map_err(|_| invalid("\"auth\" is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid("\"auth\" is not UTF-8"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| invalid("\"auth\" is not user:password"))?;
        (user.to_owned(), password.to_owned())
    };
    if let Some(token) = entry
        .get("identitytoken")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credential::IdentityToken {
            username,
            token: token.to_owned(),
        }));
    }
    if username.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic { username, password }))
}

/// Stores `credential` for `registry` in the auth file `path`, keeping its other
/// entries and keys; the file is replaced atomically with mode 0600.
///
/// # Errors
///
/// The file cannot be read, parsed or written.
pub fn store_credential(
    path: &Path,
    registry: &str,
    credential: &Credential,
) -> Result<(), RegistryError> {
    let registry = normalize_key(registry);
    let mut json = read_auth_file(path)?.unwrap_or_else(|| serde_json::json!({}));
    let root = json
        .as_object_mut()
        .ok_or_else(|| RegistryError::InvalidCredentials {
            registry: registry.clone(),
            source_name: path.display().to_string(),
            reason: "the file is not a JSON object".into(),
        })?;
    let auths = root.entry("auths").or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    let auths = auths
        .as_object_mut()
        .expect("auths was just made an object");
    auths.retain(|k, _| normalize_key(k) != registry);
    let entry = match credential {
        Credential::Basic { username, password } => {
            serde_json::json!({"auth": STANDARD.encode(format!("{username}:{password}"))})
        }
        Credential::IdentityToken { username, token } => serde_json::json!({
            "auth": STANDARD.encode(format!("{username}:")),
            "identitytoken": token,
        }),
    };
    auths.insert(registry, entry);
    write_atomically(path, &json)
}

/// Removes the credentials for `registry` from the auth file `path`.
///
/// # Errors
///
/// [`RegistryError::NotLoggedIn`] when the file has none; the file cannot be read,
/// parsed or written.
pub fn remove_credential(path: &Path, registry: &str) -> Result<(), RegistryError> {
    let registry = normalize_key(registry);
    let not_logged_in = || RegistryError::NotLoggedIn {
        registry: registry.clone(),
    };
    let mut json = read_auth_file(path)?.ok_or_else(not_logged_in)?;
    let auths = json
        .get_mut("auths")
        .and_then(|a| a.as_object_mut())
        .ok_or_else(not_logged_in)?;
    let before = auths.len();
    auths.retain(|k, _| normalize_key(k) != registry);
    if auths.len() == before {
        return Err(not_logged_in());
    }
    write_atomically(path, &json)
}

/// Writes `json` to a temporary file (0600) beside `path`, syncs it, renames it
/// over `path` and syncs the directory.
fn write_atomically(path: &Path, json: &serde_json::Value) -> Result<(), RegistryError> {
    let io = |op: &'static str| {
        move |source: std::io::Error| RegistryError::AuthFile {
            op,
            path: path.to_owned(),
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        fs_err::create_dir_all(dir).map_err(io("create the directory of"))?;
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set the mode of the directory of"))?;
    }
    let mut bytes = serde_json::to_vec_pretty(json).map_err(|e| io("serialize")(e.into()))?;
    bytes.push(b'\n');
    let mut temp = tempfile::Builder::new()
        .prefix(".auth.json-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io("create a temporary file for"))?;
    temp.write_all(&bytes).map_err(io("write"))?;
    temp.as_file().sync_all().map_err(io("sync"))?;
    temp.persist(path).map_err(|e| io("replace")(e.error))?;
    fs_err::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the directory of"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path, files: &[&str]) -> AuthSources {
        AuthSources {
            creds: None,
            files: files.iter().map(|f| dir.join(f)).collect(),
            login_file: dir.join("login.json"),
            helper_dir: Some(dir.to_owned()),
        }
    }

    fn basic(user: &str, password: &str) -> Credential {
        Credential::Basic {
            username: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn creds_flag_parses_user_and_password() {
        assert_eq!(Credential::parse_creds("a:b:c").unwrap(), basic("a", "b:c"));
        assert!(Credential::parse_creds("nopassword").is_err());
        assert!(Credential::parse_creds(":x").is_err());
    }

    #[test]
    fn keys_are_normalized() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(normalize_key("quay.io/team"), "quay.io/team");
    }

    #[test]
    fn files_are_searched_in_order_with_the_most_specific_key() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| STANDARD.encode(s);
        fs_err::write(
            dir.path().join("first.json"),
            serde_json::json!({"auths": {
                "quay.io": {"auth": b64("general:pw")},
                "quay.io/team": {"auth": b64("team:pw")},
            }})
            .to_string(),
        )
        .unwrap();
        fs_err::write(
            dir.path().join("docker.json"),
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
                "quay.io": {"auth": b64("ignored:pw")},
                "tokens.example": {"auth": "", "identitytoken": "refresh"},
            }})
            .to_string(),
        )
        .unwrap();
        let s = sources(dir.path(), &["missing.json", "first.json", "docker.json"]);
        assert_eq!(
            s.lookup("quay.io", "team/app").unwrap(),
            Some(basic("team", "pw"))
        );
        assert_eq!(
            s.lookup("quay.io", "teamx/app").unwrap(),
            Some(basic("general", "pw"))
        );
        assert_eq!(
            s.lookup("docker.io", "library/x").unwrap(),
            Some(basic("hub", "pw"))
        );
        assert_eq!(
            s.lookup("tokens.example", "a").unwrap(),
            Some(Credential::IdentityToken {
                username: String::new(),
                token: "refresh".into()
            })
        );
        assert_eq!(s.lookup("other.example", "a").unwrap(), None);

        let mut with_flag = s.clone();
        with_flag.creds = Some(basic("flag", "pw"));
        assert_eq!(
            with_flag.lookup("quay.io", "x").unwrap(),
            Some(basic("flag", "pw"))
        );
    }

    #[test]
    fn malformed_entries_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("a.json"),
            r#"{"auths": {"r.io": {"auth": "!!!"}}}"#,
        )
        .unwrap();
        let err = sources(dir.path(), &["a.json"])
            .lookup("r.io", "x")
            .unwrap_err();
        assert!(err.to_string().contains("\"auth\" is not base64"), "{err}");
        fs_err::write(dir.path().join("b.json"), "{not json").unwrap();
        let err = sources(dir.path(), &["b.json"])
            .lookup("r.io", "x")
            .unwrap_err();
        assert!(
            err.to_string().starts_with("parse credentials file"),
            "{err}"
        );
    }

    fn write_helper(dir: &Path, name: &str, script: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        fs_err::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn credential_helpers_answer_per_registry_and_by_default() {
        let dir = tempfile::tempdir().unwrap();
        // Echoes back the server it was asked for, so the test sees the key.
        write_helper(
            dir.path(),
            "echo",
            r#"read server; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"s"}' "$server" "$server""#,
        );
        write_helper(
            dir.path(),
            "tok",
            r#"printf '{"Username":"<token>","Secret":"refresh-me"}'"#,
        );
        write_helper(
            dir.path(),
            "none",
            r#"echo "credentials not found in native keychain"; exit 1"#,
        );
        write_helper(dir.path(), "broken", r#"echo boom >&2; exit 3"#);
        fs_err::write(
            dir.path().join("c.json"),
            serde_json::json!({
                "credsStore": "echo",
                "credHelpers": {"tok.example": "tok", "none.example": "none", "broken.example": "broken"},
            })
            .to_string(),
        )
        .unwrap();
        let s = sources(dir.path(), &["c.json"]);
        assert_eq!(
            s.lookup("docker.io", "library/x").unwrap(),
            Some(basic("u-https://index.docker.io/v1/", "s"))
        );
        assert_eq!(
            s.lookup("127.0.0.1:5000", "x").unwrap(),
            Some(basic("u-127.0.0.1:5000", "s"))
        );
        assert!(matches!(
            s.lookup("tok.example", "x").unwrap(),
            Some(Credential::IdentityToken { token, .. }) if token == "refresh-me"
        ));
        assert_eq!(s.lookup("none.example", "x").unwrap(), None);
        let err = s.lookup("broken.example", "x").unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn store_and_remove_keep_other_entries_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        store_credential(&path, "a.io", &basic("u", "p")).unwrap();
        store_credential(&path, "https://b.io/v1/", &basic("v", "q")).unwrap();
        store_credential(&path, "a.io", &basic("u2", "p2")).unwrap();
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let s = sources(dir.path(), &["sub/auth.json"]);
        assert_eq!(s.lookup("a.io", "x").unwrap(), Some(basic("u2", "p2")));
        assert_eq!(s.lookup("b.io", "x").unwrap(), Some(basic("v", "q")));
        remove_credential(&path, "a.io").unwrap();
        assert_eq!(s.lookup("a.io", "x").unwrap(), None);
        let err = remove_credential(&path, "a.io").unwrap_err();
        assert_eq!(err.to_string(), "not logged in to a.io");
        let json: serde_json::Value =
            serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
        assert_eq!(json["auths"].as_object().unwrap().len(), 1);
    }
}
