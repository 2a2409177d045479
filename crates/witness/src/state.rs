//! Per-log witness state in files: the latest cosigned checkpoint, written
//! atomically (temporary file, fsync, rename, fsync of the directory).

use std::path::{Path, PathBuf};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use note::Checkpoint;
use serde::{Deserialize, Serialize};
use tlog::Hash;

use crate::{Error, Refusal};

/// What the witness holds for one log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogState {
    /// The log's origin.
    pub origin: String,
    /// Size of the latest cosigned checkpoint.
    pub size: u64,
    /// Its root, base64.
    pub root: String,
    /// The checkpoint with the log's signature and this witness's cosignature.
    pub checkpoint: String,
    /// Set when the witness saw the log misbehave: why, and where the
    /// evidence is. Nothing more is cosigned for this log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}

impl LogState {
    pub(crate) fn new(c: &Checkpoint, cosigned: &str) -> LogState {
        LogState {
            origin: c.origin.clone(),
            size: c.size,
            root: B64.encode(c.root.0),
            checkpoint: cosigned.to_string(),
            halted: None,
        }
    }

    pub(crate) fn root(&self) -> Result<Hash, Refusal> {
        B64.decode(&self.root)
            .ok()
            .and_then(|b| Hash::from_slice(&b))
            .ok_or_else(|| Refusal::Storage(format!("state of {:?}: bad root", self.origin)))
    }
}

pub(crate) struct Store {
    dir: PathBuf,
}

/// A file name stem for an origin: hex, so any origin is a safe name.
pub(crate) fn file_stem(origin: &str) -> String {
    origin.bytes().map(|b| format!("{b:02x}")).collect()
}

fn file_name(origin: &str) -> String {
    format!("{}.json", file_stem(origin))
}

impl Store {
    pub(crate) fn open(dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::state(dir, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn load(&self, origin: &str) -> Result<Option<LogState>, Error> {
        let path = self.dir.join(file_name(origin));
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::state(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::state(&path, e)),
        }
    }

    pub(crate) fn save(&self, s: &LogState) -> Result<(), Error> {
        let path = self.dir.join(file_name(&s.origin));
        keyfile::write_durable(&path, &serde_json::to_vec(s).expect("serializable"), 0o600)
            .map_err(|e| Error::state(&path, e.reason))
    }
}
