//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) serving
//! `127.0.0.1:<free port>` from a temporary directory, over plain HTTP or TLS with a
//! throwaway CA, open or behind htpasswd Basic auth or a Bearer token flow (a small
//! token server in this module signs the JWTs), plus `skopeo` helpers to seed and
//! read it back. Everything it starts is killed by PID on `Drop`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// The registry binary of Debian's `docker-registry` package.
pub(crate) const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How long [`LocalRegistry::start`] waits for the registry to listen.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// The `service` the registry and token server agree on.
pub const TOKEN_SERVICE: &str = "wharf-test-registry";

/// The `iss` of the JWTs the token server signs.
const TOKEN_ISSUER: &str = "wharf-testkit";

/// The refresh token the token server accepts for the configured user (what a
/// registry returns as an `identitytoken`).
pub const REFRESH_TOKEN: &str = "wharf-test-refresh-token";

/// How a [`LocalRegistry`] authenticates clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    None,
    /// htpasswd (bcrypt) Basic auth with one user.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Bearer tokens from the testkit's token server; with valid Basic credentials
    /// (or [`REFRESH_TOKEN`]) it grants every requested action, anonymously none.
    Token {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

/// What kind of [`LocalRegistry`] to start.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    tls: bool,
    auth: RegistryAuth,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self::plain()
    }
}

impl RegistryOptions {
    /// Plain HTTP, no authentication.
    pub fn plain() -> Self {
        Self {
            tls: false,
            auth: RegistryAuth::None,
        }
    }

    /// Serve HTTPS with a certificate (SAN `IP:127.0.0.1`) from a fresh CA.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Require htpasswd Basic auth as `user`/`password`.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        self.auth = RegistryAuth::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        };
        self
    }

    /// Require Bearer tokens from the testkit's token server, which authenticates
    /// `user`/`password`.
    pub fn token_auth(mut self, user: &str, password: &str) -> Self {
        self.auth = RegistryAuth::Token {
            user: user.to_owned(),
            password: password.to_owned(),
        };
        self
    }
}

/// A running `docker-registry` on `127.0.0.1`; killed and its storage removed on drop.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    auth: RegistryAuth,
    token_server: Option<TokenServer>,
}

impl LocalRegistry {
    /// Starts a registry with `opts` and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// `docker-registry`, `openssl` or `htpasswd` is missing or fails, or the
    /// registry does not listen within 15 s (its log is in the error).
    pub fn start(opts: RegistryOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("wharf-registry-")
            .tempdir()
            .context("create the registry's temp dir")?;
        let mut last_error = None;
        // The free port is found by binding and closing it: another process may take
        // it in between, so a start that loses the port is retried.
        for _ in 0..3 {
            match Self::start_in(&dir, &opts) {
                Ok((child, port, token_server)) => {
                    return Ok(Self {
                        child,
                        dir,
                        port,
                        tls: opts.tls,
                        auth: opts.auth,
                        token_server,
                    })
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn start_in(
        dir: &tempfile::TempDir,
        opts: &RegistryOptions,
    ) -> anyhow::Result<(Child, u16, Option<TokenServer>)> {
        let root = dir.path();
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             health:\n  storagedriver:\n    enabled: false\n\
             http:\n  addr: {host}\n  secret: wharf-testkit-secret\n",
            storage = root.join("storage").display(),
        );
        if opts.tls {
            let certs = make_tls_certs(root)?;
            // Laid out as a certs.d root (`<dir>/<host:port>/ca.crt`) for clients.
            let host_dir = root.join("certs.d").join(&host);
            fs_err::create_dir_all(&host_dir)?;
            fs_err::copy(&certs.ca, host_dir.join("ca.crt"))?;
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certs.server_cert.display(),
                certs.server_key.display()
            ));
        }
        let mut token_server = None;
        match &opts.auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { user, password } => {
                let htpasswd = root.join("htpasswd");
                let output = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .context("run htpasswd (apache2-utils)")?;
                ensure!(
                    output.status.success(),
                    "htpasswd failed: {}",
                    output.status
                );
                fs_err::write(&htpasswd, &output.stdout)?;
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            RegistryAuth::Token { user, password } => {
                let signer = TokenSigner::generate(root)?;
                let bundle = signer.cert.clone();
                let server = TokenServer::start(signer, user.clone(), password.clone())?;
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {bundle}\n",
                    realm = server.realm(),
                    bundle = bundle.display(),
                ));
                token_server = Some(server);
            }
        }
        let config_path = root.join("config.yml");
        fs_err::write(&config_path, config)?;
        let log_path = root.join("registry.log");
        let log = fs_err::File::create(&log_path)?;
        let log_err = log
            .file()
            .try_clone()
            .context("clone the registry log fd")?;
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.into_parts().0)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("start {REGISTRY_BIN}"))?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().context("wait for the registry")? {
                let log = fs_err::read_to_string(&log_path).unwrap_or_default();
                bail!("{REGISTRY_BIN} exited with {status} before listening:\n{log}");
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok((child, port, token_server));
            }
            if Instant::now() > deadline {
                kill_child(&mut child);
                let log = fs_err::read_to_string(&log_path).unwrap_or_default();
                bail!("{REGISTRY_BIN} did not listen on {host} within {START_DEADLINE:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port>` or `http://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// Whether it serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The CA certificate that signed the server's certificate (TLS only).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls
            .then(|| self.certs_d().join(self.host()).join("ca.crt"))
    }

    /// A `certs.d`-style directory (`<dir>/127.0.0.1:<port>/ca.crt`) for clients that
    /// look certificates up by host (TLS only).
    pub fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// The configured user and password, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.auth {
            RegistryAuth::None => None,
            RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password } => {
                Some((user, password))
            }
        }
    }

    /// The token server's realm URL (token auth only).
    pub fn token_realm(&self) -> Option<String> {
        self.token_server.as_ref().map(TokenServer::realm)
    }

    /// Requests the token server has answered so far, as `METHOD scope…` lines.
    pub fn token_requests(&self) -> Vec<String> {
        self.token_server
            .as_ref()
            .map(|s| s.log.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The registry's storage directory (to inspect or corrupt blobs).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// `skopeo` flags to reach this registry: TLS verification and certificates,
    /// and credentials. `prefix` is `"dest-"` or `"src-"` for `copy`, `""` for
    /// `inspect`.
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = Vec::new();
        if self.tls {
            flags.push(format!(
                "--{prefix}cert-dir={}",
                self.certs_d().join(self.host()).display()
            ));
        } else {
            flags.push(format!("--{prefix}tls-verify=false"));
        }
        if let Some((user, password)) = self.credentials() {
            flags.push(format!("--{prefix}creds={user}:{password}"));
        }
        flags
    }

    /// `skopeo copy [--all] <src> docker://<host>/<dest>` (for example
    /// `oci:/dir:tag` → `name:tag`).
    ///
    /// # Errors
    ///
    /// skopeo fails; its stderr is in the error.
    pub fn skopeo_copy_in(&self, src: &str, dest: &str, all: bool) -> anyhow::Result<()> {
        let mut args = vec!["copy".to_owned(), "--quiet".to_owned()];
        if all {
            args.push("--all".to_owned());
        }
        args.extend(self.skopeo_flags("dest-"));
        args.push(src.to_owned());
        args.push(format!("docker://{}/{dest}", self.host()));
        run_skopeo(&args).map(drop)
    }

    /// `skopeo copy docker://<host>/<src> <dest>` (for example `oci:/dir:tag`).
    ///
    /// # Errors
    ///
    /// skopeo fails; its stderr is in the error.
    pub fn skopeo_copy_out(&self, src: &str, dest: &str) -> anyhow::Result<()> {
        let mut args = vec!["copy".to_owned(), "--quiet".to_owned()];
        args.extend(self.skopeo_flags("src-"));
        args.push(format!("docker://{}/{src}", self.host()));
        args.push(dest.to_owned());
        run_skopeo(&args).map(drop)
    }

    /// `skopeo inspect [--raw] docker://<host>/<name>`, parsed.
    ///
    /// # Errors
    ///
    /// skopeo fails or prints something that is not JSON.
    pub fn skopeo_inspect(&self, name: &str, raw: bool) -> anyhow::Result<serde_json::Value> {
        let mut args = vec!["inspect".to_owned()];
        if raw {
            args.push("--raw".to_owned());
        }
        args.extend(self.skopeo_flags(""));
        args.push(format!("docker://{}/{name}", self.host()));
        let stdout = run_skopeo(&args)?;
        serde_json::from_slice(&stdout).context("parse skopeo inspect output")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

fn kill_child(child: &mut Child) {
    // SIGKILL: the registry keeps nothing worth flushing, its storage is a temp dir.
    let _ = child.kill();
    let _ = child.wait();
}

fn run_skopeo(args: &[String]) -> anyhow::Result<Vec<u8>> {
    let output = crate::isolated("skopeo")
        .args(args)
        .output()
        .context("run skopeo")?;
    ensure!(
        output.status.success(),
        "skopeo {} failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output.stdout)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0 to find a port")?;
    Ok(listener.local_addr()?.port())
}

fn openssl(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("run openssl")?;
    ensure!(
        output.status.success(),
        "openssl {} failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

struct TlsCerts {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// A CA and a server certificate for `IP:127.0.0.1` / `DNS:localhost` it signed.
fn make_tls_certs(root: &Path) -> anyhow::Result<TlsCerts> {
    let tls = root.join("tls");
    fs_err::create_dir_all(&tls)?;
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=wharf-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &tls,
    )?;
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &tls,
    )?;
    fs_err::write(
        tls.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        &tls,
    )?;
    Ok(TlsCerts {
        ca: tls.join("ca.crt"),
        server_cert: tls.join("server.crt"),
        server_key: tls.join("server.key"),
    })
}

/// Signs JWTs (RS256 through `openssl dgst -sign`) with a self-signed certificate
/// that the registry trusts as its `rootcertbundle`; the certificate travels in the
/// token's `x5c` header.
#[derive(Debug)]
struct TokenSigner {
    key: PathBuf,
    cert: PathBuf,
    x5c: String,
}

impl TokenSigner {
    fn generate(root: &Path) -> anyhow::Result<Self> {
        let dir = root.join("token");
        fs_err::create_dir_all(&dir)?;
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
                "-days",
                "2",
                "-subj",
                "/CN=wharf-token-signer",
            ],
            &dir,
        )?;
        openssl(
            &[
                "x509",
                "-in",
                "token.crt",
                "-outform",
                "DER",
                "-out",
                "token.der",
            ],
            &dir,
        )?;
        let der = fs_err::read(dir.join("token.der"))?;
        Ok(Self {
            key: dir.join("token.key"),
            cert: dir.join("token.crt"),
            x5c: STANDARD.encode(der),
        })
    }

    fn sign(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run openssl dgst -sign")?;
        child
            .stdin
            .take()
            .context("openssl stdin")?
            .write_all(input.as_bytes())?;
        let output = child.wait_with_output()?;
        ensure!(output.status.success(), "openssl dgst -sign failed");
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(output.stdout)))
    }
}

/// The token server: `GET /token?service=…&scope=…` with optional Basic auth, and
/// `POST /token` (OAuth2 form: `grant_type=password` or `refresh_token`).
#[derive(Debug)]
struct TokenServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<String>>>,
}

struct TokenState {
    signer: TokenSigner,
    user: String,
    password: String,
    log: Arc<Mutex<Vec<String>>>,
    next_id: AtomicU64,
}

impl TokenServer {
    fn start(signer: TokenSigner, user: String, password: String) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind the token server")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(TokenState {
            signer,
            user,
            password,
            log: Arc::clone(&log),
            next_id: AtomicU64::new(1),
        });
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("token-server".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if thread_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || {
                        let _ = serve_token(stream, &state);
                    });
                }
            })
            .context("spawn the token server thread")?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
            log,
        })
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A parsed HTTP/1.1 request (enough for the token server).
struct Request {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> anyhow::Result<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts
        .next()
        .context("request line has no method")?
        .to_owned();
    let target = parts
        .next()
        .context("request line has no target")?
        .to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(0);
    ensure!(length <= 1 << 20, "request body too large");
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Decodes `application/x-www-form-urlencoded` (also a query string) into pairs.
pub(crate) fn parse_form(text: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> anyhow::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    Ok(())
}

fn serve_token(mut stream: TcpStream, state: &TokenState) -> anyhow::Result<()> {
    let request = read_request(&mut stream)?;
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    if path != "/token" {
        return respond(&mut stream, "404 Not Found", "{}");
    }
    let mut params = parse_form(query);
    if request.method == "POST" {
        params.extend(parse_form(&String::from_utf8_lossy(&request.body)));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let basic = request
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let authenticated = match request.method.as_str() {
        "GET" => match &basic {
            Some(pair) => {
                if *pair != format!("{}:{}", state.user, state.password) {
                    state.log_line(format!("GET denied {}", scopes.join(" ")));
                    return respond(
                        &mut stream,
                        "401 Unauthorized",
                        r#"{"details":"bad credentials"}"#,
                    );
                }
                true
            }
            None => false,
        },
        "POST" => {
            let ok = match param("grant_type").as_deref() {
                Some("refresh_token") => param("refresh_token").as_deref() == Some(REFRESH_TOKEN),
                Some("password") => {
                    param("username").as_deref() == Some(state.user.as_str())
                        && param("password").as_deref() == Some(state.password.as_str())
                }
                _ => false,
            };
            if !ok {
                state.log_line(format!("POST denied {}", scopes.join(" ")));
                return respond(
                    &mut stream,
                    "401 Unauthorized",
                    r#"{"details":"bad grant"}"#,
                );
            }
            true
        }
        _ => return respond(&mut stream, "405 Method Not Allowed", "{}"),
    };
    state.log_line(format!(
        "{} {}{}",
        request.method,
        if authenticated { "" } else { "anonymous " },
        scopes.join(" ")
    ));
    let access: Vec<serde_json::Value> = if authenticated {
        scopes.iter().filter_map(|s| scope_access(s)).collect()
    } else {
        Vec::new()
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER,
        "sub": if authenticated { state.user.as_str() } else { "" },
        "aud": param("service").unwrap_or_default(),
        "exp": now + 300,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": format!("wharf-{id}"),
        "access": access,
    });
    let token = state.signer.sign(&claims)?;
    let body = if request.method == "POST" {
        serde_json::json!({
            "access_token": token,
            "expires_in": 300,
            "refresh_token": REFRESH_TOKEN,
        })
    } else {
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
    };
    respond(&mut stream, "200 OK", &body.to_string())
}

impl TokenState {
    fn log_line(&self, line: String) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
}

/// `repository:name:pull,push` → the JWT `access` entry granting those actions.
fn scope_access(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form("scope=repository%3Aa%2Fb%3Apull&x=a+b&flag"),
            vec![
                ("scope".to_owned(), "repository:a/b:pull".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            parse_form("a=%zz%4"),
            vec![("a".to_owned(), "%zz%4".to_owned())]
        );
    }

    #[test]
    fn scope_grants_listed_actions() {
        assert_eq!(
            scope_access("repository:lib/busybox:pull,push").unwrap(),
            serde_json::json!({"type": "repository", "name": "lib/busybox", "actions": ["pull", "push"]})
        );
        assert!(scope_access("nonsense").is_none());
    }
}
