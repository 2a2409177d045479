//! The receipt ledger: an append-only RFC 9162 log over a storage backend
//! (RocksDB embedded, or PostgreSQL shared by many gates), and the state
//! kept beside it.
//!
//! In scope: durable appends with group commit and exact idempotency
//! ([`Ledger::append`]), one signed C2SP checkpoint per committed batch, and
//! every read the log serves — checkpoints by size, inclusion and consistency
//! proofs, entries, and C2SP tlog-tiles hash tiles and entry bundles — each in
//! O(log n) with memory bounded by fixed caps, not by the log.
//!
//! Out of scope: what the leaves mean (receipts are opaque bytes here), HTTP,
//! witnesses. This is the only crate that links RocksDB, and only `rocks.rs`
//! names it.
//!
//! Structure: the sequencer (`sequencer.rs`) prepares batches in memory and
//! hands them, as plain data, to a storage backend through the `LogStore`
//! trait (`store.rs`: reads, an atomic insert, a sync); the hash caches sit
//! above whichever backend is used, and recovery is the same code for all of
//! them. State that is not the log — a namespaced key-value space with
//! compare-and-swap, whose values mean what its user says (the gate's
//! records) — is behind [`State`] (`state.rs`), in the same backend.
//!
//! The backends: RocksDB (`rocks.rs`, the embedded default, whose docs give
//! its key layout: the log's keys under `h e l i c`, the state's under any
//! other letter) and PostgreSQL (`pg.rs`, its tables in its docs), each
//! through the narrow traits of `store.rs`. Whichever: nothing is answered
//! or served before the batch that holds it is durable, and what is stored
//! is always exactly some batch, never one before an acknowledged batch.

mod copy;
#[cfg(feature = "faults")]
pub mod faults;
mod pg;
mod pg_tls;
mod recent;
mod rocks;
mod sequencer;
mod state;
mod store;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use note::{Checkpoint, SignerKey, VerifierKey};
use tlog::{Hash, Tile};

pub use copy::{copy_to_postgres, Copied};
pub use state::{Exclusive, Namespace, Pairs, State};

/// Largest leaf the ledger accepts: tlog-tiles entry bundles carry a u16 length.
pub const MAX_LEAF_SIZE: usize = tlog::MAX_ENTRY_SIZE;
/// Largest idempotency key, in bytes.
pub const MAX_KEY_SIZE: usize = 1024;

/// Errors from the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The stored log is inconsistent; the ledger refuses to use it.
    #[error("the log on disk is corrupt: {0}")]
    Corrupt(String),
    /// The batch holding this append could not be made durable; nothing of
    /// it was acknowledged. Retrying with the same idempotency key is safe.
    #[error("append not committed: {0}")]
    NotCommitted(String),
    /// The sequencer has stopped (closed, or a fatal storage error).
    #[error("the ledger is not accepting appends: {0}")]
    Stopped(String),
    /// The leaf is empty or larger than [`MAX_LEAF_SIZE`], or the idempotency
    /// key is empty or larger than [`MAX_KEY_SIZE`].
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The idempotency key was used before with a different leaf.
    #[error("idempotency key already used for a different leaf (index {index})")]
    Conflict {
        /// Index of the leaf the key was first used for.
        index: u64,
    },
    /// A read asked for something beyond the committed tree, or absent.
    #[error("not found: {0}")]
    NotFound(String),
    /// Proof computation failed.
    #[error(transparent)]
    Tlog(#[from] tlog::Error),
    /// Signing or parsing a checkpoint failed.
    #[error(transparent)]
    Note(#[from] note::Error),
}

/// A lock held across every writer of a shared log (see [`Ledger::hold`]);
/// released when dropped.
pub struct Held(#[allow(dead_code)] Box<dyn Send>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// Group-commit settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// A batch closes when it holds this many appends.
    pub batch_max: usize,
    /// ... or this long after its first append arrived, while an earlier
    /// batch is still on its way to the disk; when everything before it is
    /// durable, a batch closes at once with whatever is queued.
    pub batch_wait: Duration,
    /// How many of the newest stored hashes to keep in memory (32 bytes
    /// each; a log of n leaves has about 2n). Proofs that need only those are
    /// computed without reading RocksDB. 0 keeps none.
    pub recent_hashes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch_max: 256,
            batch_wait: Duration::from_micros(500),
            recent_hashes: DEFAULT_RECENT_HASHES,
        }
    }
}

/// The default [`Options::recent_hashes`]: 2^23 hashes, at most 256 MiB,
/// every stored hash of the newest ~4M leaves.
pub const DEFAULT_RECENT_HASHES: usize = 1 << 23;

/// A checkpoint the log signed, with its signed note text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note, as served at `/log/checkpoint`.
    pub note: String,
}

/// The answer to a committed append.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Leaf index.
    pub index: u64,
    /// The checkpoint of the batch that answered this append; it covers `index`.
    pub checkpoint: Arc<SignedCheckpoint>,
    /// Inclusion proof of `index` to `checkpoint`.
    pub proof: Vec<Hash>,
    /// True if the idempotency key was seen before: nothing was added.
    pub duplicate: bool,
    /// How many appends the committing batch held (for metrics).
    pub batch_len: usize,
    /// How long the committing batch took to become durable, from the start
    /// of its insert until the fsync that covered it returned (for metrics);
    /// zero if the batch added no leaf and so wrote nothing.
    pub write_time: Duration,
}

/// An open ledger. Cheap to clone; the sequencer stops when the last clone is dropped.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
    sequencer: Arc<sequencer::Handle>,
    state: Arc<State>,
    /// On RocksDB: the store, for its one engine-specific hook
    /// ([`Ledger::wait_for_compaction`]).
    rocks: Option<Arc<rocks::RocksStore>>,
}

/// What readers and the sequencer share.
pub(crate) struct Shared {
    pub(crate) store: store::Store,
    pub(crate) latest: RwLock<Arc<SignedCheckpoint>>,
    /// The right edge of the newest committed size a proof was asked at:
    /// proofs at the latest size (most of them) do not fold it again.
    /// Committed hashes never change, so it is never stale.
    pub(crate) edge: RwLock<Option<Arc<tlog::RightEdge>>>,
    pub(crate) verifier: VerifierKey,
    /// Why the newest batch write failed, until one succeeds again.
    pub(crate) write_error: std::sync::Mutex<Option<String>>,
}

impl Ledger {
    /// Opens (or creates) the ledger in directory `path`, signing checkpoints
    /// with `key`, whose name is the log's origin. Runs recovery: the root
    /// recomputed from stored hashes must equal the last signed checkpoint's,
    /// which must verify with `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if recovery finds the log inconsistent, or a storage error.
    pub fn open(path: &Path, key: SignerKey, options: Options) -> Result<Ledger, Error> {
        let rocks = Arc::new(rocks::RocksStore::open(path)?);
        let mut ledger = Ledger::open_on(rocks.clone(), key, options)?;
        ledger.rocks = Some(rocks);
        Ok(ledger)
    }

    /// Opens the log in the PostgreSQL database at `url` (a libpq connection
    /// string or `postgres://` URL), creating its tables if they do not
    /// exist; recovery as [`Ledger::open`]. Several ledgers may share one
    /// database: each batch checks, inside its transaction, that nobody
    /// appended since it was prepared (see `pg.rs`).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the database cannot be reached; recovery errors.
    pub fn open_postgres(url: &str, key: SignerKey, options: Options) -> Result<Ledger, Error> {
        Ledger::open_on(Arc::new(pg::PgStore::connect(url, 4)?), key, options)
    }

    fn open_on(
        backend: Arc<impl store::Backend + 'static>,
        key: SignerKey,
        options: Options,
    ) -> Result<Ledger, Error> {
        let store = store::Store::new(backend.clone(), options.recent_hashes);
        let latest = store.recover(&key)?;
        let shared = Arc::new(Shared {
            store,
            latest: RwLock::new(Arc::new(latest)),
            edge: RwLock::new(None),
            verifier: key.verifier().clone(),
            write_error: std::sync::Mutex::new(None),
        });
        let sequencer = Arc::new(sequencer::Handle::start(shared.clone(), key, options));
        Ok(Ledger {
            shared,
            sequencer,
            state: Arc::new(State::new(backend)),
            rocks: None,
        })
    }

    /// Appends `leaf` under `idempotency_key` and resolves once it is durable,
    /// with its index, the batch's checkpoint and an inclusion proof. The same
    /// key with the same leaf resolves to the original index and adds nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAppend`], [`Error::Conflict`], [`Error::NotCommitted`]
    /// (this batch failed; retry is safe), [`Error::Stopped`].
    pub async fn append(&self, leaf: Vec<u8>, idempotency_key: Vec<u8>) -> Result<Appended, Error> {
        self.sequencer
            .submit(leaf, idempotency_key)?
            .await
            .unwrap_or_else(|_| Err(self.sequencer.stopped()))
    }

    /// [`Ledger::append`], blocking the calling thread until the answer: for
    /// threads outside an async runtime, and for startup work that runs on
    /// one before it serves (it blocks that thread, nothing else).
    ///
    /// # Errors
    ///
    /// As [`Ledger::append`].
    pub fn append_blocking(
        &self,
        leaf: Vec<u8>,
        idempotency_key: Vec<u8>,
    ) -> Result<Appended, Error> {
        wait(self.sequencer.submit(leaf, idempotency_key)?)
            .unwrap_or_else(|_| Err(self.sequencer.stopped()))
    }

    /// The state kept beside the log: policy bundles and the active version.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The log's checkpoint verifier key (its vkey is `to_string()`).
    #[must_use]
    pub fn verifier(&self) -> &VerifierKey {
        &self.shared.verifier
    }

    /// Waits until RocksDB has flushed and finished its background
    /// compactions, so a benchmark measures reads, not compaction beside
    /// them (other backends have none).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn wait_for_compaction(&self) -> Result<(), Error> {
        match &self.rocks {
            Some(rocks) => rocks.wait_for_compaction(),
            None => Ok(()),
        }
    }

    /// Whether appends can commit: `Err` with the reason if the sequencer
    /// stopped (a failed fsync; reopen to recover), or the newest batch write
    /// failed and none has succeeded since (say, the disk is full; RocksDB
    /// then refuses writes until it is reopened).
    ///
    /// # Errors
    ///
    /// The reason appends cannot commit.
    pub fn writable(&self) -> Result<(), String> {
        if let Some(reason) = self.sequencer.stop_reason() {
            return Err(format!("the log stopped: {reason}"));
        }
        match self
            .shared
            .write_error
            .lock()
            .expect("write error lock")
            .clone()
        {
            Some(reason) => Err(format!("the last write failed: {reason}")),
            None => Ok(()),
        }
    }

    /// The latest signed checkpoint.
    #[must_use]
    pub fn latest(&self) -> Arc<SignedCheckpoint> {
        self.shared.latest.read().expect("latest lock").clone()
    }

    /// On a store other writers share (PostgreSQL): learns what they
    /// committed. If the store's last checkpoint is newer than the published
    /// one, it is checked as recovery checks it (the log key's signature,
    /// its root recomputed from the stored hashes) and published, so proofs,
    /// tiles and receipts up to it are served. Returns the published size.
    /// On a store of its own, nothing to learn.
    ///
    /// # Errors
    ///
    /// A storage error, or [`Error::Corrupt`] for a checkpoint that does
    /// not check out (nothing is published then).
    pub fn refresh(&self) -> Result<u64, Error> {
        let store = &self.shared.store;
        let published = self.committed_size();
        if !store.backend().shared() {
            return Ok(published);
        }
        let Some((size, text)) = store.backend().last_checkpoint()? else {
            return Ok(published);
        };
        if size <= published {
            return Ok(published);
        }
        let newer = Arc::new(store.verified(&self.shared.verifier, size, text)?);
        let mut latest = self.shared.latest.write().expect("latest lock");
        if latest.checkpoint.size < size {
            *latest = newer;
        }
        Ok(latest.checkpoint.size)
    }

    /// On a log other writers share (PostgreSQL): waits until this process
    /// holds the lock named `name` across every writer, and holds it until
    /// the guard is dropped. `None` on a log of one writer.
    ///
    /// # Errors
    ///
    /// A storage error (nothing is held).
    pub fn hold(&self, name: &[u8]) -> Result<Option<Held>, Error> {
        match self.shared.store.backend().coordination() {
            Some(c) => Ok(Some(Held(c.hold(name)?))),
            None => Ok(None),
        }
    }

    /// Takes or renews lease `name` for `holder` for `ttl`: whether
    /// `holder` holds it now (see `LogStore::lease`; always true on a store
    /// of one writer).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, Error> {
        match self.shared.store.backend().coordination() {
            Some(c) => c.lease(name, holder, ttl),
            None => Ok(true),
        }
    }

    /// Whether other writers may share the store (PostgreSQL).
    #[must_use]
    pub fn shared(&self) -> bool {
        self.shared.store.backend().shared()
    }

    fn committed_size(&self) -> u64 {
        self.latest().checkpoint.size
    }

    /// The checkpoint the log signed at tree size `size`, if it signed one.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, Error> {
        // Batches are readable in the store before their sync returns; only
        // what is durable (published) is served.
        if size > self.committed_size() {
            return Ok(None);
        }
        self.shared.store.backend().checkpoint(size)
    }

    /// The inclusion proof of leaf `index` in the tree of size `size`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if `size` exceeds the committed tree or `index >= size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(size)?;
        if index >= size {
            return Err(Error::NotFound(format!(
                "index {index} is not in a tree of size {size}"
            )));
        }
        let hashes = self.shared.store.hashes();
        Ok(match self.latest_edge(size)? {
            Some(edge) => edge.prove_inclusion(index, &hashes)?,
            None => tlog::prove_inclusion(index, size, &hashes)?,
        })
    }

    /// The right edge of `size` (committed) if it is the latest size; older
    /// sizes fold their edge in each proof.
    fn latest_edge(&self, size: u64) -> Result<Option<Arc<tlog::RightEdge>>, Error> {
        if size != self.committed_size() {
            return Ok(None);
        }
        let cached = self.shared.edge.read().expect("edge lock").clone();
        if let Some(edge) = cached.filter(|e| e.size() == size) {
            return Ok(Some(edge));
        }
        let edge = Arc::new(tlog::RightEdge::new(size, &self.shared.store.hashes())?);
        let mut slot = self.shared.edge.write().expect("edge lock");
        // Another reader may have cached a newer size meanwhile: keep the newer.
        if slot.as_ref().is_none_or(|e| e.size() < size) {
            *slot = Some(edge.clone());
        }
        Ok(Some(edge))
    }

    /// The committed leaf first appended under `idempotency_key`: its index
    /// and leaf hash. `None` if the key is unused, or its batch is being
    /// committed right now (its append will answer).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn lookup(&self, idempotency_key: &[u8]) -> Result<Option<(u64, Hash)>, Error> {
        let mut size = self.committed_size();
        let found = self
            .shared
            .store
            .backend()
            .idempotency(&[idempotency_key])?[0];
        if found.is_some_and(|r| r.index >= size) && self.shared() {
            // Another writer committed it: learn that checkpoint first.
            size = self.refresh()?;
        }
        Ok(found
            .filter(|r| r.index < size)
            .map(|r| (r.index, r.leaf_hash)))
    }

    /// The consistency proof from tree size `old` to `new` (`0 < old <= new`).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if `new` exceeds the committed tree; [`Error::Tlog`]
    /// for sizes with no proof.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(new)?;
        let hashes = self.shared.store.hashes();
        Ok(match self.latest_edge(new)? {
            Some(edge) => edge.prove_consistency(old, &hashes)?,
            None => tlog::prove_consistency(old, new, &hashes)?,
        })
    }

    /// The root hash of the tree of size `size`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if `size` exceeds the committed tree.
    pub fn tree_hash(&self, size: u64) -> Result<Hash, Error> {
        self.check_size(size)?;
        Ok(tlog::tree_hash(size, &self.shared.store.hashes())?)
    }

    /// The leaf at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] beyond the committed tree.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, Error> {
        if index >= self.committed_size() {
            return Err(Error::NotFound(format!("no entry {index}")));
        }
        self.shared
            .store
            .backend()
            .entries(index, 1)?
            .pop()
            .ok_or_else(|| Error::Corrupt(format!("entry {index} missing")))
    }

    /// The leaves `start..start + count` (a range read), all within the
    /// committed tree.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a range past the committed tree.
    pub fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, Error> {
        let size = self.committed_size();
        if start.checked_add(count).is_none_or(|end| end > size) {
            return Err(Error::NotFound(format!(
                "entries {start}..+{count} are not in a tree of size {size}"
            )));
        }
        let entries = self.shared.store.backend().entries(start, count)?;
        if entries.len() as u64 != count {
            return Err(Error::Corrupt(format!(
                "entries {start}..+{count}: {} stored",
                entries.len()
            )));
        }
        Ok(entries)
    }

    /// The contents of a C2SP tlog-tiles hash tile or entry bundle. A tile is
    /// served if the committed tree holds at least `tile.width` of its hashes
    /// (or entries); contents never change once served.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a tile the tree does not (yet) hold.
    pub fn tile(&self, tile: &Tile) -> Result<Vec<u8>, Error> {
        let size = self.committed_size();
        let available = Tile::in_tree(tile.level, tile.index, size).map_or(0, |t| t.width);
        if tile.width > available {
            return Err(Error::NotFound(format!(
                "tile {} is not in a tree of size {size}",
                tile.path()
            )));
        }
        if tile.entries {
            let start = tile.index * u64::from(tlog::TILE_WIDTH);
            let entries = self
                .shared
                .store
                .backend()
                .entries(start, u64::from(tile.width))?;
            Ok(tlog::encode_entry_bundle(&entries)?)
        } else {
            Ok(tlog::read_tile_data(tile, &self.shared.store.hashes())?)
        }
    }

    fn check_size(&self, size: u64) -> Result<(), Error> {
        let committed = self.committed_size();
        if size > committed {
            return Err(Error::NotFound(format!(
                "tree size {size} exceeds the log's {committed}"
            )));
        }
        Ok(())
    }
}

/// Waits for `rx` on this thread by parking it, in any context (tokio's own
/// `blocking_recv` refuses to run inside a runtime).
fn wait<T>(
    rx: tokio::sync::oneshot::Receiver<T>,
) -> Result<T, tokio::sync::oneshot::error::RecvError> {
    use std::future::Future as _;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut rx = std::pin::pin!(rx);
    loop {
        if let Poll::Ready(r) = rx.as_mut().poll(&mut cx) {
            return r;
        }
        std::thread::park();
    }
}
