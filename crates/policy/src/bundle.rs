//! Policy bundles: files plus a manifest, content-addressed.
//!
//! A bundle is a set of files keyed by relative path. Its version is
//! `sha256:<hex>` over a canonical encoding of the sorted (path, contents)
//! pairs, so it does not depend on file order, timestamps or the archive tool.
//!
//! Two input forms:
//! - a directory with `tollgate.json` (the [`Manifest`]) and the policy files;
//! - an OPA bundle `.tar.gz` as `opa build` writes it (`.manifest`, `.rego`
//!   files, `data.json` documents nested by path). Its entrypoint comes from
//!   the OPA manifest's `metadata.tollgate_entrypoint`, or from the caller.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// The manifest file of a Tollgate bundle directory.
pub const MANIFEST_FILE: &str = "tollgate.json";
/// Largest bundle accepted, in bytes of file contents.
const MAX_BUNDLE_BYTES: usize = 16 << 20;

/// The policy engine a bundle is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Rego, evaluated by regorus.
    Rego,
    /// Cedar, evaluated by cedar-policy.
    Cedar,
}

/// What `tollgate.json` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `rego` or `cedar`.
    pub engine: Engine,
    /// Rego only: the rule whose value is the decision, e.g. `data.payments.decision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Cedar only: the schema file (`.cedarschema` or JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Cedar only: the entities JSON file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<String>,
    /// Counters over the log the policy sees as `derived.history` (see
    /// [`Counter`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<Counter>,
}

/// A counter a bundle declares: over the committed PERMIT receipts of the
/// deciding actor for `surface` (and `action`, if given) decided in the
/// last `window_seconds`, the number of them, or with `sum` the sum of
/// their `target.<sum>` (an integer; a fraction counts as the next integer
/// up, a negative value and anything else as 0, so no request can lower a
/// sum: a policy with a quota should still refuse non-positive amounts). A policy sees the value before the request as
/// `derived.history.<name>` (Cedar: `context.history.<name>`); the receipt
/// records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// `^[a-z][a-z0-9_]{0,63}$`, unique in the bundle.
    pub name: String,
    /// The surface whose PERMITs count.
    pub surface: String,
    /// The action whose PERMITs count; any action of the surface if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The sliding window, 1 s to 31 days.
    pub window_seconds: u64,
    /// The target member summed; counts receipts if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<String>,
}

/// The longest counter window: 31 days.
pub const MAX_COUNTER_WINDOW_SECONDS: u64 = 31 * 24 * 3600;

fn check_counters(counters: &[Counter]) -> Result<(), Error> {
    let mut seen = std::collections::BTreeSet::new();
    for c in counters {
        let n = c.name.as_bytes();
        let ok = !n.is_empty()
            && n.len() <= 64
            && n[0].is_ascii_lowercase()
            && n.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !ok {
            return Err(Error::InvalidBundle(format!(
                "counter name {:?} is not ^[a-z][a-z0-9_]{{0,63}}$",
                c.name
            )));
        }
        if !seen.insert(&c.name) {
            return Err(Error::InvalidBundle(format!(
                "counter {:?} is declared twice",
                c.name
            )));
        }
        if c.window_seconds == 0 || c.window_seconds > MAX_COUNTER_WINDOW_SECONDS {
            return Err(Error::InvalidBundle(format!(
                "counter {:?}: window_seconds {} is not 1..={MAX_COUNTER_WINDOW_SECONDS}",
                c.name, c.window_seconds
            )));
        }
    }
    Ok(())
}

/// A policy bundle: its manifest and files. Immutable once built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Bundle {
    /// A bundle from a manifest and files (paths relative, `/`-separated).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidBundle`] for unsafe paths, size, or a manifest naming
    /// files that are not there.
    pub fn new(manifest: Manifest, files: BTreeMap<String, Vec<u8>>) -> Result<Bundle, Error> {
        let total: usize = files.values().map(Vec::len).sum();
        if total > MAX_BUNDLE_BYTES {
            return Err(Error::InvalidBundle(format!(
                "bundle exceeds {MAX_BUNDLE_BYTES} bytes"
            )));
        }
        for p in files.keys() {
            if p.is_empty()
                || p.starts_with('/')
                || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(Error::InvalidBundle(format!("unsafe path {p:?}")));
            }
        }
        for (what, f) in [
            ("schema", &manifest.schema),
            ("entities", &manifest.entities),
        ] {
            if let Some(f) = f {
                if !files.contains_key(f) {
                    return Err(Error::InvalidBundle(format!(
                        "manifest {what} file {f:?} is not in the bundle"
                    )));
                }
            }
        }
        check_counters(&manifest.counters)?;
        match manifest.engine {
            Engine::Rego
                if manifest
                    .entrypoint
                    .as_deref()
                    .is_none_or(|e| !e.starts_with("data.")) =>
            {
                return Err(Error::InvalidBundle(
                    "a Rego bundle needs an entrypoint such as data.<package>.decision".into(),
                ));
            }
            Engine::Cedar if manifest.entrypoint.is_some() => {
                return Err(Error::InvalidBundle(
                    "a Cedar bundle has no entrypoint".into(),
                ));
            }
            _ => {}
        }
        Ok(Bundle { manifest, files })
    }

    /// Reads a bundle directory: `tollgate.json` and every regular file below.
    ///
    /// # Errors
    ///
    /// I/O errors, or an invalid manifest or bundle.
    pub fn from_dir(dir: &Path) -> Result<Bundle, Error> {
        let mut files = BTreeMap::new();
        read_tree(dir, dir, &mut files)?;
        let manifest = files.remove(MANIFEST_FILE).ok_or_else(|| {
            Error::InvalidBundle(format!("{} has no {MANIFEST_FILE}", dir.display()))
        })?;
        let manifest: Manifest = serde_json::from_slice(&manifest)
            .map_err(|e| Error::InvalidBundle(format!("{MANIFEST_FILE}: {e}")))?;
        Bundle::new(manifest, files)
    }

    /// Reads an OPA bundle (`.tar.gz` from `opa build`), or a Tollgate bundle
    /// archived the same way (with `tollgate.json` inside). For an OPA bundle
    /// the Rego entrypoint is `entrypoint` if given, else the `.manifest`'s
    /// `metadata.tollgate_entrypoint`.
    ///
    /// # Errors
    ///
    /// Archive errors, or an invalid bundle.
    pub fn from_tar_gz(bytes: &[u8], entrypoint: Option<&str>) -> Result<Bundle, Error> {
        let bad = |e: std::io::Error| Error::InvalidBundle(format!("reading archive: {e}"));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut files = BTreeMap::new();
        let mut total = 0usize;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(bad)?
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string();
            let mut data = Vec::new();
            entry
                .by_ref()
                .take((MAX_BUNDLE_BYTES - total + 1) as u64)
                .read_to_end(&mut data)
                .map_err(bad)?;
            total += data.len();
            if total > MAX_BUNDLE_BYTES {
                return Err(Error::InvalidBundle(format!(
                    "bundle exceeds {MAX_BUNDLE_BYTES} bytes"
                )));
            }
            files.insert(path, data);
        }
        if let Some(m) = files.remove(MANIFEST_FILE) {
            let manifest: Manifest = serde_json::from_slice(&m)
                .map_err(|e| Error::InvalidBundle(format!("{MANIFEST_FILE}: {e}")))?;
            return Bundle::new(manifest, files);
        }
        // An OPA bundle: .manifest (optional), .rego files and data.json documents.
        let opa: serde_json::Value = match files.get(".manifest") {
            Some(m) => serde_json::from_slice(m)
                .map_err(|e| Error::InvalidBundle(format!(".manifest: {e}")))?,
            None => serde_json::Value::Null,
        };
        let entrypoint = entrypoint
            .map(str::to_string)
            .or_else(|| {
                opa["metadata"]["tollgate_entrypoint"]
                    .as_str()
                    .map(str::to_string)
            })
            .map(|e| {
                if e.starts_with("data.") {
                    e
                } else {
                    format!("data.{}", e.replace('/', "."))
                }
            });
        files.retain(|p, _| p.ends_with(".rego") || p.ends_with("data.json") || p == ".manifest");
        Bundle::new(
            Manifest {
                engine: Engine::Rego,
                entrypoint,
                schema: None,
                entities: None,
                counters: Vec::new(),
            },
            files,
        )
    }

    /// The bundle as a `.tar.gz` with `tollgate.json` and every file, in path
    /// order with zeroed timestamps and owners, so the same bundle always
    /// gives the same bytes. [`Bundle::from_tar_gz`] reads it back to an equal
    /// bundle (same version).
    #[must_use]
    pub fn to_tar_gz(&self) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let manifest = serde_json::to_vec(&self.manifest).expect("manifest serializes");
        let files = std::iter::once((MANIFEST_FILE, manifest.as_slice()))
            .chain(self.files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
        for (path, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            // Writing to a Vec cannot fail; paths were checked in `Bundle::new`.
            tar.append_data(&mut header, path, contents)
                .expect("in-memory archive");
        }
        tar.into_inner()
            .and_then(flate2::write::GzEncoder::finish)
            .expect("in-memory archive")
    }

    /// The manifest.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The files, by path.
    #[must_use]
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// The bundle's version: `sha256:<hex>` of its canonical content.
    ///
    /// Canonical content: the manifest as compact JSON with fields in a fixed
    /// order, then for each file in path order: u64 BE path length, path,
    /// u64 BE content length, content.
    #[must_use]
    pub fn version(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"tollgate-bundle-v1\n");
        let m = serde_json::to_vec(&self.manifest).expect("manifest serializes");
        h.update((m.len() as u64).to_be_bytes());
        h.update(&m);
        for (p, c) in &self.files {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
            h.update((c.len() as u64).to_be_bytes());
            h.update(c);
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// The file at `path` as UTF-8 text (policy, schema and data files must be).
    pub(crate) fn text(&self, path: &str) -> Result<&str, Error> {
        let bytes = self
            .files
            .get(path)
            .ok_or_else(|| Error::InvalidBundle(format!("no file {path:?}")))?;
        std::str::from_utf8(bytes).map_err(|_| Error::Compile {
            file: path.into(),
            line: 0,
            message: "not UTF-8".into(),
        })
    }

    /// The texts of the files whose path ends with `suffix`, in path order.
    pub(crate) fn texts_ending(&self, suffix: &str) -> Result<Vec<(&str, &str)>, Error> {
        self.files_ending(suffix)
            .map(|(p, _)| Ok((p, self.text(p)?)))
            .collect()
    }

    /// Files whose path ends with `suffix`, in path order.
    pub(crate) fn files_ending(&self, suffix: &str) -> impl Iterator<Item = (&str, &[u8])> {
        let suffix = suffix.to_string();
        self.files
            .iter()
            .filter(move |(p, _)| p.ends_with(&suffix))
            .map(|(p, c)| (p.as_str(), c.as_slice()))
    }
}

fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            read_tree(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).expect("below root");
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.insert(rel.join("/"), std::fs::read(&path).map_err(io(&path))?);
        }
    }
    Ok(())
}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
