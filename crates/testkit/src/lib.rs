//! Dev-only test kit: the end-to-end tests start the real binaries on
//! 127.0.0.1 port 0 and wait for the line that says where they listen.
//!
//! In scope: finding a workspace binary from a test binary, starting it,
//! reading its banner, draining its output so it never blocks on a full
//! pipe, and stopping it (SIGKILL on drop, or SIGTERM and wait). Out of
//! scope: anything about what the binaries serve.

pub mod otlp;
mod server;

pub use server::{consistent, decide, intent, response, transfer, Server};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A workspace binary, built beside the test binaries (`target/<profile>/`;
/// test binaries are in its `deps/`).
///
/// # Panics
///
/// If it is not built (run `cargo test --workspace`).
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        p.exists(),
        "{} is not built: run cargo test --workspace",
        p.display()
    );
    p
}

/// `tollgate serve` on 127.0.0.1 port 0 with data directory `data`, quiet
/// logs; add arguments and environment before [`Proc::start`].
#[must_use]
pub fn tollgate_serve(data: &Path) -> Command {
    let mut cmd = Command::new(bin("tollgate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("TOLLGATE_LOG", "warn");
    cmd
}

/// The banner line `tollgate serve` prints once it listens.
pub const TOLLGATE_READY: &str = "tollgate listening on ";
/// The banner line `witness serve` prints once it listens.
pub const WITNESS_READY: &str = "witness listening on ";

/// A started server process; killed (SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    /// What followed the ready prefix on its ready line (its URL).
    pub url: String,
    /// The banner lines that followed the ready line, as many as asked.
    pub banner: Vec<String>,
}

impl Proc {
    /// Starts `cmd` with stdout piped, waits for the line starting with
    /// `ready` (the rest of it is [`Proc::url`]), keeps the next
    /// `banner_lines` lines, and drains the rest on a thread.
    ///
    /// # Panics
    ///
    /// If the process cannot start or ends before its ready line.
    #[must_use]
    pub fn start(mut cmd: Command, ready: &str, banner_lines: usize) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut next = || {
            out.next()
                .unwrap_or_else(|| panic!("{cmd:?} exited before its banner"))
                .expect("reading its output")
        };
        let url = loop {
            if let Some(u) = next().strip_prefix(ready) {
                break u.to_string();
            }
        };
        let banner = (0..banner_lines).map(|_| next()).collect();
        std::thread::spawn(move || for _ in out {});
        Proc { child, url, banner }
    }

    /// Its process id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for it to exit: the graceful path.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent or the wait fails.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.child.wait().expect("waiting for it")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The verifier key of the signer key in `skey_file` (a data directory's
/// `log.skey` or `gate.skey`).
///
/// # Panics
///
/// If the file cannot be read or holds no signer key.
#[must_use]
pub fn verifier_of(skey_file: &Path) -> note::VerifierKey {
    let skey = std::fs::read_to_string(skey_file)
        .unwrap_or_else(|e| panic!("{}: {e}", skey_file.display()));
    note::SignerKey::parse(skey.trim())
        .expect("a signer key")
        .verifier()
        .clone()
}

/// `proofcheck audit` of the gate at `url` whose data directory is `data`
/// (its keys, and the demo caller's token for the entry bundles), keeping
/// the audit's state in `state`: the whole log, entry by entry.
///
/// # Panics
///
/// With proofcheck's output, unless the audit passes.
pub fn audit(url: &str, data: &Path, state: &Path) {
    run_ok(
        Command::new(bin("proofcheck"))
            .arg("--token-file")
            .arg(data.join("demo.token"))
            .args(["audit", "--log", url, "--log-key"])
            .arg(verifier_of(&data.join("log.skey")).to_string())
            .arg("--gate-key")
            .arg(verifier_of(&data.join("gate.skey")).to_string())
            .arg("--state")
            .arg(state),
        "proofcheck audit",
    );
}

/// Runs `cmd` to its end; panics with its output, naming `what`, unless it
/// succeeds.
fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `to` (mode 0700) the data directory of another gate on the same
/// shared log as the gate whose data directory is `from`: the same keys,
/// origin and tokens.
///
/// # Errors
///
/// An I/O error creating `to` or copying a file.
pub fn copy_gate_identity(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(to)?;
    for f in [
        "log.skey",
        "gate.skey",
        "origin",
        "admin.token",
        "demo.token",
    ] {
        std::fs::copy(from.join(f), to.join(f))?;
    }
    Ok(())
}

/// A throwaway PostgreSQL cluster for tests: `initdb` into a temporary
/// directory and `postgres` on 127.0.0.1 with a free port, run as `nobody`
/// when the tests run as root (PostgreSQL refuses root); stopped and
/// removed on drop. The binaries are the newest under
/// `/usr/lib/postgresql/*/bin` (Debian's layout), or `pg_config --bindir`.
pub struct Postgres {
    /// A libpq connection string for the cluster's `postgres` database, as
    /// superuser `tollgate`.
    pub url: String,
    child: Option<std::process::Child>,
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// Server settings beyond the defaults (`-c name=value`).
    settings: Vec<String>,
    _dir: tempfile::TempDir,
}

fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(p) = found.pop() {
        return p;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("no PostgreSQL: install postgresql (scripts/install-test-deps.sh does)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// `program`, run as `nobody` if this process is root (the child itself,
/// so signals reach it).
fn as_postgres_user(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .expect("user nobody");
        c.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    }
    c
}

impl Postgres {
    /// Starts a fresh cluster and waits until it accepts connections.
    #[must_use]
    pub fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().join("pg");
        if nix::unistd::geteuid().is_root() {
            let nobody = nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .expect("user nobody");
            std::os::unix::fs::chown(
                dir.path(),
                Some(nobody.uid.as_raw()),
                Some(nobody.gid.as_raw()),
            )
            .expect("chown");
        }
        run_ok(
            as_postgres_user(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "tollgate", "-A", "trust", "-E", "UTF8", "--no-sync"]),
            "initdb",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut pg = Postgres {
            url: format!("host=127.0.0.1 port={port} user=tollgate dbname=postgres"),
            child: None,
            port,
            bin,
            data,
            settings: Vec::new(),
            _dir: dir,
        };
        pg.run();
        pg
    }

    /// Starts a fresh cluster with TLS on (`ssl = on`), its certificate
    /// for `localhost` and 127.0.0.1 issued by a test CA; the CA's file.
    /// Plaintext connections are still accepted, as by default.
    #[must_use]
    pub fn start_tls() -> (Postgres, PathBuf) {
        let mut pg = Postgres::start();
        pg.stop();
        let dir = pg.data.parent().expect("in the temp dir").join("pki");
        std::fs::create_dir_all(&dir).expect("pki directory");
        let pki = Pki::new(&dir, "postgres");
        let (cert, key) = pki.issue(
            "server",
            "localhost",
            vec!["localhost".into(), "127.0.0.1".into()],
            false,
        );
        // The server refuses a key others may read, and runs as `nobody`.
        for f in [&cert, &key] {
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
            if nix::unistd::geteuid().is_root() {
                let nobody = nix::unistd::User::from_name("nobody")
                    .ok()
                    .flatten()
                    .expect("user nobody");
                std::os::unix::fs::chown(f, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw()))
                    .expect("chown");
            }
        }
        pg.settings = vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", cert.display()),
            format!("ssl_key_file={}", key.display()),
        ];
        pg.run();
        let ca = pki.ca_file();
        (pg, ca)
    }

    /// Starts the server (again), on its port.
    fn run(&mut self) {
        let port = self.port;
        let child = as_postgres_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.data.parent().expect("in the temp dir").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "postgres did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Accepting TCP is not yet accepting logins; give recovery a moment.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// Stops the server (SIGINT: PostgreSQL's fast shutdown) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = c.wait();
        }
    }

    /// Stops and starts the server again, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Creates database `name` in the cluster; returns its connection string.
    #[must_use]
    pub fn database(&self, name: &str) -> String {
        run_ok(
            Command::new(self.bin.join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "tollgate",
                name,
            ]),
            &format!("createdb {name}"),
        );
        format!(
            "host=127.0.0.1 port={} user=tollgate dbname={name}",
            self.port
        )
    }

    /// Starts the server again after [`Postgres::stop`], on the same port.
    pub fn resume(&mut self) {
        if self.child.is_none() {
            self.run();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Test PKI made at test time: a CA, server certificates (the gate's for
/// 127.0.0.1, PostgreSQL's) and client certificates with a subject common name.
pub struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    /// A fresh CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    #[must_use]
    pub fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
        }
    }

    /// The CA's certificate file.
    #[must_use]
    pub fn ca_file(&self) -> PathBuf {
        let name = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-ca.pem"))
            .unwrap();
        name
    }

    /// A certificate (server or client) signed by the CA: (cert file, key file).
    #[must_use]
    pub fn issue(
        &self,
        file: &str,
        cn: &str,
        sans: Vec<String>,
        client: bool,
    ) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}
