//! The sequencer: one thread per log that batches appends (group commit),
//! extends the tree, signs one checkpoint per batch and writes everything in
//! one synced RocksDB write before answering anyone.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use note::{Checkpoint, SignerKey};
use tlog::{Hash, HashReader, ReadError};
use tokio::sync::oneshot;

use crate::store::{Batch, IdempotencyRecord};
use crate::{Appended, Error, Options, Shared, SignedCheckpoint, MAX_KEY_SIZE, MAX_LEAF_SIZE};

/// Fault injection for tests: called before each batch write with the tree
/// size before the batch and the number of new leaves; returning `Some(reason)`
/// makes that write fail as a storage error would, without writing.
pub type WriteFault = Arc<dyn Fn(u64, usize) -> Option<String> + Send + Sync>;

type Reply = oneshot::Sender<Result<Appended, Error>>;

struct Request {
    leaf: Vec<u8>,
    key: Vec<u8>,
    reply: Reply,
}

pub(crate) struct Handle {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    stopped: Arc<Mutex<Option<String>>>,
}

impl Handle {
    pub(crate) fn start(shared: Arc<Shared>, key: SignerKey, options: Options) -> Handle {
        let (tx, rx) = mpsc::channel();
        let stopped = Arc::new(Mutex::new(None));
        let stop = stopped.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-sequencer".into())
            .spawn(move || {
                let mut s = Sequencer {
                    shared,
                    key,
                    options,
                    rx,
                };
                if let Err(reason) = s.run() {
                    *stop.lock().expect("stop lock") = Some(reason);
                }
            })
            .expect("spawning the sequencer thread");
        Handle {
            tx: Some(tx),
            thread: Some(thread),
            stopped,
        }
    }

    pub(crate) fn submit(
        &self,
        leaf: Vec<u8>,
        key: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<Appended, Error>>, Error> {
        if leaf.is_empty() || leaf.len() > MAX_LEAF_SIZE {
            return Err(Error::InvalidAppend(format!(
                "leaf of {} bytes (1..={MAX_LEAF_SIZE})",
                leaf.len()
            )));
        }
        if key.is_empty() || key.len() > MAX_KEY_SIZE {
            return Err(Error::InvalidAppend(format!(
                "idempotency key of {} bytes (1..={MAX_KEY_SIZE})",
                key.len()
            )));
        }
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(Request { leaf, key, reply }));
        match sent {
            Some(Ok(())) => Ok(rx),
            _ => Err(Error::Stopped(
                self.stopped
                    .lock()
                    .expect("stop lock")
                    .clone()
                    .unwrap_or_else(|| "closed".into()),
            )),
        }
    }
}

impl Drop for Handle {
    /// Closing: the sequencer finishes the batches already queued, then exits.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Sequencer {
    shared: Arc<Shared>,
    key: SignerKey,
    options: Options,
    rx: mpsc::Receiver<Request>,
}

/// What a request turns into once idempotency keys are resolved.
enum Plan {
    /// A new leaf at this index.
    New(u64),
    /// Seen before with the same leaf: the original index.
    Duplicate(u64),
    /// Seen before with a different leaf.
    Conflict(u64),
}

impl Sequencer {
    /// Runs until every sender is gone (Ok) or a fatal error (Err with the reason).
    fn run(&mut self) -> Result<(), String> {
        while let Ok(first) = self.rx.recv() {
            let batch = self.collect(first);
            self.commit(batch)?;
        }
        Ok(())
    }

    /// Group commit: a batch closes at `batch_max` requests or `batch_wait`
    /// after its first request.
    fn collect(&self, first: Request) -> Vec<Request> {
        let mut batch = vec![first];
        let deadline = Instant::now() + self.options.batch_wait;
        while batch.len() < self.options.batch_max {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                self.rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                self.rx.recv_timeout(left)
            };
            match next {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        batch
    }

    /// Commits one batch. Returns Err only for a fatal error, after which the
    /// sequencer stops and every later append fails.
    fn commit(&mut self, batch: Vec<Request>) -> Result<(), String> {
        let latest = self.shared.latest.read().expect("latest lock").clone();
        match self.try_commit(&batch, &latest) {
            Ok(answers) => {
                for (req, answer) in batch.into_iter().zip(answers) {
                    let _ = req.reply.send(answer);
                }
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                for req in batch {
                    let _ = req.reply.send(Err(Error::NotCommitted(reason.clone())));
                }
                // The write may or may not have been applied. Learn the truth
                // the way startup does; if even that fails, stop.
                let recovered = self.shared.store.recover(&self.key).map_err(|e| {
                    format!("after a failed batch ({reason}), recovery failed: {e}")
                })?;
                *self.shared.latest.write().expect("latest lock") = Arc::new(recovered);
                Ok(())
            }
        }
    }

    /// Builds, writes and publishes one batch; answers are in request order.
    /// Each step says what a crash there leaves behind.
    fn try_commit(
        &mut self,
        batch: &[Request],
        latest: &Arc<SignedCheckpoint>,
    ) -> Result<Vec<Result<Appended, Error>>, Error> {
        let store = &self.shared.store;
        let old_size = latest.checkpoint.size;

        // 1. Resolve idempotency keys against the store and within the batch.
        //    Memory and reads only: a crash leaves the last committed batch,
        //    and callers (unanswered) retry with the same key.
        let keys: Vec<&[u8]> = batch.iter().map(|r| r.key.as_slice()).collect();
        let known = store.idempotency(&keys)?;
        let mut in_batch: HashMap<&[u8], (u64, Hash)> = HashMap::new();
        let mut new_leaves: Vec<Hash> = Vec::new();
        let mut wb = Batch::new();
        let mut plans = Vec::with_capacity(batch.len());
        for (req, known) in batch.iter().zip(known) {
            let leaf_hash = tlog::leaf_hash(&req.leaf);
            let seen = known
                .map(|r| (r.index, r.leaf_hash))
                .or_else(|| in_batch.get(req.key.as_slice()).copied());
            plans.push(match seen {
                Some((index, h)) if h == leaf_hash => Plan::Duplicate(index),
                Some((index, _)) => Plan::Conflict(index),
                None => {
                    let index = old_size + new_leaves.len() as u64;
                    in_batch.insert(&req.key, (index, leaf_hash));
                    new_leaves.push(leaf_hash);
                    wb.entry(index, &req.leaf);
                    wb.leaf_index(&leaf_hash, index);
                    wb.idempotency(&req.key, IdempotencyRecord { index, leaf_hash });
                    Plan::New(index)
                }
            });
        }

        // 2. Extend the tree and sign the new checkpoint. Memory only; a crash
        //    leaves the last committed batch.
        let new_size = old_size + new_leaves.len() as u64;
        let base = tlog::stored_hash_count(old_size);
        let new_hashes = tlog::append_leaves(old_size, &new_leaves, &store.hashes())?;
        let reader = BatchReader {
            base,
            pending: &new_hashes,
            store: store.hashes(),
            cache: Mutex::default(),
        };
        let checkpoint = if new_leaves.is_empty() {
            latest.clone()
        } else {
            let cp = Checkpoint::new(
                &latest.checkpoint.origin,
                new_size,
                tlog::tree_hash(new_size, &reader)?,
            );
            let note = note::sign_checkpoint(&cp, &self.key)?.to_text();
            for (i, h) in new_hashes.iter().enumerate() {
                wb.hash(base + i as u64, h);
            }
            wb.checkpoint(new_size, &note);
            Arc::new(SignedCheckpoint {
                checkpoint: cp,
                note,
            })
        };

        // Each answer's inclusion proof to this batch's checkpoint, computed
        // now (memory and the old tree's right edge) so that nothing after
        // the write can fail.
        let batch_len = batch.len();
        let mut answers = plans
            .into_iter()
            .map(|plan| {
                let (index, duplicate) = match plan {
                    Plan::New(i) => (i, false),
                    Plan::Duplicate(i) => (i, true),
                    Plan::Conflict(index) => return Ok(Err(Error::Conflict { index })),
                };
                let proof = tlog::prove_inclusion(index, checkpoint.checkpoint.size, &reader)?;
                Ok(Ok(Appended {
                    index,
                    checkpoint: checkpoint.clone(),
                    proof,
                    duplicate,
                    batch_len,
                    write_time: Duration::ZERO,
                }))
            })
            .collect::<Result<Vec<Result<Appended, Error>>, Error>>()?;

        // 3. One WriteBatch with a synced WAL: entries, stored hashes,
        //    leaf index, idempotency records and the checkpoint. A crash
        //    during the write: RocksDB's WAL recovery yields this whole batch
        //    or none of it, and open() re-checks the root of whichever state
        //    it finds against that state's own signed checkpoint.
        if !new_leaves.is_empty() {
            if let Some(reason) = self
                .options
                .write_fault
                .as_ref()
                .and_then(|f| f(old_size, new_leaves.len()))
            {
                return Err(Error::NotCommitted(format!(
                    "injected write failure: {reason}"
                )));
            }
            let started = Instant::now();
            store.write(wb)?;
            let write_time = started.elapsed();
            for a in answers.iter_mut().flatten() {
                a.write_time = write_time;
            }
        }

        // 4. Publish. The batch is durable: a crash from here on loses only
        //    the answers, and a retry with the same key gets the original index.
        *self.shared.latest.write().expect("latest lock") = checkpoint.clone();

        // 5. Answer. Nothing after the write can fail, so no caller is told
        //    "not committed" about a batch that was.
        Ok(answers)
    }
}

/// Stored hashes as of the batch being committed: the batch's new hashes in
/// memory, older ones from the store (cached, since every proof in a batch
/// shares the old tree's right edge).
struct BatchReader<'a> {
    base: u64,
    pending: &'a [Hash],
    store: crate::store::DbHashes<'a>,
    cache: Mutex<HashMap<u64, Hash>>,
}

impl HashReader for BatchReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, ReadError> {
        let mut cache = self.cache.lock().expect("cache lock");
        let missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&i| i < self.base && !cache.contains_key(&i))
            .collect();
        if !missing.is_empty() {
            for (i, h) in missing.iter().zip(self.store.read_hashes(&missing)?) {
                cache.insert(*i, h);
            }
        }
        indexes
            .iter()
            .map(|&i| {
                if i >= self.base {
                    self.pending
                        .get(usize::try_from(i - self.base).unwrap_or(usize::MAX))
                        .copied()
                        .ok_or_else(|| format!("stored hash {i} is beyond the batch").into())
                } else {
                    Ok(cache[&i])
                }
            })
            .collect()
    }
}
