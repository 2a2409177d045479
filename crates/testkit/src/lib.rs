//! Dev-only test kit: the end-to-end tests start the real binaries on
//! 127.0.0.1 port 0 and wait for the line that says where they listen.
//!
//! In scope: finding a workspace binary from a test binary, starting it,
//! reading its banner, draining its output so it never blocks on a full
//! pipe, and stopping it (SIGKILL on drop, or SIGTERM and wait). Out of
//! scope: anything about what the binaries serve.

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
    let out = Command::new(bin("proofcheck"))
        .arg("--token-file")
        .arg(data.join("demo.token"))
        .args(["audit", "--log", url, "--log-key"])
        .arg(verifier_of(&data.join("log.skey")).to_string())
        .arg("--gate-key")
        .arg(verifier_of(&data.join("gate.skey")).to_string())
        .arg("--state")
        .arg(state)
        .output()
        .expect("running proofcheck");
    assert!(
        out.status.success(),
        "audit: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
