//! `tollgate log copy`: an embedded log (RocksDB) moved into an empty
//! PostgreSQL database, checkpoint by checkpoint, so that many gates can
//! share it (issue 21).
//!
//! Every checkpoint the source signed is copied as it is (receipts' proofs
//! and witnesses' cosignatures name them), each with the entries since the
//! previous one in one transaction, as a gate would have written it. The
//! stored hashes are not copied: they are computed again from the entries,
//! and each checkpoint's signature and root must be reproduced before it is
//! written. The state beside the log (policies, callers, approvals) follows.
//! At the end the copy is recovered as a gate would open it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use note::{Checkpoint, Note, SignerKey};
use tlog::Hash;

use crate::pg::PgStore;
use crate::rocks::RocksStore;
use crate::sequencer::BatchReader;
use crate::store::{Backend, Batch, LogStore, NewLeaf, Store};
use crate::Error;

/// What a copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Entries (the tree size).
    pub entries: u64,
    /// Signed checkpoints, each with its root reproduced.
    pub checkpoints: u64,
    /// State records (policy bundles, active and shadow versions, callers,
    /// approval requests).
    pub state: usize,
}

/// Checkpoints read from the source at once.
const CHECKPOINTS_AT_ONCE: usize = 1024;

/// Copies the RocksDB log in directory `from` (a data directory's `log`)
/// into the empty PostgreSQL database `to`, checking every checkpoint with
/// the log key `key` (whose name is the log's origin). `progress` is told
/// the size copied so far and the size to reach.
///
/// # Errors
///
/// [`Error::Corrupt`] for a source that does not check out (a checkpoint
/// that does not verify, a root not reproduced from the entries, an entry
/// without its idempotency record) — the database then holds a prefix of
/// the log and should be dropped; [`Error::InvalidAppend`] if the database
/// already holds a log; a storage error.
pub fn copy_to_postgres(
    from: &Path,
    to: &str,
    key: &SignerKey,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Copied, Error> {
    let src = Arc::new(RocksStore::open_existing(from)?);
    let dst = Arc::new(PgStore::connect(to, 2)?);
    copy(&src, &dst, key, progress).map_err(|e| match e {
        Error::NotFound(why) if why.starts_with("the log has no checkpoint") => {
            Error::NotFound(format!("the log in {} has no checkpoint", from.display()))
        }
        other => other,
    })
}

/// Copies the log and its state from one backend into another, empty one,
/// whatever the two are (as `copy_to_postgres` says).
pub(crate) fn copy(
    src: &Arc<impl Backend + 'static>,
    dst: &Arc<impl Backend + 'static>,
    key: &SignerKey,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Copied, Error> {
    let Some((last_size, last_text)) = src.last_checkpoint()? else {
        return Err(Error::NotFound("the log has no checkpoint".into()));
    };
    let src_store = Store::new(src.clone(), 0);
    src_store.verified(key.verifier(), last_size, last_text)?;

    if dst.last_checkpoint()?.is_some() || dst.has_entry(0)? {
        return Err(Error::InvalidAppend(
            "the database already holds a log: copy into an empty one".into(),
        ));
    }
    let dst_store = Store::new(dst.clone(), 1 << 20);

    // Index → idempotency key, from the source's records.
    let mut keys: HashMap<u64, (Vec<u8>, Hash)> = src
        .idempotency_records()?
        .into_iter()
        .map(|(k, r)| (r.index, (k, r.leaf_hash)))
        .collect();

    let mut copied = Copied {
        entries: 0,
        checkpoints: 0,
        state: 0,
    };
    let mut next = 0;
    loop {
        let checkpoints = src.checkpoints_from(next, CHECKPOINTS_AT_ONCE)?;
        let Some(&(newest, _)) = checkpoints.last() else {
            break;
        };
        for (size, text) in checkpoints {
            copy_one(
                src.as_ref(),
                dst.as_ref(),
                &dst_store,
                key,
                &mut keys,
                copied.entries,
                size,
                text,
            )?;
            copied.entries = size;
            copied.checkpoints += 1;
            progress(size, last_size);
        }
        next = newest + 1;
    }
    if copied.entries != last_size {
        return Err(Error::Corrupt(format!(
            "copied up to size {}, the log's last checkpoint is {last_size}",
            copied.entries
        )));
    }

    for ns in crate::state::Namespace::all() {
        let pairs = src.state_scan(&[ns.prefix()])?;
        let refs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        if !refs.is_empty() {
            dst.state_put(&refs)?;
        }
        copied.state += refs.len();
    }

    // As a gate opens it: the last checkpoint against the stored hashes.
    let check = Store::new(dst.clone(), 0);
    let (size, text) = dst
        .last_checkpoint()?
        .ok_or_else(|| Error::Corrupt("the copy has no checkpoint".into()))?;
    check.verified(key.verifier(), size, text)?;
    Ok(copied)
}

/// Copies the entries from `old_size` to checkpoint `size` and the
/// checkpoint, in one transaction, once its root is reproduced.
#[allow(clippy::too_many_arguments)]
fn copy_one(
    src: &dyn LogStore,
    dst: &dyn LogStore,
    dst_store: &Store,
    key: &SignerKey,
    keys: &mut HashMap<u64, (Vec<u8>, Hash)>,
    old_size: u64,
    size: u64,
    text: String,
) -> Result<(), Error> {
    let signed = Note::parse(text.as_bytes())?;
    signed
        .verify(std::slice::from_ref(key.verifier()))
        .map_err(|e| Error::Corrupt(format!("checkpoint {size} does not verify: {e}")))?;
    let checkpoint = Checkpoint::parse(signed.text())?;
    if checkpoint.size != size || checkpoint.origin != key.verifier().name() {
        return Err(Error::Corrupt(format!(
            "checkpoint stored under size {size} is for {:?} size {}",
            checkpoint.origin, checkpoint.size
        )));
    }
    let entries = src.entries(old_size, size - old_size)?;
    let mut leaves = Vec::with_capacity(entries.len());
    for (index, leaf) in (old_size..).zip(entries) {
        let leaf_hash = tlog::leaf_hash(&leaf);
        let (k, recorded) = keys
            .remove(&index)
            .ok_or_else(|| Error::Corrupt(format!("entry {index} has no idempotency record")))?;
        if recorded != leaf_hash {
            return Err(Error::Corrupt(format!(
                "entry {index}'s idempotency record names another leaf"
            )));
        }
        leaves.push(NewLeaf {
            leaf,
            leaf_hash,
            key: k,
        });
    }
    let leaf_hashes: Vec<Hash> = leaves.iter().map(|l| l.leaf_hash).collect();
    let hashes: Arc<[Hash]> =
        tlog::append_leaves(old_size, &leaf_hashes, &dst_store.hashes())?.into();
    let base = tlog::stored_hash_count(old_size);
    let root = tlog::tree_hash(
        size,
        &BatchReader::with_batch(dst_store.hashes(), base, &hashes),
    )?;
    if root != checkpoint.root {
        return Err(Error::Corrupt(format!(
            "checkpoint {size}: the root computed from the entries is not the signed one"
        )));
    }
    dst.insert(&Batch {
        old_size,
        leaves,
        hashes: hashes.clone(),
        checkpoint: text,
    })?;
    dst_store.remember(base, &hashes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use note::{KeyType, SignerKey};

    use crate::faults::MemStore;
    use crate::state::Namespace;
    use crate::store::StateStore;
    use crate::{Ledger, Options};

    /// The copy takes any backend to any other: here memory to memory, the
    /// entries, every checkpoint (each root reproduced) and the state.
    #[test]
    fn a_log_copies_between_any_two_backends() {
        let key = SignerKey::generate("example.com/copy", KeyType::Ed25519).unwrap();
        let src = Arc::new(MemStore::default());
        let ledger = Ledger::open_on(src.clone(), key.clone(), Options::default()).unwrap();
        for i in 0..300 {
            ledger
                .append_blocking(
                    format!("leaf {i}").into_bytes(),
                    format!("k{i}").into_bytes(),
                )
                .unwrap();
        }
        ledger
            .state()
            .put(Namespace::new(b'p'), b"v1", b"a bundle")
            .unwrap();
        let dst = Arc::new(MemStore::default());
        let mut seen = 0;
        let copied = super::copy(&src, &dst, &key, &mut |size, _| seen = size).unwrap();
        assert_eq!((copied.entries, seen, copied.state), (300, 300, 1));
        assert!(copied.checkpoints >= 2, "{copied:?}");
        assert_eq!(
            dst.state_get(b"pv1").unwrap().as_deref(),
            Some(&b"a bundle"[..])
        );
        let copy = Ledger::open_on(dst.clone(), key.clone(), Options::default()).unwrap();
        assert_eq!(copy.latest().checkpoint, ledger.latest().checkpoint);
        assert_eq!(copy.lookup(b"k7").unwrap(), ledger.lookup(b"k7").unwrap());
        // Into a store that holds a log already: refused.
        assert!(super::copy(&src, &dst, &key, &mut |_, _| ()).is_err());
    }
}
