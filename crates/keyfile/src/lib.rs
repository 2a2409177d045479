//! Private files: signing keys (C2SP skey text) and bearer tokens, mode 0600,
//! generated on first start, and small state files replaced durably.
//!
//! In scope: the one way this workspace writes a file that must survive a
//! crash whole ([`write_durable`]: write a temporary file, fsync it, rename
//! it over the target, fsync the directory, so a crash leaves the old or the
//! new file) and the checks on reading a secret back (mode 0600 or stricter,
//! the expected key name and type). Out of scope: what the keys sign (`note`)
//! and where the files live (the binaries' configuration).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use note::{KeyType, SignerKey};

/// Shortest bearer token accepted from a file, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// A private file could not be read, written or trusted.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// What went wrong, in words.
    pub reason: String,
}

fn error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Replaces `path` with `bytes`, durably: a temporary file beside it (created
/// with `mode`), fsynced, renamed over `path`, then the directory fsynced. A
/// crash at any point leaves either the old file or the new one, never a
/// partial one.
///
/// # Errors
///
/// [`Error`] naming `path` and the failing step.
pub fn write_durable(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            // `mode` applies only to a new file; a stale temporary keeps its own.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            f.write_all(bytes)?;
            f.sync_all()
        });
    written.map_err(|e| error(path, format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| error(path, format!("renaming into place: {e}")))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| error(path, format!("syncing the directory: {e}")))
}

/// Creates `path` with `bytes` and mode 0600, durably, never replacing a file
/// that exists (two starts racing keep the first one's secret).
fn create_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| error(path, format!("creating its directory: {e}")))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| error(path, format!("creating: {e}")))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| error(path, format!("writing: {e}")))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| error(path, format!("syncing the directory: {e}")))
}

/// Reads a secret file, refusing one that group or others may read.
fn read_private(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(|e| error(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(error(
            path,
            format!(
                "mode is {mode:o}; a private file must be 0600 (chmod 600 {})",
                path.display()
            ),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| error(path, e))
}

/// Loads the skey in `path`, or, if the file does not exist, generates a key
/// named `name` of type `kind` and writes it there with mode 0600. A loaded
/// key must have mode 0600 or stricter, type `kind`, and (with `check_name`)
/// the name `name`.
///
/// Returns the key and whether it was generated.
///
/// # Errors
///
/// [`Error`] naming the file and the problem.
pub fn load_or_generate_key(
    path: &Path,
    name: &str,
    kind: KeyType,
    check_name: bool,
) -> Result<(SignerKey, bool), Error> {
    if path.exists() {
        return load_key(path, check_name.then_some(name), kind).map(|k| (k, false));
    }
    let key = SignerKey::generate(name, kind).map_err(|e| error(path, e))?;
    create_private(path, format!("{}\n", key.to_skey()).as_bytes())?;
    Ok((key, true))
}

/// Loads the skey in `path`: mode 0600 or stricter, type `kind`, and name
/// `name` if given.
///
/// # Errors
///
/// [`Error`] naming the file and the problem.
pub fn load_key(path: &Path, name: Option<&str>, kind: KeyType) -> Result<SignerKey, Error> {
    let text = read_private(path)?;
    let key = SignerKey::parse(text.trim()).map_err(|e| error(path, e))?;
    let v = key.verifier();
    if name.is_some_and(|n| v.name() != n) || v.kind() != kind {
        return Err(error(
            path,
            format!(
                "holds a key for {:?} ({:?}), expected {} ({kind:?})",
                v.name(),
                v.kind(),
                name.map_or_else(|| "any name".to_string(), |n| format!("{n:?}"))
            ),
        ));
    }
    Ok(key)
}

/// A new bearer token: 32 random bytes from the OS, as 64 hex digits.
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Reads the bearer token in `path`, or generates one ([`new_token`]) into it
/// with mode 0600. A file others may read, or a token shorter than
/// [`MIN_TOKEN_LEN`], is refused.
///
/// Returns the token and whether it was generated.
///
/// # Errors
///
/// [`Error`] naming the file and the problem.
pub fn load_or_generate_token(path: &Path) -> Result<(String, bool), Error> {
    match read_private(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < MIN_TOKEN_LEN {
                return Err(error(
                    path,
                    format!("token shorter than {MIN_TOKEN_LEN} characters"),
                ));
            }
            Ok((token, false))
        }
        Err(_) if !path.exists() => {
            let token = new_token();
            create_private(path, format!("{token}\n").as_bytes())?;
            Ok((token, true))
        }
        Err(e) => Err(e),
    }
}
