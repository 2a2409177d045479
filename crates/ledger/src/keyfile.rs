//! Signing keys in files: C2SP skey text, mode 0600, generated on first start.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use note::{KeyType, SignerKey};

use crate::Error;

/// Loads the skey in `path`, or, if the file does not exist, generates a key
/// named `name` of type `kind` and writes it there with mode 0600 (never
/// overwriting a file that appeared meanwhile). A loaded key must have mode
/// 0600 or stricter, and the expected name and type.
///
/// Returns the key and whether it was generated.
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and the problem.
pub fn load_or_generate(
    path: &Path,
    name: &str,
    kind: KeyType,
) -> Result<(SignerKey, bool), Error> {
    let err = |reason: String| Error::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        return load(path, name, kind).map(|k| (k, false));
    }
    let key = SignerKey::generate(name, kind).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("creating its directory: {e}")))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(format!("creating: {e}")))?;
    f.write_all(format!("{}\n", key.to_skey()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| err(format!("writing: {e}")))?;
    Ok((key, true))
}

/// Loads the skey in `path`; see [`load_or_generate`] for the checks.
///
/// # Errors
///
/// [`Error::KeyFile`] naming the file and the problem.
pub fn load(path: &Path, name: &str, kind: KeyType) -> Result<SignerKey, Error> {
    let err = |reason: String| Error::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode is {mode:o}; a private key must be 0600 (chmod 600 {})",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let key = SignerKey::parse(text.trim()).map_err(|e| err(e.to_string()))?;
    if key.verifier().name() != name || key.verifier().kind() != kind {
        return Err(err(format!(
            "holds a key for {:?} ({:?}), expected {name:?} ({kind:?})",
            key.verifier().name(),
            key.verifier().kind()
        )));
    }
    Ok(key)
}
